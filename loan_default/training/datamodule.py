"""LoanDataModule: Freddie Mac files (or the synthetic default) -> clean, scaled, balanced training batches.

`prepare_data` generates the synthetic files if missing (or checks the real ones); `setup` reads and labels (cached),
splits, fits the preprocessor and the outlier filter on the training split only, and builds tensors. Validation and test
rows are never dropped or seen by anything fitted.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from loan_default.common.memory import release_free_memory
from loan_default.common.progress import progress_bar
from loan_default.core.features import INPUT_FIELDS
from loan_default.core.preprocess import CHUNK_ROWS, Preprocessor
from loan_default.freddie.files import find_file_pairs
from loan_default.freddie.labels import LabelConfig
from loan_default.freddie.loans import compact_loan_table, load_loan_table
from loan_default.prep.source import load_prepared_table
from loan_default.prep.table import read_manifest
from loan_default.training.cache import cached_table, file_lock, fingerprint
from loan_default.training.fitted import fit_once
from loan_default.training.packed import PackedNumeric
from loan_default.training.resident import ResidentBatches, ShufflePlan, eval_batch_rows, eval_batches, to_device
from loan_default.training.sampler import BalancedBatchSampler, DeviceBalancedSampler
from loan_default.training.schedule import Schedule, plan_schedule
from loan_default.training.shards import check_world, rank_schedule, sampler_ranks, shard_rows
from loan_default.training.splits import describe_splits, split_loans
from loan_default.training.tensors import TensorBatchDataset, passthrough_collate

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FIT_LABELS = ("default", "corrupted")  # table columns the preprocessing and outlier fit read besides the inputs


class LoanDataModule(L.LightningDataModule):
    """Everything between raw Freddie Mac files and model-ready batches."""

    def __init__(
        self,
        source: str = "synthetic",
        folder: str | None = None,
        origination: str | None = None,
        performance: str | None = None,
        path: str | None = None,
        synthetic: dict | None = None,
        cache_dir: str | None = None,
        on_bad_row: str = "raise",
        label: dict | None = None,
        split: dict | None = None,
        sampler: dict | None = None,
        outlier: dict | None = None,
        schedule: dict | None = None,
        batch_size: int | str = "auto",
        eval_batch_size: int | str = "auto",
        num_workers: int = 0,
        resident: bool | str = "auto",
        device_type: str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if source not in {"synthetic", "freddie", "parquet"}:
            raise ValueError(f"data.source must be 'synthetic', 'freddie' or 'parquet', got {source!r}")
        if source == "parquet" and not path:
            raise ValueError("A prepared loan table needs data.path=<folder or URI> (python -m loan_default.prep)")
        if source == "freddie" and not folder and not (origination and performance):
            raise ValueError(
                "Real Freddie Mac data needs data.folder=<folder of files> or both "
                "data.origination=<file> and data.performance=<file>"
            )
        self.source = source
        self.folder = Path(folder) if folder else None
        self.origination = Path(origination) if origination else None
        self.performance = Path(performance) if performance else None
        self.path = str(path) if path else None  # a prepared Parquet table: a folder or an fsspec URI (abfss://...)
        self.synthetic = dict(synthetic or {})
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.on_bad_row = on_bad_row
        self.label = LabelConfig(**(label or {}))
        self.label_given = label is not None  # a prepared table checks it against the label it was written with
        self.split = dict(split or {"method": "stratified"})
        self.sampler_cfg = dict(sampler or {"name": "balanced", "pos_fraction": 0.5})
        self.outlier_cfg = dict(outlier or {"method": "none"})
        self.schedule_cfg = dict(schedule or {})
        self.batch_size = batch_size  # "auto" or a number; `schedule.batch_size` is what the loaders use
        self.eval_batch_size = eval_batch_size  # "auto": 8192 rows on CPU, 65536 on an accelerator
        if resident not in (True, False, "auto"):
            raise ValueError(f"data.resident must be true, false or 'auto', got {resident!r}")
        self.resident = resident  # splits copied to the training device once; auto = on accelerators only
        self._on_device: dict[tuple[str, str], tuple[torch.Tensor, ...]] = {}
        self.device_type = device_type  # the training device's kind: the schedule picks larger batches off the CPU
        self.num_workers = num_workers
        self.seed = seed
        self.rank, self.world_size = int(rank), int(world_size)  # DDP: this rank's shard of the training rows
        self._is_setup = False

    # ------------------------------------------------------------------------------------------------------------
    # Lightning hooks
    # ------------------------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the synthetic files when they are missing or were made with other settings."""
        if self.source == "parquet":
            read_manifest(self.path)
        elif self.source == "synthetic":
            from loan_default.synthetic.generate import ensure_synthetic

            with file_lock(self.folder.parent / f".{self.folder.name}.lock"):  # one generator per folder at a time
                ensure_synthetic(self.folder, **self.synthetic)
        else:
            find_file_pairs(folder=self.folder, origination=self.origination, performance=self.performance)

    _given_split: tuple[dict[str, np.ndarray], Preprocessor] | None = None

    def use_split(self, split_index: dict[str, np.ndarray], preprocessor: Preprocessor) -> None:
        """Before `setup`: train on these rows with this fitted preprocessor instead of the configured split (a
        cross-validation fold, `loan_default.training.cv`); `setup` still fits the outlier filter on the train rows."""
        self._given_split = ({name: np.sort(np.asarray(rows)) for name, rows in split_index.items()}, preprocessor)

    def setup(self, stage: str | None = None) -> None:
        if self._is_setup:
            check_world(self.rank, self.world_size, self.trainer)  # Lightning's call, with the Trainer's ranks
            return
        self.table, self.load_report = self._load_table()
        release_free_memory()  # the reader's buffers and the cache write's
        given = self._given_split  # cross-validation folds set their rows and preprocessor (use_split)
        self.split_index = dict(given[0]) if given else split_loans(self.table, seed=self.seed, **self.split)
        self.split_summary = describe_splits(self.table, self.split_index)  # logs sizes and default rates

        # The fit reads the training rows from the table by chunks (no copy of them); DDP ranks fit once and share
        # it (training/fitted.py), keyed on the columns the fit reads (model inputs, label, corruption flag).
        fit_columns = [name for name in self.table.columns if name in INPUT_FIELDS or name in FIT_LABELS]
        fitted = fit_once(self.cache_dir, self.world_size, self.table, given[1] if given else None, self.outlier_cfg,
                          self.seed, rows=self.split_index["train"], columns=fit_columns)  # fmt: skip
        self.preprocessor, self.outlier_filter = fitted.preprocessor, fitted.outlier_filter
        self.outlier_report = fitted.report
        self.split_index["train"] = self.split_index["train"][fitted.keep]
        log.info("Outlier filter: %s", json.dumps(self.outlier_report))
        # DDP: this rank keeps its stratified share of the training rows (training/shards.py); val/test stay whole.
        self.whole_train = self.split_index["train"]
        y_whole = self.table["default"].to_numpy()[self.whole_train]
        self.split_index["train"] = shard_rows(self.whole_train, y_whole, self.rank, self.world_size, self.seed)

        release_free_memory()  # the fits' temporaries (common/memory.py)
        self.arrays = {name: self._arrays(self.table, rows=idx, desc=name) for name, idx in self.split_index.items()}
        release_free_memory()
        y_train = self.arrays["train"][2]
        if not y_train.any():
            raise ValueError("The training split holds no defaults: nothing to learn. Use more data or vintages.")
        plan = partial(self._plan_schedule, n_val_pos=int(self.arrays["val"][2].sum()))
        self.schedule = rank_schedule(y_whole, self.world_size, self.seed, plan)  # from the global counts
        log.info("Training schedule: %s", json.dumps(self.schedule.as_dict()))
        if self.rank > 0:  # DDP: only rank 0 evaluates (train.py); the others train from their arrays alone
            self.table = None
            release_free_memory()
        self._is_setup = True

    # ------------------------------------------------------------------------------------------------------------
    # Loaders
    # ------------------------------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader | ResidentBatches:
        size, per_epoch = self.schedule.batch_size, self.schedule.batches_per_epoch
        device = self._resident_device()
        if device is not None:
            tensors = self._resident_tensors("train", device)
            if self._balanced:
                plan = self._balanced_sampler(DeviceBalancedSampler, device=device)
            else:
                plan = ShufflePlan(len(tensors[0]), size, per_epoch, self.seed, device)
                if self.trainer is not None:  # resumed runs continue the epoch sequence, as the samplers do
                    plan.set_epoch(self.trainer.current_epoch)
            return ResidentBatches(tensors, plan, len(plan))
        data = self._dataset("train")
        if self._balanced:
            batches = self._balanced_sampler(BalancedBatchSampler)
        else:
            generator = torch.Generator().manual_seed(self.seed)
            # A fresh random sample of per_epoch batches each epoch when epochs are shorter than a pass.
            rows = RandomSampler(data, generator=generator, num_samples=per_epoch * size if per_epoch else None)
            # drop_last: a one-row final batch would break BatchNorm
            batches = BatchSampler(rows, size, drop_last=True)
        return self._loader(data, batches)

    def _balanced_sampler(self, kind: type[BalancedBatchSampler], **device) -> BalancedBatchSampler:
        batches = kind(
            self.arrays["train"][2],
            batch_size=self.schedule.batch_size,
            pos_fraction=self.sampler_cfg.get("pos_fraction"),
            pos_to_neg_ratio=self.sampler_cfg.get("pos_to_neg_ratio"),
            **sampler_ranks(self.seed, self.rank, self.world_size),  # DDP: the rank's own shard, its own stream
            batches_per_epoch=self.schedule.batches_per_epoch,
            **device,
        )
        if self.trainer is not None:  # resumed runs continue the epoch sequence instead of replaying epoch 0
            batches.set_epoch(self.trainer.current_epoch)
        return batches

    def val_dataloader(self) -> DataLoader | ResidentBatches:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | ResidentBatches:
        return self._eval_loader("test")

    # ------------------------------------------------------------------------------------------------------------
    # What the model, the evaluation and the bundle need
    # ------------------------------------------------------------------------------------------------------------
    @property
    def n_numeric(self) -> int:
        return len(self.preprocessor.numeric_names)

    @property
    def cat_cardinalities(self) -> list[int]:
        return [int(c) for c in self.preprocessor.cat_cardinalities]

    @property
    def _balanced(self) -> bool:
        return self.sampler_cfg.get("name", "balanced") == "balanced"

    @property
    def batch_pos_fraction(self) -> float:
        """Share of defaults the model sees in a training batch (for the loss weight)."""
        y = self.arrays["train"][2]
        natural = float(y.mean())
        if not self._balanced:
            return natural
        if self.sampler_cfg.get("pos_fraction") is not None:
            return float(self.sampler_cfg["pos_fraction"])
        ratio = float(self.sampler_cfg["pos_to_neg_ratio"])
        return ratio / (1.0 + ratio)

    def frame(self, split: str) -> pd.DataFrame:
        """The loan-table rows of a split (after outlier removal for train)."""
        return self._table().iloc[self.split_index[split]]

    def _table(self) -> pd.DataFrame:
        if self.table is None:
            raise RuntimeError(f"DDP rank {self.rank} dropped the loan table after setup: only rank 0 evaluates")
        return self.table

    def use_whole_training_split(self) -> None:
        """After a sharded DDP fit, on the rank that evaluates: every rank's training rows again, so the evaluation
        (prior offset, baselines, SHAP background, monitoring reference) sees what a single process sees."""
        if len(self.split_index["train"]) == len(self.whole_train):
            return
        self.split_index["train"] = self.whole_train
        self.arrays["train"] = self._arrays(self._table(), rows=self.whole_train)
        self._on_device = {key: t for key, t in self._on_device.items() if key[0] != "train"}

    # ------------------------------------------------------------------------------------------------------------
    def _load_table(self) -> tuple[pd.DataFrame, dict]:
        if self.source == "parquet":  # written once by python -m loan_default.prep: no raw files, no cache
            table, report = load_prepared_table(self.path, self.label if self.label_given else None)
            return compact_loan_table(table), report  # same values, ~1/3 of the memory (see compact_loan_table)
        pairs = find_file_pairs(folder=self.folder, origination=self.origination, performance=self.performance)
        files = sorted({s.path for pair in pairs for s in (pair.origination, pair.performance)})
        if self.folder is not None and (self.folder / "truth.csv").exists():
            files.append(self.folder / "truth.csv")
        settings = {"label": self.label.__dict__, "on_bad_row": self.on_bad_row}
        key = fingerprint(files, settings)

        def build() -> tuple[pd.DataFrame, dict]:
            table, report = load_loan_table(
                origination=self.origination,
                performance=self.performance,
                folder=self.folder,
                label=self.label,
                on_bad_row=self.on_bad_row,
                compact=True,  # same values in ~1/3 of the memory; the cache stores this form
            )
            log.info("%s", report)
            return table, report.to_dict()

        return cached_table(self.cache_dir, key, build)

    def _plan_schedule(self, n_rows: int, n_pos: int, n_val_pos: int, batch_size: int | None = None) -> Schedule:
        """Batch size and epoch length for this training split (`loan_default.training.schedule`)."""
        settings = self.schedule_cfg
        fraction = self.batch_pos_fraction if self._balanced else None
        return plan_schedule(
            n_rows=n_rows, n_pos=n_pos, n_val_pos=n_val_pos, pos_fraction=fraction, balanced=self._balanced,
            batch_size=self.batch_size if batch_size is None else batch_size, device_type=self.device_type, **settings,
        )  # fmt: skip

    def _arrays(
        self, frame: pd.DataFrame, chunk: int = CHUNK_ROWS, rows: np.ndarray | None = None, desc: str = "split"
    ) -> tuple[PackedNumeric, np.ndarray, np.ndarray]:
        """(x_num float32 rows as `PackedNumeric`, x_cat int32, y float32) of ``frame``'s rows at positions ``rows``
        (default: all)."""
        # Row chunks into preallocated arrays: neither the split's rows nor the transform's float64/object temporaries
        # (~1 KB a loan) are ever held whole (issue 13 item 1). x_num's 0/1 columns as bits (55 instead of 252 bytes a
        # row, training/packed.py); x_cat in int32 (ids < 2**31; embeddings take int32).
        rows = np.arange(len(frame)) if rows is None else np.asarray(rows)
        n_cont, n_num, n_cat = self.preprocessor.n_continuous, self.n_numeric, len(self.cat_cardinalities)
        x_num, x_cat = PackedNumeric(len(rows), n_cont, n_num - n_cont), np.empty((len(rows), n_cat), np.int32)
        with progress_bar(total=len(rows), desc=f"{desc} features", unit="row", unit_scale=True) as bar:
            for start in range(0, len(rows), chunk):
                num, cat = self.preprocessor.transform(frame.iloc[rows[start : start + chunk]])
                x_num.put(start, num)
                x_cat[start : start + len(cat)] = cat
                bar.update(len(cat))
        return x_num, x_cat, frame["default"].to_numpy(dtype=np.float32)[rows]

    def _dataset(self, split: str) -> TensorBatchDataset:
        x_num, x_cat, y = self.arrays[split]
        return TensorBatchDataset(x_num, torch.from_numpy(x_cat), torch.from_numpy(y))

    def _eval_loader(self, split: str) -> DataLoader | ResidentBatches:
        device = self._resident_device()
        if device is not None:
            return eval_batches(self._resident_tensors(split, device), self._eval_batch_size(device))
        data = self._dataset(split)
        return self._loader(data, BatchSampler(SequentialSampler(data), self._eval_batch_size(None), drop_last=False))

    def _eval_batch_size(self, device: torch.device | None) -> int:
        if self.eval_batch_size != "auto":
            return int(self.eval_batch_size)
        return eval_batch_rows(device)

    def _resident_device(self) -> torch.device | None:
        """The training device when the splits live there (`loan_default.training.resident`), else None."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.resident == "auto":
            # On CPU the DataLoader path is the faster one: numpy gathers beat torch's (training/tensors.py).
            return device if device.type != "cpu" else None
        return device if self.resident else None

    def _resident_tensors(self, split: str, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The split's (x_num, x_cat, y) on ``device``, copied there once per device."""
        key = (split, str(device))
        if key not in self._on_device:
            self._on_device[key] = to_device(self.arrays[split], device)
        return self._on_device[key]

    def _loader(self, data, batch_sampler) -> DataLoader:
        return DataLoader(
            data,
            batch_sampler=batch_sampler,
            collate_fn=passthrough_collate,  # the dataset already returns whole batches (one gather, no per-row stack)
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
