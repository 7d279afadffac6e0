"""mobilenetv1 family (to be written)."""
