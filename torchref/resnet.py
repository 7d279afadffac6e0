"""resnet family reference (to be written)."""
