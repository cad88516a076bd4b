"""Command-line options shared by the local and the Spark preparation entry points."""

from __future__ import annotations

import argparse

from loan_default.freddie.labels import LabelConfig


def label_options(p: argparse.ArgumentParser) -> None:
    """The label settings (conf/data/freddie.yaml `label`) as options; the defaults are LabelConfig's."""
    default = LabelConfig()
    p.add_argument("--horizon-months", default=str(default.horizon_months),
                   help=f"default within this many months of the first payment; 'none' = whole history "
                        f"(default {default.horizon_months})")  # fmt: skip
    p.add_argument("--min-dpd-months", type=int, default=default.min_dpd_months,
                   help=f"months delinquent that count as default (default {default.min_dpd_months})")  # fmt: skip
    p.add_argument("--credit-event-codes", nargs="+", default=list(default.credit_event_codes),
                   help=f"zero-balance codes that count as default (default {' '.join(default.credit_event_codes)})")  # fmt: skip
    p.add_argument("--keep-censored", action="store_true", help="keep censored loans, labelled 0")
    p.add_argument("--on-bad-row", choices=["raise", "skip"], default="raise", help="malformed rows (default raise)")


def label_config(args: argparse.Namespace) -> LabelConfig:
    horizon = None if str(args.horizon_months).lower() in ("none", "null") else int(args.horizon_months)
    return LabelConfig(horizon, args.min_dpd_months, tuple(args.credit_event_codes), args.keep_censored)


def spark_parser() -> argparse.ArgumentParser:
    """The Spark entry point's command line (prep_spark.py): importable without pyspark, so a job file's `args` can
    be checked offline (python -m loan_default.azure submit --dry-run)."""
    p = argparse.ArgumentParser(prog="prep_spark.py", description="Prepare the Parquet loan table on Spark.")
    p.add_argument("folder", help="folder (or URI) of plain Freddie Mac file pairs")
    p.add_argument("--out", required=True, help="table folder (or URI) to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table once the new one is complete")
    p.add_argument("--master", default=None, help="Spark master, e.g. local[2] (default: the cluster's)")
    label_options(p)
    return p
