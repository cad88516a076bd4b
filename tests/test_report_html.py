"""report.html opened in a real headless chromium: every section renders, with its plots decoded by the browser."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from loan_default.core.drift import build_reference
from loan_default.training.evaluation.metrics import binary_metrics, mean_abs_shap
from loan_default.training.evaluation.plots import plot_all
from loan_default.training.evaluation.report import build_metrics
from loan_default.training.evaluation.report_html import SECTIONS, write_report_html
from loan_default.training.evaluation.threshold import choose_threshold
from loan_default.training.evaluation.uncertainty import report_intervals
from loan_default.training.evaluation.validation import validate

ROOT = Path(__file__).resolve().parents[1]
# Plots each section must show for the run below (an out-of-time run with SHAP: every section has its plots).
EXPECTED_IMAGES = {"discrimination": 3, "calibration": 2, "stability": 1, "backtest": 1, "shap": 2, "plots": 2}


def find_chromium() -> str | None:
    """The browser binary; installs Debian's chromium through `make browser` (root + apt only) when missing."""
    names = ("chromium", "chromium-browser", "google-chrome")
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if found is None and shutil.which("make"):
        subprocess.run(["make", "-s", "browser"], cwd=ROOT, check=False, timeout=900)
        found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    return found


def chromium_args(browser: str, tmp_path: Path) -> list[str]:
    # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start; the page is our own local file.
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]


class Sections(HTMLParser):
    """Section ids in order, and per section its <img> elements' attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.images: dict[str, list[dict]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = attrs.get("id")
            self.images[self.current] = []
        elif tag == "img" and self.current is not None:
            self.images[self.current].append(attrs)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    """A report.html from a scored population: out-of-time back-test, baselines, SHAP values, drift reference."""
    out = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(0)
    n = 6000
    frame = pd.DataFrame({
        "credit_score": rng.normal(740, 45, n).round(),
        "occupancy": rng.choice(["P", "I", "S"], n, p=[0.9, 0.07, 0.03]),
        "vintage_year": np.repeat([2010, 2011, 2012], n // 3),
    })  # fmt: skip
    frame["vintage"] = frame["vintage_year"].astype(str) + "Q" + rng.choice(["1", "2", "3", "4"], n)
    p = expit(-3 - (frame["credit_score"].to_numpy() - 740) / 40 + rng.normal(0, 0.5, n))
    frame["default"] = (rng.random(n) < p).astype(np.int8)
    y = frame["default"].to_numpy()
    val, test = slice(0, 2000), slice(2000, n)
    choice = choose_threshold(y[val], p[val], recall_target=0.9)
    test_metrics = binary_metrics(y[test], p[test], choice.threshold)
    logistic = type("Baseline", (), {"test_proba": np.clip(p[test] + rng.normal(0, 0.02, 4000), 0, 1),
                                     "val_auroc": 0.7, "test_metrics": test_metrics})()  # fmt: skip
    shap_values = rng.normal(size=(200, 3))
    metrics = build_metrics(
        test_metrics, choice, val_auroc=0.7, baselines={"logistic": {"test_auroc": 0.7, "val_auroc": 0.7}},
        shap_top_features=mean_abs_shap(shap_values, ["credit_score", "ltv", "dti"]),
    )  # fmt: skip
    intervals = report_intervals(y[test], p[test], test_metrics, {"logistic": logistic})
    metrics["baselines"]["logistic"].update(intervals.pop("baselines")["logistic"])
    metrics.update(intervals)
    reference = build_reference(p[:2000], frame.iloc[:2000], fields=("credit_score", "occupancy"))
    metrics["validation"] = validate(
        frame.iloc[test], p[test], threshold=choice.threshold, reference=reference, later=(frame.iloc[test], p[test])
    )
    plots = plot_all(
        out / "plots", y[test], p[test], choice.threshold, others={"logistic": logistic.test_proba},
        shap_values=shap_values, shap_feature_values=rng.normal(size=(200, 3)), feature_names=["credit_score", "ltv",
        "dti"], validation=metrics["validation"],
    )  # fmt: skip
    return write_report_html(out, metrics, plots), metrics


def test_report_is_self_contained(report):
    path, metrics = report
    text = path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not re.search(r"""(src|href)=["'](https?:|//|plots/)""", text)  # nothing fetched from outside the file
    parser = Sections()
    parser.feed(text)
    assert list(parser.images) == list(SECTIONS)
    for section, images in parser.images.items():
        for img in images:
            assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n", section
    assert f"{metrics['test_auroc_ci']['low']:.4f} to {metrics['test_auroc_ci']['high']:.4f}" in text
    assert "(small)" in text and "FAIL" not in text.split('id="calibration"')[1].split("</section>")[0]


def test_every_section_renders_with_its_plots_in_headless_chromium(report, tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("chromium is not installed and could not be installed (`make browser` needs root and apt-get)")
    path, _ = report
    # A copy that records, once the page has loaded, each image's decoded width as the browser saw it.
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => document.querySelectorAll('img')"
        ".forEach(i => i.setAttribute('data-width', i.naturalWidth)));</script></body>"
    )
    probe.write_text(path.read_text().replace("</body>", script))
    env = {**os.environ, "HOME": str(tmp_path)}  # chromium writes its crash/config folders under HOME
    dom = subprocess.run(
        [*chromium_args(browser, tmp_path), "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, env=env, check=True,
    ).stdout  # fmt: skip
    parser = Sections()
    parser.feed(dom)
    assert list(parser.images) == list(SECTIONS), "a section is missing from the rendered page"
    for section, count in EXPECTED_IMAGES.items():
        widths = [int(img.get("data-width", 0)) for img in parser.images[section]]
        assert len(widths) == count and all(w > 100 for w in widths), (section, widths)
    shot = tmp_path / "report.png"
    subprocess.run(
        [*chromium_args(browser, tmp_path), f"--screenshot={shot}", "--window-size=1280,2000", path.as_uri()],
        capture_output=True, timeout=120, env=env, check=True,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
