"""mnasnet family reference (to be written)."""
