"""Easel's engine: models, generation and training. Never imports Qt.

`engine.api`, `engine.events`, `engine.errors` and `engine.paths` import without torch so the
desktop window can open before the heavy stack loads.
"""
