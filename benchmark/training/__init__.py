"""Training: the progressive loss, the step and the trainer, the loop regulariser, the training state."""
