"""Text encoders for Easel's native text-conditioned models (loaded lazily in the worker)."""
