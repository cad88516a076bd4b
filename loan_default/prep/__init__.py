"""Data preparation: the labelled loan table written once as Parquet (local engine or Spark), read by training."""
