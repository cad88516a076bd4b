"""Batch monitoring: `python -m loan_default.monitor <origination file or folder, or scores.csv> --bundle <b>`.

Compares a population with the bundle's training reference (monitoring.json, `core.drift`): PSI of the score, CSI of
every input field with traffic lights, missing-rate changes, values outside the training range and categories never
seen in training. Loans are read, validated and scored exactly as `python -m loan_default.score` does (the same
reader, request model and Scorer); a scores CSV written by that command gives the score's PSI alone. With
``--performance`` (a performance file, or a folder of origination and performance files) the loans are labelled with
the training label rule and the report adds, per vintage, the observed default rate and ROC-AUC against the predicted
probabilities.

Writes drift.json, drift.md and drift.html into ``--out``. Exit status: 0 stable, 1 drifted (the score's PSI or a
field's CSI above 0.25), 2 could not run. The last line of standard output is JSON: psi_score, fields_red, status.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment
from sklearn.metrics import roc_auc_score

from loan_default.batch.score import DEFAULT_CHUNK_ROWS, frame_records, origination_sources, validate
from loan_default.common.atomic import atomic_write_text
from loan_default.common.progress import progress
from loan_default.core.bundle import BundleError
from loan_default.core.drift import Reference, compare
from loan_default.core.loading import open_scorer, resolve_bundle
from loan_default.core.scorer import Scorer
from loan_default.freddie import reader
from loan_default.freddie.errors import FreddieDataWarning, FreddieFileError, FreddieFormatError, SkipLog
from loan_default.freddie.labels import LabelConfig
from loan_default.freddie.loans import load_loan_table

STABLE, DRIFTED, FAILED = 0, 1, 2
SCORE_COLUMN = "default_probability"
MIN_VINTAGE_DEFAULTS = 5  # fewer defaults than this: the vintage's ROC-AUC is shown but marked as unreliable


class MonitorError(RuntimeError):
    """The monitor cannot run: no reference in the bundle, nothing readable, a bad scores file."""


def read_and_score(
    scorer: Scorer, path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(loans as read, scores of the valid ones by loan id, counts) for every origination file at ``path``.

    Rows the reader cannot parse are skipped and counted; rows the request model refuses are kept for the field
    statistics (a DTI of 70 is drift worth seeing) but not scored, as `python -m loan_default.score` rejects them.
    """
    frames, scored = [], []
    reference = scorer.bundle.monitoring
    keep = {"loan_id", *(reference.fields if reference is not None else ())}
    counts: dict[str, Any] = {"files": [], "loans_read": 0, "scored": 0, "rejected": 0, "rows_skipped": 0}
    for source in progress(origination_sources(path), desc="files", unit="file"):
        skipped = SkipLog()
        try:
            frame = reader.read_origination(source, on_bad_row="skip", skipped=skipped)
        except (FreddieFormatError, FreddieFileError, OSError) as err:
            raise MonitorError(f"{source.name}: not read: {err}") from err
        for start in range(0, len(frame), chunk_rows):  # bounded memory, as batch scoring
            loans, reasons = validate(frame_records(frame.iloc[start : start + chunk_rows]))
            records = scorer.predict(loans)
            scored.append(pd.DataFrame({"loan_id": [r["loan_id"] for r in records],
                                        SCORE_COLUMN: [r[SCORE_COLUMN] for r in records]}))  # fmt: skip
            counts["scored"] += len(records)
            counts["rejected"] += len(reasons)
        frames.append(frame[[c for c in frame.columns if c in keep]])  # only what the reference compares
        counts["files"].append(source.name)
        counts["loans_read"] += len(frame)
        counts["rows_skipped"] += sum(skipped.counts.values())
    return pd.concat(frames, ignore_index=True), pd.concat(scored, ignore_index=True), counts


def read_scores(path: Path) -> pd.DataFrame:
    """A scores CSV of `python -m loan_default.score` (loan_id, default_probability, ...)."""
    try:
        scores = pd.read_csv(path, dtype={"loan_id": str})
    except (OSError, ValueError) as err:
        raise MonitorError(f"{path}: not a readable CSV: {err}") from err
    if SCORE_COLUMN not in scores.columns:
        raise MonitorError(f"{path}: no {SCORE_COLUMN!r} column (expected the output of python -m loan_default.score)")
    p = pd.to_numeric(scores[SCORE_COLUMN], errors="coerce")
    bad = np.flatnonzero(~p.between(0.0, 1.0).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise MonitorError(
            f"{path}: line {row + 2}: {SCORE_COLUMN} {scores[SCORE_COLUMN].iloc[row]!r} is not in [0, 1]"
        )
    return scores.assign(**{SCORE_COLUMN: p.to_numpy(np.float64)})


def backtest(scores: pd.DataFrame, origination: Path, performance: Path, label: LabelConfig) -> dict[str, Any]:
    """Observed default rate and ROC-AUC per vintage year against the predicted probabilities.

    Labels come from the training label code (`load_loan_table`): a performance file pairs with the one origination
    file given, a folder is searched for file pairs. Loans without a label (censored, no performance) are left out.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FreddieDataWarning)  # censored loans dropped: counted in the report
        if performance.is_dir():
            table, report = load_loan_table(folder=performance, label=label, on_bad_row="skip")
        else:
            table, report = load_loan_table(origination=origination, performance=performance, label=label,
                                            on_bad_row="skip")  # fmt: skip
    joined = scores.merge(table[["loan_id", "default", "vintage_year"]], on="loan_id", how="inner")
    rows = [_backtest_row("all", joined)]
    for year, part in joined.groupby("vintage_year", sort=True):
        rows.append(_backtest_row(str(int(year)), part))
    return {"labelled": len(joined), "label": report.to_dict(), "by_vintage": rows}


def _backtest_row(name: str, part: pd.DataFrame) -> dict[str, Any]:
    y, p = part["default"].to_numpy(), part[SCORE_COLUMN].to_numpy()
    defaults = int(y.sum())
    both = 0 < defaults < len(y)
    return {
        "vintage": name,
        "loans": len(y),
        "defaults": defaults,
        "observed_rate": float(y.mean()) if len(y) else None,
        "predicted_rate": float(p.mean()) if len(y) else None,
        "auroc": float(roc_auc_score(y, p)) if both else None,
        "few_defaults": defaults < MIN_VINTAGE_DEFAULTS,
    }


def monitor(
    path: Path, bundle: Path | None, performance: Path | None = None, label: LabelConfig | None = None
) -> dict[str, Any]:
    """Everything the drift report shows, as one JSON-ready dict (see the module docstring)."""
    bundle_path = resolve_bundle(bundle, Path("logs"), option="--bundle <path>")
    scorer = open_scorer(bundle_path)
    reference: Reference | None = scorer.bundle.monitoring
    if reference is None:
        raise MonitorError(
            f"{bundle_path} has no monitoring reference (monitoring.json): it was trained before monitoring existed;"
            " retrain to monitor it"
        )
    is_scores = path.is_file() and path.suffix.lower() == ".csv"
    if is_scores:
        frame, scores = None, read_scores(path)
        counts: dict[str, Any] = {"files": [path.name], "scored": len(scores)}
    else:
        frame, scores, counts = read_and_score(scorer, path)
    if not len(scores):
        raise MonitorError(f"{path}: no loan could be scored")
    result = compare(reference, scores[SCORE_COLUMN].to_numpy(), frame)
    result.update(
        input=str(path), input_kind="scores" if is_scores else "origination", bundle=str(bundle_path), **counts,
        labels={name: ref.bin_labels() for name, ref in [("score", reference.score), *reference.fields.items()]
                if ref is not None},
    )  # fmt: skip
    if performance is not None:
        if performance.is_file() and not path.is_file():
            raise MonitorError(
                f"--performance {performance} is one file: give one origination file, or a folder of file pairs"
            )
        result["backtest"] = backtest(scores, path, performance, label or LabelConfig())
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _field_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"name": name, **c} for name, c in result["csi"].items()]
    order = {"red": 0, "amber": 1, "green": 2, None: 3}
    return sorted(rows, key=lambda r: (order[r["light"]], -(r["psi"] or 0.0)))


def render_markdown(result: dict[str, Any]) -> str:
    """drift.md: status, score PSI, one row per field (worst first), the back-test when there is one."""
    lines = [
        f"# Drift report: {result['status'].upper()}",
        "",
        f"Input `{result['input']}` against the training reference of bundle `{result['bundle']}`.",
        f"Loans read {result.get('loans_read', '–')}, scored {result['scored']},"
        f" rejected {result.get('rejected', '–')}."
        f" PSI bands: < 0.1 green, 0.1–0.25 amber, > 0.25 red; empty bins count as {result['psi_floor']:g}.",
        "",
        f"**Score PSI: {_fmt(result['psi_score'])} ({result['score_light'] or 'n/a'})**",
        "",
    ]
    if result["csi"]:
        lines += [
            f"Fields red: {', '.join(result['fields_red']) or 'none'};"
            f" amber: {', '.join(result['fields_amber']) or 'none'}.",
            "",
            "| field | CSI | light | missing (train → now) | outside training range | new categories |",
            "|---|---:|---|---|---:|---|",
        ]  # fmt: skip
        for r in _field_rows(result):
            lines.append(
                f"| {r['name']} | {_fmt(r['psi'])} | {r['light']} | {_fmt(r['missing_rate_ref'])} → "
                f"{_fmt(r['missing_rate'])} | {_fmt(r['out_of_range_share'])} |"
                f" {', '.join(r['new_categories']) or '–'} |"
            )
    else:
        lines.append("Scores only: no field statistics (give origination files for CSI).")
    if "backtest" in result:
        lines += ["", "## Back-test per vintage", "",
                  "| vintage | loans | defaults | observed | predicted | ROC-AUC |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in result["backtest"]["by_vintage"]:
            mark = " (few defaults)" if r["few_defaults"] else ""
            lines.append(
                f"| {r['vintage']} | {r['loans']} | {r['defaults']} | {_fmt(r['observed_rate'], 4)} | "
                f"{_fmt(r['predicted_rate'], 4)} | {_fmt(r['auroc'])}{mark} |"
            )
    return "\n".join(lines) + "\n"


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {{ r.status }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
td.n { text-align: right; } .light { display: inline-block; width: .9em; height: .9em; border-radius: 50%; }
.green { background: #2e7d32; } .amber { background: #f9a825; }
.red { background: #c62828; } .none { background: #999; }
h1 .stable { color: #2e7d32; } h1 .drifted { color: #c62828; }
</style></head><body>
<h1>Drift report: <span class="{{ r.status }}">{{ r.status | upper }}</span></h1>
<p>Input <code>{{ r.input }}</code> against the training reference of bundle <code>{{ r.bundle }}</code>.
Loans read {{ r.loans_read | fmt }}, scored {{ r.scored }}, rejected {{ r.rejected | fmt }}.
PSI bands: &lt; 0.1 green, 0.1–0.25 amber, &gt; 0.25 red; empty bins count as {{ r.psi_floor }}.</p>
<h2>Score</h2>
<p><span class="light {{ r.score_light or 'none' }}"></span> PSI {{ r.psi_score | fmt }}</p>
{% if r.score %}<table><tr><th>score bin</th><th>training</th><th>now</th></tr>
{% for label in r.labels.score %}<tr><td>{{ label }}</td>
<td class="n">{{ r.score.fractions_ref[loop.index0] | fmt }}</td>
<td class="n">{{ r.score.fractions[loop.index0] | fmt }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Fields</h2>
{% if fields %}<p>Red: {{ r.fields_red | join(', ') or 'none' }}.
Amber: {{ r.fields_amber | join(', ') or 'none' }}.</p>
<table><tr><th></th><th>field</th><th>CSI</th><th>missing: training</th><th>now</th><th>outside training range</th>
<th>new categories</th></tr>
{% for f in fields %}<tr><td><span class="light {{ f.light or 'none' }}"></span></td><td>{{ f.name }}</td>
<td class="n">{{ f.psi | fmt }}</td><td class="n">{{ f.missing_rate_ref | fmt }}</td>
<td class="n">{{ f.missing_rate | fmt }}</td>
<td class="n">{{ f.out_of_range_share | fmt }}</td><td>{{ f.new_categories | join(', ') }}</td></tr>{% endfor %}</table>
{% else %}<p>Scores only: no field statistics (give origination files for CSI).</p>{% endif %}
{% if r.backtest %}<h2>Back-test per vintage</h2>
<table><tr><th>vintage</th><th>loans</th><th>defaults</th><th>observed</th><th>predicted</th><th>ROC-AUC</th></tr>
{% for v in r.backtest.by_vintage %}<tr><td>{{ v.vintage }}</td><td class="n">{{ v.loans }}</td>
<td class="n">{{ v.defaults }}</td>
<td class="n">{{ v.observed_rate | fmt(4) }}</td><td class="n">{{ v.predicted_rate | fmt(4) }}</td>
<td class="n">{{ v.auroc | fmt }}{% if v.few_defaults %} (few defaults){% endif %}</td></tr>{% endfor %}</table>
{% endif %}
</body></html>
"""
_ENV = Environment(autoescape=True)
_ENV.filters["fmt"] = _fmt


def render_html(result: dict[str, Any]) -> str:
    """drift.html: the same content as drift.md, self-contained (inline CSS, no scripts or external files)."""
    return _ENV.from_string(_HTML).render(r=result, fields=_field_rows(result))


def write_reports(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "drift.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "drift.md", render_markdown(result))
    atomic_write_text(out / "drift.html", render_html(result))


def summary_line(result: dict[str, Any]) -> str:
    keys = ("status", "psi_score", "fields_red", "fields_amber", "scored")
    return json.dumps({k: result.get(k) for k in keys})


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 stable, 1 drifted, 2 could not run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="origination file or folder (zips too), or a scores CSV")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: newest under logs/)")
    parser.add_argument("--performance", type=Path, default=None,
                        help="performance file for the one origination file, or a folder of file pairs")  # fmt: skip
    parser.add_argument("--horizon-months", type=int, default=24, help="label horizon for --performance (24)")
    parser.add_argument("--out", type=Path, default=Path("monitoring"), help="report folder (default monitoring/)")
    args = parser.parse_args(argv)
    try:
        result = monitor(args.path, args.bundle, args.performance, LabelConfig(horizon_months=args.horizon_months))
        write_reports(result, args.out)
    except (MonitorError, BundleError, FreddieFileError, FreddieFormatError, OSError, ValueError) as err:
        print(f"monitor: {err}", file=sys.stderr)
        print(json.dumps({"status": "error", "psi_score": None, "fields_red": [], "error": str(err)}))
        return FAILED
    print(f"{result['status']}: score PSI {_fmt(result['psi_score'])} ({result['score_light']}); "
          f"fields red: {', '.join(result['fields_red']) or 'none'} -> {args.out / 'drift.md'}")  # fmt: skip
    print(summary_line(result))
    return DRIFTED if result["status"] == "drifted" else STABLE
