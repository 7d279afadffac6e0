"""inception family reference (to be written)."""
