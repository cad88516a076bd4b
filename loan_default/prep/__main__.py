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

from loan_default.freddie.errors import FreddieFileError, FreddieFormatError
from loan_default.prep.options import label_config, label_options
from loan_default.prep.table import TableError, read_manifest


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
    except (FreddieFileError, FreddieFormatError, TableError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    manifest = read_manifest(str(out))
    print(f"{manifest['rows']:,} loans in {len(manifest['partitions'])} vintages -> {out} "
          f"({args.engine}, {time.perf_counter() - started:.1f} s)")  # fmt: skip
    print(f"Train from it: python train.py data=parquet data.path={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
