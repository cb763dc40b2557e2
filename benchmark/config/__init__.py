"""Configuration: the structured-config schemas (one place each default lives) and their checks."""
