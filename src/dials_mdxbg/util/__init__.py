"""Plumbing: atomic outputs, progress, start-up, versions."""
