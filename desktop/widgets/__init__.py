"""Widgets: bind to desktop.state objects and send user actions back."""
