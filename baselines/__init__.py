"""Unshared baseline models."""
