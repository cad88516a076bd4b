"""Freddie Mac file layouts, reader, outcome labeller and synthetic data generator."""
