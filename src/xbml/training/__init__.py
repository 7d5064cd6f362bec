"""Training: device selection, checkpoints, logs and the training loop."""
