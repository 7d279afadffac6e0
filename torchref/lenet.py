"""lenet family reference (to be written)."""
