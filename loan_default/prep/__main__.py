"""`python -m loan_default.prep <raw folder> --out <table folder>`: the labelled loan table as Parquet, written once.

    python -m loan_default.prep data/freddie --out data/loans                  # local engine (pyarrow reader)
    python -m loan_default.prep data/freddie --out data/loans --engine spark   # the Spark job, local mode
    python train.py data=parquet data.path=data/loans                          # train from it

Label settings are given here and recorded in the table's manifest.json; training reads them from there.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from loan_default.freddie.errors import FreddieFileError
from loan_default.freddie.labels import LabelConfig
from loan_default.prep.table import TableError, read_manifest


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loan_default.prep", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="folder of Freddie Mac file pairs (searched recursively, zips included)")
    p.add_argument("--out", required=True, help="table folder to write (must not exist unless --overwrite)")
    p.add_argument("--engine", choices=["local", "spark"], default="local", help="local (default) or spark")
    p.add_argument("--master", default="local[2]", help="Spark master for --engine spark (default local[2])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table once the new one is complete")
    label_options(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        label = label_config(args)
        if args.engine == "spark":
            from loan_default.prep.spark import prepare_spark

            out = prepare_spark(args.folder, args.out, label, args.on_bad_row, args.overwrite, master=args.master)
        else:
            from loan_default.prep.local import prepare_local

            out = prepare_local(args.folder, args.out, label, args.on_bad_row, args.overwrite)
    except (FreddieFileError, TableError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    manifest = read_manifest(str(out))
    print(f"{manifest['rows']:,} loans in {len(manifest['partitions'])} vintages -> {out} "
          f"({args.engine}, {time.perf_counter() - started:.1f} s)")  # fmt: skip
    print(f"Train from it: python train.py data=parquet data.path={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
