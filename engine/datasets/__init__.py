"""Built-in datasets Easel can train on without a download (read from a local cache)."""
