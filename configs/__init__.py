"""Bundled YAML presets (`trtq --config NAME`); the folder is data, not code."""
