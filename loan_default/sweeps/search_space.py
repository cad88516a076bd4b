"""The Optuna search space from `hydra.sweeper.params` and the command line, in Hydra's override grammar.

The syntax is the one the Hydra Optuna sweeper documents, read with Hydra's public override parser:

- ``choice(a, b, c)`` -> categorical (a list such as ``[64,32]`` is kept as its string, which Hydra turns back into a
  list when the trial's override is composed);
- ``interval(lo, hi)`` -> uniform float; ``int(interval(lo, hi))`` -> uniform int; ``tag(log, ...)`` around either
  -> the same on a log scale;
- ``range(start, stop, step)`` -> int (or float) steps from start to stop, stop included as the Optuna plugin has it;
  ``shuffle(range(...))`` -> categorical over Hydra's values of the range (stop excluded), in their own order;
- a plain value (``model.dropout=0.2``) fixes the parameter for every trial.

A later entry replaces an earlier one of the same name, so the command line overrides the configured space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

Choice = str | int | float | bool | None


def search_space(overrides: Sequence[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """Distributions of the searched parameters and the fixed ones (as override value strings), by name."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        name = override.get_key_element()
        space.pop(name, None)
        fixed.pop(name, None)
        if override.is_sweep_override():
            space[name] = distribution(override)
        else:
            fixed[name] = override.get_value_element_as_str()
    return space, fixed


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    value = override.value()
    name = override.get_key_element()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return CategoricalDistribution(_choices(override))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if any(isinstance(v, float) for v in (start, stop, step)):
            return FloatDistribution(float(start), float(stop), step=float(step))
        return IntDistribution(int(start), int(stop), step=int(step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"hydra.sweeper.params.{name}: {type(value).__name__} is not an Optuna search space")


def grid_values(name: str, dist: BaseDistribution) -> list[Choice]:
    """Every value of a discrete distribution, for Optuna's GridSampler."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        count = math.floor((dist.high - dist.low) / dist.step + 1e-9) + 1
        return [dist.low + i * dist.step for i in range(count)]
    raise ValueError(f"The grid sampler needs discrete values for {name}: use choice() or range(), not {dist}")


def _choices(override: Override) -> list[Choice]:
    value = override.value()
    if getattr(value, "shuffle", False):
        # The sampler ignores the order, but a resumed study must see the same choices in the same order.
        override = dataclasses.replace(override, _value=dataclasses.replace(value, shuffle=False))
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    for choice in choices:
        if not isinstance(choice, str | int | float | bool | type(None)):
            raise ValueError(f"{override.get_key_element()}: a choice must be str, int, float or bool, got {choice!r}")
    return choices
