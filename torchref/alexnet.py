"""alexnet family reference (to be written)."""
