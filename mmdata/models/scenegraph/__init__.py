"""Captions -> scene graphs (objects, attributes, relations with character spans)."""
