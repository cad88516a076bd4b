"""LoanDefaultModule: training runs, metric names and values, loss weighting, schedulers, safe checkpoint loading."""

from __future__ import annotations

import logging
import math
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

from loan_default.training.module import LoanDefaultModule

N_NUMERIC, CARDS = 6, [4, 7]
STAGE_METRICS = ["auroc", "pr_auc", "recall", "precision", "f1", "loss"]


@pytest.fixture(autouse=True)
def quiet_lightning():
    logging.getLogger("lightning").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def make_data(n: int = 300, seed: int = 0) -> TensorDataset:
    """Random features with ~20% positives that depend on the first numeric column and the first category."""
    gen = torch.Generator().manual_seed(seed)
    x_num = torch.randn(n, N_NUMERIC, generator=gen)
    x_cat = torch.stack([torch.randint(0, c, (n,), generator=gen) for c in CARDS], dim=1)
    score = 1.5 * x_num[:, 0] + (x_cat[:, 0] == 2).float() - 1.5
    y = torch.bernoulli(torch.sigmoid(score), generator=gen)
    return TensorDataset(x_num, x_cat, y)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return L.Trainer(**{**defaults, **kwargs})


def module(**kwargs) -> LoanDefaultModule:
    torch.manual_seed(0)
    return LoanDefaultModule(**{"n_numeric": N_NUMERIC, "cat_cardinalities": CARDS, "hidden_sizes": [16], **kwargs})


def probabilities(model: LoanDefaultModule, data: TensorDataset) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(data.tensors[0], data.tensors[1])).squeeze(1).numpy()


def hand_bce(logits: torch.Tensor, y: torch.Tensor, pos_weight: float = 1.0) -> float:
    p = torch.sigmoid(logits.double())
    return float(-(pos_weight * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean())


def test_fast_dev_run_fits_validates_tests_and_predicts(tmp_path):
    data = make_data()
    model = module()
    tr = trainer(tmp_path, fast_dev_run=2)
    tr.fit(model, DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=64))
    assert tr.state.finished
    tr.test(model, DataLoader(data, batch_size=64))
    preds = tr.predict(model, DataLoader(data, batch_size=64))
    assert all(p.ndim == 1 and p.dtype == torch.float32 for p in preds)
    assert all(((p >= 0) & (p <= 1)).all() for p in preds)


def test_logged_metric_names(tmp_path):
    data = make_data()
    model = module()
    tr = trainer(tmp_path, max_epochs=1)
    tr.fit(model, DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=64))
    fit_names = {f"{stage}/{name}" for stage in ("train", "val") for name in STAGE_METRICS} | {
        "val/auroc_best",
        "val/auroc_smooth",
    }
    assert set(tr.logged_metrics) == fit_names
    assert set(tr.callback_metrics) == fit_names
    tr.test(model, DataLoader(data, batch_size=64))
    assert set(tr.logged_metrics) == {f"test/{name}" for name in STAGE_METRICS}


def test_val_metrics_match_sklearn_on_the_final_model(tmp_path):
    """Values at the last epoch equal sklearn's on the final weights: the sanity-check batches and earlier epochs
    were reset, probabilities (not logits) were fed, and the loss is the exact row mean (last batch smaller)."""
    train, val = make_data(seed=0), make_data(n=250, seed=1)
    model = module(pos_weight=3.0, lr=0.05)
    tr = trainer(tmp_path, max_epochs=3, num_sanity_val_steps=2)
    tr.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=64))
    m = {k: float(v) for k, v in tr.callback_metrics.items()}
    p, y = probabilities(model, val), val.tensors[2].numpy()
    assert m["val/auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-5)
    assert m["val/pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-5)
    assert m["val/recall"] == pytest.approx(recall_score(y, p >= 0.5), abs=1e-6)
    assert m["val/precision"] == pytest.approx(precision_score(y, p >= 0.5), abs=1e-6)
    assert m["val/f1"] == pytest.approx(f1_score(y, p >= 0.5), abs=1e-6)
    logits = torch.logit(torch.as_tensor(p, dtype=torch.float64))
    assert m["val/loss"] == pytest.approx(hand_bce(logits, val.tensors[2].double(), 3.0), rel=1e-4)
    assert 0.5 < m["val/auroc"]  # it learned something


def test_metrics_get_probabilities_even_when_logits_lie_in_0_1(tmp_path):
    """Every logit 0.3 (probability 0.574 >= 0.5): all rows flagged, so recall is 1 and precision the positive rate.
    Raw logits would pass torchmetrics' [0, 1] check unchanged and flag nothing."""
    data = make_data()
    model = module()
    with torch.no_grad():
        model.net.head[-1].weight.zero_()
        model.net.head[-1].bias.fill_(0.3)
    tr = trainer(tmp_path)
    metrics = tr.validate(model, DataLoader(data, batch_size=64), verbose=False)[0]
    assert metrics["val/recall"] == pytest.approx(1.0)
    assert metrics["val/precision"] == pytest.approx(float(data.tensors[2].mean()), abs=1e-6)


def test_auroc_best_is_the_running_max(tmp_path):
    seen: list[float] = []

    class Record(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                seen.append(float(pl_module.val_metrics.compute()["val/auroc"]))

    data = make_data()
    model = module(lr=0.05)
    tr = trainer(tmp_path, max_epochs=4, callbacks=[Record()])
    tr.fit(model, DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=64))
    assert len(seen) == 4
    assert float(tr.callback_metrics["val/auroc_best"]) == pytest.approx(max(seen), abs=1e-6)


def test_smoothed_auroc_is_the_exponential_average_of_the_epochs(tmp_path):
    seen: list[float] = []
    smooth: list[float] = []

    class Record(L.Callback):
        def on_validation_end(self, trainer, pl_module):  # after the module's epoch-end logging
            if not trainer.sanity_checking:
                seen.append(float(trainer.callback_metrics["val/auroc"]))
                smooth.append(float(trainer.callback_metrics["val/auroc_smooth"]))

    data = make_data()
    tr = trainer(tmp_path, max_epochs=4, callbacks=[Record()])
    tr.fit(module(lr=0.05, val_smoothing=0.75), DataLoader(data, batch_size=64, shuffle=True),
           DataLoader(data, batch_size=64))  # fmt: skip
    expected = [seen[0]]
    for value in seen[1:]:
        expected.append(0.75 * expected[-1] + 0.25 * value)
    assert len(set(seen)) > 1
    assert smooth == pytest.approx(expected, abs=1e-6)


def test_train_metrics_from_every_nth_batch(tmp_path):
    """300 rows in batches of 64: batches 0..4; every 2nd -> batches 0, 2, 4 hold 64 + 64 + 44 predictions."""
    sizes: list[int] = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            sizes.append(sum(len(p) for p in pl_module.train_metrics["auroc"].preds))

    tr = trainer(tmp_path, max_epochs=1, callbacks=[Record()])
    tr.fit(module(train_metrics_every_n_steps=2), DataLoader(make_data(), batch_size=64))
    assert sizes == [64 + 64 + 44]


def test_train_metrics_reset_every_epoch(tmp_path):
    sizes: list[int] = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            sizes.append(len(pl_module.train_metrics["auroc"].preds))

    data = make_data()
    tr = trainer(tmp_path, max_epochs=3, callbacks=[Record()])
    tr.fit(module(), DataLoader(data, batch_size=64, shuffle=True))
    assert sizes == [0, 0, 0]
    assert "train/auroc" in tr.callback_metrics


@pytest.mark.parametrize("pos_weight", [None, 1.0, 4.0])
def test_pos_weight_changes_the_loss_as_hand_computed(pos_weight):
    data = make_data(n=50)
    model = module(pos_weight=pos_weight).eval()
    batch = data.tensors
    with torch.no_grad():
        loss = model.training_step(batch, 0)
        logits = model(batch[0], batch[1]).squeeze(1)
    y = batch[2].double()
    expected = hand_bce(logits, y, 1.0 if pos_weight is None else pos_weight)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    if pos_weight == 4.0:
        assert float(loss) > hand_bce(logits, y) * 1.1  # positives exist, so weighting them raises the loss


def test_pos_weight_is_a_buffer_that_follows_the_module():
    model = module(pos_weight=2.5)
    assert float(model.state_dict()["loss_fn.pos_weight"]) == 2.5
    model = model.to(torch.float64)  # dtype stands in for a device move on a CPU-only machine
    assert model.loss_fn.pos_weight.dtype == torch.float64
    assert "loss_fn.pos_weight" not in module(pos_weight=None).state_dict()


def test_predict_step_returns_probabilities_with_or_without_labels():
    data = make_data(n=40)
    model = module().eval()
    x_num, x_cat, y = data.tensors
    with torch.no_grad():
        expected = torch.sigmoid(model(x_num, x_cat)).squeeze(1)
        for batch in [(x_num, x_cat, y), (x_num, x_cat)]:
            out = model.predict_step(batch, 0)
            assert out.shape == (40,) and out.dtype == torch.float32
            torch.testing.assert_close(out, expected)


def test_hyperparameters_are_plain_and_checkpoint_loads_with_weights_only(tmp_path):
    cfg = OmegaConf.create({"cards": CARDS, "hidden": [16, 8], "emb": [2, 3]})
    torch.manual_seed(0)
    model = LoanDefaultModule(
        N_NUMERIC, cfg.cards, embedding_dims=cfg.emb, hidden_sizes=cfg.hidden, pos_weight=np.float64(2.0)
    )
    for key in ("cat_cardinalities", "hidden_sizes", "embedding_dims"):
        assert type(model.hparams[key]) is list and all(type(v) is int for v in model.hparams[key])
    assert type(model.hparams.pos_weight) is float

    data = make_data()
    tr = trainer(tmp_path, max_epochs=2, enable_checkpointing=True)
    tr.fit(model, DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=64))
    path = tr.checkpoint_callback.best_model_path
    raw = torch.load(path, weights_only=True)  # raises on any pickled object other than plain containers/tensors
    assert raw["hyper_parameters"]["hidden_sizes"] == [16, 8]

    loaded = LoanDefaultModule.load_from_checkpoint(path)  # torch's default (safe) loading
    loaded_explicit = LoanDefaultModule.load_from_checkpoint(path, weights_only=True)
    expected = probabilities(model, data)
    np.testing.assert_allclose(probabilities(loaded, data), expected, rtol=1e-6)
    np.testing.assert_allclose(probabilities(loaded_explicit, data), expected, rtol=1e-6)
    assert float(loaded.loss_fn.pos_weight) == 2.0


@pytest.mark.parametrize("scheduler", ["cosine", "plateau", "onecycle", "none"])
def test_every_scheduler_trains(tmp_path, scheduler):
    data = make_data()
    model = module(scheduler=scheduler)
    tr = trainer(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0)
    tr.fit(model, DataLoader(data, batch_size=32, shuffle=True), DataLoader(data, batch_size=32))
    assert tr.global_step == 6
    assert math.isfinite(float(tr.callback_metrics["train/loss"]))


def test_cosine_decays_to_zero_and_warmup_ramps_linearly(tmp_path):
    data = make_data()
    model = module(scheduler="cosine", lr=0.01)
    trainer(tmp_path, max_epochs=2, limit_train_batches=4, limit_val_batches=0).fit(
        model, DataLoader(data, batch_size=32)
    )
    assert model.optimizers().param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)

    model = module(scheduler="none", lr=0.01, warmup_steps=10)
    trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=0).fit(
        model, DataLoader(data, batch_size=32)
    )
    # After 3 steps the 4th step's LR is ready: 4/10 of the peak.
    assert model.optimizers().param_groups[0]["lr"] == pytest.approx(0.004)


def test_weight_decay_skips_biases_and_batchnorm(tmp_path):
    model = module(weight_decay=0.1)
    trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(
        model, DataLoader(make_data(), batch_size=32)
    )
    groups = model.optimizers().param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    for name, param in model.named_parameters():
        assert (id(param) in decayed) == (param.ndim >= 2), name


def test_binned_metrics(tmp_path):
    data = make_data()
    model = module(metric_thresholds=200, lr=0.05)
    tr = trainer(tmp_path, max_epochs=2)
    tr.fit(model, DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=64))
    p, y = probabilities(model, data), data.tensors[2].numpy()
    assert float(tr.callback_metrics["val/auroc"]) == pytest.approx(roc_auc_score(y, p), abs=0.01)


def test_bad_scheduler_arguments():
    with pytest.raises(ValueError, match="scheduler"):
        module(scheduler="step")
    with pytest.raises(ValueError, match="warmup"):
        module(scheduler="plateau", warmup_steps=5)


# ---------------------------------------------------------------------------------------------------------------------
# Numeric knots and the embedding learning rate
# ---------------------------------------------------------------------------------------------------------------------
def quantiles(x_num: torch.Tensor, bins: int) -> np.ndarray:
    return np.quantile(x_num.double().numpy(), np.linspace(0, 1, bins + 1), axis=0).T


def test_knots_are_placed_at_the_training_quantiles_when_training_starts(tmp_path):
    train, other = make_data(seed=0), make_data(seed=1)
    model = module(numeric_bins=8)
    assert not model.net.numeric_bins_fitted
    tr = trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    # Validation data differs from training data: the knots must come from the training rows only.
    tr.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(other, batch_size=64))
    np.testing.assert_allclose(model.net.bin_edges.numpy(), quantiles(train.tensors[0], 8), rtol=1e-6, atol=1e-6)
    assert model.net.bin_weight.abs().sum() > 0  # the slopes were trained


class RowDataset(torch.utils.data.Dataset):
    """A map-style dataset without `.tensors`: the knots are read row by row."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.data[i]


def test_knots_from_a_dataset_without_tensors(tmp_path):
    train = make_data()
    model = module(numeric_bins=4)
    trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(
        model, DataLoader(RowDataset(train), batch_size=64)
    )
    np.testing.assert_allclose(model.net.bin_edges.numpy(), quantiles(train.tensors[0], 4), rtol=1e-6, atol=1e-6)


def test_a_checkpoint_keeps_its_knots_when_training_resumes(tmp_path):
    first, shifted = make_data(seed=0), make_data(seed=2)
    shifted.tensors[0].mul_(3.0).add_(1.0)  # very different quantiles
    model = module(numeric_bins=8)
    tr = trainer(tmp_path, max_epochs=1, enable_checkpointing=True)
    tr.fit(model, DataLoader(first, batch_size=64), DataLoader(first, batch_size=64))
    fitted = model.net.bin_edges.clone()
    path = tr.checkpoint_callback.best_model_path

    loaded = LoanDefaultModule.load_from_checkpoint(path)
    torch.testing.assert_close(loaded.net.bin_edges, fitted)
    trainer(tmp_path, max_epochs=2, enable_checkpointing=True).fit(
        loaded, DataLoader(shifted, batch_size=64), DataLoader(shifted, batch_size=64), ckpt_path=path
    )
    torch.testing.assert_close(loaded.net.bin_edges, fitted)


@pytest.mark.parametrize("scheduler", ["none", "onecycle"])
def test_embedding_lr_scale_applies_to_the_embeddings_only(tmp_path, scheduler):
    model = module(lr=0.01, embedding_lr_scale=0.1, scheduler=scheduler, weight_decay=0.05)
    trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0).fit(
        model, DataLoader(make_data(), batch_size=32)
    )
    key = "initial_lr" if scheduler == "none" else "max_lr"
    embeddings = {id(p) for p in model.net.embeddings.parameters()}
    for group in model.optimizers().param_groups:
        for param in group["params"]:
            peak = group.get(key, group["lr"])
            assert peak == pytest.approx(0.001 if id(param) in embeddings else 0.01)
            # Embeddings are still decayed like every other weight matrix.
            assert group["weight_decay"] == (0.05 if param.ndim >= 2 else 0.0)
    with pytest.raises(ValueError, match="embedding_lr_scale"):
        module(embedding_lr_scale=0.0)


def test_embedding_init_std_reaches_the_network():
    model = module(embedding_init_std=0.01)
    for emb in model.net.embeddings:
        assert float(emb.weight.detach().abs().max()) < 0.1
