"""Help with prompts: style presets (pure data, GUI-safe) and prompt expansion (in the worker)."""
