"""A job's `python <script>.py <Hydra overrides>` command as a list of shell words, edited by Hydra key.

The job variants (synthetic data, multirun, DDP counts, extra overrides) change Hydra overrides, not Azure ML fields,
so they edit this word list; the result goes back to Azure ML as one `params_override` entry for `command`. Words the
edit does not touch keep their original text (quotes included), so `${oc.env:...}` stays out of the shell's reach.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

PLACEHOLDER = re.compile(r"\$\{\{(.*?)\}\}")
# One shell word: unquoted characters, backslash escapes, '...' and "..." runs glued together.
_WORD = re.compile(r"""(?:[^\s'"\\]|\\.|'[^']*'|"(?:[^"\\]|\\.)*")+""")
SHELL_OPERATORS = {"&&", "||", ";", "|"}
MULTIRUN_FLAGS = ("-m", "--multirun")


class CommandError(ValueError):
    """The command is not `python <script>.py ...` or cannot be split like the shell would."""


@dataclass
class Word:
    raw: str  # as written in the job file (quotes kept)

    @property
    def text(self) -> str:
        """The word the program receives (quotes removed)."""
        return shlex.split(self.raw)[0] if self.raw else ""

    @property
    def key(self) -> str:
        """The Hydra override's key: `++logger.mlflow.run_id=x` -> `logger.mlflow.run_id`."""
        return self.text.partition("=")[0].lstrip("+~")

    @classmethod
    def quoted(cls, text: str) -> Word:
        return cls(shlex.quote(text))


@dataclass
class HydraCommand:
    """`head` (python ... script.py), Hydra flags and overrides, and `tail` (from a shell operator on, verbatim)."""

    head: list[Word]
    flags: list[Word] = field(default_factory=list)
    overrides: list[Word] = field(default_factory=list)
    tail: list[Word] = field(default_factory=list)

    @classmethod
    def parse(cls, command: str) -> HydraCommand:
        words, end = [], 0
        for match in _WORD.finditer(command):
            if command[end : match.start()].strip():  # only an unmatched quote is left between words
                raise CommandError(f"unbalanced quotes in the command: {command!r}")
            words.append(Word(match.group(0)))
            end = match.end()
        if command[end:].strip():
            raise CommandError(f"unbalanced quotes in the command: {command!r}")
        script = next((i for i, w in enumerate(words) if w.text.endswith(".py")), None)
        if script is None:
            raise CommandError("the job's command does not run `python <script>.py`")
        parsed = cls(head=words[: script + 1])
        rest = iter(words[script + 1 :])
        for word in rest:
            if word.text in SHELL_OPERATORS:
                parsed.tail = [word, *rest]
            elif word.text.startswith("-"):
                parsed.flags.append(word)
                if word.text in ("-cn", "--config-name", "-cp", "--config-path"):
                    parsed.flags.append(next(rest, Word("")))
            else:
                parsed.overrides.append(word)
        return parsed

    def __str__(self) -> str:
        return " ".join(w.raw for w in [*self.head, *self.flags, *self.overrides, *self.tail])

    @property
    def script(self) -> str:
        return self.head[-1].text

    @property
    def multirun(self) -> bool:
        return any(w.text in MULTIRUN_FLAGS for w in self.flags)

    def values(self, key: str) -> list[str]:
        """The values given to `key` (usually one)."""
        return [w.text.partition("=")[2] for w in self.overrides if w.key == key]

    def replace(self, key: str, make: Callable[[Word], Word]) -> bool:
        """Swap every override of `key` for `make(word)`; False when the command has none."""
        found = False
        for i, word in enumerate(self.overrides):
            if word.key == key:
                self.overrides[i], found = make(word), True
        return found

    def drop(self, keep: Callable[[Word], bool]) -> None:
        self.overrides = [w for w in self.overrides if keep(w)]

    def append(self, overrides: Iterable[str]) -> None:
        self.overrides += [Word.quoted(text) for text in overrides]

    def filled(self, values: Mapping[str, str]) -> HydraCommand:
        """A copy with every `${{inputs.x}}` / `${{outputs.y}}` replaced by `values["inputs.x"]` (as Azure ML does,
        textually, before the shell runs)."""
        return HydraCommand.parse(fill(str(self), values))


def fill(command: str, values: Mapping[str, str]) -> str:
    """`command` with every `${{inputs.x}}` / `${{outputs.y}}` replaced by `values["inputs.x"]`."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1).strip()], command)
