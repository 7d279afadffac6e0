"""googlenet family reference (to be written)."""
