"""Screens pushed over the inspector: the editor, the filter box and the key help."""
