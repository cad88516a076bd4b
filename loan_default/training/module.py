"""LightningModule that trains `LoanNet` with weighted BCE and reports ROC-AUC, PR-AUC, recall, precision and F1."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
)

from loan_default.core.network import MAX_BIN_ROWS, LoanNet, default_embedding_dim
from loan_default.training.packed import as_tensor

SCHEDULERS = ("cosine", "plateau", "onecycle", "none")
Batch = Sequence[torch.Tensor]


def _int_list(values: Sequence[int] | None) -> list[int] | None:
    """Plain ``list[int]`` from any sequence (Hydra's ListConfig, tuples, numpy ints): checkpoints stay loadable
    under torch's ``weights_only`` loading, which refuses OmegaConf and numpy objects."""
    return None if values is None else [int(v) for v in values]


def _warmup_cosine(warmup_steps: int, total_steps: int, cosine: bool) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warmup, then a cosine decay to 0 (or a constant 1)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if not cosine:
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class LoanDefaultModule(L.LightningModule):
    """Trains `LoanNet` on batches ``(x_num, x_cat, y)``; logs ``{train,val,test}/{loss,auroc,pr_auc,...}``.

    ``pos_weight`` multiplies the loss of positive (default) rows; ``metric_thresholds`` bins AUROC and PR-AUC into
    that many thresholds (constant memory) instead of keeping every prediction of the epoch (``None``, exact).
    Binning costs time on CPU: ~2 ms per 1024-row update with 200 thresholds against ~0.04 ms exact, and seconds per
    update under ``Trainer(deterministic=True)``, where torchmetrics swaps ``bincount`` for a dense comparison.
    ``warmup_steps`` ramps the LR linearly over the first optimizer steps ("cosine", "none"); for "onecycle" it sets
    the rising phase; "plateau" (which steps on ``val/loss`` each epoch) does not take it.

    ``numeric_bins`` is `LoanNet`'s learned piecewise-linear shape per numeric column; its knots are placed at the
    training rows' quantiles when training starts (``on_train_start``), unless the network already has knots (a
    resumed run or a loaded checkpoint keeps its own). ``embedding_lr_scale`` multiplies the learning rate of the
    categorical embeddings: Adam gives a rare category's row a full-size step on each of its few appearances (its
    gradient is normalised by its own small second moment), so with ~850 ZIP codes it memorises the few defaults in
    each; a tenth of the LR with ``embedding_init_std=0.01`` stops that (docs/decisions/0003-*.md).

    ``val_smoothing`` s logs ``val/auroc_smooth``, an exponential average over epochs (weight s on the past) for
    early stopping and checkpointing on small, noisy validation splits (`loan_default.training.schedule`).
    ``train_metrics_every_n_steps`` updates the training metrics from every n-th batch only (they are a side view).
    """

    def __init__(
        self,
        n_numeric: int,
        cat_cardinalities: Sequence[int] = (),
        embedding_dims: Sequence[int] | None = None,
        max_embedding_dim: int = 16,
        hidden_sizes: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        batch_norm: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        pos_weight: float | None = None,
        scheduler: str = "cosine",
        warmup_steps: int = 0,
        metric_thresholds: int | None = None,
        numeric_bins: int = 32,
        embedding_init_std: float = 1.0,
        embedding_lr_scale: float = 1.0,
        val_smoothing: float = 0.0,
        train_metrics_every_n_steps: int = 1,
        wide: bool = False,
    ) -> None:
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        if scheduler == "plateau" and warmup_steps:
            raise ValueError("warmup_steps is not supported with the 'plateau' scheduler")
        if not embedding_lr_scale > 0:
            raise ValueError(f"embedding_lr_scale must be > 0, got {embedding_lr_scale}")
        if not 0.0 <= val_smoothing < 1.0:
            raise ValueError(f"val_smoothing must be in [0, 1), got {val_smoothing}")
        if int(train_metrics_every_n_steps) < 1:
            raise ValueError(f"train_metrics_every_n_steps must be >= 1, got {train_metrics_every_n_steps}")
        # Rebind the arguments as plain Python values before save_hyperparameters(), which reads them from here.
        n_numeric = int(n_numeric)
        cat_cardinalities = _int_list(cat_cardinalities)
        embedding_dims = _int_list(embedding_dims)
        max_embedding_dim = int(max_embedding_dim)
        if embedding_dims is None:  # resolved here so the checkpoint records the widths actually used
            embedding_dims = [default_embedding_dim(c, max_embedding_dim) for c in cat_cardinalities]
        hidden_sizes = _int_list(hidden_sizes)
        dropout, lr, weight_decay = float(dropout), float(lr), float(weight_decay)
        batch_norm, warmup_steps = bool(batch_norm), int(warmup_steps)
        numeric_bins, embedding_init_std = int(numeric_bins), float(embedding_init_std)
        embedding_lr_scale, val_smoothing = float(embedding_lr_scale), float(val_smoothing)
        train_metrics_every_n_steps, wide = int(train_metrics_every_n_steps), bool(wide)
        pos_weight = None if pos_weight is None else float(pos_weight)
        metric_thresholds = None if metric_thresholds is None else int(metric_thresholds)
        self.save_hyperparameters()

        self.net = LoanNet(
            n_numeric,
            cat_cardinalities,
            embedding_dims,
            hidden_sizes,
            dropout,
            batch_norm,
            numeric_bins=numeric_bins,
            embedding_init_std=embedding_init_std,
            wide=wide,
        )
        # BCEWithLogitsLoss keeps pos_weight as a buffer, so it follows the module across devices and checkpoints.
        weight = None if pos_weight is None else torch.tensor(pos_weight)
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight, reduction="none")
        # validate_args=False: the checks look at the values (are targets 0/1?), a host sync on every update that
        # stalls a GPU each step; the datamodule's labels are checked once, when the split is built.
        checks = {"validate_args": False}
        metrics = MetricCollection(
            {
                "auroc": BinaryAUROC(thresholds=metric_thresholds, **checks),
                "pr_auc": BinaryAveragePrecision(thresholds=metric_thresholds, **checks),
                "recall": BinaryRecall(**checks),
                "precision": BinaryPrecision(**checks),
                "f1": BinaryF1Score(**checks),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Epoch-mean losses as metrics rather than `self.log` on every step, whose bookkeeping cost about as much
        # as the metric updates (bench/train_step.py). "disable": a NaN check would sync the GPU on every step.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self.val_auroc_best = MaxMetric()
        self.val_auroc_best.persistent(True)  # saved in checkpoints, so a resumed run keeps the best so far
        # Exponential average of val/auroc over epochs (NaN until the first validation), saved with checkpoints.
        self.register_buffer("val_auroc_smooth", torch.tensor(float("nan"), dtype=torch.float64))

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1)."""
        return self.net(x_num, x_cat)

    def _step(
        self, batch: Batch, metrics: MetricCollection, mean_loss: MeanMetric, update_metrics: bool = True
    ) -> torch.Tensor:
        """Loss of one batch; metrics get probabilities (torchmetrics skips its sigmoid when logits lie in [0, 1])."""
        x_num, x_cat, y = batch
        logits = self(x_num, x_cat).squeeze(1)
        row_loss = self.loss_fn(logits, y)
        if update_metrics:
            metrics.update(torch.sigmoid(logits.detach()), y.long())
        # Per-row losses make the epoch value the exact row mean even when the last batch is smaller.
        mean_loss.update(row_loss.detach())
        return row_loss.mean()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        # Train ROC-AUC & co. from every n-th batch (an unbiased sample): the per-step metric updates were most of
        # what Lightning added to the plain loop (bench/train_step.py). The loss still counts every batch.
        every = self.hparams.get("train_metrics_every_n_steps", 1)
        return self._step(batch, self.train_metrics, self.train_loss, update_metrics=batch_idx % every == 0)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, self.val_metrics, self.val_loss)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, self.test_metrics, self.test_loss)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Probabilities of default (N,); the batch may come with or without labels."""
        return torch.sigmoid(self(batch[0], batch[1]).squeeze(1))

    def on_train_start(self) -> None:
        # Here, not in setup: the train dataloader exists, and a resumed run's checkpoint (knots included) is loaded.
        if self.hparams.numeric_bins and not self.net.numeric_bins_fitted:
            self.net.fit_numeric_bins(self._training_numeric())
        tensors = getattr(self.trainer.train_dataloader.dataset, "tensors", None)
        if self.hparams.get("wide") and self.global_step == 0 and tensors is not None:
            # Defaults weighted as the batches deliver them (the sampler's share), as training weights them.
            share = getattr(self.trainer.datamodule, "batch_pos_fraction", 0.5)
            self.net.fit_linear_path(  # only below schedule.wide_max_rows rows: the dense x_num is small
                *(as_tensor(t, self.device) for t in tensors[:3]), pos_weight=self.hparams.pos_weight,
                batch_pos_fraction=share,
            )  # fmt: skip
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # DDP ranks fitted the knots and the linear path on their own shards of the training rows (DDP synced the
            # weights before this hook, not after): every rank starts from rank 0's.
            for tensor in self.net.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)

    def _training_numeric(self) -> torch.Tensor:
        """The training rows' x_num that `fit_numeric_bins` reads (its even stride, at most `MAX_BIN_ROWS` rows), from
        the dataset rather than the (possibly resampling) loader."""
        data = self.trainer.train_dataloader.dataset
        tensors = getattr(data, "tensors", None)  # TensorDataset, TensorBatchDataset
        if tensors is not None:  # only the rows the knots are placed from: a dense copy of all rows can be GBs
            return as_tensor(tensors[0][:: -(-len(tensors[0]) // MAX_BIN_ROWS)])
        return torch.stack([torch.as_tensor(data[i][0]) for i in range(len(data))])

    def on_train_epoch_end(self) -> None:
        # Logged as Metric objects: Lightning computes (and syncs across processes) once, then resets them.
        self.log("train/loss", self.train_loss)
        self.log_dict(self.train_metrics)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            auroc = self.val_metrics.compute()["val/auroc"]
            self.val_auroc_best.update(auroc)
            self.log("val/auroc_best", self.val_auroc_best.compute())
            self._smooth(auroc)
            self.log("val/auroc_smooth", self.val_auroc_smooth.float(), prog_bar=True)
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log_dict(self.val_metrics, prog_bar=True)

    def _smooth(self, auroc: torch.Tensor) -> None:
        """val_auroc_smooth <- s * val_auroc_smooth + (1 - s) * auroc (the first value as it is), s = val_smoothing."""
        value = auroc.detach().to(self.val_auroc_smooth)
        s = self.hparams.get("val_smoothing", 0.0)
        previous = self.val_auroc_smooth
        self.val_auroc_smooth.copy_(value if torch.isnan(previous) else s * previous + (1 - s) * value)

    def on_test_epoch_end(self) -> None:
        self.log("test/loss", self.test_loss)
        self.log_dict(self.test_metrics)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        # No weight decay on biases and BatchNorm scales: decaying them only fights the normalisation.
        embedding = {id(p) for p in self.net.embeddings.parameters()}
        groups = [
            {"params": [p for p in self.parameters() if p.ndim >= 2 and id(p) not in embedding], "lr": hp.lr},
            {"params": [p for p in self.parameters() if id(p) in embedding], "lr": hp.lr * hp.embedding_lr_scale},
            {"params": [p for p in self.parameters() if p.ndim < 2], "lr": hp.lr, "weight_decay": 0.0},
        ]
        # fused: one kernel for the whole update on CUDA instead of a dozen per parameter group (same arithmetic).
        fused = {"fused": True} if self.device.type == "cuda" else {}
        optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=hp.lr, weight_decay=hp.weight_decay, **fused
        )
        if hp.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val/loss"}}
        if hp.scheduler == "none" and not hp.warmup_steps:
            return {"optimizer": optimizer}
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(f"scheduler {hp.scheduler!r} needs a finite run: set trainer max_epochs or max_steps")
        total = int(total)
        if hp.scheduler == "onecycle":
            pct_start = hp.warmup_steps / total if hp.warmup_steps else 0.3
            peaks = [group["lr"] for group in optimizer.param_groups]
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=peaks, total_steps=total, pct_start=pct_start
            )
        else:
            factor = _warmup_cosine(hp.warmup_steps, total, cosine=hp.scheduler == "cosine")
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
