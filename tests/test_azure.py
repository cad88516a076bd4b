"""Azure ML jobs, offline: schema, placeholders, Hydra overrides against conf/, conda file vs setup.cfg, the submit and
download CLI with Azure mocked. Slow: 2-process CPU DDP training end to end, and the job's command run through bash
with Azure's MLflow variables."""

from __future__ import annotations

import argparse
import ast
import configparser
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("azure.ai.ml")
pytest.importorskip("azure.identity")

from azure.ai.ml import load_job  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402
from train_subprocess import run_train_py  # noqa: E402

from loan_default.azure import command as aml_command  # noqa: E402
from loan_default.azure import jobs as aml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JOB_FILES = ["azure_job.yml", "azure_job_ddp.yml"]
BINDING = re.compile(r"\$\{\{\s*(inputs|outputs)\.(\w+)\s*\}\}")


@pytest.fixture(autouse=True)
def fresh_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def spec_of(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def train_overrides(command: str, inputs: dict, outputs: dict) -> list[str]:
    """The test's own reading of the command: substitute placeholders, split like the shell, keep what follows
    train.py. Data inputs and outputs become mount-like paths; literal inputs their value."""

    def value(match: re.Match) -> str:
        kind, name = match.groups()
        if kind == "outputs":
            return f"/mnt/out/{name}"
        given = inputs[name]
        return f"/mnt/in/{name}" if isinstance(given, dict) else str(given)

    tokens = shlex.split(BINDING.sub(value, command))
    return tokens[tokens.index("train.py") + 1 :]


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = aml.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------------------------
# The job files
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", JOB_FILES)
def test_load_job_accepts_the_job_file(name: str) -> None:
    job = load_job(ROOT / name)
    assert job.type == "command"
    assert f"azureml:{job.compute}" == spec_of(name)["compute"]
    assert job.environment.conda_file is not None and job.environment.image
    assert job.environment_variables["HYDRA_FULL_ERROR"] == "1"
    assert job.outputs["run"].type == "uri_folder"


def test_ddp_file_distributes_with_pytorch_over_several_nodes() -> None:
    job = load_job(ROOT / "azure_job_ddp.yml")
    assert job.distribution.type == "pytorch"
    assert job.resources.instance_count >= 2


@pytest.mark.parametrize("name", JOB_FILES)
def test_every_placeholder_is_declared_and_every_input_used(name: str) -> None:
    spec = spec_of(name)
    used = BINDING.findall(spec["command"])
    assert used, "the command takes nothing from inputs/outputs"
    for kind, key in used:
        assert key in spec[kind], f"${{{{{kind}.{key}}}}} is not declared"
    assert {key for kind, key in used if kind == "inputs"} == set(spec["inputs"])
    assert "${{" not in BINDING.sub("", spec["command"]), "a placeholder that is neither inputs.x nor outputs.y"
    assert aml.check_bindings(spec) == []


def test_check_bindings_reports_undeclared_and_unused() -> None:
    spec = {"command": "python train.py a=${{inputs.a}} b=${{inputs.b}} c=${{outputs.c}} d=${{input.d}}",
            "inputs": {"a": 1, "unused": 2}, "outputs": {}}  # fmt: skip
    problems = " | ".join(aml.check_bindings(spec))
    assert "inputs.b" in problems and "outputs.c" in problems and "input.d" in problems
    assert "'unused'" in problems and "'a'" not in problems


@pytest.mark.parametrize("name", JOB_FILES)
def test_command_overrides_compose_against_conf(name: str) -> None:
    spec = spec_of(name)
    cfg = compose_train(train_overrides(spec["command"], spec["inputs"], spec["outputs"]))
    assert cfg.data.source == "freddie"
    assert cfg.data.folder == "/mnt/in/data_folder"
    assert cfg.trainer.max_epochs == int(spec["inputs"]["max_epochs"])
    assert (
        list(cfg.model.hidden_sizes) == yaml.safe_load((ROOT / "conf/model/ann_small.yaml").read_text())["hidden_sizes"]
    )
    assert cfg.logger.mlflow._target_ == "lightning.pytorch.loggers.MLFlowLogger"
    assert OmegaConf.to_container(cfg.logger.mlflow)["run_id"] == "${oc.env:MLFLOW_RUN_ID,null}"  # this job's run
    assert cfg.hydra.run.dir == "/mnt/out/run"
    if "distribution" in spec:
        assert cfg.trainer.strategy == "ddp"
        assert cfg.trainer.num_nodes == spec["resources"]["instance_count"]
        assert cfg.trainer.devices == spec["distribution"]["process_count_per_instance"]
    else:
        assert cfg.trainer.get("strategy", "auto") == "auto" and cfg.trainer.accelerator == "auto"


@pytest.mark.parametrize(
    "group, option",
    [("model", p.stem) for p in sorted((ROOT / "conf/model").glob("*.yaml"))]
    + [("experiment", p.stem) for p in sorted((ROOT / "conf/experiment").glob("*.yaml"))],
)
def test_every_model_and_experiment_works_as_an_input(group: str, option: str) -> None:
    spec = spec_of("azure_job.yml")
    inputs = {**spec["inputs"], group: option}
    cfg = compose_train(train_overrides(spec["command"], inputs, spec["outputs"]))
    assert cfg.data.source == "freddie", "an experiment must not switch the job back to synthetic data"
    assert cfg.trainer.max_epochs == int(spec["inputs"]["max_epochs"])


def test_conda_file_agrees_with_setup_cfg() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    lines = setup["options"]["install_requires"].splitlines() + setup["options.extras_require"]["azure"].splitlines()
    wanted = {
        canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, filter(None, map(str.strip, lines)))
    }

    conda = yaml.safe_load((ROOT / "azure/environment.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    got = {canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, pip)}
    extra = set(got) - set(wanted)
    assert extra <= {canonicalize_name(p) for p in aml.JOB_ONLY_PACKAGES}, f"not in setup.cfg: {extra}"
    assert {name: got.get(name) for name in wanted} == wanted
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert Requirement(f"python{setup['options']['python_requires']}").specifier.contains(python.split("=")[1] + ".0")


def test_amlignore_repeats_gitignore_and_drops_the_repo_and_venv() -> None:
    def patterns(path: Path) -> set[str]:
        return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}

    aml_ignore = patterns(ROOT / ".amlignore")
    assert patterns(ROOT / ".gitignore") <= aml_ignore
    assert {".git/", ".venv/", "/data/", "/logs/"} <= aml_ignore


# ---------------------------------------------------------------------------------------------------------------------
# submit: dry run, --set, variants, refusals
# ---------------------------------------------------------------------------------------------------------------------
def test_dry_run_prints_the_job_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MSI_", "IDENTITY_"))}
    env["HOME"] = str(tmp_path)  # no Azure CLI login either
    result = subprocess.run(
        [sys.executable, "-m", "loan_default.azure", "submit", "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["command"] == spec_of("azure_job.yml")["command"]
    assert printed["inputs"]["data_folder"]["path"] == "azureml:freddie-mac@latest"
    assert "nothing submitted" in result.stderr


def test_set_overrides_reach_the_printed_job(capsys) -> None:
    code, out, err = run_cli(
        "submit", "--file", str(ROOT / "azure_job.yml"), "--dry-run",
        "--set", "compute=azureml:gpu-cluster", "--set", "inputs.max_epochs=3",
        "--set", "inputs.data_folder.path=azureml:freddie-mac:2", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["compute"] == "azureml:gpu-cluster"
    assert int(printed["inputs"]["max_epochs"]) == 3
    assert printed["inputs"]["data_folder"] == {
        "type": "uri_folder",
        "path": "azureml:freddie-mac:2",
        "mode": "ro_mount",
    }
    job = load_job(io.StringIO(yaml.safe_dump(printed)), relative_origin=str(ROOT / "azure_job.yml"))
    assert job.compute == "gpu-cluster"
    # What was printed is what the SDK builds from the file and the --set overrides.
    sdk = aml.to_job(ROOT / "azure_job.yml", aml.parse_sets(["compute=azureml:gpu-cluster", "inputs.max_epochs=3"]))
    assert (sdk.compute, sdk.command, sdk.inputs["max_epochs"]._data) == (job.compute, job.command, "3")


@pytest.mark.parametrize(
    "override, message",
    [
        ("inputs.model=ann_lrge", "model/ann_lrge"),
        ("inputs.experiment=hgh_recall", "experiment/hgh_recall"),
        ("inputs.data_folder.mode=ro_mnt", "inputs.data_folder.mode"),
        ("environment.conda_file=azure/missing.yml", "missing.yml"),
        ("bogus_field=1", "bogus_field"),
        ("resources.instance_count=2", "without distribution"),
        ("command=python train.py trainer.max_epoch=3 hydra.run.dir=${{outputs.run}}", "never uses"),
    ],
)
def test_typos_fail_offline_with_exit_code_2(override: str, message: str, capsys) -> None:
    code, out, err = run_cli("submit", "--file", str(ROOT / "azure_job.yml"), "--dry-run", "--set", override,
                             capsys=capsys)  # fmt: skip
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_hydra_key_typo_is_caught() -> None:
    spec = aml.with_params(spec_of("azure_job.yml"), aml.parse_sets(["command=python train.py trainer.max_epoch=3"]))
    spec["inputs"], spec["outputs"] = {}, {}
    assert "trainer.max_epoch" in " ".join(aml.check(spec, ROOT))


def test_ddp_counts_follow_resources_and_distribution(capsys) -> None:
    code, out, err = run_cli(
        "submit", "--file", str(ROOT / "azure_job_ddp.yml"), "--dry-run",
        "--set", "resources.instance_count=4", "--set", "distribution.process_count_per_instance=2", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    printed = yaml.safe_load(out)
    cfg = compose_train(train_overrides(printed["command"], printed["inputs"], printed["outputs"]))
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (4, 2)


def test_ddp_job_without_ddp_trainer_is_refused() -> None:
    spec = spec_of("azure_job_ddp.yml")
    spec["command"] = spec["command"].replace("trainer=ddp", "trainer=ddp trainer.strategy=auto")
    assert any("trainer=ddp" in p for p in aml.check(spec, ROOT))


def test_synthetic_variant_needs_no_data_asset() -> None:
    params = aml.use_synthetic(spec_of("azure_job.yml"))
    spec = aml.with_params(spec_of("azure_job.yml"), params)
    assert "data_folder" not in spec["inputs"] and "${{inputs.data_folder}}" not in spec["command"]
    assert aml.check(spec, ROOT) == []
    cfg = compose_train(train_overrides(spec["command"], spec["inputs"], spec["outputs"]))
    assert cfg.data.source == "synthetic" and cfg.hydra.run.dir == "/mnt/out/run"
    job = aml.to_job(ROOT / "azure_job.yml", params)
    assert "data_folder" not in job.inputs and job.command == spec["command"]


def test_multirun_variant_sweeps_into_the_output_and_checks_every_choice() -> None:
    base = spec_of("azure_job.yml")
    spec = aml.with_params(base, aml.add_overrides(base, ["outlier=none,suod"], multirun=True))
    tokens = shlex.split(spec["command"])
    assert tokens[:3] == ["python", "train.py", "-m"]
    assert "hydra.sweep.dir=${{outputs.run}}" in tokens and "outlier=none,suod" in tokens
    assert not any("mlflow.run_id" in t for t in tokens), "every trial would log into the job's one MLflow run"
    assert aml.check(spec, ROOT) == []
    bad = aml.with_params(base, aml.add_overrides(base, ["outlier=none,sod"], multirun=True))
    assert "outlier/sod" in " ".join(aml.check(bad, ROOT))


def test_command_edits_keep_untouched_words_verbatim() -> None:
    """Only the edited words change: quotes, `$VAR` and a shell tail after `&&` stay as the file wrote them."""
    command = (
        "cd $HOME && python train.py -m data=freddie 'experiment=${{inputs.e}}' "
        '"++logger.mlflow.run_id=${oc.env:X,null}" trainer.devices=1 && echo "done $X"'
    )
    parsed = aml_command.HydraCommand.parse(command)
    assert str(parsed) == command
    assert parsed.script == "train.py" and parsed.multirun
    assert parsed.values("logger.mlflow.run_id") == ["${oc.env:X,null}"]
    parsed.replace("trainer.devices", lambda w: aml_command.Word.quoted("trainer.devices=4"))
    parsed.append(["threshold.recall_target=0.9,0.95", "model.name=a b"])
    assert str(parsed) == command.replace("trainer.devices=1", "trainer.devices=4").replace(
        " && echo", " threshold.recall_target=0.9,0.95 'model.name=a b' && echo"
    )
    assert shlex.split(str(parsed))[-4] == "model.name=a b"
    with pytest.raises(aml_command.CommandError, match="unbalanced"):
        aml_command.HydraCommand.parse("python train.py 'data=freddie")


def test_ddp_notes_each_rewritten_count(capsys) -> None:
    spec = spec_of("azure_job_ddp.yml")
    params, notes = aml.sync_distribution(spec)
    assert params == [] and notes == [], "the file's own counts agree"
    spec = aml.with_params(spec, aml.parse_sets(["resources.instance_count=3"]))
    params, notes = aml.sync_distribution(spec)
    assert notes == ["trainer.num_nodes=2 -> 3 (follows the job's resources/distribution)"]
    assert "trainer.num_nodes=3" in shlex.split(params[0]["command"])


def test_set_below_a_reference_string_is_one_clear_line(capsys) -> None:
    code, out, err = run_cli("submit", "--file", str(ROOT / "azure_job.yml"), "--dry-run", "--set",
                             "compute.name=x", capsys=capsys)  # fmt: skip
    assert code == 2 and "compute.name" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------------------
# Data preparation on Spark and the pipeline (prep -> train)
# ---------------------------------------------------------------------------------------------------------------------
def spark_args(spec: dict) -> argparse.Namespace:
    """The Spark job's args as prep_spark.py's own parser reads them (placeholders filled like the job would)."""
    from loan_default.prep.options import spark_parser

    values = {f"outputs.{k}": f"abfss://out/{k}" for k in spec["outputs"]}
    values |= {f"inputs.{k}": f"abfss://in/{k}" if isinstance(v, dict) else str(v) for k, v in spec["inputs"].items()}
    return spark_parser().parse_args(shlex.split(aml_command.fill(spec["args"], values)))


def test_spark_job_runs_the_prep_entry_with_its_inputs_and_outputs() -> None:
    spec = spec_of("azure_prep_spark.yml")
    job = load_job(ROOT / "azure_prep_spark.yml")
    assert job.type == "spark" and job.entry.entry == "prep_spark.py"
    assert job.inputs["raw"].mode == "direct" and job.outputs["table"].type == "uri_folder"
    # The entry file is the package's Spark job: prep_spark.py imports and runs loan_default.prep.spark.main.
    tree = ast.parse((ROOT / job.entry.entry).read_text())
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("loan_default.prep.spark", "main") in imports
    args = spark_args(spec)
    assert (args.folder, args.out, args.overwrite) == ("abfss://in/raw", "abfss://out/table", True)
    assert args.horizon_months == str(spec["inputs"]["horizon_months"]) and args.on_bad_row == "raise"
    assert aml.check(spec, ROOT) == []


def test_pipeline_feeds_the_prepared_table_to_training() -> None:
    spec = spec_of("azure_pipeline.yml")
    job = load_job(ROOT / "azure_pipeline.yml")
    assert job.type == "pipeline" and set(job.jobs) == {"prep", "train"}
    prep, train = spec["jobs"]["prep"], spec["jobs"]["train"]
    assert prep["type"] == "spark" and prep["entry"] == spec_of("azure_prep_spark.yml")["entry"]
    assert train["inputs"]["table"]["path"] == "${{parent.jobs.prep.outputs.table}}"
    assert spark_args({**prep, "inputs": {"raw": {}, "horizon_months": 24}}).out == "abfss://out/table"
    inputs = {**train["inputs"], "model": "ann_small", "max_epochs": 3}
    cfg = compose_train(train_overrides(train["command"], inputs, train["outputs"]))
    assert cfg.data.source == "parquet" and cfg.data.path == "/mnt/in/table" and cfg.data.label is None
    assert cfg.hydra.run.dir == "/mnt/out/run"
    assert aml.check(spec, ROOT) == []


@pytest.mark.parametrize("name", ["azure_prep_spark.yml", "azure_pipeline.yml"])
def test_spark_and_pipeline_dry_runs(name: str, capsys) -> None:
    code, out, err = run_cli("submit", "--file", str(ROOT / name), "--dry-run", capsys=capsys)
    assert code == 0, err
    assert yaml.safe_load(out)["type"] == spec_of(name)["type"]


@pytest.mark.parametrize(
    "name, override, message",
    [
        (
            "azure_prep_spark.yml",
            "args=${{inputs.raw}} --out ${{outputs.table}} --horizon-days ${{inputs.horizon_months}}"
            " --on-bad-row ${{inputs.on_bad_row}}",
            "unrecognized arguments: --horizon-days",
        ),
        ("azure_prep_spark.yml", "entry.file=prep_sparks.py", "prep_sparks.py"),
        ("azure_prep_spark.yml", "inputs.raw.mode=drect", "inputs.raw.mode"),
        ("azure_pipeline.yml", "jobs.train.inputs.table.path=${{parent.jobs.prep.outputs.tabel}}", "'tabel'"),
        ("azure_pipeline.yml", "jobs.prep.inputs.raw=${{parent.inputs.rw}}", "parent.inputs.rw"),
        ("azure_pipeline.yml", "jobs.train.inputs.model=${{parent.inputs.horizon_months}}", "jobs.train: Hydra"),
        ("azure_pipeline.yml", "jobs.prep.args=${{inputs.raw}} --out ${{outputs.table}}", "'horizon_months'"),
    ],
)
def test_spark_and_pipeline_typos_fail_offline(name: str, override: str, message: str, capsys) -> None:
    code, out, err = run_cli("submit", "--file", str(ROOT / name), "--dry-run", "--set", override, capsys=capsys)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------------------
# submit / download against a mocked Azure
# ---------------------------------------------------------------------------------------------------------------------
class FakeCredential:
    fail = False

    def get_token(self, *scopes: str):
        from azure.core.exceptions import ClientAuthenticationError

        if self.fail:
            raise ClientAuthenticationError(
                "DefaultAzureCredential failed to retrieve a token from the included credentials.\n..."
            )
        return SimpleNamespace(token="t", expires_on=0)


class FakeJobs:
    status = "Completed"

    def __init__(self) -> None:
        self.submitted = []

    def create_or_update(self, job):
        self.submitted.append(job)
        return SimpleNamespace(name="quiet_lemon_123", studio_url="https://ml.azure.com/runs/quiet_lemon_123")

    def get(self, name: str):
        from azure.core.exceptions import ResourceNotFoundError

        if name != "quiet_lemon_123":
            raise ResourceNotFoundError("not found")
        return SimpleNamespace(name=name, status=self.status)

    def download(self, name: str, download_path: str, output_name: str | None, all: bool) -> None:
        bundle = Path(download_path) / "named-outputs" / output_name / "bundle"
        bundle.mkdir(parents=True)
        (bundle / "manifest.json").write_text("{}")


@pytest.fixture
def fake_azure(monkeypatch, tmp_path: Path):
    """Workspace from the environment, DefaultAzureCredential and MLClient replaced, cwd without config.json."""
    import azure.ai.ml
    import azure.identity

    clients = []

    class FakeMLClient:
        def __init__(self, credential, subscription_id, resource_group_name, workspace_name) -> None:
            self.workspace_name = workspace_name
            self.jobs = FakeJobs()
            clients.append(self)

    FakeCredential.fail = False
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", FakeCredential)
    monkeypatch.setattr(azure.ai.ml, "MLClient", FakeMLClient)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws")
    monkeypatch.chdir(tmp_path)
    return clients


def test_submit_sends_the_checked_job(fake_azure, capsys) -> None:
    code, out, err = run_cli("submit", "--file", str(ROOT / "azure_job.yml"), "--set", "inputs.max_epochs=3",
                             capsys=capsys)  # fmt: skip
    assert code == 0, err
    (job,) = fake_azure[0].jobs.submitted
    assert job.compute == "cpu-cluster" and job.experiment_name == "loan-default"
    assert "trainer.max_epochs=${{inputs.max_epochs}}" in job.command
    assert "quiet_lemon_123" in out and "download quiet_lemon_123" in out


def test_submit_without_credentials_is_one_clear_line(fake_azure, capsys) -> None:
    FakeCredential.fail = True
    code, out, err = run_cli("submit", "--file", str(ROOT / "azure_job.yml"), capsys=capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {aml.NO_CREDENTIALS}"]
    assert fake_azure == [], "no client may be built before the credentials work"


def test_submit_without_workspace_is_one_clear_line(fake_azure, monkeypatch, capsys) -> None:
    for var in aml.WORKSPACE_ENV.values():
        monkeypatch.delenv(var)
    code, out, err = run_cli("submit", "--file", str(ROOT / "azure_job.yml"), capsys=capsys)
    assert code == 2 and err.strip().splitlines() == [f"error: {aml.NO_WORKSPACE}"]
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    code, out, err = run_cli("submit", "--file", str(ROOT / "azure_job.yml"), capsys=capsys)
    assert code == 2 and "AZURE_SUBSCRIPTION_ID" in err and "AZUREML_WORKSPACE_NAME" in err


def test_workspace_from_config_json_in_a_parent_folder(tmp_path: Path) -> None:
    config = {"subscription_id": "sub", "resource_group": "rg", "workspace_name": "ws"}
    (tmp_path / ".azureml").mkdir()
    (tmp_path / ".azureml" / "config.json").write_text(json.dumps(config))
    (tmp_path / "deep" / "er").mkdir(parents=True)
    assert aml.workspace({}, tmp_path / "deep" / "er") == {
        "subscription_id": "sub", "resource_group_name": "rg", "workspace_name": "ws"
    }  # fmt: skip
    (tmp_path / "deep" / "config.json").write_text('{"subscription_id": "sub"}')
    with pytest.raises(aml.UserError, match="resource_group"):
        aml.workspace({}, tmp_path / "deep" / "er")


def test_download_fetches_the_run_folder(fake_azure, tmp_path: Path, capsys) -> None:
    code, out, err = run_cli("download", "quiet_lemon_123", "--out", str(tmp_path / "dl"), capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "dl/named-outputs/run/bundle/manifest.json").is_file()
    assert f"Model bundle: {tmp_path / 'dl/named-outputs/run/bundle'}" in out


@pytest.mark.parametrize("name, status, message", [("quiet_lemon_123", "Running", "is Running"),
                                                   ("no_such_job", "Completed", "No job named")])  # fmt: skip
def test_download_refuses_unfinished_or_unknown_jobs(fake_azure, monkeypatch, capsys, name, status, message) -> None:
    monkeypatch.setattr(FakeJobs, "status", status)
    code, out, err = run_cli("download", name, capsys=capsys)
    assert code == 2 and message in err


# ---------------------------------------------------------------------------------------------------------------------
# Lightning DDP on CPU, end to end (what azure_job_ddp.yml runs on GPUs)
# ---------------------------------------------------------------------------------------------------------------------
EPOCHS = 4
SMALL_RUN = [
    "data=freddie",  # as the Azure jobs run it, on files the synthetic generator writes in Freddie Mac's format
    "~callbacks.early_stopping",  # both runs train the same number of epochs, so their step counts compare
    f"trainer.max_epochs={EPOCHS}",
    "evaluation.baselines=false",
    "evaluation.shap=false",
    "evaluation.plots=false",
    "extras.print_config=false",
]


def train_run(root: Path, name: str, *overrides: str) -> tuple[dict, int]:
    """Run train.py in a subprocess (DDP re-launches the script); returns (metrics.json, optimizer steps taken)."""
    run = run_train_py(root, name, SMALL_RUN, *overrides, timeout=1200)
    assert (run / "report.md").is_file() and (run / "bundle").is_dir()
    # The CSV logger's step column is the global step (last.ckpt is only rewritten when val/auroc improves).
    with open(run / "csv" / "metrics.csv") as rows:
        steps = max(int(row["step"]) for row in csv.DictReader(rows) if row["step"])
    return json.loads((run / "metrics.json").read_text()), steps


@pytest.mark.slow
def test_two_process_cpu_ddp_matches_single_process(tmp_path: Path) -> None:
    generate = [sys.executable, "-m", "loan_default.synthetic", "--loans", "20000", "--seed", "2024"]
    subprocess.run([*generate, "--out", str(tmp_path / "freddie")], cwd=ROOT, check=True, capture_output=True)
    single, single_steps = train_run(tmp_path, "single")
    ddp, ddp_steps = train_run(tmp_path, "ddp", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu")
    # Each rank takes its own half of every epoch's balanced batches: half the optimizer steps, not the same ones twice.
    assert abs(ddp_steps - single_steps / 2) <= EPOCHS, (single_steps, ddp_steps)
    assert single["test_auroc"] > 0.65 and ddp["test_auroc"] > 0.65
    assert abs(ddp["test_auroc"] - single["test_auroc"]) < 0.03, (single["test_auroc"], ddp["test_auroc"])


@pytest.mark.slow
def test_job_command_runs_through_bash_and_logs_into_the_jobs_mlflow_run(tmp_path: Path, monkeypatch) -> None:
    """azure_job.yml's command as Azure ML runs it: placeholders filled, bash, MLFLOW_TRACKING_URI / MLFLOW_RUN_ID set."""
    mlflow = pytest.importorskip("mlflow")
    generate = [sys.executable, "-m", "loan_default.synthetic", "--loans", "4000", "--seed", "7"]
    subprocess.run([*generate, "--out", str(tmp_path / "freddie")], cwd=ROOT, check=True, capture_output=True)
    spec = spec_of("azure_job.yml")
    values = {"inputs.data_folder": str(tmp_path / "freddie"), "outputs.run": str(tmp_path / "run")}
    values |= {f"inputs.{k}": str(v) for k, v in spec["inputs"].items() if not isinstance(v, dict)}
    values["inputs.max_epochs"] = "1"
    command = aml.fill(spec["command"], values) + " evaluation.baselines=false evaluation.shap=false"

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses a local file store unless asked
    uri = f"file:{tmp_path / 'mlruns'}"
    client = mlflow.MlflowClient(uri)
    job_run = client.create_run(client.create_experiment("loan-default"))  # the run Azure ML makes for the job
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": job_run.info.run_id, "CI": "true",
           "LOAN_DEFAULT_ROOT": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]

    assert {"report.md", "metrics.json", "bundle"} <= {p.name for p in (tmp_path / "run").iterdir()}
    metrics = client.get_run(job_run.info.run_id).data.metrics
    assert {"val/auroc", "test/auroc"} <= set(metrics)
    experiments = client.search_experiments()
    assert sum(len(client.search_runs([e.experiment_id])) for e in experiments) == 1, "logged into a new run"
