"""mobilenetv3 family reference (to be written)."""
