"""Application state: small QtCore objects with change signals. Widgets bind to them."""
