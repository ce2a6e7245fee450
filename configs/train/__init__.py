"""Reusable train config pieces."""
