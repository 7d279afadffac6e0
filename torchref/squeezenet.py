"""squeezenet family reference (to be written)."""
