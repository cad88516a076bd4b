"""Run train.py as an Azure ML command job and fetch its results: `python -m loan_default.azure submit|download`.

`submit` reads a job file (azure_job.yml by default), applies `--set key=value` and Hydra overrides, and checks the job
offline before it asks for credentials: azure-ai-ml's schema (`load_job`), every `${{inputs.x}}` / `${{outputs.y}}`
declared and every input used, the command's Hydra overrides composed against conf/ with the placeholders filled in,
and for DDP the node and device counts. A typo fails here in seconds, not after the cluster has queued for 20 minutes.
`--dry-run` stops there and prints the resolved job. `download` fetches a finished job's run folder (bundle/, report.md).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
PLACEHOLDER = re.compile(r"\$\{\{(.*?)\}\}")
BINDING = re.compile(r"\s*(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*")
SHELL_OPERATORS = {"&&", "||", ";", "|"}
# The job's own MLflow run: right for one run, wrong for a Hydra multirun (every trial would write into it).
JOB_RUN_OVERRIDE = re.compile(r"\s+'?\+*logger\.mlflow\.run_id=[^\s]*")

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
# The job file as a plain dict: overrides, the synthetic-data variant, multirun, DDP counts
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


def apply_sets(spec: Mapping[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides like `az ml job create --set`: values stay strings, Azure ML's schema casts."""
    spec = copy.deepcopy(dict(spec))
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = spec
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part!r} holds a value, not fields")
        node[leaf] = value
    return spec


def use_synthetic(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The same job on the embedded synthetic data: no data asset, `data=synthetic`, generated on the node."""
    spec = copy.deepcopy(dict(spec))
    command = spec.get("command") or ""
    uses_data = re.compile(r"\s+'?[^\s']*\$\{\{\s*inputs\." + DATA_INPUT + r"\s*\}\}[^\s]*")
    if not re.search(r"(?<=\s)data=freddie(?=\s|$)", command) or not uses_data.search(command):
        raise UserError(f"--synthetic expects a command with data=freddie and ${{{{inputs.{DATA_INPUT}}}}}")
    command = uses_data.sub("", command)
    spec["command"] = re.sub(r"(?<=\s)data=freddie(?=\s|$)", "data=synthetic", command)
    spec.get("inputs", {}).pop(DATA_INPUT, None)
    return spec


def add_overrides(spec: Mapping[str, Any], overrides: Sequence[str], multirun: bool = False) -> dict[str, Any]:
    """Append Hydra overrides to the command; with `multirun`, make it a Hydra sweep whose folder is the output."""
    spec = copy.deepcopy(dict(spec))
    command = spec.get("command") or ""
    script = re.search(r"\bpython3?\s+\S+\.py", command)
    if script is None:
        raise UserError("The job's command does not run `python <script>.py`")
    if multirun:
        command = command[: script.end()] + " -m" + command[script.end() :]
        command = re.sub(r"(?<=\s)hydra\.run\.dir=", "hydra.sweep.dir=", command)
        command = JOB_RUN_OVERRIDE.sub("", command)
    spec["command"] = " ".join([command, *(shlex.quote(o) for o in overrides)])
    return spec


def sync_distribution(spec: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Make the command's trainer.num_nodes / trainer.devices follow resources.instance_count /
    distribution.process_count_per_instance (Lightning needs them equal). Returns the spec and what changed."""
    spec = copy.deepcopy(dict(spec))
    if (spec.get("distribution") or {}).get("type") != "pytorch":
        return spec, []
    wanted = {
        "trainer.num_nodes": int((spec.get("resources") or {}).get("instance_count") or 1),
        "trainer.devices": int(spec["distribution"].get("process_count_per_instance") or 1),
    }
    notes = []
    for key, value in wanted.items():
        pattern = re.compile(rf"(?<=\s){re.escape(key)}=(\S+)")
        match = pattern.search(spec["command"])
        if match and match.group(1) != str(value):
            notes.append(f"{key}={match.group(1)} -> {value} (follows the job's resources/distribution)")
            spec["command"] = pattern.sub(f"{key}={value}", spec["command"])
    return spec, notes


# ---------------------------------------------------------------------------------------------------------------------
# Offline checks
# ---------------------------------------------------------------------------------------------------------------------
def check_bindings(spec: Mapping[str, Any]) -> list[str]:
    """Every `${{inputs.x}}` / `${{outputs.y}}` in the command declared; every declared input used."""
    command = spec.get("command") or ""
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


def fill(command: str, values: Mapping[str, str]) -> str:
    """The command with every `${{inputs.x}}` / `${{outputs.y}}` replaced by `values["inputs.x"]`."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1).strip()], command)


@dataclass
class HydraCall:
    """`python <script> [flags] <overrides>` as the shell would split it."""

    script: str
    overrides: list[str] = field(default_factory=list)
    config_name: str = CONFIG_NAME
    multirun: bool = False


def hydra_call(command: str) -> HydraCall:
    """Parse the Hydra script call out of a (filled-in) shell command."""
    tokens = shlex.split(command)
    start = next((i for i, t in enumerate(tokens) if t.endswith(".py")), None)
    if start is None:
        raise UserError("The job's command does not run `python <script>.py`")
    call = HydraCall(script=tokens[start])
    args = iter(tokens[start + 1 :])
    for token in args:
        if token in SHELL_OPERATORS:
            break
        if token in ("-m", "--multirun"):
            call.multirun = True
        elif token in ("-cn", "--config-name"):
            call.config_name = next(args, CONFIG_NAME)
        elif token.startswith("--config-name="):
            call.config_name = token.split("=", 1)[1]
        elif token.startswith("-"):
            raise UserError(f"Hydra flag {token} in the command: only -m/--multirun and --config-name are checked")
        else:
            call.overrides.append(token)
    return call


def compose_configs(call: HydraCall, code_dir: Path) -> list:
    """Compose the call's config as Hydra would at run time. A sweep composes once per value of each choice sweep
    (the other sweeps at their first value), so a typo in any value shows. Raises what Hydra raises."""
    from hydra import compose, initialize_config_dir

    conf_dir = (code_dir / call.script).parent / CONFIG_PATH
    points = _sweep_points(call.overrides) if call.multirun else [call.overrides]
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        return [compose(call.config_name, overrides=point, return_hydra_config=True) for point in points]


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
    problems = check_bindings(spec)
    if problems:
        return problems
    call = hydra_call(fill(spec.get("command") or "", example_values(spec)))
    code = spec.get("code")
    if not isinstance(code, str) or code.startswith("azureml:"):
        return [f"code: {code!r} is not a local folder, so the Hydra overrides cannot be checked"]
    try:
        configs = compose_configs(call, base_dir / code)
    except Exception as error:  # Hydra raises several types; every one is a problem with the overrides
        return [f"Hydra overrides do not compose against {CONFIG_PATH}/: {_first_line(error)}"]
    return check_distribution(spec, configs[0])


def to_job(spec: Mapping[str, Any], path: Path):
    """azure-ai-ml's job object, validated against the schema (unknown keys, input types, the conda file)."""
    from azure.ai.ml import load_job
    from azure.ai.ml.exceptions import ValidationException
    from marshmallow import ValidationError

    try:
        return load_job(io.StringIO(yaml.safe_dump(dict(spec), sort_keys=False)), relative_origin=str(path))
    except (ValidationError, ValidationException) as error:
        raise UserError(f"{path} fails Azure ML's job schema: {_schema_errors(error)}") from error


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
    """The job file with every option applied and checked: (spec, azure-ai-ml job)."""
    path = Path(args.file)
    spec = apply_sets(load_spec(path), args.set)
    if args.synthetic:
        spec = use_synthetic(spec)
    if args.overrides or args.multirun:
        spec = add_overrides(spec, args.overrides, multirun=args.multirun)
    spec, notes = sync_distribution(spec)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    job = to_job(spec, path)
    problems = check(spec, path.parent)
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems))
    return spec, job


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
    s.add_argument("--file", default=DEFAULT_FILE, help=f"job file (default {DEFAULT_FILE}; DDP: azure_job_ddp.yml)")
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
