"""Errors and warnings for malformed Freddie Mac files, and the tally of rows skipped under `on_bad_row="skip"`."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

BAD_ROW_POLICIES = ("raise", "skip")


class FreddieFileError(ValueError):
    """A file set that cannot be read: a missing partner file, a vintage found twice, an unreadable path."""


class FreddieFormatError(ValueError):
    """A malformed line. The message names the file, the 1-based line, the field and the offending value."""

    def __init__(self, file: str, line: int | None, field: str | None, value: str | None, problem: str):
        self.file, self.line, self.field, self.value, self.problem = file, line, field, value, problem
        where = file if line is None else f"{file}, line {line}"
        if field is not None:
            where += f", field {field!r}"
        shown = "" if value is None else f" (value {_clip(value)!r})"
        super().__init__(f"{where}: {problem}{shown}")

    def __reduce__(self):  # pickled by its fields: a worker process (common.parallel) raises it in the caller
        return type(self), (self.file, self.line, self.field, self.value, self.problem)


class FreddieDataWarning(UserWarning):
    """Rows or loans were skipped under a documented policy; the counts are in the warning and in the report."""


def _clip(value: str, limit: int = 120) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def check_policy(on_bad_row: str) -> None:
    """Fail early on a misspelt policy rather than silently raising (or skipping) later."""
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_row must be one of {BAD_ROW_POLICIES}, not {on_bad_row!r}")


@dataclass
class SkipLog:
    """Rows skipped per reason, with the first example of each (file, line, field) so a warning can point at one."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, n: int, example: str) -> None:
        if n <= 0:
            return
        self.counts[reason] += n
        self.examples.setdefault(reason, example)

    def update(self, other: SkipLog) -> None:
        for reason, n in other.counts.items():
            self.add(reason, n, other.examples[reason])

    def warn(self, what: str) -> None:
        """One warning listing every reason, so nothing is dropped without a word."""
        if not self.counts:
            return
        parts = [f"{n:,} {reason} (first: {self.examples[reason]})" for reason, n in sorted(self.counts.items())]
        warnings.warn(f"{what}: skipped " + "; ".join(parts), FreddieDataWarning, stacklevel=3)
