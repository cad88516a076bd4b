"""Hydra multirun support: per-job status, the sweep summary, and the resumable Optuna sweeper."""
