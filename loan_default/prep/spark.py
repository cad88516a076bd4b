"""The loan table prepared on Spark: the same read + label + origination join as the local engine, the same table.

Runs wherever Spark runs: local mode (`python -m loan_default.prep <raw> --out <table> --engine spark`), an Azure ML
serverless Spark job (azure_prep_spark.yml, entry prep_spark.py), Databricks or Synapse (`spark-submit prep_spark.py
<raw> --out <table>`). Paths are anything Spark's Hadoop file system reads: local folders, abfss://, wasbs://, dbfs:/.
The raw files must be plain (unzipped): Spark splits text files, not zip archives.

The job writes into a temporary sibling folder, adds manifest.json last and renames the folder into place, so a
reader never sees half a table. Rows: by source vintage, then loan id (see loan_default.prep.table).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from loan_default.freddie import reader, schema
from loan_default.freddie.errors import FreddieFileError, FreddieFormatError, check_policy
from loan_default.freddie.files import ORIGINATION, PERFORMANCE, classify
from loan_default.freddie.labels import ORPHAN_LOANS, ORPHAN_ROWS, LabelConfig, LabelReport
from loan_default.freddie.loans import TRUTH_FILE
from loan_default.prep import spark_rules as rules
from loan_default.prep.options import label_config, spark_parser
from loan_default.prep.table import MANIFEST, PARTITION_KEY, SORT_KEY, Partition, TableError, manifest_dict

_STRING = "string[pyarrow]"
LABEL_COLUMNS = [
    ("default", "int8"),
    ("vintage_year", "int64"),
    ("vintage_quarter", "int64"),
    ("vintage", _STRING),
    ("months_observed", "int64"),
    ("first_default_age", "float64"),
    ("censored", "bool"),
    ("final_zero_balance_code", _STRING),
]
NUMERIC = (schema.Kind.INT, schema.Kind.FLOAT, schema.Kind.DATE)


def session(master: str | None = None) -> SparkSession:
    """The active session, or a new one. With `master` (local mode), settings for one machine: few shuffle partitions,
    no UI. Under spark-submit / Azure ML the cluster's own settings stand."""
    builder = SparkSession.builder.appName("loan-default-prep")
    if master:
        builder = (
            builder.master(master)
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.codegen.maxFields", "40")  # the wide origination plan: interpreted, not compiled
            .config("spark.sql.session.timeZone", "UTC")
        )
    spark = builder.getOrCreate()
    if master:
        # The plan of 32 origination fields is too large for whole-stage code generation: Spark says so at length
        # and falls back to interpreting it. Errors still show.
        spark.sparkContext.setLogLevel("ERROR")
    return spark


class HadoopFS:
    """The few file operations the job needs, through Spark's own Hadoop file system (abfss:// needs no extra
    Python package on a cluster)."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        self.jvm = spark.sparkContext._jvm
        self.fs = self.path(uri).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def path(self, uri: str):
        return self.jvm.org.apache.hadoop.fs.Path(uri)

    def qualified(self, uri: str) -> str:
        return self.fs.makeQualified(self.path(uri)).toString()

    def exists(self, uri: str) -> bool:
        return self.fs.exists(self.path(uri))

    def files(self, uri: str) -> list[tuple[str, int, int]]:
        """(uri, bytes, modification ms) of every file under `uri`, recursively, sorted."""
        found, listing = [], self.fs.listFiles(self.path(uri), True)
        while listing.hasNext():
            status = listing.next()
            found.append((status.getPath().toString(), status.getLen(), status.getModificationTime()))
        return sorted(found)

    def write_text(self, uri: str, text: str) -> None:
        stream = self.fs.create(self.path(uri), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def rename(self, source: str, target: str) -> None:
        if not self.fs.rename(self.path(source), self.path(target)):
            raise TableError(f"could not rename {source} to {target}")

    def delete(self, uri: str) -> None:
        self.fs.delete(self.path(uri), True)


# ---------------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------------
def find_pairs(fs: HadoopFS, folder: str) -> tuple[dict[str, dict[str, tuple]], list[tuple]]:
    """{vintage: {"origination": file, "performance": file}} sorted by vintage, and the truth.csv files, as
    files.find_file_pairs finds them (file = (uri, bytes, mtime))."""
    if not fs.exists(folder):
        raise FreddieFileError(f"{folder}: no such folder")
    pairs: dict[str, dict[str, tuple]] = {}
    truth = []
    for file in fs.files(folder):
        name = file[0].rsplit("/", 1)[-1]
        if name.lower().endswith(".zip"):
            raise FreddieFileError(f"{file[0]}: Spark reads plain files; unzip the archive first")
        if name == TRUTH_FILE:
            truth.append(file)
        found = classify(name)
        if found:
            vintage, role = found
            if role in pairs.setdefault(vintage, {}):
                raise FreddieFileError(f"two {role} files for vintage {vintage}: {pairs[vintage][role][0]}, {file[0]}")
            pairs[vintage][role] = file
    for vintage, roles in pairs.items():
        for role in (ORIGINATION, PERFORMANCE):
            if role not in roles:
                other = next(iter(roles.values()))[0]
                raise FreddieFileError(f"{other}: vintage {vintage} has no {role} file beside it")
    if not pairs:
        raise FreddieFileError(f"{folder}: no Freddie Mac file pairs (sample_orig_YYYY.txt / historical_data_...)")
    return dict(sorted(pairs.items())), truth


def read_lines(spark: SparkSession, files: dict[str, str]) -> DataFrame:
    """The lines of several files ({uri: vintage}), each with its vintage, file and a `row` key that sorts in file
    order (the split's start in the file, then the record's place in its split)."""
    names = {uri.rsplit("/", 1)[-1]: vintage for uri, vintage in files.items()}
    by_name = F.create_map(*[F.lit(x) for pair in names.items() for x in pair])
    lines = spark.read.text(list(files)).select(
        "value",
        F.col("_metadata.file_path").alias("file"),
        F.struct(F.col("_metadata.file_block_start").alias("start"), F.monotonically_increasing_id().alias("n")).alias(
            "row"
        ),
    )
    return lines.withColumn(PARTITION_KEY, by_name[F.element_at(F.split("file", "/"), -1)])


def first_line(spark: SparkSession, uri: str) -> list[str]:
    """A file's first line, split: read on the driver through Hadoop (a Spark job per file costs a second each)."""
    fs = HadoopFS(spark, uri)
    jvm = fs.jvm
    reader_ = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(fs.fs.open(fs.path(uri)), "ISO-8859-1"))
    try:
        line = reader_.readLine()
    finally:
        reader_.close()
    if line is None:
        raise FreddieFormatError(uri, None, None, None, "the file is empty")
    return line.split("|")


# ---------------------------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------------------------
def _parsed(spark, files: dict[str, tuple], role: str, wanted: list[str], required: set[str]) -> DataFrame:
    """Every file of one role parsed, read together per layout (a plan per file would grow with the file count)."""
    detect = schema.detect_origination_layout if role == ORIGINATION else schema.detect_performance_layout
    by_layout: dict[str, dict[str, str]] = {}
    layouts = {}
    for vintage, file in files.items():
        try:
            layout = detect(first_line(spark, file[0]), file[0])
        except schema.LayoutError as error:
            raise FreddieFormatError(file[0], 1, None, None, str(error).split(": ", 1)[-1]) from error
        layouts[layout.name] = layout
        by_layout.setdefault(layout.name, {})[file[0]] = vintage
    parts = []
    for name, group in by_layout.items():
        layout = layouts[name]
        parsed = rules.parse_lines(read_lines(spark, group), layout, wanted, required)
        for missing in [n for n in wanted if n not in layout.columns]:  # fields an older layout lacks
            numeric = schema.ORIGINATION_FIELDS[missing].kind in NUMERIC
            parsed = parsed.withColumn(missing, F.lit(None).cast("double" if numeric else "string"))
        parts.append(parsed.select("row", "file", PARTITION_KEY, *wanted, "bad_reason", "bad_field", "bad_value"))
    # Materialised with its lineage cut: every later step would otherwise re-analyse the per-field rules (seconds per
    # step on a small machine). Executors keep checkpointed blocks, also under dynamic allocation.
    return (parts[0] if len(parts) == 1 else _union(parts)).localCheckpoint()


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _bad_rows(frame: DataFrame, on_bad_row: str, skipped: Counter) -> DataFrame:
    """Good rows only; bad ones raise (naming file, field and value) or are counted per reason."""
    bad = frame.filter(F.col("bad_reason").isNotNull())
    if on_bad_row == "raise":
        first = bad.orderBy("file", "row").first()
        if first is not None:
            raise FreddieFormatError(first.file, None, first.bad_field, first.bad_value, first.bad_reason)
    else:
        skipped.update({row.bad_reason: row["count"] for row in bad.groupBy("bad_reason").count().collect()})
    return frame.filter(F.col("bad_reason").isNull())


def _duplicates(origination: DataFrame, on_bad_row: str, skipped: Counter) -> DataFrame:
    """reader._drop_duplicates: a loan id twice in one origination file keeps its first row."""
    order = Window.partitionBy(PARTITION_KEY, "loan_id").orderBy("row")
    numbered = origination.withColumn("nth", F.row_number().over(order))
    twice = numbered.filter(F.col("nth") > 1)
    if on_bad_row == "raise":
        first = twice.orderBy("file", "row").first()
        if first is not None:
            raise FreddieFormatError(first.file, None, "loan_id", first.loan_id, "duplicate loan id")
    else:
        n = twice.count()
        if n:
            skipped[reader.DUPLICATE_ID] += n
    return numbered.filter(F.col("nth") == 1).drop("nth")


def loan_table(
    spark: SparkSession, folder: str, label: LabelConfig, on_bad_row: str = "raise"
) -> tuple[DataFrame, LabelReport, list[tuple[str, str]], list[dict]]:
    """(loan table with its source_vintage column, report, columns with pandas dtypes, source records)."""
    check_policy(on_bad_row)
    fs = HadoopFS(spark, folder)
    pairs, truth_files = find_pairs(fs, folder)
    skipped: Counter = Counter()
    fields = list(schema.ORIGINATION_FIELDS)
    origination = _parsed(spark, {v: p[ORIGINATION] for v, p in pairs.items()}, ORIGINATION, fields, {"loan_id"})
    origination = _duplicates(_bad_rows(origination, on_bad_row, skipped), on_bad_row, skipped)
    origination = origination.select(
        PARTITION_KEY,
        *[
            F.col(n).cast("double").alias(n) if schema.ORIGINATION_FIELDS[n].kind in NUMERIC else F.col(n)
            for n in fields
        ],
    ).localCheckpoint()
    performance = _parsed(
        spark, {v: p[PERFORMANCE] for v, p in pairs.items()}, PERFORMANCE, list(reader.PERFORMANCE_COLUMNS),
        {"loan_id", "period"},
    )  # fmt: skip
    performance = _bad_rows(performance, on_bad_row, skipped)
    stats = _outcomes_per_vintage(performance, label).localCheckpoint()

    # labels.label_loans, per vintage (a loan id is looked up in its own vintage's files).
    orphans = stats.join(origination.select(PARTITION_KEY, "loan_id"), [PARTITION_KEY, "loan_id"], "left_anti")
    orphan = orphans.agg(F.count(F.lit(1)).alias("loans"), F.sum("rows").alias("rows")).first()
    labelled = rules.label(origination, stats, label, keys=[PARTITION_KEY, "loan_id"]).localCheckpoint()
    counts = {r.drop_reason: r["count"] for r in labelled.groupBy("drop_reason").count().collect()}
    table = labelled.filter(F.col("drop_reason").isNull()).drop("drop_reason")

    report = LabelReport(
        vintages=list(pairs),
        loans_read=origination.count(),
        performance_rows=int(stats.agg(F.sum("rows")).first()[0] or 0),
        labelled=counts.get(None, 0),
    )
    totals = table.agg(F.sum("default"), F.sum(F.col("censored").cast("int"))).first()
    report.defaults, report.censored_kept = int(totals[0] or 0), int(totals[1] or 0)
    report.dropped = {reason: n for reason, n in counts.items() if reason is not None}
    if orphan.loans:
        report.dropped[ORPHAN_LOANS] = orphan.loans
        skipped[ORPHAN_ROWS] += orphan.rows
    report.dropped, report.skipped_rows = dict(sorted(report.dropped.items())), dict(sorted(skipped.items()))

    columns = [(n, "float64" if schema.ORIGINATION_FIELDS[n].kind in NUMERIC else _STRING) for n in fields]
    columns += LABEL_COLUMNS
    if truth_files:
        table, corrupted_dtype = _join_truth(spark, table, [f[0] for f in truth_files])
        columns += [("true_pd", "float64"), ("corrupted", corrupted_dtype)]
    sources = [
        {"vintage": vintage, "role": role, "path": file[0], "bytes": file[1], "mtime_ns": file[2] * 1_000_000}
        for vintage, roles in pairs.items()
        for role, file in sorted(roles.items())
    ] + [
        {"vintage": "", "role": "truth", "path": f[0], "bytes": f[1], "mtime_ns": f[2] * 1_000_000} for f in truth_files
    ]
    return table.select(PARTITION_KEY, *[n for n, _ in columns]), report, columns, sources


def _outcomes_per_vintage(performance: DataFrame, label: LabelConfig) -> DataFrame:
    """rules.outcomes grouped by (source vintage, loan id)."""
    keyed = performance.withColumn("loan_id", F.struct(F.col(PARTITION_KEY).alias("v"), F.col("loan_id").alias("id")))
    stats = rules.outcomes(keyed, label)
    return stats.select(
        F.col("loan_id.v").alias(PARTITION_KEY), F.col("loan_id.id").alias("loan_id"), *stats.columns[1:]
    )


def _join_truth(spark: SparkSession, table: DataFrame, files: list[str]) -> tuple[DataFrame, str]:
    """loans.join_truth: `true_pd` and `corrupted` by loan id; `corrupted` is nullable (Int8) when some loans lack
    a truth row."""
    truth = spark.read.csv(
        files, header=True, schema="loan_id string, true_pd double, corrupted int, corruption string"
    )
    joined = table.join(truth.select("loan_id", "true_pd", F.col("corrupted").cast("tinyint")), "loan_id", "left")
    uncovered = joined.filter(F.col("true_pd").isNull() & F.col("corrupted").isNull()).count()
    return joined, "Int8" if uncovered else "int8"


def prepare_spark(
    folder: str,
    out: str,
    label: LabelConfig = LabelConfig(),  # noqa: B008 - frozen dataclass
    on_bad_row: str = "raise",
    overwrite: bool = False,
    master: str | None = None,
) -> str:
    """Build the table from the raw files under `folder` and publish it at `out` (local path or URI); returns `out`."""
    spark = session(master)
    folder, out = _uri(folder), _uri(out)
    fs = HadoopFS(spark, out)
    if fs.exists(out) and not overwrite:
        raise TableError(f"{out} exists: choose another folder or replace it with --overwrite")
    table, report, columns, sources = loan_table(spark, folder, label, on_bad_row)
    parent, name = out.rstrip("/").rsplit("/", 1)
    tmp, old = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp", f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.old"
    try:
        # One task per vintage, rows sorted by vintage then loan id: the writer keeps that order in each file.
        table = table.cache()
        rows = {r[PARTITION_KEY]: r["count"] for r in table.groupBy(PARTITION_KEY).count().collect()}
        ordered = table.repartition(PARTITION_KEY).sortWithinPartitions(PARTITION_KEY, SORT_KEY)
        ordered.write.partitionBy(PARTITION_KEY).parquet(tmp)
        partitions = _partitions(fs, tmp, rows, report.vintages)
        manifest = manifest_dict(engine="spark", label=asdict(label), on_bad_row=on_bad_row, sources=sources,
                                 columns=columns, partitions=partitions, report=report.to_dict())  # fmt: skip
        fs.write_text(f"{tmp}/{MANIFEST}", json.dumps(manifest, indent=2, default=str) + "\n")
        if fs.exists(out):
            fs.rename(out, old)
        fs.rename(tmp, out)
        fs.delete(old)
    except BaseException:
        fs.delete(tmp)
        raise
    return out


def _partitions(fs: HadoopFS, root: str, rows: dict[str, int], vintages: list[str]) -> list[Partition]:
    """The written files per vintage (in the vintages' order), relative to the table folder."""
    qualified = fs.qualified(root).rstrip("/") + "/"
    by_vintage: dict[str, list[str]] = {}
    for uri, _, _ in fs.files(root):
        relative = fs.qualified(uri)[len(qualified) :]
        folder, _, name = relative.rpartition("/")
        if name.endswith(".parquet") and folder.startswith(f"{PARTITION_KEY}="):
            by_vintage.setdefault(folder.split("=", 1)[1], []).append(relative)
    return [Partition(v, sorted(by_vintage.get(v, [])), rows.get(v, 0)) for v in vintages if v in by_vintage]


def _uri(path: str) -> str:
    """A local path as an absolute file: URI; URIs as given."""
    return path if "://" in path or path.startswith(("file:", "dbfs:")) else Path(path).resolve().as_uri()


# ---------------------------------------------------------------------------------------------------------------------
# Entry point (prep_spark.py, spark-submit)
# ---------------------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    args = spark_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        out = prepare_spark(args.folder, args.out, label_config(args), args.on_bad_row, args.overwrite, args.master)
    except (FreddieFileError, FreddieFormatError, TableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Loan table -> {out} (spark, {time.perf_counter() - started:.1f} s)")
    return 0
