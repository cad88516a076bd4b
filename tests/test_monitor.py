"""Batch monitoring CLI: stable on fresh files from the same generator, drifted (exit 1) on shifted ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from loan_default.batch import monitor as monitor_cli
from loan_default.batch import score as score_cli
from loan_default.core.bundle import MANIFEST, MONITORING
from loan_default.freddie.loans import load_loan_table
from loan_default.synthetic.generate import generate

LOANS, SEED = 2_000, 21  # the demo bundle (conftest) is trained on 1,500 loans of seed 3, default generator settings


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    fresh, shifted = tmp_path_factory.mktemp("fresh"), tmp_path_factory.mktemp("shifted")
    generate(fresh, LOANS, SEED)
    generate(shifted, LOANS, SEED, shift="credit_score=-60,orig_rate=+1.5")
    return {"fresh": fresh, "shifted": shifted}


def run(capsys, *argv) -> tuple[int, dict, str]:
    status = monitor_cli.main([str(a) for a in argv])
    out = capsys.readouterr().out
    return status, json.loads(out.strip().splitlines()[-1]), out


@pytest.fixture(scope="module")
def fresh_run(folders, bundle_path, tmp_path_factory) -> tuple[int, dict, Path]:
    out = tmp_path_factory.mktemp("fresh-report")
    status = monitor_cli.main([str(folders["fresh"]), "--bundle", str(bundle_path), "--out", str(out),
                               "--performance", str(folders["fresh"])])  # fmt: skip
    return status, json.loads((out / "drift.json").read_text()), out


def test_fresh_files_from_the_same_generator_are_stable(fresh_run) -> None:
    status, result, out = fresh_run
    assert status == 0 and result["status"] == "stable" and result["fields_red"] == []
    assert result["psi_score"] < 0.25 and result["loans_read"] == LOANS
    assert result["scored"] + result["rejected"] == LOANS
    assert {p.name for p in out.iterdir()} == {"drift.json", "drift.md", "drift.html"}
    html = (out / "drift.html").read_text()
    assert "STABLE" in html and "credit_score" in html and "<script" not in html
    assert "| credit_score |" in (out / "drift.md").read_text()


def test_shifted_credit_scores_and_rates_exit_1_naming_the_fields(folders, bundle_path, tmp_path, capsys) -> None:
    status, last, out = run(capsys, folders["shifted"], "--bundle", bundle_path, "--out", tmp_path)
    assert status == 1 and last["status"] == "drifted"
    assert {"credit_score", "orig_rate"} <= set(last["fields_red"]), last
    assert "dti" not in last["fields_red"] and "ltv" not in last["fields_red"]
    assert "credit_score" in out.splitlines()[-2]  # the human line names them too
    result = json.loads((tmp_path / "drift.json").read_text())
    assert result["csi"]["credit_score"]["psi"] > 0.25
    assert set(last) >= {"psi_score", "fields_red", "status"}


def test_backtest_agrees_with_the_labels_and_sklearn(fresh_run, folders, bundle_path, tmp_path) -> None:
    _, result, _ = fresh_run
    # Independent path: the batch scoring CLI's CSV joined with the labelled loan table.
    assert score_cli.main([str(folders["fresh"]), "--bundle", str(bundle_path), "--out", str(tmp_path / "s.csv")]) == 0
    scores = pd.read_csv(tmp_path / "s.csv", dtype={"loan_id": str})
    table, _ = load_loan_table(folder=folders["fresh"])
    joined = scores.merge(table[["loan_id", "default", "vintage_year"]], on="loan_id")
    rows = {r["vintage"]: r for r in result["backtest"]["by_vintage"]}
    assert rows["all"]["loans"] == len(joined) and rows["all"]["defaults"] == joined["default"].sum()
    assert rows["all"]["auroc"] == pytest.approx(roc_auc_score(joined["default"], joined["default_probability"]))
    for year, part in joined.groupby("vintage_year"):
        row = rows[str(year)]
        assert row["observed_rate"] == pytest.approx(part["default"].mean())
        assert row["predicted_rate"] == pytest.approx(part["default_probability"].mean(), abs=1e-6)


def test_a_scores_file_gives_the_same_score_psi(fresh_run, folders, bundle_path, tmp_path, capsys) -> None:
    _, from_files, _ = fresh_run
    score_cli.main([str(folders["fresh"]), "--bundle", str(bundle_path), "--out", str(tmp_path / "s.csv")])
    capsys.readouterr()
    status, last, _ = run(capsys, tmp_path / "s.csv", "--bundle", bundle_path, "--out", tmp_path / "r")
    assert status == 0 and last["fields_red"] == []
    assert last["psi_score"] == pytest.approx(from_files["psi_score"], abs=1e-6)
    assert json.loads((tmp_path / "r" / "drift.json").read_text())["csi"] == {}


def test_cannot_run_exits_2_with_the_reason(bundle_path, folders, tmp_path, capsys) -> None:
    status, last, _ = run(capsys, tmp_path / "nowhere", "--bundle", bundle_path, "--out", tmp_path / "r")
    assert status == 2 and last["status"] == "error" and "nowhere" in capsys.readouterr().err + last["error"]
    bad = tmp_path / "bad.csv"
    bad.write_text("loan_id,default_probability\nA,0.1\nB,1.7\n")
    status, last, _ = run(capsys, bad, "--bundle", bundle_path, "--out", tmp_path / "r")
    assert status == 2 and "line 3" in last["error"]
    # A bundle from before monitoring.json: it still loads, but there is nothing to compare with.
    old = tmp_path / "old-bundle"
    shutil.copytree(bundle_path, old)
    (old / MONITORING).unlink()
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["files"][MONITORING]
    (old / MANIFEST).write_text(json.dumps(manifest))
    status, last, _ = run(capsys, folders["fresh"], "--bundle", old, "--out", tmp_path / "r")
    assert status == 2 and "no monitoring reference" in last["error"]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_scoring_in_chunks_gives_the_same_scores(folders, bundle_path) -> None:
    from loan_default.core.loading import open_scorer

    scorer = open_scorer(bundle_path)
    frame, whole, counts = monitor_cli.read_and_score(scorer, folders["fresh"])
    _, parts, counts_in_parts = monitor_cli.read_and_score(scorer, folders["fresh"], chunk_rows=333)
    pd.testing.assert_frame_equal(whole, parts, check_exact=False, atol=1e-7)
    assert counts == counts_in_parts and len(frame) == LOANS
    assert set(frame.columns) == {"loan_id", *scorer.bundle.monitoring.fields} & set(frame.columns)
