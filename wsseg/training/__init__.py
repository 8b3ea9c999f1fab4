"""Training: the engine every trainable stage shares, and the datasets it consumes."""
