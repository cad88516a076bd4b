"""Run train.py as an Azure ML command job and fetch its results: `python -m loan_default.azure submit|download`.

`submit` loads a job file (azure_job.yml by default) with azure-ai-ml's `load_job(path, params_override=...)`: each
`--set key=value` is one override, and so is each variant (synthetic data, Hydra overrides, multirun, DDP counts) of
the command. It checks the job offline before it asks for credentials: the schema, every `${{inputs.x}}` / `${{outputs.y}}`
declared and every input used, the command's Hydra overrides composed against conf/ with the placeholders filled in,
and for DDP the node and device counts. A typo fails here in seconds, not after the cluster has queued for 20 minutes.
`--dry-run` stops there and prints the resolved job. `download` fetches a finished job's run folder (bundle/, report.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from loan_default.azure.command import MULTIRUN_FLAGS, PLACEHOLDER, CommandError, HydraCommand, Word

DEFAULT_FILE = "azure_job.yml"
CONFIG_NAME = "train"  # train.py: @hydra.main(config_path="conf", config_name="train")
CONFIG_PATH = "conf"
DATA_INPUT = "data_folder"
RUN_OUTPUT = "run"
#: Packages the job's conda file adds to setup.cfg's install_requires + `azure` extra (see azure/environment.yml).
JOB_ONLY_PACKAGES = ("azureml-mlflow",)
#: MLClient argument -> environment variable / key in the workspace's config.json (Azure ML studio: Download config).
WORKSPACE_ENV = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group_name": "AZURE_RESOURCE_GROUP",
    "workspace_name": "AZUREML_WORKSPACE_NAME",
}
WORKSPACE_CONFIG_KEYS = {
    "subscription_id": "subscription_id",
    "resource_group_name": "resource_group",
    "workspace_name": "workspace_name",
}
ARM_SCOPE = "https://management.azure.com/.default"
FINISHED = ("Completed", "Failed", "Canceled")
DATA_TYPES = {"uri_folder", "uri_file", "mltable", "custom_model", "mlflow_model", "triton_model"}
BINDING = re.compile(r"\s*(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*")

NO_WORKSPACE = (
    "No Azure ML workspace: set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZUREML_WORKSPACE_NAME, or put the "
    "workspace's config.json (Azure ML studio > workspace > Download config file) in this folder"
)
NO_CREDENTIALS = (
    "No Azure credentials: run `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a "
    "service principal, or run on an Azure machine with a managed identity"
)

log = logging.getLogger(__name__)


class UserError(Exception):
    """A problem the user fixes (job file, workspace, credentials): reported in one line, exit code 2."""


# ---------------------------------------------------------------------------------------------------------------------
# The job file and its overrides. Azure ML applies `--set` itself: load_job(path, params_override=[{key: value}, ...]).
# The variants (synthetic data, multirun, extra Hydra overrides, DDP counts) are more params_override entries.
# ---------------------------------------------------------------------------------------------------------------------
def load_spec(path: str | Path) -> dict[str, Any]:
    """The job file as a dict (comments dropped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No job file {path}")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        raise UserError(f"{path} is not a YAML mapping")
    return spec


def parse_sets(sets: Sequence[str]) -> list[dict[str, str]]:
    """`--set key.sub=value` options as azure-ai-ml's params_override ([{"key.sub": "value"}], what `az ml job create
    --set` passes): values stay strings, the job schema casts them."""
    params = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        params.append({key: value})
    return params


def with_params(spec: Mapping[str, Any], params: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The job file as load_job sees it after `params_override`: the same pydash `set_` azure-ai-ml applies them
    with, and its refusal to descend into a value. Used to print the job and to read its command and inputs."""
    from pydash import objects

    spec = copy.deepcopy(dict(spec))
    for param in params:
        for key, value in param.items():
            node: Any = spec
            for part in key.split(".")[:-1]:
                if isinstance(node, str):
                    raise UserError(f"--set {key}: a field above {key.split('.')[-1]!r} holds a value, not fields")
                node = node.get(part) if isinstance(node, Mapping) else None
            if isinstance(node, str):
                raise UserError(f"--set {key}: a field above {key.split('.')[-1]!r} holds a value, not fields")
            objects.set_(spec, key, copy.deepcopy(value))
    return spec


def _command(spec: Mapping[str, Any]) -> HydraCommand:
    try:
        return HydraCommand.parse(spec.get("command") or "")
    except CommandError as error:
        raise UserError(str(error)) from error


def use_synthetic(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Params for the same job on the embedded synthetic data: `data=synthetic` generated on the node, no data
    asset (the words that use it and the input itself go)."""
    command = _command(spec)
    placeholder = f"${{{{inputs.{DATA_INPUT}}}}}"
    uses_data = [w for w in command.overrides if placeholder in w.raw.replace(" ", "")]
    if command.values("data") != ["freddie"] or not uses_data:
        raise UserError(f"--synthetic expects a command with data=freddie and {placeholder}")
    command.drop(lambda w: w not in uses_data)
    command.replace("data", lambda w: Word.quoted("data=synthetic"))
    inputs = {k: v for k, v in (spec.get("inputs") or {}).items() if k != DATA_INPUT}
    return [{"command": str(command)}, {"inputs": inputs}]


def add_overrides(spec: Mapping[str, Any], overrides: Sequence[str], multirun: bool = False) -> list[dict[str, Any]]:
    """Params that append Hydra overrides to the command; with `multirun`, a Hydra sweep whose folder is the output.
    A sweep drops the job's own MLflow run id: every trial would log into that one run."""
    command = _command(spec)
    if multirun:
        if not command.multirun:
            command.flags.insert(0, Word("-m"))
        command.replace("hydra.run.dir", lambda w: Word(w.raw.replace("hydra.run.dir=", "hydra.sweep.dir=", 1)))
        command.drop(lambda w: w.key != "logger.mlflow.run_id")
    command.append(overrides)
    return [{"command": str(command)}]


def sync_distribution(spec: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Params that make the command's trainer.num_nodes / trainer.devices follow resources.instance_count /
    distribution.process_count_per_instance (Lightning needs them equal), and a note for each change."""
    distribution = spec.get("distribution") or {}
    if distribution.get("type") != "pytorch":
        return [], []
    wanted = {
        "trainer.num_nodes": str(int((spec.get("resources") or {}).get("instance_count") or 1)),
        "trainer.devices": str(int(distribution.get("process_count_per_instance") or 1)),
    }
    command, notes = _command(spec), []
    for key, value in wanted.items():
        for given in command.values(key):
            if given != value:
                notes.append(f"{key}={given} -> {value} (follows the job's resources/distribution)")
        command.replace(key, lambda w, key=key, value=value: Word.quoted(f"{key}={value}"))
    return ([{"command": str(command)}] if notes else []), notes


# ---------------------------------------------------------------------------------------------------------------------
# Offline checks
# ---------------------------------------------------------------------------------------------------------------------
def check_bindings(spec: Mapping[str, Any]) -> list[str]:
    """Every `${{inputs.x}}` / `${{outputs.y}}` in the command (a Spark job's args) declared; every input used."""
    command = spec.get("command") or spec.get("args") or ""
    declared = {kind: set(spec.get(kind) or {}) for kind in ("inputs", "outputs")}
    used: set[str] = set()
    problems = []
    for inner in PLACEHOLDER.findall(command):
        match = BINDING.fullmatch(inner)
        if match is None:
            problems.append(f"${{{{{inner}}}}} in the command is not ${{{{inputs.<name>}}}} or ${{{{outputs.<name>}}}}")
        elif match.group(2) not in declared[match.group(1)]:
            problems.append(f"${{{{{inner.strip()}}}}} in the command: no {match.group(2)!r} under {match.group(1)}")
        elif match.group(1) == "inputs":
            used.add(match.group(2))
    problems += [
        f"input {name!r} is declared but the command never uses it" for name in sorted(declared["inputs"] - used)
    ]
    return problems


def example_values(spec: Mapping[str, Any]) -> dict[str, str]:
    """Plausible values for each `${{...}}`: literal inputs as given, data inputs and outputs as mount paths."""
    values = {}
    for name, value in (spec.get("inputs") or {}).items():
        if isinstance(value, Mapping) and (value.get("type") in DATA_TYPES or "path" in value):
            values[f"inputs.{name}"] = f"/mnt/azureml/inputs/{name}"
        elif isinstance(value, Mapping):
            values[f"inputs.{name}"] = str(value.get("value", value.get("default", "")))
        else:
            values[f"inputs.{name}"] = str(value)
    for name in spec.get("outputs") or {}:
        values[f"outputs.{name}"] = f"/mnt/azureml/outputs/{name}"
    return values


def compose_configs(command: HydraCommand, code_dir: Path) -> list:
    """Compose the (filled-in) command's config as Hydra would at run time. A sweep composes once per value of each
    choice sweep (the other sweeps at their first value), so a typo in any value shows. Raises what Hydra raises."""
    from hydra import compose, initialize_config_dir

    config_name = CONFIG_NAME
    flags = iter(w.text for w in command.flags)
    for flag in flags:
        if flag in ("-cn", "--config-name"):
            config_name = next(flags, CONFIG_NAME)
        elif flag.startswith("--config-name="):
            config_name = flag.split("=", 1)[1]
        elif flag not in MULTIRUN_FLAGS:
            raise UserError(f"Hydra flag {flag} in the command: only -m/--multirun and --config-name are checked")
    overrides = [w.text for w in command.overrides]
    conf_dir = (code_dir / command.script).parent / CONFIG_PATH
    points = _sweep_points(overrides) if command.multirun else [overrides]
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        return [compose(config_name, overrides=point, return_hydra_config=True) for point in points]


def _sweep_points(overrides: list[str]) -> list[list[str]]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    first, choices = [], []
    for i, override in enumerate(parsed):
        key = override.get_key_element()
        if override.is_interval_sweep():
            first.append(f"{key}={override.value().start}")
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
            first.append(f"{key}={values[0]}")
            if override.is_choice_sweep():  # ranges are numbers of one type: their first value stands for all
                choices += [(i, f"{key}={value}") for value in values[1:]]
        else:
            first.append(override.input_line)
    points = [first]
    for i, override in choices:
        points.append([*first[:i], override, *first[i + 1 :]])
    return points


def check_distribution(spec: Mapping[str, Any], cfg) -> list[str]:
    """Several nodes or processes need `distribution: {type: pytorch}` and a DDP trainer with matching counts."""
    distribution = spec.get("distribution") or {}
    nodes = int((spec.get("resources") or {}).get("instance_count") or 1)
    if not distribution:
        return [] if nodes == 1 else [f"resources.instance_count={nodes} without distribution: use azure_job_ddp.yml"]
    if distribution.get("type") != "pytorch":
        return [f"distribution type {distribution.get('type')!r}: train.py runs Lightning DDP, use type: pytorch"]
    processes = int(distribution.get("process_count_per_instance") or 1)
    trainer = cfg.trainer
    problems = []
    if nodes * processes > 1 and not str(trainer.get("strategy", "auto")).startswith("ddp"):
        problems.append(
            f"{nodes * processes} processes but trainer.strategy={trainer.get('strategy')}: use trainer=ddp"
        )
    if trainer.get("num_nodes", 1) != nodes:
        problems.append(f"trainer.num_nodes={trainer.get('num_nodes', 1)} but resources.instance_count={nodes}")
    if trainer.get("devices") != processes:
        problems.append(
            f"trainer.devices={trainer.get('devices')} but distribution.process_count_per_instance={processes}"
        )
    return problems


def check(spec: Mapping[str, Any], base_dir: Path) -> list[str]:
    """Every offline check beyond the schema; an empty list means the job is fit to submit."""
    if spec.get("type") in ("spark", "pipeline"):
        from loan_default.azure import graph

        return graph.check_spark(spec, base_dir) if spec["type"] == "spark" else graph.check_pipeline(spec, base_dir)
    problems = check_bindings(spec)
    if problems:
        return problems
    try:
        command = _command(spec).filled(example_values(spec))
    except CommandError as error:
        return [str(error)]
    code = spec.get("code")
    if not isinstance(code, str) or code.startswith("azureml:"):
        return [f"code: {code!r} is not a local folder, so the Hydra overrides cannot be checked"]
    try:
        configs = compose_configs(command, base_dir / code)
    except UserError:
        raise
    except Exception as error:  # Hydra raises several types; every one is a problem with the overrides
        return [f"Hydra overrides do not compose against {CONFIG_PATH}/: {_first_line(error)}"]
    return check_distribution(spec, configs[0])


def to_job(path: Path, params: Sequence[Mapping[str, Any]] = ()):
    """azure-ai-ml's job object: the job file with `params` applied by the SDK (`params_override`), validated
    against the schema (unknown keys, input types, the conda file)."""
    from azure.ai.ml import load_job
    from azure.ai.ml.exceptions import MlException, ValidationException
    from marshmallow import ValidationError

    try:
        return load_job(path, params_override=[dict(p) for p in params])
    except (ValidationError, ValidationException) as error:
        raise UserError(f"{path} fails Azure ML's job schema: {_schema_errors(error)}") from error
    except MlException as error:  # e.g. --set below a field that holds a reference string
        raise UserError(f"{path}: {_first_line(error)}") from error


def _schema_errors(error: Exception) -> str:
    """`field.path: message` for each schema violation, from the JSON report azure-ai-ml nests in its message."""
    leaves: list[str] = []
    _collect(_json_report(str(error)), [], leaves)
    return "; ".join(dict.fromkeys(leaves)) or _first_line(error)


def _json_report(text: str) -> Any:
    start = text.find("{")
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0] if start >= 0 else None
    except json.JSONDecodeError:
        return None


def _collect(node: Any, path: list[str], leaves: list[str]) -> None:
    if isinstance(node, dict) and "errors" in node:  # azure-ai-ml's wrapper: each error's message is a nested report
        for item in node["errors"]:
            message = item.get("message", "")
            _collect(_json_report(message) or [message.split("\n")[0]], path, leaves)
    elif isinstance(node, dict):
        for key, value in node.items():
            _collect(value, path if key in ("value", "_schema") else [*path, key], leaves)
    elif isinstance(node, list) and node and all(isinstance(item, str) for item in node):
        leaves.append(f"{'.'.join(path) or 'job'}: {' '.join(node)}")
    elif isinstance(node, list) and node:
        _collect(node[0], path, leaves)  # alternatives of a union type: the first is the intended one


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Workspace, credentials, Azure ML calls
# ---------------------------------------------------------------------------------------------------------------------
def workspace(environ: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """MLClient's workspace arguments from the environment, else from config.json in `cwd` or a parent folder."""
    values = {arg: environ.get(var, "") for arg, var in WORKSPACE_ENV.items()}
    if all(values.values()):
        return values
    if any(values.values()):
        missing = [WORKSPACE_ENV[arg] for arg, value in values.items() if not value]
        raise UserError(f"Incomplete Azure ML workspace: also set {', '.join(missing)}")
    for folder in (cwd, *cwd.parents):
        for config in (folder / "config.json", folder / ".azureml" / "config.json"):
            if config.is_file():
                try:
                    data = json.loads(config.read_text())
                    return {arg: str(data[key]) for arg, key in WORKSPACE_CONFIG_KEYS.items()}
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    keys = ", ".join(WORKSPACE_CONFIG_KEYS.values())
                    raise UserError(f"{config} is not an Azure ML workspace config ({keys})") from error
    raise UserError(NO_WORKSPACE)


def ml_client(environ: Mapping[str, str] | None = None, cwd: Path | None = None):
    """An MLClient for the workspace, with credentials proven to work before anything is uploaded."""
    from azure.ai.ml import MLClient
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    where = workspace(os.environ if environ is None else environ, cwd or Path.cwd())
    credential = DefaultAzureCredential()
    try:
        credential.get_token(ARM_SCOPE)
    except ClientAuthenticationError as error:
        raise UserError(NO_CREDENTIALS) from error
    return MLClient(credential, **where)


def download(client, name: str, out: Path, everything: bool = False) -> Path:
    """Fetch a finished job's run folder into `out`; returns the folder that holds bundle/ and report.md."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        job = client.jobs.get(name)
    except ResourceNotFoundError as error:
        raise UserError(f"No job named {name!r} in workspace {client.workspace_name}") from error
    if job.status not in FINISHED:
        raise UserError(f"Job {name} is {job.status}: download it once it has finished (az ml job stream -n {name})")
    client.jobs.download(name, download_path=str(out), output_name=None if everything else RUN_OUTPUT, all=everything)
    run = out / "named-outputs" / RUN_OUTPUT
    if not run.is_dir():
        raise UserError(f"Job {name} ({job.status}) has no output {RUN_OUTPUT!r} to download")
    if job.status != "Completed":
        log.warning("Job %s %s: the run folder may be incomplete", name, job.status)
    return run


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The job file with every option applied and checked: (the job as YAML would say it, azure-ai-ml job)."""
    path = Path(args.file)
    params = parse_sets(args.set)
    spec = with_params(load_spec(path), params)
    variants = []
    if args.synthetic:
        variants.append(use_synthetic)
    if args.overrides or args.multirun:
        variants.append(lambda s: add_overrides(s, args.overrides, multirun=args.multirun))
    variants.append(lambda s: _noted(*sync_distribution(s)))
    for variant in variants:  # each sees the job as the previous ones left it
        more = variant(spec)
        spec, params = with_params(spec, more), [*params, *more]
    job = to_job(path, params)
    problems = check(spec, path.parent)
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems))
    return spec, job


def _noted(params: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return params


def _run_submit(args: argparse.Namespace) -> int:
    spec, job = prepare(args)
    if args.dry_run:
        print(yaml.safe_dump(spec, sort_keys=False, width=120), end="")
        print(f"{args.file}: schema, placeholders and Hydra overrides check out (dry run: nothing submitted)",
              file=sys.stderr)  # fmt: skip
        return 0
    client = ml_client()
    from azure.core.exceptions import HttpResponseError

    try:
        submitted = client.jobs.create_or_update(job)
    except HttpResponseError as error:
        print(f"error: Azure ML refused the job: {_first_line(error)}", file=sys.stderr)
        return 1
    print(f"Submitted {submitted.name}: {submitted.studio_url}")
    print(f"When it has finished: python -m loan_default.azure download {submitted.name}")
    if args.stream:
        client.jobs.stream(submitted.name)
    return 0


def _run_download(args: argparse.Namespace) -> int:
    out = Path(args.out or Path("logs") / "azure" / args.name)
    run = download(ml_client(), args.name, out, everything=args.all)
    print(f"Run folder: {run}")
    if (run / "bundle").is_dir():
        print(f"Model bundle: {run / 'bundle'}  (serve it: python serve.py bundle={run / 'bundle'})")
    return 0


def parser() -> argparse.ArgumentParser:
    """The `python -m loan_default.azure` command line."""
    p = argparse.ArgumentParser(prog="python -m loan_default.azure", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("submit", help="check the job offline, then submit it (or print it with --dry-run)")
    s.add_argument("--file", default=DEFAULT_FILE,
                   help=f"job file (default {DEFAULT_FILE}; DDP: azure_job_ddp.yml; data preparation on Spark: "
                        "azure_prep_spark.yml; preparation then training: azure_pipeline.yml)")  # fmt: skip
    s.add_argument("--dry-run", action="store_true", help="check and print the resolved job; no credentials needed")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job field, e.g. compute=azureml:gpu-cluster, inputs.max_epochs=3 (repeatable)")  # fmt: skip
    s.add_argument("--synthetic", action="store_true", help="train on the embedded synthetic data (no data asset)")
    s.add_argument("-m", "--multirun", action="store_true", help="a Hydra sweep inside the job (trials in the output)")
    s.add_argument("--stream", action="store_true", help="follow the job's log after submitting")
    s.add_argument("overrides", nargs="*", help="extra Hydra overrides for train.py, e.g. outlier=none model.lr=0.001")
    d = sub.add_parser("download", help="fetch a finished job's run folder (bundle/, report.md, metrics.json, plots/)")
    d.add_argument("name", help="the job's name, as `submit` printed it")
    d.add_argument("--out", help="destination folder (default logs/azure/<name>)")
    d.add_argument("--all", action="store_true", help="also the job's logs and every other output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for a problem the user fixes: job file, workspace, credentials)."""
    args = parser().parse_args(argv)
    try:
        import azure.ai.ml  # noqa: F401
        import azure.identity  # noqa: F401
    except ImportError:
        print("error: the Azure ML client is not installed: pip install -e '.[azure]'", file=sys.stderr)
        return 2
    # After the import, which sets azure.ai.ml's level: it warns about its own experimental classes while it
    # validates, and the credential chain logs every method it tries.
    for noisy in ("azure.ai.ml", "azure.identity", "azure.core"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return _run_submit(args) if args.action == "submit" else _run_download(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
