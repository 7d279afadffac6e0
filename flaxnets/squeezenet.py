"""squeezenet family (to be written)."""
