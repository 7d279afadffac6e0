"""densenet family reference (to be written)."""
