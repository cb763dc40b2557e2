"""The engine of the algorithmic-reasoning benchmark: template banks, models, training, evaluation."""
