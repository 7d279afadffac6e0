"""efficientnet family reference (to be written)."""
