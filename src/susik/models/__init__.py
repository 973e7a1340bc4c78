"""Torch models and their training recipes."""
