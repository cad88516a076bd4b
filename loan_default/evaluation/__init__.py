"""Threshold choice, metrics, plots, baselines, SHAP and the evaluation report."""
