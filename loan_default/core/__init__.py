"""What training and serving share: features, preprocessing state, network, outlier scorer, explainer, scorer, bundle."""
