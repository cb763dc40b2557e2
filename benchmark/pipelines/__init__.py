"""The pipelines a run goes through: generated puzzles (algorithmic) and read image sets (classification)."""
