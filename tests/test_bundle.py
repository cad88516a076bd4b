"""The bundle on disk: monitoring reference, backward reading, atomic replacement, permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from demo_bundle import demo_loans

from loan_default.common import atomic as atomic_module
from loan_default.core import bundle as bundle_module
from loan_default.core.bundle import MANIFEST, MONITORING, BundleError, load_bundle, write_bundle
from loan_default.core.drift import Reference, build_reference, compare
from loan_default.core.network import LoanNet
from loan_default.core.preprocess import Preprocessor
from loan_default.training.outliers import OutlierFilter


@pytest.fixture(scope="module")
def parts() -> dict:
    """Everything write_bundle needs, fitted once on 600 synthetic loans (no training: the weights are the init)."""
    loans = demo_loans(600, seed=4)
    preprocessor = Preprocessor(min_frequency=10).fit(loans)
    x_num, x_cat = preprocessor.transform(loans)
    outlier = OutlierFilter(method="none")
    outlier.fit(preprocessor.outlier_matrix(loans), loans["default"].to_numpy())
    torch.manual_seed(0)
    n_numeric = len(preprocessor.numeric_names)
    net = LoanNet(n_numeric, preprocessor.cat_cardinalities, hidden_sizes=(8,))
    kwargs = {"n_numeric": n_numeric, "cat_cardinalities": list(preprocessor.cat_cardinalities),
              "embedding_dims": list(net.embedding_dims), "hidden_sizes": [8], "dropout": 0.1,
              "batch_norm": True}  # fmt: skip
    scores = np.random.default_rng(0).random(len(loans))
    return {
        "loans": loans,
        "args": dict(
            net=net,
            net_kwargs=kwargs,
            preprocessor=preprocessor,
            outlier_filter=outlier,
            logit_offset=0.0,
            decision={"threshold": 0.5, "method": "test"},
            background=(x_num[:10], x_cat[:10]),
            config_yaml="test: true\n",
            metrics={"run": 1},
        ),  # fmt: skip
        "reference": build_reference(scores, loans),
    }


def test_monitoring_reference_round_trips_and_is_checksummed(parts, tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "bundle", **parts["args"], monitoring=parts["reference"])
    loaded = load_bundle(path)
    assert loaded.monitoring == parts["reference"]
    assert MONITORING in json.loads((path / MANIFEST).read_text())["files"]
    fresh = compare(loaded.monitoring, frame=parts["loans"])
    assert fresh["status"] == "stable" and max(c["psi"] for c in fresh["csi"].values()) == pytest.approx(0.0, abs=1e-12)
    text = (path / MONITORING).read_text()
    assert not any(loan_id in text for loan_id in parts["loans"]["loan_id"].head(50)), "no borrower-level rows"
    (path / MONITORING).write_text(text.replace('"bins": 10', '"bins": 11'))
    with pytest.raises(BundleError, match="changed: \\['monitoring.json'\\]"):
        load_bundle(path)


def test_bundle_without_monitoring_still_loads(parts, tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "old", **parts["args"])
    assert not (path / MONITORING).exists()
    loaded = load_bundle(path)
    assert loaded.monitoring is None
    assert loaded.predict_proba(parts["loans"].head(5)).shape == (5,)


def test_files_are_readable_by_other_users(parts, tmp_path: Path) -> None:
    old = os.umask(0o077)  # even under a private umask: the bundle is meant to be served by another user
    try:
        path = write_bundle(tmp_path / "bundle", **parts["args"], monitoring=parts["reference"])
    finally:
        os.umask(old)
    for p in [path, *path.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))


def _replace_and_check(parts, path: Path) -> None:
    write_bundle(path, **{**parts["args"], "metrics": {"run": 1}})
    write_bundle(path, **{**parts["args"], "metrics": {"run": 2}}, monitoring=parts["reference"])
    loaded = load_bundle(path)
    assert loaded.metrics == {"run": 2} and loaded.monitoring is not None
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temporary folder left behind"


def test_replacing_a_bundle_swaps_it_in_one_step(parts, tmp_path: Path) -> None:
    _replace_and_check(parts, tmp_path / "bundle")


def test_replacing_without_an_atomic_exchange_falls_back_to_two_renames(parts, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(atomic_module, "_exchange", lambda a, b: False)
    _replace_and_check(parts, tmp_path / "bundle")


@pytest.mark.parametrize("exchange", [True, False])
def test_a_failed_replacement_leaves_the_old_bundle_complete(parts, tmp_path: Path, monkeypatch, exchange) -> None:
    path = write_bundle(tmp_path / "bundle", **{**parts["args"], "metrics": {"run": 1}})
    real_replace = os.replace

    def failing_final_step(src, dst):
        if Path(dst) == path and not str(src).endswith(".old"):  # putting the new bundle in place (not the old back)
            raise OSError("disk gone")
        return real_replace(src, dst)

    if not exchange:
        monkeypatch.setattr(atomic_module, "_exchange", lambda a, b: False)
    else:
        monkeypatch.setattr(atomic_module, "_exchange", lambda a, b: (_ for _ in ()).throw(OSError("disk gone")))
    monkeypatch.setattr(atomic_module.os, "replace", failing_final_step)
    with pytest.raises(OSError, match="disk gone"):
        write_bundle(path, **{**parts["args"], "metrics": {"run": 2}})
    monkeypatch.undo()
    assert load_bundle(path).metrics == {"run": 1}, "the old bundle is still there and verifies"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    # A failure while writing the new files never touches the old bundle either.
    with pytest.raises(TypeError):
        write_bundle(path, **{**parts["args"], "metrics": {"run": object()}})
    assert load_bundle(path).metrics == {"run": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_readers_see_a_complete_bundle_while_it_is_replaced(parts, tmp_path: Path, monkeypatch) -> None:
    """At the moment of the swap both the old and the new bundle are complete; after it, only the new one is there."""
    path = write_bundle(tmp_path / "bundle", **{**parts["args"], "metrics": {"run": 1}})
    seen = []
    real_swap = bundle_module.replace_folder

    def watching_swap(new: Path, target: Path) -> None:
        seen.append((load_bundle(target).metrics, load_bundle(new).metrics))
        real_swap(new, target)
        seen.append((load_bundle(target).metrics, None))

    monkeypatch.setattr(bundle_module, "replace_folder", watching_swap)
    write_bundle(path, **{**parts["args"], "metrics": {"run": 2}})
    assert seen == [({"run": 1}, {"run": 2}), ({"run": 2}, None)]


def test_an_unreadable_monitoring_reference_only_disables_monitoring(parts, tmp_path: Path) -> None:
    reference = Reference.from_json(parts["reference"].to_json())
    reference.version = 99  # a newer format
    path = write_bundle(tmp_path / "bundle", **parts["args"], monitoring=reference)
    loaded = load_bundle(path)
    assert loaded.monitoring is None and loaded.threshold == 0.5
