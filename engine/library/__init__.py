"""The model library: find, identify, import, resolve and cache models. Never imports Qt."""
