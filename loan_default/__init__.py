"""loan-default: predict mortgage default from Freddie Mac's loan-level data."""

__version__ = "0.1.0"
