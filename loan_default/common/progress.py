"""One rule for progress bars: shown to people at a terminal, silent in CI and in logs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """True when stderr is a terminal and we are not under CI (bars would only clutter logs)."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], **kwargs) -> Iterator[T]:
    """`tqdm(iterable)` that respects `progress_enabled()`."""
    return iter(tqdm(iterable, disable=not progress_enabled(), **kwargs))


def progress_bar(**kwargs) -> tqdm:
    """A manual tqdm bar (``update(n)``) that respects `progress_enabled()`."""
    return tqdm(disable=not progress_enabled(), **kwargs)
