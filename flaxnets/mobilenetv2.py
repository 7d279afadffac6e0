"""mobilenetv2 family (to be written)."""
