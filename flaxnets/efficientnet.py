"""efficientnet family (to be written)."""
