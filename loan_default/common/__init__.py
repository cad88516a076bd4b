"""Shared helpers with no project dependencies: atomic file writes, progress bars."""
