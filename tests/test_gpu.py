"""The GPU path (issue 14), on a CUDA device: batch indices drawn there, batches gathered there, training steps that
never wait for the host. Skipped without CUDA (CI); the CPU tests in test_sampler.py / test_datamodule.py check the
same guarantees on the CPU device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loan_default.training.module import LoanDefaultModule
from loan_default.training.resident import ResidentBatches, eval_batches
from loan_default.training.sampler import DeviceBalancedSampler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def labels(n: int = 20_000, n_pos: int = 1_000) -> np.ndarray:
    y = np.zeros(n, dtype=np.float32)
    y[np.random.default_rng(0).choice(n, n_pos, replace=False)] = 1
    return y


def test_device_sampler_on_cuda_keeps_the_guarantees():
    y = labels()
    world = 2
    seen = []
    for rank in range(world):
        sampler = DeviceBalancedSampler(y, 512, pos_fraction=0.25, seed=3, num_replicas=world, rank=rank, device=CUDA)
        batches = list(sampler)
        assert all(b.device.type == "cuda" and b.dtype == torch.int64 for b in batches)
        assert len(batches) == len(sampler)
        flat = torch.cat(batches).cpu().numpy()
        for b in batches[:-1]:
            assert y[b.cpu().numpy()].sum() == 128
        negatives = flat[y[flat] == 0]
        assert len(np.unique(negatives)) == len(negatives)  # each of this rank's negatives once
        seen.append(set(negatives.tolist()))
        assert [b.tolist() for b in sampler] != [b.tolist() for b in batches]  # reseeded per epoch
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(np.flatnonzero(y == 0).tolist())


def test_training_steps_never_synchronise_with_the_host():
    """Sampler, gather, forward, loss, metric updates, backward, clipping and the fused AdamW step all stay on the
    GPU: CUDA's sync debug mode raises on any operation that waits for the device."""
    n, n_num, cards = 20_000, 12, [5, 30]
    gen = torch.Generator().manual_seed(0)
    y = torch.from_numpy(labels(n))
    tensors = (torch.randn(n, n_num, generator=gen), torch.randint(0, 5, (n, 2), generator=gen), y)
    tensors = tuple(t.to(CUDA) for t in tensors)
    module = LoanDefaultModule(n_num, cards, pos_weight=1.0, scheduler="none", train_metrics_every_n_steps=1).to(CUDA)
    module.net.fit_numeric_bins(tensors[0])
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    assert optimizer.defaults.get("fused")
    sampler = DeviceBalancedSampler(y.numpy(), 1024, seed=0, device=CUDA)
    batches = iter(ResidentBatches(tensors, sampler, len(sampler)))

    def step() -> None:
        loss = module._step(next(batches), module.train_metrics, module.train_loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the first update may sync once (MetricCollection groups its metrics; optimizer state is created)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert 0.0 < float(module.train_metrics.compute()["train/auroc"]) < 1.0


def test_eval_batches_are_views_in_order():
    x = torch.arange(100_000, device=CUDA).reshape(-1, 1)
    got = torch.cat([b[0] for b in eval_batches((x,), 65536)])
    assert torch.equal(got, x)


def test_train_py_on_the_gpu_resident_path(tiny_root, tmp_path):
    from conftest import compose_train_cfg

    from loan_default.training.train import train

    cfg = compose_train_cfg(
        tiny_root, tmp_path, ["trainer=gpu", "evaluation.shap=false", "evaluation.plots=false", "outlier=none"]
    )
    metrics, objects = train(cfg)
    resident = objects["datamodule"]._on_device  # the splits the loaders gathered from, by (split, device)
    assert {split for split, device in resident if device.startswith("cuda")} == {"train", "val", "test"}
    assert metrics["test_auroc"] > 0.6
