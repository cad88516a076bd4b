"""LoanNet: shapes, embeddings, feature groups, and the structure SHAP's DeepExplainer relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import fx, nn

from loan_default.core.network import LoanNet, default_embedding_dim

CARDS = [5, 12, 3]


def batch(n: int = 32, n_numeric: int = 7, cards: list[int] = CARDS, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x_num = torch.randn(n, n_numeric, generator=gen)
    columns = [torch.randint(0, c, (n, 1), generator=gen) for c in cards]
    x_cat = torch.cat(columns, dim=1) if cards else torch.zeros(n, 0, dtype=torch.long)
    return x_num, x_cat


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"hidden_sizes": []},
        {"hidden_sizes": [16], "batch_norm": False, "dropout": 0.0},
        {"embedding_dims": [2, 3, 1], "hidden_sizes": [8, 8, 4]},
    ],
)
def test_forward_returns_logits_n_by_1(kwargs):
    torch.manual_seed(0)  # unseeded, an untrained net's 32 logits all fell inside [0, 1] now and then
    net = LoanNet(7, CARDS, **kwargs)
    x_num, x_cat = batch()
    out = net(x_num, x_cat)
    assert out.shape == (32, 1)
    assert out.dtype == torch.float32
    # Logits, not probabilities: an untrained net on random inputs produces values outside [0, 1].
    assert ((out < 0) | (out > 1)).any()


def test_no_categorical_features():
    net = LoanNet(4, [])
    x_num, x_cat = batch(n=10, n_numeric=4, cards=[])
    assert x_cat.shape == (10, 0)
    assert net(x_num, x_cat).shape == (10, 1)
    assert net.feature_groups() == [[0], [1], [2], [3]]


def test_default_embedding_dims_follow_the_rule():
    assert [default_embedding_dim(c) for c in (1, 2, 5, 12, 100, 10_000)] == [2, 2, 4, 6, 16, 16]
    net = LoanNet(3, [5, 12, 10_000])
    assert net.embedding_dims == [4, 6, 16]
    assert [e.num_embeddings for e in net.embeddings] == [5, 12, 10_000]
    assert net.embed_dim == 3 + 4 + 6 + 16


def test_embedding_ids_run_to_cardinality_minus_one():
    net = LoanNet(2, [4]).eval()
    x_num = torch.zeros(2, 2)
    net(x_num, torch.tensor([[0], [3]]))  # 0 = unknown bucket, 3 = last real category
    with pytest.raises(IndexError):
        net(x_num, torch.tensor([[0], [4]]))


def test_embed_layout_and_feature_groups():
    net = LoanNet(3, [5, 12], embedding_dims=[2, 4]).eval()
    x_num, x_cat = batch(n=6, n_numeric=3, cards=[5, 12])
    emb = net.embed(x_num, x_cat)
    assert emb.shape == (6, 3 + 2 + 4)
    groups = net.feature_groups()
    assert groups == [[0], [1], [2], [3, 4], [5, 6, 7, 8]]
    torch.testing.assert_close(emb[:, groups[0] + groups[1] + groups[2]], x_num)
    torch.testing.assert_close(emb[:, groups[3]], net.embeddings[0].weight[x_cat[:, 0]])
    torch.testing.assert_close(emb[:, groups[4]], net.embeddings[1].weight[x_cat[:, 1]])


@pytest.mark.parametrize("train", [False, True])
def test_head_of_embed_equals_forward(train):
    net = LoanNet(7, CARDS, dropout=0.3).train(train)
    x_num, x_cat = batch()
    torch.manual_seed(1)
    direct = net(x_num, x_cat)
    torch.manual_seed(1)  # same dropout mask in train mode
    torch.testing.assert_close(net.head(net.embed(x_num, x_cat)), direct)


def test_head_is_deepexplainer_friendly():
    """Only module calls (no functional ops), one distinct ReLU per layer, nothing in place, no sigmoid."""
    net = LoanNet(7, CARDS, hidden_sizes=[16, 8, 4])
    graph = fx.symbolic_trace(net.head).graph
    assert {node.op for node in graph.nodes} == {"placeholder", "call_module", "output"}
    every = [m for _, m in net.head.named_modules(remove_duplicate=False) if m is not net.head]
    assert len(every) == len({id(m) for m in every}), "a module is reused inside the head"
    relus = [m for m in every if isinstance(m, nn.ReLU)]
    assert len(relus) == 3
    assert not any(m.inplace for m in relus)
    assert not any(isinstance(m, nn.Sigmoid) for m in net.modules())
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    assert isinstance(net.head[-1], nn.Linear) and net.head[-1].out_features == 1


def test_layer_order_in_head():
    net = LoanNet(7, CARDS, hidden_sizes=[16], dropout=0.2)
    assert [type(m) for m in net.head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]
    net = LoanNet(7, CARDS, hidden_sizes=[16], dropout=0.0, batch_norm=False)
    assert [type(m) for m in net.head] == [nn.Linear, nn.ReLU, nn.Linear]


def test_bad_arguments():
    with pytest.raises(ValueError, match="embedding dims"):
        LoanNet(3, [5, 6], embedding_dims=[2])
    with pytest.raises(ValueError, match="cardinality"):
        LoanNet(3, [0])
    with pytest.raises(ValueError, match="dropout"):
        LoanNet(3, [5], dropout=1.0)


def test_initialisation_is_seeded():
    torch.manual_seed(3)
    a = LoanNet(7, CARDS)
    torch.manual_seed(3)
    b = LoanNet(7, CARDS)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb)


# ---------------------------------------------------------------------------------------------------------------------
# Learned piecewise-linear shape of the numeric columns
# ---------------------------------------------------------------------------------------------------------------------
def training_like_numeric(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Columns like the real x_num: continuous, integer-valued with ties (DTI-like), binary, and constant."""
    rng = np.random.default_rng(seed)
    columns = [rng.normal(size=n), rng.integers(0, 61, size=n), rng.random(n) < 0.2, np.zeros(n)]
    return np.column_stack(columns).astype(np.float32)


def clamp_sum_shape(x: np.ndarray, edges: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The encoding written out as Gorishniy et al. define it: sum over bins of slope * clamp((x - lo) / width, 0, 1),
    zero-width bins contributing nothing."""
    lo, width = edges[:, :-1], np.diff(edges, axis=1)
    live = width > 0
    frac = np.clip((x[:, :, None] - lo) / np.where(live, width, 1.0), 0.0, 1.0)
    return x + (frac * np.where(live, weight, 0.0)).sum(axis=2)


def test_numeric_shape_is_the_identity_until_the_knots_are_placed():
    net = LoanNet(4, [3], numeric_bins=8)
    with torch.no_grad():
        net.bin_weight.normal_()
    x = torch.from_numpy(training_like_numeric(50))
    assert not net.numeric_bins_fitted
    torch.testing.assert_close(net.shape_numeric(x), x)
    net.fit_numeric_bins(training_like_numeric())
    assert net.numeric_bins_fitted
    assert not torch.allclose(net.shape_numeric(x), x)


def test_knots_are_the_training_quantiles():
    train = training_like_numeric()
    net = LoanNet(4, [], numeric_bins=10)
    net.fit_numeric_bins(torch.from_numpy(train))
    for j in range(4):
        expected = np.quantile(train[:, j].astype(np.float64), np.linspace(0, 1, 11))
        np.testing.assert_allclose(net.bin_edges[j].numpy(), expected, rtol=1e-6, atol=1e-6)
    # A binary column has one live bin, a constant column none.
    live = (net.bin_edges[:, 1:] > net.bin_edges[:, :-1]).sum(dim=1).tolist()
    assert live[2] == 1 and live[3] == 0 and live[0] == 10


@pytest.mark.parametrize("bins", [1, 6, 32])
def test_shape_equals_the_clamped_sum_over_bins(bins):
    net = LoanNet(4, [], numeric_bins=bins)
    net.fit_numeric_bins(training_like_numeric())
    torch.manual_seed(1)
    with torch.no_grad():
        net.bin_weight.normal_()
    x = training_like_numeric(400, seed=1)
    x[:5] = [
        [-9.0, -5.0, 0.0, 3.0],
        [9.0, 99.0, 1.0, -1.0],
        [0.0, 45.0, 1.0, 0.0],
        [0.5, 46.0, 0.0, 0.0],
        [0, 60, 0, 0],
    ]
    expected = clamp_sum_shape(
        x.astype(np.float64), net.bin_edges.double().numpy(), net.bin_weight.detach().double().numpy()
    )
    np.testing.assert_allclose(net.shape_numeric(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-5)


def test_one_bin_weight_makes_a_step_between_neighbouring_values():
    """What a plain MLP finds hard: a jump between two adjacent integers (DTI 45 -> 46) with one weight."""
    train = training_like_numeric(20000)
    net = LoanNet(4, [], numeric_bins=32)
    net.fit_numeric_bins(train)
    edges = net.bin_edges[1].numpy()
    b = int(np.searchsorted(edges, 45.0, side="right")) - 1  # the bin that holds DTI 45
    width = edges[b + 1] - edges[b]
    assert 0 < width <= 2.5  # ~61 values over 32 bins: bins one or two values wide
    with torch.no_grad():
        net.bin_weight[1, b] = 3.0
    x = torch.zeros(4, 4)
    x[:, 1] = torch.tensor([edges[b] - 1, edges[b], edges[b + 1], edges[b + 1] + 1])
    jump = net.shape_numeric(x)[:, 1] - x[:, 1]
    torch.testing.assert_close(jump, torch.tensor([0.0, 0.0, 3.0, 3.0]))


def test_knots_and_slopes_are_saved_with_the_weights():
    net = LoanNet(4, [3], numeric_bins=8)
    net.fit_numeric_bins(training_like_numeric())
    with torch.no_grad():
        net.bin_weight.normal_()
    state = net.state_dict()
    assert {"bin_edges", "bin_weight"} <= set(state)
    copy = LoanNet(4, [3], numeric_bins=8)
    copy.load_state_dict(state)
    x_num, x_cat = torch.from_numpy(training_like_numeric(30, seed=2)), torch.zeros(30, 1, dtype=torch.long)
    torch.testing.assert_close(copy.eval()(x_num, x_cat), net.eval()(x_num, x_cat))


def test_numeric_bins_zero_is_a_plain_mlp():
    net = LoanNet(4, [3], numeric_bins=0)
    net.fit_numeric_bins(training_like_numeric())
    x = torch.from_numpy(training_like_numeric(20))
    torch.testing.assert_close(net.shape_numeric(x), x)
    assert net.bin_weight.numel() == 0


def test_fit_numeric_bins_rejects_the_wrong_shape():
    net = LoanNet(4, [], numeric_bins=4)
    with pytest.raises(ValueError, match="numeric rows"):
        net.fit_numeric_bins(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="numeric rows"):
        net.fit_numeric_bins(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="numeric_bins"):
        LoanNet(4, [], numeric_bins=-1)


def test_embedding_init_std_scales_the_default_initialisation():
    torch.manual_seed(0)
    plain = LoanNet(2, [500, 30], embedding_dims=[4, 4])
    torch.manual_seed(0)
    small = LoanNet(2, [500, 30], embedding_dims=[4, 4], embedding_init_std=0.01)
    for a, b in zip(plain.embeddings, small.embeddings, strict=True):
        assert float(a.weight.detach().std()) == pytest.approx(1.0, rel=0.1)
        torch.testing.assert_close(b.weight, a.weight * 0.01)


def test_config_rebuilds_the_same_network_as_plain_json():
    import json

    net = LoanNet(7, CARDS, embedding_dims=[2, 3, 1], hidden_sizes=(16, 8), dropout=0.2, numeric_bins=8)
    config = json.loads(json.dumps(net.config()))  # plain values only
    rebuilt = LoanNet(**config)
    rebuilt.load_state_dict(net.state_dict())  # same parameter names and shapes
    x_num, x_cat = batch()
    torch.testing.assert_close(rebuilt.eval()(x_num, x_cat), net.eval()(x_num, x_cat))
    assert config["hidden_sizes"] == [16, 8] and config["embedding_dims"] == [2, 3, 1]


def _wide_net(**kwargs) -> LoanNet:
    torch.manual_seed(0)
    return LoanNet(7, CARDS, hidden_sizes=[16, 8], wide=True, **kwargs)


def test_wide_net_starts_as_the_linear_path():
    """At init the MLP's last layer is zero, so the logit is exactly z @ w + b on the embedded input."""
    net = _wide_net().eval()
    x_num, x_cat = batch()
    with torch.no_grad():
        z = net.embed(x_num, x_cat)
        by_hand = z @ net.head.linear.weight.t() + net.head.linear.bias
        out = net(x_num, x_cat)
    assert out.shape == (32, 1)
    torch.testing.assert_close(out, by_hand)
    assert out.std() > 0  # the linear path is randomly initialised, not zero
    assert net.config()["wide"] is True


def test_wide_net_learns_beyond_the_linear_path():
    """The zeroed last layer still gets gradients (its inputs are non-zero), so the MLP can grow from zero."""
    net = _wide_net(dropout=0.0)
    x_num, x_cat = batch()
    net(x_num, x_cat).sum().backward()
    assert net.head.mlp[-1].weight.grad.abs().sum() > 0
    assert net.head.linear.weight.grad.abs().sum() > 0


def test_wide_config_round_trips_and_old_configs_stay_narrow():
    net = _wide_net()
    rebuilt = LoanNet(**net.config())
    rebuilt.load_state_dict(net.state_dict())
    x_num, x_cat = batch()
    torch.testing.assert_close(rebuilt.eval()(x_num, x_cat), net.eval()(x_num, x_cat))
    old = {k: v for k, v in LoanNet(7, CARDS).config().items() if k != "wide"}  # a bundle written before the key
    assert isinstance(LoanNet(**old).head, nn.Sequential)


def test_wide_head_shap_values_are_additive():
    """DeepExplainer on mlp(z) + linear(z): base + values sum to the logit, with a non-zero MLP part; the fast path
    (closed-form MLP plus the exact linear part) gives the same values."""
    from loan_default.core.explain import ShapExplainer

    net = _wide_net().train()
    with torch.no_grad():
        net.head.mlp[-1].weight.normal_(0.0, 0.5)  # as after training: both paths contribute
        for seed in range(3):
            net(*batch(128, seed=seed))
    net.eval()
    names = [f"f{i}" for i in range(7 + len(CARDS))]
    explainer = ShapExplainer(net, *batch(100, seed=5), names)
    x_num, x_cat = batch(6, seed=9)
    values, base = explainer.explain(x_num, x_cat, method="deep")
    with torch.no_grad():
        logit = net(x_num, x_cat).squeeze(1).double().numpy()
    np.testing.assert_allclose(base + values.sum(axis=1), logit, atol=1e-4)
    fast, fast_base = explainer.explain(x_num, x_cat, method="fast")  # closed form MLP + exact linear part
    np.testing.assert_allclose(fast, values, atol=1e-4)
    assert fast_base == base


def _linear_data(n: int = 400, seed: int = 3):
    x_num, x_cat = batch(n, seed=seed)
    risk = x_num[:, 0] - x_num[:, 1] + 0.8 * (x_cat[:, 1] % 3 == 0).float()
    y = (torch.rand(n, generator=torch.Generator().manual_seed(seed + 1)) < torch.sigmoid(risk - 1.0)).float()
    return x_num, x_cat, y


def test_fit_linear_path_is_the_weighted_one_hot_logistic_regression():
    """Against sklearn on numeric + one-hot columns: weighted mean BCE + l2 * |coef|^2 is sklearn's objective with
    C = 1 / (2 * l2 * sum of weights); the net's logit at init is that model's decision function."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    net = _wide_net().eval()
    x_num, x_cat, y = _linear_data()
    net.fit_linear_path(x_num, x_cat, y, pos_weight=1.0, l2=1e-2)  # balanced sampler: defaults weighted neg/pos
    n_pos = float(y.sum())
    w = np.where(y.numpy() > 0.5, (len(y) - n_pos) / n_pos, 1.0)
    onehot = OneHotEncoder(categories=[list(range(c)) for c in CARDS]).fit_transform(x_cat.numpy()).toarray()
    design = np.hstack([x_num.double().numpy(), onehot])
    ref = LogisticRegression(C=1 / (2 * 1e-2 * w.sum()), tol=1e-10, max_iter=10_000)
    ref.fit(design, y.numpy(), sample_weight=w)
    linear = net.head.linear.weight.detach().numpy()[0]
    np.testing.assert_allclose(linear[:7], ref.coef_[0, :7], atol=2e-3)
    tables = np.concatenate([emb.weight.detach().numpy()[:, 0] for emb in net.embeddings])
    np.testing.assert_allclose(tables, ref.coef_[0, 7:], atol=2e-3)
    np.testing.assert_allclose(net.head.linear.bias.item(), ref.intercept_[0], atol=2e-3)
    with torch.no_grad():
        logit = net(x_num, x_cat).squeeze(1).double().numpy()
    np.testing.assert_allclose(logit, ref.decision_function(design), atol=5e-3)
    with pytest.raises(ValueError, match="wide"):
        LoanNet(7, CARDS).fit_linear_path(x_num, x_cat, y)


def test_fit_linear_path_chooses_its_penalty_by_cross_validation():
    """l2=None picks from the grid: weak penalty for a strong signal in many rows, strongest for pure noise."""
    from loan_default.core import network

    x_num, x_cat, y = _linear_data(3000, seed=11)
    z = x_num.double()
    cat = x_cat.long()
    signal = network._choose_l2(z, cat, y.double(), 1.0, CARDS)
    noise_y = (torch.rand(3000, generator=torch.Generator().manual_seed(5)) < 0.1).double()
    noise = network._choose_l2(z, cat, noise_y, 1.0, CARDS)
    assert signal in network.LINEAR_L2_GRID and noise in network.LINEAR_L2_GRID
    assert signal < network.LINEAR_L2_GRID[0]
    assert noise > signal
    net = _wide_net()
    net.fit_linear_path(x_num, x_cat, y)  # runs end to end with the chosen penalty
    assert net.head.linear.weight[0, :7].abs().sum() > 0
