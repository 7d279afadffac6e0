"""mnasnet family (to be written)."""
