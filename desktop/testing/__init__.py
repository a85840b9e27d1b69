"""Test helpers shipped with the app: a scriptable fake engine."""
