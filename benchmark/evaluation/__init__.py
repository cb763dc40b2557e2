"""Evaluation: accuracy per test size and test-time iteration, halting, re-scoring a finished run."""
