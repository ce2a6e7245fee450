"""Reusable data config pieces."""
