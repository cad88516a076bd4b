"""LoanNet: shapes, embeddings, feature groups, and the structure SHAP's DeepExplainer relies on."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from loan_default.network import LoanNet, default_embedding_dim

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
