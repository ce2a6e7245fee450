"""Reusable optim config pieces."""
