"""Procedurally generated algorithmic-reasoning tasks (see tasks/base.py for the interface)."""
