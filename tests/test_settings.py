"""Typed settings: a misspelt or mistyped key in a dict-shaped config block fails at startup, naming the key."""

from __future__ import annotations

import inspect

import pytest
from omegaconf import open_dict

from loan_default.freddie.labels import LabelConfig
from loan_default.training import settings as st
from loan_default.training.evaluation.threshold import choose_threshold
from loan_default.training.outliers import OutlierFilter
from loan_default.training.schedule import plan_schedule
from loan_default.training.splits import split_loans
from tests.conftest import compose_train_cfg


def test_default_config_validates_and_keeps_its_values(tmp_path):
    cfg = compose_train_cfg(tmp_path, tmp_path)
    s = st.validate_settings(cfg)
    assert s.threshold.recall_target == cfg.threshold.recall_target == 0.90
    assert s.sampler.name == "balanced" and s.outlier.detectors == list(cfg.outlier.detectors)
    assert s.label.credit_event_codes == ("02", "03", "09", "15")
    assert s.split.method == cfg.data.split.method


def test_misspelt_threshold_key_fails_before_any_data_is_read(tmp_path, monkeypatch):
    from loan_default.training import datamodule
    from loan_default.training.train import train

    def touched(*args, **kwargs):
        raise AssertionError("the data module was built before the config was checked")

    monkeypatch.setattr(datamodule.LoanDataModule, "__init__", touched)
    cfg = compose_train_cfg(tmp_path, tmp_path / "out", ["+threshold.recal_target=0.9"])
    with pytest.raises(
        st.ConfigError, match=r"threshold\.recal_target: unknown key \(known: confidence, cost_fn_fp, recall_target"
    ):
        train(cfg)
    assert not (tmp_path / "out").exists()  # nothing written either


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("sampler.pos_fractoin", 0.3, r"sampler\.pos_fractoin: unknown key"),
        ("sampler.name", "stratified", r"sampler\.name: Input should be 'balanced' or 'shuffle'"),
        ("outlier.contamnation", 0.1, r"outlier\.contamnation: unknown key \(known: combination, contamination"),
        ("outlier.n_jobs", "two", r"outlier\.n_jobs: Input should be a valid integer"),
        ("data.split.test_fracton", 0.2, r"data\.split\.test_fracton: unknown key"),
        ("data.label.horizon", 12, r"data\.label\.horizon: unknown key \(known: credit_event_codes, horizon_months"),
        ("data.synthetic.loan", 10, r"data\.synthetic\.loan: unknown key \(known: .*loans"),
        ("evaluation.shap_row", 10, r"evaluation\.shap_row: unknown key"),
        ("evaluation.shap_rows", 0, r"evaluation\.shap_rows: Input should be greater than or equal to 1"),
        ("evaluation.ci_level", 95, r"evaluation\.ci_level: Input should be less than 1"),
        ("evaluation.validation", {"alpah": 0.1}, r"evaluation\.validation\.alpah: unknown key \(known: alpha, min_"),
        ("schedule.min_epoch", 3, r"schedule\.min_epoch: unknown key \(known: accelerator_batch_size, epoch_samples"),
        ("threshold.confidense", 0.9, r"threshold\.confidense: unknown key \(known: confidence, cost_fn_fp, recall"),
    ],
)
def test_each_block_names_the_bad_key(tmp_path, path, value, message):
    cfg = compose_train_cfg(tmp_path, tmp_path)
    with open_dict(cfg):
        node, key = path.rsplit(".", 1)
        target = cfg
        for part in node.split("."):
            target = target[part]
        target[key] = value
    with pytest.raises(st.ConfigError, match=message):
        st.validate_settings(cfg)


def test_every_problem_is_reported_at_once_and_a_missing_key_is_named(tmp_path):
    cfg = compose_train_cfg(tmp_path, tmp_path)
    with open_dict(cfg):
        cfg.threshold.recal_target = 0.9
        cfg.sampler.bach = 3
        del cfg.evaluation.plots
    with pytest.raises(st.ConfigError) as err:
        st.validate_settings(cfg)
    text = str(err.value)
    assert "threshold.recal_target" in text and "sampler.bach" in text
    assert "evaluation.plots: required key is missing" in text


def test_unquoted_yaml_codes_are_accepted_as_the_consumer_accepts_them(tmp_path):
    cfg = compose_train_cfg(tmp_path, tmp_path, ["data.label.credit_event_codes=[2,3,9,15]"])
    assert st.validate_settings(cfg).label.credit_event_codes == ("2", "3", "9", "15")
    assert LabelConfig(credit_event_codes=[2, 3, 9, 15]).credit_event_codes == ("02", "03", "09", "15")


@pytest.mark.parametrize(
    ("model", "target", "skip"),
    [
        (st.ThresholdSettings, choose_threshold, {"y_true", "p"}),
        (st.OutlierSettings, OutlierFilter, {"seed"}),
        (st.SplitSettings, split_loans, {"df", "seed", "label"}),
        (st.LabelSettings, LabelConfig, set()),
        (st.ScheduleSettings, plan_schedule, set(st._SCHEDULE_SKIP)),
    ],
)
def test_signature_models_follow_their_consumer(model, target, skip):
    """The keys are exactly the consumer's keyword parameters, with its defaults: no second list to keep in step."""
    params = {p.name: p.default for p in inspect.signature(target).parameters.values() if p.name not in skip | {"self"}}
    assert set(model.model_fields) == set(params)
    for name, default in params.items():
        assert model.model_fields[name].default == default, name
