"""report.html: the validation report as one self-contained page (plots embedded as base64 PNG, no network), rendered
with Jinja2 from the same metrics layout as report.md and written atomically beside it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined

from loan_default.common.atomic import atomic_write_text
from loan_default.training.evaluation.report import MODEL_NAMES, _threshold_sentence, ci_text, to_jsonable

# Which plots each section shows (the rest land in "plots").
SECTION_PLOTS: dict[str, tuple[str, ...]] = {
    "discrimination": ("roc", "pr", "vintage_gini"),
    "calibration": ("grade_calibration", "calibration"),
    "stability": ("stability",),
    "backtest": ("backtest",),
    "shap": ("shap_bar", "shap_beeswarm"),
}
SECTIONS = ("summary", "discrimination", "calibration", "stability", "backtest", "shap", "plots")

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mortgage default model: validation report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.small { color: #888; font-style: italic; }
.fail { color: #c62828; font-weight: bold; }
.light { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 50%; vertical-align: middle; }
.green { background: #2e7d32; } .amber { background: #f9a825; } .red { background: #c62828; } .none { background: #9e9e9e; }
figure { display: inline-block; margin: 0.5em; } figure img { max-width: 520px; border: 1px solid #eee; }
nav a { margin-right: 1em; }
</style></head>
<body>
<h1>Mortgage default model: validation report</h1>
<nav>{% for s in sections %}<a href="#{{ s }}">{{ s }}</a>{% endfor %}</nav>

{% macro pct(v) %}{{ "n/a" if v is none else "%.2f%%" % (100 * v) }}{% endmacro %}
{% macro num(v, d=4) %}{{ "n/a" if v is none else ("{:,}".format(v) if v is integer else "%.*f" % (d, v)) }}{% endmacro %}
{% macro figures(names) %}{% for name in names if name in images %}
<figure><img alt="{{ name }}" src="data:image/png;base64,{{ images[name] }}"><figcaption>{{ name | replace("_", " ") }}
</figcaption></figure>{% endfor %}{% endmacro %}
{% macro cells(title, rows) %}<h3>{{ title }}</h3>
<table><tr><th>Cell</th><th>Loans</th><th>Defaults</th><th>ROC-AUC</th><th>Gini</th><th>KS</th></tr>
{% for name, c in rows.items() %}<tr class="{{ 'small' if c.small else '' }}"><td>{{ name }}{{ " (small)" if c.small else "" }}</td>
<td>{{ num(c.n) }}</td><td>{{ num(c.defaults) }}</td><td>{{ num(c.auroc) }}</td><td>{{ num(c.gini) }}</td>
<td>{{ num(c.ks) }}</td></tr>{% endfor %}</table>{% endmacro %}

<section id="summary"><h2>Summary</h2>
<table><tr><th>Measure</th><th>Value</th></tr>
<tr><td>Test ROC-AUC (DeLong interval)</td><td>{{ auroc_ci }}</td></tr>
<tr><td>Gini</td><td>{{ num(v.gini) }}</td></tr>
<tr><td>KS</td><td>{{ num(m.test_ks) }}</td></tr>
<tr><td>PR-AUC</td><td>{{ num(m.test_pr_auc) }}</td></tr>
<tr><td>Brier score</td><td>{{ num(m.test_brier) }}</td></tr>
<tr><td>Recall at threshold (Wilson interval)</td><td>{{ recall_ci }}</td></tr>
<tr><td>Defaults missed on test</td><td>{{ num(m.false_negatives) }}</td></tr>
{% if diff %}<tr><td>ANN − {{ diff_name }} (best baseline on validation), paired</td>
<td>{{ diff_ci }}, p = {{ "%.3g" % diff.p_value }}</td></tr>{% endif %}
</table>
<p>{{ threshold_sentence }}</p>
<table><tr><th>Model</th><th>Val ROC-AUC</th><th>Test ROC-AUC</th><th>95% CI</th><th>Recall at threshold</th>
<th>False negatives</th></tr>
{% for name, b in models %}<tr><td>{{ name }}</td><td>{{ num(b.val_auroc) }}</td><td>{{ num(b.test_auroc) }}</td>
<td>{% if b.test_auroc_ci %}{{ num(b.test_auroc_ci.low) }} to {{ num(b.test_auroc_ci.high) }}{% else %}n/a{% endif %}</td>
<td>{{ pct(b.recall_at_threshold) }}</td><td>{{ num(b.false_negatives) }}</td></tr>{% endfor %}
{% if m.oracle_auroc is not none %}<tr><td>Oracle (true PD, synthetic data)</td><td></td>
<td>{{ num(m.oracle_auroc) }}</td><td></td><td></td><td></td></tr>{% endif %}
</table>
{% if cv %}<h3 id="cv">Cross-validation ({{ cv.folds }} folds)</h3>
<p>Each fold model trained on the other folds of the non-test loans and was early-stopped on its own fold; ROC-AUC on
each fold's held-out loans, their mean ± sd and pooled out of fold. Val ROC-AUC above is the pooled out-of-fold
figure; test figures are the fold ensembles' (the mean of the fold models' logits); the baselines ran on the same
folds.</p>
<table><tr><th>Fold</th><th>Loans</th><th>Defaults</th>{% for t in cv_titles %}<th>{{ t }}</th>{% endfor %}
<th>Best epoch</th></tr>
{% for f in cv.per_fold %}<tr><td>{{ f.fold }}</td><td>{{ num(f.rows) }}</td><td>{{ num(f.defaults) }}</td>
{% for n in cv_names %}<td>{{ num(f[n]) }}</td>{% endfor %}<td>{{ num(f.best_epoch) }}</td></tr>{% endfor %}
<tr><td>mean ± sd</td><td></td><td></td>{% for n in cv_names %}<td>{{ num(cv.summary[n].mean) }} ±
{{ num(cv.summary[n].sd) }}</td>{% endfor %}<td></td></tr>
<tr><td>out of fold</td><td></td><td></td>{% for n in cv_names %}<td>{{ num(cv.oof_auroc[n[:-6]]) }}</td>
{% endfor %}<td></td></tr></table>{% endif %}
</section>

<section id="discrimination"><h2>Discrimination</h2>
<p>Cells with fewer than {{ v.min_defaults }} defaults (or non-defaults) are shown in grey and marked small.</p>
{% for unit, rows in (v.by_vintage or {}).items() %}{{ cells("By origination " ~ unit, rows) }}{% endfor %}
{% for field, rows in (v.by_segment or {}).items() %}{{ cells("By " ~ field | replace("_", " "), rows) }}{% endfor %}
{{ figures(section_plots.discrimination) }}</section>

<section id="calibration"><h2>Calibration</h2>
<p>Jeffreys test per risk grade (ECB PD back-test): a grade fails when the one-sided p-value that its PD is not
underestimated is below {{ v.calibration_alpha }}. Calibration intercept {{ num(fit.intercept) }}, slope
{{ num(fit.slope) }} (ideal 0 and 1).</p>
<table><tr><th>Grade</th><th>Loans</th><th>Defaults</th><th>Mean predicted PD</th><th>Observed rate</th>
<th>Jeffreys p</th><th>Result</th></tr>
{% for name, c in grades.items() %}<tr><td>{{ name }}</td><td>{{ num(c.n) }}</td><td>{{ num(c.defaults) }}</td>
<td>{{ pct(c.predicted) }}</td><td>{{ pct(c.observed) }}</td><td>{{ num(c.jeffreys_p, 3) }}</td>
<td class="{{ 'fail' if c.pass is false else '' }}">{{ "n/a" if c.pass is none else ("pass" if c.pass else "FAIL") }}</td>
</tr>{% endfor %}</table>
<h3>By score decile</h3>
<table><tr><th>Decile</th><th>Loans</th><th>Mean predicted PD</th><th>Observed rate</th><th>Jeffreys p</th></tr>
{% for c in v.calibration_deciles or [] %}<tr><td>{{ loop.index }}</td><td>{{ num(c.n) }}</td><td>{{ pct(c.predicted) }}</td>
<td>{{ pct(c.observed) }}</td><td>{{ num(c.jeffreys_p, 3) }}</td></tr>{% endfor %}</table>
{{ figures(section_plots.calibration) }}</section>

<section id="stability"><h2>Stability</h2>
{% if v.csi is defined and v.csi is not none %}
<p>Training vs {{ stability_against }}: PSI of the score and CSI of each field
(&lt; 0.1 green, 0.1–0.25 amber, &gt; 0.25 red; empty bins floored at {{ v.psi_floor }}).</p>
<table><tr><th>Population</th><th>PSI / CSI</th><th>Light</th><th>Missing (train → test)</th><th>New categories</th></tr>
<tr><td>score</td><td>{{ num(v.psi_score) }}</td><td><span class="light {{ v.psi_score_light or 'none' }}"></span>
{{ v.psi_score_light }}</td><td></td><td></td></tr>
{% for field, c in csi_rows %}<tr><td>{{ field }}</td><td>{{ num(c.psi) }}</td>
<td><span class="light {{ c.light or 'none' }}"></span> {{ c.light }}</td>
<td>{{ pct(c.missing_rate_ref) }} → {{ pct(c.missing_rate) }}</td><td>{{ c.new_categories | join(", ") }}</td></tr>
{% endfor %}</table>
{% else %}<p>No training reference was available for this run.</p>{% endif %}
{{ figures(section_plots.stability) }}</section>

<section id="backtest"><h2>Back-test</h2>
{% if v.backtest %}
<p>Observed against predicted default rate on the later (out-of-time) vintages, with the Jeffreys test.</p>
<table><tr><th>Vintage</th><th>Loans</th><th>Defaults</th><th>Mean predicted PD</th><th>Observed rate</th>
<th>Jeffreys p</th><th>ROC-AUC</th></tr>
{% for name, c in v.backtest.items() %}<tr><td>{{ name }}</td><td>{{ num(c.n) }}</td><td>{{ num(c.defaults) }}</td>
<td>{{ pct(c.predicted) }}</td><td>{{ pct(c.observed) }}</td>
<td class="{{ 'fail' if c.pass is false else '' }}">{{ num(c.jeffreys_p, 3) }}</td><td>{{ num(c.auroc) }}</td></tr>
{% endfor %}</table>
{% else %}<p>The back-test on later vintages runs under <code>experiment=out_of_time</code>; this run split loans at
random, so its test loans come from the training vintages.</p>{% endif %}
{{ figures(section_plots.backtest) }}</section>

<section id="shap"><h2>What drives the predictions (SHAP)</h2>
{% if m.shap_top_features %}<table><tr><th>Rank</th><th>Feature</th><th>Mean abs. SHAP</th></tr>
{% for f in m.shap_top_features[:10] %}<tr><td>{{ loop.index }}</td><td>{{ f.feature }}</td>
<td>{{ num(f.mean_abs_shap) }}</td></tr>{% endfor %}</table>
{% else %}<p>SHAP was switched off for this run (<code>evaluation.shap=false</code>).</p>{% endif %}
{{ figures(section_plots.shap) }}</section>

<section id="plots"><h2>Threshold and other plots</h2>
{{ figures(other_plots) }}</section>
</body></html>
"""


def _image(path: str | Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_report_html(metrics: Mapping[str, Any], plot_paths: Mapping[str, str | Path] | None = None) -> str:
    """The page as text; plots that exist are embedded, so the file reads offline after the run folder moves."""
    plot_paths = {name: p for name, p in (plot_paths or {}).items() if Path(p).is_file()}
    metrics = to_jsonable(metrics)  # numpy scalars to Python numbers, NaN to None
    placed = {name for names in SECTION_PLOTS.values() for name in names}
    v = metrics.get("validation") or {"calibration": {}}
    diff = metrics.get("auroc_diff_vs_best_ci")
    models = [("ANN", metrics)] + [(MODEL_NAMES.get(n, n), b) for n, b in (metrics.get("baselines") or {}).items()]
    portfolio = v.get("calibration_portfolio")
    cv = metrics.get("cv")
    cv_names = [n for n in cv["summary"] if n.endswith("_auroc")] if cv else []
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(TEMPLATE).render(
        sections=SECTIONS,
        m=_Attr(metrics),
        v=_Attr(v),
        fit=_Attr(v.get("calibration_fit") or {"intercept": None, "slope": None}),
        grades={
            k: _Attr(c) for k, c in {**v["calibration"], **({"portfolio": portfolio} if portfolio else {})}.items()
        },
        models=[(name, _Attr(b)) for name, b in models],
        auroc_ci=ci_text(metrics.get("test_auroc_ci"), "auroc"),
        recall_ci=ci_text(metrics.get("recall_at_threshold_ci"), "recall", pct=True),
        diff=diff,
        diff_name=MODEL_NAMES.get(diff["baseline"], diff["baseline"]) if diff else "",
        diff_ci=ci_text(diff, "diff") if diff else "",
        threshold_sentence=_threshold_sentence(metrics),
        cv=cv,
        cv_names=cv_names,
        cv_titles=["ANN" if n == "ann_auroc" else MODEL_NAMES.get(n[: -len("_auroc")], n) for n in cv_names],
        stability_against=v.get("stability_against", "test"),
        csi_rows=sorted((v.get("csi") or {}).items(), key=lambda item: -(item[1]["psi"] or 0.0)),  # worst first
        images={name: _image(p) for name, p in plot_paths.items()},
        section_plots=SECTION_PLOTS,
        other_plots=[name for name in plot_paths if name not in placed],
    )


def write_report_html(
    run_dir: str | Path, metrics: Mapping[str, Any], plot_paths: Mapping[str, str | Path] | None = None
) -> Path:
    """Write ``run_dir/report.html`` atomically."""
    return atomic_write_text(Path(run_dir) / "report.html", render_report_html(metrics, plot_paths))


class _Attr(dict):
    """A dict whose missing keys read as None in the template (optional metrics), while typos in the template
    itself still fail through StrictUndefined on plain names."""

    def __getattr__(self, key: str) -> Any:
        value = self.get(key)
        return _Attr(value) if isinstance(value, Mapping) and not isinstance(value, _Attr) else value
