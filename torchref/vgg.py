"""vgg family reference (to be written)."""
