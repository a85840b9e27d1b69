"""Easel's Qt desktop app: widgets bound to small state objects, talking to the engine through a
bridge that re-emits engine events as Qt signals on the GUI thread."""
