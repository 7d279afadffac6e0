"""mobilenetv3 family (to be written)."""
