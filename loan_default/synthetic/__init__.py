"""Synthetic Freddie Mac files: loans, delinquency paths and a known hazard, written in the exact file format."""
