"""Training: data module, LightningModule, train(cfg), evaluation and the bundle it writes."""
