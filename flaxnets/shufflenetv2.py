"""shufflenetv2 family (to be written)."""
