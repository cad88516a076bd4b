"""ShapExplainer: additivity, agreement with shap.DeepExplainer, a hand-computed linear case, and the fallback."""

from __future__ import annotations

import numpy as np
import pytest
import shap
import torch
from torch import nn

from loan_default.core.explain import ShapExplainer
from loan_default.core.network import LoanNet

N_NUMERIC, CARDS = 5, [4, 9, 3]
NAMES = [f"num{i}" for i in range(N_NUMERIC)] + [f"cat{j}" for j in range(len(CARDS))]


def inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x_num = torch.randn(n, N_NUMERIC, generator=gen) * 1.5
    x_cat = torch.stack([torch.randint(0, c, (n,), generator=gen) for c in CARDS], dim=1)
    return x_num, x_cat


def trained_like_net(**kwargs) -> LoanNet:
    """A net whose BatchNorm running statistics are not the identity (as after training)."""
    torch.manual_seed(0)
    net = LoanNet(N_NUMERIC, CARDS, **kwargs).train()
    with torch.no_grad():
        for seed in range(5):
            x_num, x_cat = inputs(256, seed)
            net(x_num * 2 + 0.5, x_cat)
    return net.eval()


def logits(net: LoanNet, x_num: torch.Tensor, x_cat: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net(x_num, x_cat).squeeze(1).double().numpy()


@pytest.fixture(scope="module")
def net() -> LoanNet:
    return trained_like_net(hidden_sizes=[32, 16])


@pytest.fixture(scope="module")
def explainer(net) -> ShapExplainer:
    return ShapExplainer(net, *inputs(500, seed=10), NAMES, max_background=100)


@pytest.mark.parametrize("method", ["fast", "deep"])
def test_values_are_additive_on_the_logit_scale(net, explainer, method):
    x_num, x_cat = inputs(8, seed=20)
    values, base = explainer.explain(x_num, x_cat, method=method)
    assert values.shape == (8, N_NUMERIC + len(CARDS))
    assert isinstance(base, float)
    np.testing.assert_allclose(base + values.sum(axis=1), logits(net, x_num, x_cat), atol=1e-4)


def test_base_value_is_the_mean_background_logit(net):
    bg = inputs(60, seed=11)
    explainer = ShapExplainer(net, *bg, NAMES, max_background=200)
    assert explainer.base_value == pytest.approx(logits(net, *bg).mean(), abs=1e-6)


def test_fast_path_matches_deepexplainer_per_embedded_column(net, explainer):
    """The closed-form path reproduces shap.DeepExplainer run directly on the head, summed per feature by hand."""
    x_num, x_cat = inputs(6, seed=21)
    fast, _ = explainer.explain(x_num, x_cat, method="fast")
    with torch.no_grad():
        embedded = net.embed(x_num, x_cat)
    raw = shap.DeepExplainer(net.head, explainer.background).shap_values(embedded)
    raw = np.asarray(raw).reshape(embedded.shape)
    by_hand = np.stack([raw[:, cols].sum(axis=1) for cols in net.feature_groups()], axis=1)
    np.testing.assert_allclose(fast, by_hand, atol=1e-5)


def test_linear_head_gives_the_textbook_values():
    """For a linear model, SHAP value = weight * (x - background mean), per embedded column."""
    net = trained_like_net(hidden_sizes=[])
    bg_num, bg_cat = inputs(50, seed=12)
    x_num, x_cat = inputs(4, seed=22)
    explainer = ShapExplainer(net, bg_num, bg_cat, NAMES)
    with torch.no_grad():
        emb_x, emb_bg = net.embed(x_num, x_cat).double(), net.embed(bg_num, bg_cat).double()
    per_column = (net.head[0].weight.detach().double()[0] * (emb_x - emb_bg.mean(0))).numpy()
    expected = np.stack([per_column[:, cols].sum(axis=1) for cols in net.feature_groups()], axis=1)
    for method in ("fast", "deep"):
        values, _ = explainer.explain(x_num, x_cat, method=method)
        np.testing.assert_allclose(values, expected, atol=1e-5)


def test_a_feature_equal_to_every_background_row_gets_zero():
    net = trained_like_net(hidden_sizes=[16])
    bg_num, bg_cat = inputs(40, seed=13)
    bg_num[:, 2] = 0.7
    bg_cat[:, 1] = 5
    explainer = ShapExplainer(net, bg_num, bg_cat, NAMES)
    x_num, x_cat = inputs(5, seed=23)
    x_num[:, 2] = 0.7
    x_cat[:, 1] = 5
    values, _ = explainer.explain(x_num, x_cat)
    np.testing.assert_allclose(values[:, 2], 0.0, atol=1e-7)
    np.testing.assert_allclose(values[:, N_NUMERIC + 1], 0.0, atol=1e-7)
    assert np.abs(values).max() > 1e-3


def test_unsupported_head_falls_back_to_deepexplainer():
    net = trained_like_net(hidden_sizes=[16])
    net.head[2] = nn.Tanh()  # Linear, BatchNorm1d, Tanh, Dropout, Linear
    explainer = ShapExplainer(net, *inputs(50, seed=14), NAMES)
    x_num, x_cat = inputs(4, seed=24)
    with pytest.raises(ValueError, match="fast path"):
        explainer.explain(x_num, x_cat, method="fast")
    values, base = explainer.explain(x_num, x_cat)  # "auto" picks DeepExplainer
    np.testing.assert_allclose(base + values.sum(axis=1), logits(net, x_num, x_cat), atol=1e-4)


def test_large_batches_are_chunked_without_changing_results(net, explainer, monkeypatch):
    x_num, x_cat = inputs(30, seed=25)
    whole, _ = explainer.explain(x_num, x_cat, method="fast")
    monkeypatch.setattr("loan_default.core.explain._PAIR_BUDGET", 100 * 32 * 4)  # 4 rows per chunk
    chunked, _ = explainer.explain(x_num, x_cat, method="fast")
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_background_sample_is_seeded_and_capped(net):
    bg = inputs(300, seed=15)
    a = ShapExplainer(net, *bg, NAMES, max_background=40, seed=1)
    b = ShapExplainer(net, *bg, NAMES, max_background=40, seed=1)
    c = ShapExplainer(net, *bg, NAMES, max_background=40, seed=2)
    assert a.background.shape == (40, net.embed_dim)
    torch.testing.assert_close(a.background, b.background)
    assert not torch.equal(a.background, c.background)


def test_explaining_leaves_the_network_in_eval_mode_and_unchanged(net, explainer):
    x_num, x_cat = inputs(4, seed=27)
    before = logits(net, x_num, x_cat)
    explainer.explain(x_num, x_cat, method="deep")
    explainer.explain(x_num, x_cat, method="fast")
    assert not net.training
    np.testing.assert_array_equal(logits(net, x_num, x_cat), before)


def test_bad_arguments(net):
    with pytest.raises(ValueError, match="feature names"):
        ShapExplainer(net, *inputs(10, seed=16), NAMES[:-1])
    explainer = ShapExplainer(net, *inputs(10, seed=16), NAMES)
    with pytest.raises(ValueError, match="method"):
        explainer.explain(*inputs(2, seed=17), method="kernel")


@pytest.mark.parametrize("method", ["fast", "deep"])
def test_additive_with_fitted_numeric_shapes(method):
    """The per-column piecewise-linear shapes sit in `embed`, before the explained head: values stay additive."""
    net = trained_like_net(hidden_sizes=[16])
    net.fit_numeric_bins(inputs(500, seed=12)[0])
    with torch.no_grad():
        net.bin_weight.normal_()
    explainer = ShapExplainer(net, *inputs(100, seed=13), NAMES, max_background=50)
    x_num, x_cat = inputs(6, seed=14)
    values, base = explainer.explain(x_num, x_cat, method=method)
    np.testing.assert_allclose(base + values.sum(axis=1), logits(net, x_num, x_cat), atol=1e-4)
