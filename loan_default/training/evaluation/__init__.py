"""After training: threshold, metrics, baselines, plots, report and the bundle."""
