"""Class imbalance: the loss weight for defaults, and the logit shift that undoes the sampler's and the weight's skew."""

from __future__ import annotations

import math
from typing import Any


def loss_pos_weight(setting: Any, batch_pos_fraction: float) -> float | None:
    """The positive-class weight of the BCE loss.

    `auto` balances the classes *as the batches deliver them*: with plain shuffling that is negatives/positives in the
    training data; with the balanced sampler at a 50% share it is 1 (the sampler already balanced them, and weighting
    again would count the imbalance twice). A number is used as given; null means unweighted.
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting != "auto":
            raise ValueError(f"model.pos_weight must be 'auto', a number or null, got {setting!r}")
        return (1.0 - batch_pos_fraction) / batch_pos_fraction
    return float(setting)


def prior_logit_offset(train_default_rate: float, batch_pos_fraction: float, pos_weight: float | None) -> float:
    """Logit shift that turns the model's scores back into probabilities at the real default rate.

    Training on batches with a share `s` of defaults and a positive weight `w` multiplies the odds the model learns by
    s*w/(1-s) relative to the true prior odds pi/(1-pi); adding this offset to the logit undoes exactly that. Ranking
    (ROC-AUC, the recall threshold) is unchanged; probabilities, Brier score and calibration become meaningful.
    """
    s, pi, w = batch_pos_fraction, train_default_rate, (pos_weight or 1.0)
    return math.log(pi / (1 - pi)) - math.log(s * w / (1 - s))
