"""Cross-validation mode: folds, out-of-fold predictions, the fold-ensemble bundle, its report, its config checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_train_cfg
from omegaconf import OmegaConf, open_dict
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from loan_default.core.bundle import load_bundle
from loan_default.core.ensemble import FoldEnsemble, build_network
from loan_default.core.explain import ShapExplainer
from loan_default.core.network import LoanNet
from loan_default.training.cv import cv_folds, fold_rows
from loan_default.training.evaluation.cv_summary import FoldResult, out_of_fold
from loan_default.training.settings import ConfigError, validate_settings

FOLDS = 3


# -- folds and out-of-fold placement -------------------------------------------------------------------------------
def test_folds_are_disjoint_stratified_and_cover_the_rows():
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(10_000, 3_001, replace=False))
    y = (rng.random(len(rows)) < 0.07).astype(int)
    folds = fold_rows(rows, y, 5, seed=1)
    together = np.concatenate(folds)
    assert len(together) == len(set(together)) == len(rows)  # disjoint, and every row once
    np.testing.assert_array_equal(np.sort(together), rows)
    position = {r: i for i, r in enumerate(rows)}
    for fold in folds:
        defaults = y[[position[r] for r in fold]].sum()
        assert abs(defaults - y.sum() / 5) <= 1  # stratified: each fold holds a fifth of the defaults, +-1
        assert abs(len(fold) - len(rows) / 5) <= 1
    again = fold_rows(rows, y, 5, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))  # the seed fixes the folds
    assert not all(np.array_equal(a, b) for a, b in zip(folds, fold_rows(rows, y, 5, seed=2), strict=True))


def _fold(k: int, rows: np.ndarray) -> FoldResult:
    return FoldResult(fold=k, val_rows=rows, ann_val_proba=rows / 100, best_epoch=0, seconds=0.0, val_defaults=0)


def test_out_of_fold_puts_each_prediction_at_its_row_and_refuses_gaps_or_overlaps():
    rows = np.array([2, 3, 5, 7, 11, 13])
    folds = [_fold(1, np.array([3, 11])), _fold(2, np.array([2, 7, 13])), _fold(3, np.array([5]))]
    oof = out_of_fold(rows, folds, [f.ann_val_proba for f in folds])
    np.testing.assert_allclose(oof, rows / 100)
    with pytest.raises(ValueError, match="not once"):
        out_of_fold(rows, folds[:2], [f.ann_val_proba for f in folds[:2]])  # row 5 never predicted
    overlap = [*folds, _fold(4, np.array([7]))]
    with pytest.raises(ValueError, match="not once"):
        out_of_fold(rows, overlap, [f.ann_val_proba for f in overlap])
    with pytest.raises(ValueError, match="outside"):
        out_of_fold(rows, [_fold(1, np.array([4]))], [np.array([0.1])])


# -- settings ------------------------------------------------------------------------------------------------------
def test_misspelt_or_bad_cv_keys_fail_naming_the_key(tiny_root, tmp_path):
    cfg = compose_train_cfg(tiny_root, tmp_path, ["+cv.fold=5"])
    with pytest.raises(ConfigError, match=r"cv\.fold: unknown key \(known: auto_folds, auto_max_rows, folds\)"):
        validate_settings(cfg)
    for bad in ("cv.folds=1", "cv.folds=many"):
        with pytest.raises(ConfigError, match=r"cv\.folds"):
            validate_settings(compose_train_cfg(tiny_root, tmp_path, [bad]))
    validate_settings(compose_train_cfg(tiny_root, tmp_path, ["cv.folds=auto"]))


def test_cv_folds_follows_the_setting_and_the_data_size(tiny_root, tmp_path):
    summary = {"train": {"rows": 1400}, "val": {"rows": 300}}
    cfg = compose_train_cfg(tiny_root, tmp_path)
    assert cv_folds(cfg, summary) is None  # off by default in conf/train.yaml
    with open_dict(cfg):
        cfg.cv = OmegaConf.create({"folds": 4, "auto_max_rows": 0, "auto_folds": 5})
    assert cv_folds(cfg, summary) == 4
    with open_dict(cfg):
        cfg.cv.folds, cfg.cv.auto_max_rows = "auto", 1700
    assert cv_folds(cfg, summary) is None  # 1,700 non-test rows are not fewer than 1,700
    with open_dict(cfg):
        cfg.cv.auto_max_rows = 1701
    assert cv_folds(cfg, summary) == 5
    with open_dict(cfg):
        cfg.data.split.method = "out_of_time"
    assert cv_folds(cfg, summary) is None  # auto stays off under an out-of-time split ...
    with open_dict(cfg):
        cfg.cv.folds = 3
    with pytest.raises(ConfigError, match="out-of-time"):  # ... and an explicit K is refused
        cv_folds(cfg, summary)


# -- the ensemble network --------------------------------------------------------------------------------------------
def _trained_nets(k: int, wide: bool, x: torch.Tensor, c: torch.Tensor) -> list[LoanNet]:
    """K small nets with knots placed, non-trivial batch-norm statistics and random slopes (no training needed)."""
    nets = []
    for i in range(k):
        torch.manual_seed(i)
        net = LoanNet(x.shape[1], [3, 7], hidden_sizes=(16, 8), wide=wide)
        net.fit_numeric_bins(x)
        net.train()
        with torch.no_grad():
            net(x * (1 + i) + i, c)  # moves the running statistics away from (0, 1)
            net.bin_weight.normal_()
            if wide:
                net.head.mlp[-1].weight.normal_()
        nets.append(net.eval())
    return nets


@pytest.mark.parametrize("wide", [False, True])
def test_ensemble_logit_is_the_mean_of_the_fold_logits_and_shap_adds_up_to_it(wide):
    torch.manual_seed(0)
    x, c = torch.randn(200, 5), torch.randint(0, 3, (200, 2))
    nets = _trained_nets(3, wide, x, c)
    ensemble = FoldEnsemble(nets).eval()
    with torch.no_grad():
        expected = np.mean([net(x, c)[:, 0].numpy() for net in nets], axis=0)
        np.testing.assert_allclose(ensemble(x, c)[:, 0].numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(ensemble.head(ensemble.embed(x, c))[:, 0].numpy(), expected, atol=1e-5)
    explainer = ShapExplainer(ensemble, x[:40], c[:40], [f"f{i}" for i in range(7)], max_background=40)
    values, base = explainer.explain(x[:10], c[:10])
    assert values.shape == (10, 7)
    np.testing.assert_allclose(base + values.sum(axis=1), expected[:10], atol=1e-5)
    rebuilt = build_network(json.loads(json.dumps(ensemble.config())))
    rebuilt.load_state_dict(ensemble.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt.eval()(x, c)[:, 0].numpy(), expected, atol=1e-6)
    assert isinstance(build_network(nets[0].config()), LoanNet)  # single-model bundles rebuild as before


def test_ensemble_refuses_one_net_or_unlike_nets():
    with pytest.raises(ValueError, match="at least 2"):
        FoldEnsemble([LoanNet(3, [2])])
    with pytest.raises(ValueError, match="same shape"):
        FoldEnsemble([LoanNet(3, [2]), LoanNet(4, [2])])


# -- one real cross-validated run ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cv_run(tiny_root, tmp_path_factory):
    """train(cfg) with cv.folds=3 on the session's 4,000 synthetic loans: SHAP on a few rows, plots off."""
    from loan_default.training.train import train

    out = tmp_path_factory.mktemp("cv-run")
    overrides = [f"cv.folds={FOLDS}", "evaluation.plots=false", "evaluation.shap_rows=20",
                 "evaluation.shap_background=20", "logger=none"]  # fmt: skip
    metrics, objects = train(compose_train_cfg(tiny_root, out, overrides))
    return metrics, objects, out


def test_folds_cover_the_non_test_rows_and_leave_test_alone(cv_run):
    _, objects, _ = cv_run
    dm, folds = objects["datamodule"], objects["folds"]
    test = dm.split_index["test"]
    non_test = np.setdiff1d(np.arange(len(dm.table)), test)
    held = np.concatenate([f["val_rows"] for f in folds])
    np.testing.assert_array_equal(np.sort(held), non_test)  # every non-test row held out exactly once
    assert len(held) == len(set(held))
    y = dm.table["default"].to_numpy()
    for f in folds:
        assert not set(f["train_rows"]) & set(f["val_rows"])  # no fold model trained on what it predicts
        np.testing.assert_array_equal(np.union1d(f["train_rows"], f["val_rows"]), non_test)
        assert not set(f["train_rows"]) & set(test)
        assert abs(y[f["val_rows"]].mean() - y[non_test].mean()) < 0.01  # stratified


def test_out_of_fold_predictions_come_from_the_model_that_did_not_train_on_the_row(cv_run):
    _, objects, out = cv_run
    dm, folds = objects["datamodule"], objects["folds"]
    bundle = load_bundle(out / "bundle")
    oof_auroc = json.loads((out / "metrics.json").read_text())["cv"]["oof_auroc"]["ann"]
    rows = dm.split_index["val"]  # every non-test row, in table order
    y = dm.table["default"].to_numpy()
    oof = np.empty(len(rows))
    for f in folds:  # recompute each fold model's predictions of its own held-out rows from the raw table
        x_num, x_cat = bundle.preprocessor.transform(dm.table.iloc[f["val_rows"]])
        with torch.no_grad():
            logits = f["net"](torch.from_numpy(x_num), torch.from_numpy(x_cat))[:, 0].double().numpy()
        oof[np.searchsorted(rows, f["val_rows"])] = expit(logits + f["offset"])
    assert roc_auc_score(y[rows], oof) == pytest.approx(oof_auroc, abs=1e-9)


def test_bundle_scores_are_the_mean_of_the_fold_logits(cv_run):
    _, objects, out = cv_run
    dm, folds = objects["datamodule"], objects["folds"]
    bundle = load_bundle(out / "bundle")
    assert isinstance(bundle.net, FoldEnsemble) and len(bundle.net.nets) == FOLDS
    frame = dm.frame("test")
    x_num, x_cat = bundle.preprocessor.transform(frame)
    with torch.no_grad():  # each fold model with its own offset, averaged on the logit scale
        fold_logits = [
            f["net"](torch.from_numpy(x_num), torch.from_numpy(x_cat))[:, 0].double().numpy() + f["offset"]
            for f in folds
        ]
    np.testing.assert_allclose(bundle.predict_proba(frame), expit(np.mean(fold_logits, axis=0)), rtol=0, atol=1e-6)


def test_metrics_and_reports_give_each_fold(cv_run):
    metrics, _, out = cv_run
    saved = json.loads((out / "metrics.json").read_text())
    cv = saved["cv"]
    assert cv["folds"] == FOLDS and [f["fold"] for f in cv["per_fold"]] == [1, 2, 3]
    for name in ("ann", "logistic", "lightgbm"):
        values = [f[f"{name}_auroc"] for f in cv["per_fold"]]
        assert all(0.5 < v < 1 for v in values)
        assert cv["summary"][f"{name}_auroc"]["mean"] == pytest.approx(np.mean(values))
        assert cv["summary"][f"{name}_auroc"]["sd"] == pytest.approx(np.std(values, ddof=1))
    assert [saved["splits"][f"fold {f['fold']}"]["rows"] for f in cv["per_fold"]] == [f["rows"] for f in cv["per_fold"]]
    assert saved["val_auroc"] == pytest.approx(cv["oof_auroc"]["ann"])  # the threshold's data: out of fold
    assert saved["threshold_method"].startswith("recall_target=")
    assert metrics["val/auroc_best"] == pytest.approx(cv["oof_auroc"]["ann"])
    assert saved["shap_top_features"]  # SHAP ran on the ensemble
    report = (out / "report.md").read_text()
    assert f"## Cross-validation ({FOLDS} folds)" in report and "out-of-fold predictions of the 3 fold models" in report
    html = (out / "report.html").read_text()
    assert f"Cross-validation ({FOLDS} folds)" in html and "mean ± sd" in html
    assert (out / "folds" / "fold_3" / "checkpoints").is_dir()


def test_serving_and_batch_scoring_load_the_ensemble_bundle(cv_run, tmp_path):
    from fastapi.testclient import TestClient

    from loan_default.batch import score
    from loan_default.serving.app import create_app
    from loan_default.serving.schemas import EXAMPLE_LOAN
    from loan_default.serving.settings import ServeSettings
    from loan_default.synthetic.generate import generate

    _, _, out = cv_run
    bundle = load_bundle(out / "bundle")
    settings = ServeSettings(bundle=out / "bundle", api_key_env="LOAN_DEFAULT_TEST_NO_KEY")
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", json=EXAMPLE_LOAN)
        assert answer.status_code == 200, answer.text
        expected = bundle.predict_proba([EXAMPLE_LOAN])[0]
        assert answer.json()["predictions"][0]["default_probability"] == pytest.approx(expected, abs=1e-6)
        explained = client.post("/explain", json=EXAMPLE_LOAN)
        assert explained.status_code == 200, explained.text
    files = tmp_path / "orig"
    generate(files, 200, seed=9)
    scores = tmp_path / "scores.csv"
    assert score.main([str(files), "--bundle", str(out / "bundle"), "--out", str(scores)]) == 0
    assert len(scores.read_text().splitlines()) > 100


def test_a_single_model_bundle_still_loads(bundle_path: Path):
    assert isinstance(load_bundle(bundle_path).net, LoanNet)
