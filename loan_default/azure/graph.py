"""Offline checks of the Spark job (azure_prep_spark.yml) and the pipeline job (azure_pipeline.yml).

load_job checks their schema; these check what it does not: every `${{...}}` declared, the Spark entry file present
and its `args` accepted by the code's own command line, and in a pipeline every `${{parent...}}` binding pointing
at a declared input, output or step output, with each step then checked as a job of its own.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loan_default.azure.command import fill
from loan_default.azure.jobs import DATA_TYPES, check, check_bindings, example_values

#: Spark entry files whose command line is known: the function that builds their argument parser.
SPARK_ENTRIES: dict[str, Callable] = {}
PARENT = re.compile(r"^\$\{\{\s*parent\.(inputs|outputs)\.(\w+)\s*\}\}$")
STEP = re.compile(r"^\$\{\{\s*parent\.jobs\.(\w+)\.outputs\.(\w+)\s*\}\}$")


def _entries() -> dict[str, Callable]:
    if not SPARK_ENTRIES:
        from loan_default.prep.options import spark_parser

        SPARK_ENTRIES["prep_spark.py"] = spark_parser
    return SPARK_ENTRIES


def check_spark(spec: Mapping[str, Any], base_dir: Path) -> list[str]:
    """Bindings in `args`, the entry file in the code folder, and `args` (placeholders filled) parsed by the entry's
    own argument parser."""
    problems = check_bindings(spec)
    if problems:
        return problems
    code, entry = spec.get("code"), (spec.get("entry") or {}).get("file")
    if not isinstance(code, str) or code.startswith("azureml:"):
        return [f"code: {code!r} is not a local folder, so the entry file cannot be checked"]
    if not entry or not (base_dir / code / entry).is_file():
        return [f"entry.file {entry!r} is not a file in the code folder {base_dir / code}"]
    parser = _entries().get(Path(entry).name)
    if parser is None:
        return []
    args = shlex.split(fill(spec.get("args") or "", example_values(spec)))
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parser().parse_args(args)
    except SystemExit:
        message = errors.getvalue().strip().splitlines()
        return [f"args are not accepted by {entry}: {message[-1] if message else 'invalid arguments'}"]
    return []


def check_pipeline(spec: Mapping[str, Any], base_dir: Path) -> list[str]:
    """Every step's `${{parent...}}` bindings resolve; then each step passes the checks of its own job type, with
    bound inputs standing for what they will be (a data folder, or the pipeline input's value)."""
    inputs, outputs, jobs = (dict(spec.get(k) or {}) for k in ("inputs", "outputs", "jobs"))
    if not jobs:
        return ["a pipeline job without jobs"]
    problems, used = [], set()
    for name, step in jobs.items():
        resolved_inputs = {}
        for key, value in (step.get("inputs") or {}).items():
            where = f"jobs.{name}.inputs.{key}"
            binding = value.get("path") if isinstance(value, Mapping) else value
            resolved, problem = _resolve(binding, inputs, outputs, jobs, where, used)
            if problem:
                problems.append(problem)
            elif resolved is None:
                resolved_inputs[key] = value
            else:
                resolved_inputs[key] = (
                    {**resolved, **value, "path": "bound"} if isinstance(value, Mapping) else resolved
                )
        for key, value in (step.get("outputs") or {}).items():
            _, problem = _resolve(value, inputs, outputs, jobs, f"jobs.{name}.outputs.{key}", used)
            problems += [problem] if problem else []
        if problems:
            continue
        child = {
            **step,
            "inputs": resolved_inputs,
            "outputs": {k: {"type": "uri_folder"} for k in step.get("outputs") or {}},
        }
        problems += [f"jobs.{name}: {p}" for p in check(child, base_dir)]
    problems += [f"pipeline input {k!r} is declared but no step uses it" for k in sorted(set(inputs) - used)]
    return problems


def _resolve(value: Any, inputs: dict, outputs: dict, jobs: dict, where: str, used: set) -> tuple[Any, str | None]:
    """What a `${{parent...}}` binding stands for (None: not a binding) or a problem naming `where`."""
    if not isinstance(value, str) or "${{" not in value:
        return None, None
    if match := PARENT.match(value):
        kind, key = match.groups()
        declared = inputs if kind == "inputs" else outputs
        if key not in declared:
            return None, f"{where}: {value} but the pipeline declares no {kind[:-1]} {key!r}"
        if kind == "inputs":
            used.add(key)
            given = declared[key]
            is_data = isinstance(given, Mapping) and (given.get("type") in DATA_TYPES or "path" in given)
            return ({"type": given.get("type", "uri_folder")} if is_data else given), None
        return {"type": "uri_folder"}, None
    if match := STEP.match(value):
        step, key = match.groups()
        if key not in ((jobs.get(step) or {}).get("outputs") or {}):
            return None, f"{where}: {value} but there is no step {step!r} with output {key!r}"
        return {"type": "uri_folder"}, None
    return None, f"{where}: {value} is not ${{{{parent.inputs.x}}}}, ${{{{parent.outputs.y}}}} or a step's output"
