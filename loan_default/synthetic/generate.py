"""Synthetic Freddie Mac Single-Family Loan-Level data, written exactly like Freddie Mac's sample files.

Per vintage year: ``sample_orig_YYYY.txt`` and ``sample_svcg_YYYY.txt`` (pipe-delimited, no header, the chosen layout's
field order), plus one ``truth.csv`` for all vintages: ``loan_id,true_pd,corrupted,corruption``. Each loan's default is
drawn from a known model (``hazard.default_probability``), so ``true_pd`` is the exact probability of the default label
(90+ days delinquent, REO or a credit-event termination within 24 months) given the origination record.

    python -m loan_default.synthetic --loans 100000 --out data/synthetic --seed 2024 \\
        [--vintages 2004-2011 | --vintages 2005 2006 2007] [--layout orig32|orig31|orig31_r47] [--cutoff 201312]
        [--hazard nonlinear|linear] [--blank credit_score,dti --blank-share 0.5]
        [--shift credit_score=-60,orig_rate=+1.5]

``--hazard linear`` draws defaults from log-odds linear in the model's features (logistic regression is near-oracle);
``--blank`` sets a share of the named fields to Freddie Mac's "not available" codes, as older or sparser files have
them; ``--shift`` moves every loan's value of a field, a drifted population for testing monitoring. All three act
before the default probability is computed, so ``true_pd`` stays the exact probability given the written record.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from loan_default.common.months import month_number
from loan_default.common.parallel import ordered_map, resolve_workers
from loan_default.common.progress import progress_bar
from loan_default.freddie.schema import ORIGINATION_LAYOUTS, PERFORMANCE_LAYOUTS
from loan_default.synthetic.economy import FIRST_YEAR, LAST_YEAR
from loan_default.synthetic.hazard import HAZARDS, default_probability
from loan_default.synthetic.loans import (
    BLANKABLE,
    SHIFTABLE,
    Loans,
    blank_out,
    corrupt,
    draw_loans,
    mask_missing,
    shift_fields,
)
from loan_default.synthetic.paths import Histories, simulate_histories
from loan_default.synthetic.text import AtomicWriter, origination_table, performance_table

DEFAULT_VINTAGES = tuple(range(2004, 2012))  # boom, crisis and recovery
# Performance layout that goes with each origination layout.
PERFORMANCE_LAYOUT_FOR = {"orig32": "perf32", "orig31": "perf30", "orig31_r47": "perf35"}
CORRUPTED_SHARE = 0.01
MANIFEST = "synthetic.json"  # the settings a folder's files were made with; written last, removed first
GENERATOR_VERSION = 1  # bump when the same settings would produce different files
PARALLEL_MIN_LOANS = 50_000  # below this, starting worker processes costs more than it saves (workers=None)
CHUNK_LOANS = 25_000  # histories are built this many loans at a time, so memory stays flat as N grows
TRUTH_HEADER = "loan_id,true_pd,corrupted,corruption\n"
BLANK_SHARE = 0.5  # share of each --blank field set to "not available" unless told otherwise
# Settings added after version 1 and their values that reproduce version-1 files (older manifests lack them).
OPTION_DEFAULTS = {"hazard": "nonlinear", "blank_fields": [], "blank_share": 0.0, "shift": {}}


class SyntheticArgumentError(ValueError):
    """An argument of ``generate`` that cannot be honoured (bad vintage, layout, cutoff or size)."""


def parse_vintages(vintages: Iterable[int | str] | str | None) -> list[int]:
    """Years from ``None`` (the default span), ints, or strings like ``"2005"`` and ``"2005-2012"``."""
    if vintages is None:
        return list(DEFAULT_VINTAGES)
    items = [vintages] if isinstance(vintages, str | int) else list(vintages)
    years: set[int] = set()
    for item in items:
        m = re.fullmatch(r"\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?", str(item))
        if not m:
            raise SyntheticArgumentError(f"vintage {item!r}: expected a year like 2006 or a range like 2004-2011")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if first > last:
            raise SyntheticArgumentError(f"vintage range {item!r} runs backwards")
        years.update(range(first, last + 1))
    bad = sorted(y for y in years if not FIRST_YEAR <= y <= LAST_YEAR)
    if bad:
        raise SyntheticArgumentError(
            f"vintages {bad} are outside the synthetic economy's years {FIRST_YEAR}-{LAST_YEAR}"
        )
    if not years:
        raise SyntheticArgumentError("no vintages given")
    return sorted(years)


def parse_blank(fields: Iterable[str] | str | None) -> list[str]:
    """Field names from ``None``, a list, or a comma-separated string; each must have a "not available" code."""
    if fields is None:
        return []
    items = fields.split(",") if isinstance(fields, str) else [str(f) for f in fields]
    names = sorted({item.strip() for item in items if item.strip()})
    bad = [name for name in names if name not in BLANKABLE]
    if bad:
        raise SyntheticArgumentError(f"cannot blank {bad}: fields with a 'not available' code are {list(BLANKABLE)}")
    return names


def parse_shift(shift: dict | str | None) -> dict[str, float]:
    """``{"credit_score": -60.0}`` from a mapping or a string like ``credit_score=-60,orig_rate=+1.5``."""
    if shift is None:
        return {}
    if isinstance(shift, str):
        pairs = {}
        for item in filter(None, (part.strip() for part in shift.split(","))):
            m = re.fullmatch(r"(\w+)\s*=\s*([+-]?\d+(?:\.\d*)?)", item)
            if not m:
                raise SyntheticArgumentError(f"shift {item!r}: expected field=amount, like credit_score=-60")
            pairs[m.group(1)] = m.group(2)
        shift = pairs
    bad = sorted(set(shift) - set(SHIFTABLE))
    if bad:
        raise SyntheticArgumentError(f"cannot shift {bad}: shiftable fields are {sorted(SHIFTABLE)}")
    return {name: float(shift[name]) for name in sorted(shift) if float(shift[name]) != 0.0}


def default_cutoff(vintages: Sequence[int]) -> int:
    """December two years after the last vintage: its loans are mostly seen for 24+ months, a few are censored."""
    return (max(vintages) + 2) * 100 + 12


def _check_cutoff(cutoff: int, vintages: Sequence[int]) -> int:
    year, month = divmod(int(cutoff), 100)
    if not 1 <= month <= 12:
        raise SyntheticArgumentError(f"cutoff {cutoff}: expected YYYYMM")
    earliest = (max(vintages) + 1) * 100 + 3  # the last first-payment month of the last vintage
    if cutoff < earliest:
        raise SyntheticArgumentError(
            f"cutoff {cutoff} comes before the last loans' first payments; use {earliest} or later"
        )
    return int(cutoff)


def _loans_per_vintage(n_loans: int, vintages: Sequence[int]) -> list[int]:
    base, extra = divmod(n_loans, len(vintages))
    return [base + (i < extra) for i in range(len(vintages))]


def _hazard_view(loans: Loans, year: int) -> dict[str, np.ndarray]:
    """The loan-table columns the hazard reads."""
    return {**loans.fields, "vintage_year": np.full(len(loans), year)}


def _write_vintage(
    out: Path, year: int, n: int, seed: int, layout: str, cutoff: int, corrupted_share: float, options: dict
) -> tuple[dict, pa.Table]:
    """Write one vintage's two files; return its summary and its truth rows."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, year]))
    loans = draw_loans(year, n, rng)
    shift_fields(loans, options["shift"])  # before the sentinels, so a missing value stays missing
    mask_missing(loans, year, rng)
    # Blanking draws from its own stream: the rest of the files are the same with or without it.
    blank_out(loans, tuple(options["blank_fields"]), options["blank_share"], _blank_rng(seed, year))
    pd = default_probability(_hazard_view(loans, year), options["hazard"])

    perf_layout = PERFORMANCE_LAYOUTS[PERFORMANCE_LAYOUT_FOR[layout]]
    rows = defaults = censored = labelled_defaults = 0
    with AtomicWriter(out / f"sample_svcg_{year}.txt") as writer:
        for first in range(0, n, CHUNK_LOANS):
            chunk = slice(first, min(n, first + CHUNK_LOANS))
            part = loans.subset(chunk)
            hist: Histories = simulate_histories(part, pd[chunk], month_number(cutoff), year, rng)
            writer.write(performance_table(part, hist, perf_layout))
            rows += len(hist)
            defaults += int(hist.default.sum())
            censored += int(hist.censored.sum())
            labelled_defaults += int((hist.default & ~hist.censored).sum())

    # Corruption comes after the histories: they follow the clean record, as a slip at data entry would not.
    kinds = corrupt(loans, corrupted_share, rng)
    with AtomicWriter(out / f"sample_orig_{year}.txt") as writer:
        writer.write(origination_table(loans, ORIGINATION_LAYOUTS[layout]))

    truth = pa.table(
        {
            "loan_id": pa.array(loans.fields["loan_id"]),
            "true_pd": pa.array(pd),
            "corrupted": pa.array((kinds != "").astype(np.int8)),
            "corruption": pa.array(kinds),
        }
    )
    summary = {
        "loans": n,
        "rows": rows,
        "default_rate": defaults / n,
        "mean_true_pd": float(pd.mean()),
        "censored": censored,
        "labelled_defaults": labelled_defaults,  # what the labeller finds with the default label settings
        "corrupted": int((kinds != "").sum()),
    }
    return summary, truth


def _vintage_task(
    out: Path, seed: int, layout: str, cutoff: int, corrupted_share: float, options: dict, year_loans: tuple[int, int]
) -> tuple[dict, pa.Table]:
    """`_write_vintage` for one (year, loans) item: what a worker process runs."""
    year, n = year_loans
    return _write_vintage(out, year, n, seed, layout, cutoff, corrupted_share, options)


def _blank_rng(seed: int, year: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, year, 1]))


def _options(hazard: str, blank: Iterable[str] | str | None, blank_share: float, shift: dict | str | None) -> dict:
    """The checked hazard, blanking and shift settings, in the form the manifest records."""
    if hazard not in HAZARDS:
        raise SyntheticArgumentError(f"hazard {hazard!r}: expected one of {list(HAZARDS)}")
    names = parse_blank(blank)
    if names and not 0.0 < float(blank_share) <= 1.0:
        raise SyntheticArgumentError(f"blank_share {blank_share} must be in (0, 1]")
    return {
        "hazard": hazard,
        "blank_fields": names,
        "blank_share": float(blank_share) if names else 0.0,
        "shift": parse_shift(shift),
    }


def generate(
    out_dir: str | Path,
    n_loans: int,
    seed: int,
    vintages: Iterable[int | str] | str | None = None,
    layout: str = "orig32",
    cutoff: int | None = None,
    corrupted_share: float = CORRUPTED_SHARE,
    *,
    hazard: str = "nonlinear",
    blank_fields: Iterable[str] | str | None = None,
    blank_share: float = BLANK_SHARE,
    shift: dict | str | None = None,
    workers: int | None = None,
) -> dict:
    """Write synthetic origination and performance files per vintage plus ``truth.csv`` into ``out_dir``.

    ``n_loans`` are split evenly across ``vintages`` (default 2004-2011). ``layout`` picks the origination layout; the
    performance layout follows (orig32 -> perf32, orig31 -> perf30, orig31_r47 -> perf35). Histories end at payoff,
    termination or ``cutoff`` (YYYYMM; default December two years after the last vintage). The same arguments give
    byte-identical files. Returns a summary: loans, rows, default rate, censored and corrupted counts, per vintage.

    ``hazard`` is ``"nonlinear"`` (default) or ``"linear"``; ``blank_fields`` (names, or ``"a,b"``) lose about
    ``blank_share`` of their values to "not available"; ``shift`` (``{"credit_score": -60}`` or
    ``"credit_score=-60,orig_rate=+1.5"``) moves every loan's value of those fields.

    ``workers`` processes write vintages at once (None: one per CPU, at most 8, from `PARALLEL_MIN_LOANS` loans;
    1: in this process). Each vintage has its own random stream: the files are the same bytes for any count.
    """
    options = _options(hazard, blank_fields, blank_share, shift)
    years = parse_vintages(vintages)
    if layout not in PERFORMANCE_LAYOUT_FOR:
        raise SyntheticArgumentError(f"layout {layout!r}: expected one of {sorted(PERFORMANCE_LAYOUT_FOR)}")
    if n_loans < len(years):
        raise SyntheticArgumentError(
            f"{n_loans} loans cannot cover {len(years)} vintages: ask for at least one loan per vintage"
        )
    if not 0.0 <= corrupted_share < 1.0:
        raise SyntheticArgumentError(f"corrupted_share {corrupted_share} must be in [0, 1)")
    if workers is not None and int(workers) < 1:
        raise SyntheticArgumentError(f"workers {workers} must be at least 1 (or None for one per CPU)")
    cutoff = _check_cutoff(default_cutoff(years) if cutoff is None else cutoff, years)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_manifest(out)
    # Until the new manifest is written, the folder matches no settings (an interrupted run is never reused).
    (out / MANIFEST).unlink(missing_ok=True)

    started = time.perf_counter()
    tasks = list(zip(years, _loans_per_vintage(n_loans, years), strict=True))
    task = partial(_vintage_task, out, seed, layout, cutoff, corrupted_share, options)
    with progress_bar(total=len(tasks), desc="vintages", unit="vintage") as bar:
        workers = resolve_workers(workers, len(tasks), small=n_loans < PARALLEL_MIN_LOANS)
        results = ordered_map(task, tasks, workers, done=lambda _: bar.update())
    per_vintage = {str(year): summary for (year, _), (summary, _) in zip(tasks, results, strict=True)}
    truths = [truth for _, truth in results]
    with AtomicWriter(out / "truth.csv") as writer:
        writer.write_text(TRUTH_HEADER)
        writer.write(pa.concat_tables(truths), delimiter=",")

    def total(key: str) -> int:
        return sum(v[key] for v in per_vintage.values())

    settings = _settings(n_loans, seed, years, layout, cutoff, corrupted_share, options)
    files = [f"sample_{kind}_{year}.txt" for year in years for kind in ("orig", "svcg")] + ["truth.csv"]
    for stale in set(previous.get("files", [])) - set(files):  # only files this generator wrote earlier
        (out / stale).unlink(missing_ok=True)
    summary = {
        "out_dir": str(out),
        **settings,
        "performance_layout": PERFORMANCE_LAYOUT_FOR[layout],
        "performance_rows": total("rows"),
        "default_rate": sum(v["default_rate"] * v["loans"] for v in per_vintage.values()) / n_loans,
        "mean_true_pd": sum(v["mean_true_pd"] * v["loans"] for v in per_vintage.values()) / n_loans,
        "censored_fraction": total("censored") / n_loans,
        "corrupted_fraction": total("corrupted") / n_loans,
        "per_vintage": per_vintage,
        "files": files,
        "seconds": round(time.perf_counter() - started, 2),
    }
    with AtomicWriter(out / MANIFEST) as writer:
        writer.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _settings(
    n_loans: int, seed: int, years: list[int], layout: str, cutoff: int, corrupted_share: float, options: dict
) -> dict:
    """Everything that determines the files' bytes."""
    return {
        **options,
        "generator_version": GENERATOR_VERSION,
        "loans": n_loans,
        "seed": seed,
        "vintages": years,
        "layout": layout,
        "cutoff": cutoff,
        "corrupted_share": corrupted_share,
    }


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def ensure_synthetic(
    folder: str | Path,
    loans: int = 100_000,
    seed: int = 2024,
    vintages: Iterable[int | str] | str | None = None,
    layout: str = "orig32",
    cutoff: int | None = None,
    corrupted_share: float = CORRUPTED_SHARE,
    hazard: str = "nonlinear",
    blank_fields: Iterable[str] | str | None = None,
    blank_share: float = BLANK_SHARE,
    shift: dict | str | None = None,
    workers: int | None = None,
) -> dict:
    """Generate the synthetic files into ``folder`` unless it already holds them for exactly these settings.

    ``workers``: processes that write vintages at once (None: one per CPU, at most 8); it does not change the files.
    Returns the folder's manifest (the summary ``generate`` returned when it wrote the files).
    """
    folder = Path(folder)
    years = parse_vintages(vintages)
    resolved = default_cutoff(years) if cutoff is None else _check_cutoff(cutoff, years)
    options = _options(hazard, blank_fields, blank_share, shift)
    wanted = _settings(loans, seed, years, layout, resolved, corrupted_share, options)
    manifest = _read_manifest(folder)
    current = all(manifest.get(key, OPTION_DEFAULTS.get(key)) == value for key, value in wanted.items())
    if current and all((folder / name).is_file() for name in manifest.get("files", [""])):
        return manifest
    return generate(
        folder, loans, seed, years, layout, resolved, corrupted_share, **_as_arguments(options), workers=workers
    )


def _as_arguments(options: dict) -> dict:
    return {
        "hazard": options["hazard"],
        "blank_fields": options["blank_fields"],
        "blank_share": options["blank_share"] or BLANK_SHARE,
        "shift": options["shift"],
    }


def format_summary(summary: dict) -> str:
    """A short table: loans, performance rows, default rate and corrupted count by vintage, then totals."""
    lines = [f"{'vintage':>8} {'loans':>9} {'rows':>11} {'default':>8} {'true_pd':>8} {'censored':>8} {'corrupt':>8}"]
    for year, v in summary["per_vintage"].items():
        lines.append(
            f"{year:>8} {v['loans']:>9,} {v['rows']:>11,} {v['default_rate']:>8.2%} {v['mean_true_pd']:>8.2%}"
            f" {v['censored']:>8,} {v['corrupted']:>8,}"
        )
    lines.append(
        f"{'all':>8} {summary['loans']:>9,} {summary['performance_rows']:>11,} {summary['default_rate']:>8.2%}"
        f" {summary['mean_true_pd']:>8.2%} {summary['censored_fraction']:>8.2%} {summary['corrupted_fraction']:>8.2%}"
    )
    lines.append(
        f"layouts {summary['layout']}/{summary['performance_layout']}, cutoff {summary['cutoff']},"
        f" {summary['seconds']:.1f} s -> {summary['out_dir']}"
    )
    options = [f"hazard {summary.get('hazard', 'nonlinear')}"]
    if summary.get("blank_fields"):
        options.append(f"blanked {summary['blank_share']:.0%} of {', '.join(summary['blank_fields'])}")
    if summary.get("shift"):
        options.append("shifted " + ", ".join(f"{k} {v:+g}" for k, v in summary["shift"].items()))
    lines.append("; ".join(options))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, required=True, help="number of loans, split evenly across vintages")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vintages", nargs="+", default=None, help="years, or ranges like 2004-2011")
    parser.add_argument("--layout", choices=sorted(PERFORMANCE_LAYOUT_FOR), default="orig32")
    parser.add_argument("--cutoff", type=int, default=None, help="last performance month, YYYYMM")
    parser.add_argument("--corrupted-share", type=float, default=CORRUPTED_SHARE)
    parser.add_argument(
        "--hazard", choices=HAZARDS, default="nonlinear", help="linear: logistic regression is near-oracle"
    )
    parser.add_argument("--blank", default=None, help=f"comma-separated fields to blank; any of {', '.join(BLANKABLE)}")
    parser.add_argument("--blank-share", type=float, default=BLANK_SHARE, help="share of each --blank field blanked")
    parser.add_argument("--shift", default=None, help="e.g. credit_score=-60,orig_rate=+1.5 (a drifted population)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="vintages written at once (default: one per CPU, at most 8; 1 below 50,000 loans)",
    )
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            args.loans,
            args.seed,
            args.vintages,
            args.layout,
            args.cutoff,
            args.corrupted_share,
            hazard=args.hazard,
            blank_fields=args.blank,
            blank_share=args.blank_share,
            shift=args.shift,
            workers=args.workers,
        )
    except SyntheticArgumentError as err:
        parser.error(str(err))
    print(format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
