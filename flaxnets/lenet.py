"""lenet family (to be written)."""
