"""shufflenetv2 family reference (to be written)."""
