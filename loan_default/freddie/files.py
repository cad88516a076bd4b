"""Find Freddie Mac origination/performance file pairs: plain or zipped, sample or full dataset, any folder depth."""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from loan_default.freddie.errors import FreddieFileError

ORIGINATION = "origination"
PERFORMANCE = "performance"

# Basename patterns, checked case-insensitively. The full dataset's non-standard loans ("excl") get their own label so
# they never pair with the standard file of the same quarter.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^sample_orig_(?P<v>\d{4})\.txt$", re.I), ORIGINATION),
    (re.compile(r"^sample_(?:svcg|perf)_(?P<v>\d{4})\.txt$", re.I), PERFORMANCE),
    (re.compile(r"^historical_data_(?P<x>excl_)?time_(?P<v>\d{4}Q[1-4])\.txt$", re.I), PERFORMANCE),
    (re.compile(r"^historical_data_time_(?P<x>excl_)(?P<v>\d{4}Q[1-4])\.txt$", re.I), PERFORMANCE),
    (re.compile(r"^historical_data_(?P<x>excl_)?(?P<v>\d{4}Q[1-4])\.txt$", re.I), ORIGINATION),
]


@dataclass(frozen=True)
class Source:
    """A file to read: a plain path, or a member of a zip archive."""

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        """How errors refer to this file."""
        return str(self.path) if self.member is None else f"{self.path}::{self.member}"

    def open(self) -> BinaryIO:
        """A binary stream of the (uncompressed) contents."""
        if self.member is None:
            return open(self.path, "rb")
        archive = zipfile.ZipFile(self.path)
        try:
            stream = archive.open(self.member)
        except BaseException:
            archive.close()
            raise
        # The member stream keeps its own handle on the file; closing the ZipFile object now is safe.
        archive.close()
        return stream

    def size(self) -> int:
        """Uncompressed size in bytes (for progress bars)."""
        if self.member is None:
            return os.path.getsize(self.path)
        with zipfile.ZipFile(self.path) as archive:
            return archive.getinfo(self.member).file_size


@dataclass(frozen=True)
class FilePair:
    """The origination and performance files of one vintage ("2019" for sample files, "2019Q1" for full ones)."""

    vintage_label: str
    origination: Source
    performance: Source


def classify(name: str) -> tuple[str, str] | None:
    """(vintage label, "origination" | "performance") for a Freddie file name, or None for any other file."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for pattern, role in _PATTERNS:
        m = pattern.match(base)
        if m:
            label = m.group("v").upper()
            if "x" in pattern.groupindex and m.group("x"):
                label += "_excl"
            return label, role
    return None


def find_file_pairs(
    origination: str | os.PathLike | None = None,
    performance: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
) -> list[FilePair]:
    """Pairs sorted by vintage label, from either an explicit (origination, performance) pair or a folder.

    A folder is searched recursively for plain files and for zip archives holding them (a zip file may also be given
    as the folder). An origination file without its performance file, or the reverse, is an error naming it.
    """
    if folder is not None:
        if origination is not None or performance is not None:
            raise ValueError("give either a folder or an (origination, performance) pair, not both")
        return _pairs_in_folder(Path(folder))
    if origination is None or performance is None:
        raise ValueError("give a folder, or both an origination and a performance file")
    orig, perf = Path(origination), Path(performance)
    for path in (orig, perf):
        if not path.is_file():
            raise FreddieFileError(f"{path}: no such file")
    found = classify(orig.name)
    label = found[0] if found else orig.stem
    return [FilePair(label, Source(orig), Source(perf))]


def _pairs_in_folder(folder: Path) -> list[FilePair]:
    if not folder.exists():
        raise FreddieFileError(f"{folder}: no such folder")
    found: dict[tuple[str, str], Source] = {}
    for source in _sources(folder):
        kind = classify(source.member or source.path.name)
        if kind is None:
            continue
        if kind in found:
            raise FreddieFileError(
                f"the {kind[1]} file of vintage {kind[0]} was found twice: {found[kind].name} and {source.name}; "
                "remove one (an unzipped copy next to its zip, perhaps)"
            )
        found[kind] = source
    labels = sorted({label for label, _ in found})
    if not labels:
        raise FreddieFileError(
            f"{folder}: no Freddie Mac files found (sample_orig_YYYY.txt, historical_data_YYYYQn.txt, ...)"
        )
    pairs = []
    for label in labels:
        orig, perf = found.get((label, ORIGINATION)), found.get((label, PERFORMANCE))
        if orig is None or perf is None:
            have, missing = (orig, PERFORMANCE) if perf is None else (perf, ORIGINATION)
            raise FreddieFileError(f"{have.name}: its {missing} file (vintage {label}) was not found under {folder}")
        pairs.append(FilePair(label, orig, perf))
    return pairs


def _sources(folder: Path) -> list[Source]:
    """Every plain file under `folder` and every member of every zip archive, in a stable order."""
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    sources: list[Source] = []
    for path in paths:
        if path.suffix.lower() != ".zip":
            sources.append(Source(path))
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                members = sorted(info.filename for info in archive.infolist() if not info.is_dir())
        except zipfile.BadZipFile as err:
            raise FreddieFileError(f"{path}: not a readable zip archive ({err})") from err
        sources.extend(Source(path, member) for member in members)
    return sources
