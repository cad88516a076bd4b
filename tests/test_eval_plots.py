"""Every plot writes a real PNG and leaves no figure open."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import imread

from loan_default.training.evaluation import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, k = 800, 6
    p = rng.beta(1, 10, n)
    y = (rng.random(n) < p).astype(int)
    shap_values = rng.normal(size=(n, k)) * np.arange(1, k + 1)
    return y, p, shap_values, rng.normal(size=(n, k)), [f"f{j}" for j in range(k)]


def assert_png(path, min_bytes=5_000):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > min_bytes
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.01  # something was drawn, not a blank canvas


def test_plot_all_writes_every_png_and_closes_figures(tmp_path, data):
    y, p, shap_values, features, names = data
    before = plt.get_fignums()
    paths = plots.plot_all(
        tmp_path / "plots",
        y,
        p,
        0.08,
        others={"logistic": np.clip(p + 0.05, 0, 1), "oracle": p},
        shap_values=shap_values,
        shap_feature_values=features,
        feature_names=names,
        base_value=-2.0,
        display_names={"f5": "Credit score"},
    )
    expected = {"roc", "pr", "calibration", "threshold", "confusion_matrix", "shap_beeswarm", "shap_bar"}
    assert set(paths) == expected
    for path in paths.values():
        assert path.parent == tmp_path / "plots"
        assert_png(path)
    assert plt.get_fignums() == before


def test_plot_all_without_shap(tmp_path, data):
    y, p, *_ = data
    paths = plots.plot_all(tmp_path, y, p, 0.1)
    assert set(paths) == {"roc", "pr", "calibration", "threshold", "confusion_matrix"}


def test_repeated_plotting_does_not_accumulate_figures(tmp_path, data):
    y, p, shap_values, features, names = data
    for i in range(3):
        plots.plot_shap_beeswarm(shap_values, features, names, 0.0, tmp_path / f"b{i}.png")
        plots.plot_roc(y, p, tmp_path / f"r{i}.png")
    assert plt.get_fignums() == []


def test_make_explanation_uses_readable_names_and_base_value(data):
    _, _, shap_values, features, names = data
    explanation = plots.make_explanation(shap_values, features, names, -1.5, {"f0": "Loan-to-value"})
    assert explanation.feature_names[0] == "Loan-to-value" and explanation.feature_names[1] == "f1"
    np.testing.assert_array_equal(explanation.base_values, np.full(len(shap_values), -1.5))
    with pytest.raises(ValueError, match="must both be"):
        plots.make_explanation(shap_values, features[:, :2], names, 0.0)


def test_calibration_bins_by_hand():
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.1, 0.2, 0.2, 0.6, 0.6, 0.9, 0.9])
    bins = plots.calibration_bins(y, p, n_bins=4)
    np.testing.assert_array_equal(bins["count"], [2, 2, 2, 2])
    np.testing.assert_allclose(bins["mean_predicted"], [0.1, 0.2, 0.6, 0.9])
    np.testing.assert_allclose(bins["observed_rate"], [0.0, 0.5, 1.0, 0.5])


def test_calibration_bins_cover_every_row():
    rng = np.random.default_rng(1)
    p = np.round(rng.beta(1, 20, 5000), 3)  # skewed and tied, like real PDs
    y = (rng.random(5000) < p).astype(int)
    bins = plots.calibration_bins(y, p, n_bins=10)
    assert bins["count"].sum() == 5000
    assert np.all(np.diff(bins["mean_predicted"]) > 0)
    assert (bins["observed_rate"] * bins["count"]).sum() == pytest.approx(y.sum())


def test_curves_need_both_classes(tmp_path):
    with pytest.raises(ValueError, match="both"):
        plots.plot_roc([0, 0, 0], [0.1, 0.2, 0.3], tmp_path / "roc.png")


def test_calibration_bins_equal_sklearn_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(5)
    p = rng.beta(1, 12, 5000)
    y = (rng.random(5000) < p).astype(int)
    bins = plots.calibration_bins(y, p, n_bins=10)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(bins["observed_rate"], observed, atol=1e-12)
    np.testing.assert_allclose(bins["mean_predicted"], predicted, atol=1e-12)
    assert bins["count"].sum() == 5000
