"""inception family (to be written)."""
