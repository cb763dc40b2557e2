"""Infrastructure: checkpoints, typed results, precision, distributed training."""
