"""Splits, preprocessing, outlier removal, batch sampling and the LightningDataModule."""
