"""mobilenetv1 family reference (to be written)."""
