"""googlenet family (to be written)."""
