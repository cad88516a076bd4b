"""The cross-validation fold ensemble: K `LoanNet`s whose logits are averaged, served as one network.

`FoldEnsemble` has the interface the rest of core reads from a network, so the bundle, serving, batch scoring and
SHAP use it unchanged: ``forward(x_num, x_cat)`` returns logits (N, 1), and `embed` / `head` / `embed_dim` /
`feature_groups` are what `core.explain.ShapExplainer` explains. Its embedded input is the K fold networks' embedded
inputs side by side; its head is one plain ``nn.Sequential`` that computes the K heads block by block (block-diagonal
weights, batch norm folded into the layer before it) and averages them in its last layer. That is exactly the average
of the K eval-mode heads, and a head of Linear and ReLU layers keeps the explainer's fast closed-form path. SHAP values
of a feature are summed over its columns in all K blocks, so they add up to the averaged logit.

Every fold network is built with the same arguments (they share the preprocessor, so the same feature space). The
ensemble only predicts and explains: it is never trained, and its head is a view rebuilt from the fold networks'
current weights on every access, so it cannot go stale after ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from loan_default.core.network import LoanNet, WideHead

Affine = tuple[torch.Tensor, torch.Tensor]


class FoldEnsemble(nn.Module):
    """``logit(x) = mean_k net_k(x)`` over the fold networks ``nets`` (at least two, all built alike)."""

    def __init__(self, nets: Sequence[LoanNet]) -> None:
        super().__init__()
        if len(nets) < 2:
            raise ValueError(f"a fold ensemble needs at least 2 networks, got {len(nets)}")
        shapes = [net.config() for net in nets]
        if any(shape != shapes[0] for shape in shapes[1:]):
            raise ValueError("the fold networks of an ensemble must all have the same shape (config())")
        self.nets = nn.ModuleList(nets)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FoldEnsemble:
        """Rebuild the shape `config` describes (weights untrained: load them with ``load_state_dict``)."""
        return cls([LoanNet(**config["fold"]) for _ in range(int(config["folds"]))])

    def config(self) -> dict[str, Any]:
        """``{"folds": K, "fold": <LoanNet.config()>}``: what a bundle's model.json needs to rebuild the ensemble."""
        return {"folds": len(self.nets), "fold": self.nets[0].config()}

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1): the mean of the fold networks' logits."""
        return torch.stack([net(x_num, x_cat) for net in self.nets]).mean(dim=0)

    # -- the explainer's view ------------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return sum(net.embed_dim for net in self.nets)

    def embed(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """(N, K * D): each fold network's embedded input, in fold order."""
        return torch.cat([net.embed(x_num, x_cat) for net in self.nets], dim=1)

    def feature_groups(self) -> list[list[int]]:
        """Columns of `embed`'s output per input feature: its columns in every fold's block."""
        groups: list[list[int]] = [[] for _ in self.nets[0].feature_groups()]
        start = 0
        for net in self.nets:
            for group, cols in zip(groups, net.feature_groups(), strict=True):
                group.extend(start + c for c in cols)
            start += net.embed_dim
        return groups

    @property
    def head(self) -> nn.Module:
        """``head(embed(x)) == forward(x)`` in eval mode: the K eval-mode heads as one block-diagonal network."""
        heads = [net.head for net in self.nets]
        if all(isinstance(h, WideHead) for h in heads):
            mlp = _fuse([_affine_ops(h.mlp) for h in heads])
            linear = _fuse([[_linear(h.linear)] for h in heads])
            return WideHead(mlp, linear[0]).eval()
        return _fuse([_affine_ops(h) for h in heads]).eval()


def build_network(config: Mapping[str, Any]) -> LoanNet | FoldEnsemble:
    """The network a bundle's model.json describes: a fold ensemble (``{"folds": K, "fold": {...}}``) or one LoanNet
    (every bundle written before cross-validation mode)."""
    return FoldEnsemble.from_config(config) if "folds" in config else LoanNet(**config)


def _linear(layer: nn.Linear) -> Affine:
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
    return layer.weight.detach().clone(), bias.detach().clone()


def _affine_ops(head: nn.Module) -> list[Affine | None]:
    """An eval-mode MLP head as affine maps ``(W, b)`` and ``None`` for each ReLU: batch norm (running statistics)
    folded into the map before it, dropout (the identity in eval mode) left out."""
    if not isinstance(head, nn.Sequential):
        raise TypeError(f"cannot fuse a head of type {type(head).__name__}")
    ops: list[Affine | None] = []
    for layer in head:
        if isinstance(layer, nn.Linear):
            ops.append(_linear(layer))
        elif isinstance(layer, nn.BatchNorm1d) and ops and ops[-1] is not None:
            scale = torch.rsqrt(layer.running_var + layer.eps)
            shift = -layer.running_mean * scale
            if layer.affine:
                scale, shift = scale * layer.weight.detach(), shift * layer.weight.detach() + layer.bias.detach()
            weight, bias = ops[-1]
            ops[-1] = (weight * scale[:, None], bias * scale + shift)
        elif isinstance(layer, nn.ReLU):
            ops.append(None)
        elif not isinstance(layer, nn.Dropout):
            raise TypeError(f"cannot fuse a head layer of type {type(layer).__name__}")
    return ops


def _fuse(per_net: list[list[Affine | None]]) -> nn.Sequential:
    """One Sequential computing the mean of K heads given as op lists of equal structure, on their inputs side by
    side: hidden layers block-diagonal, the last (one output each) concatenated and divided by K."""
    k = len(per_net)
    layers: list[nn.Module] = []
    for depth, ops in enumerate(zip(*per_net, strict=True)):
        if ops[0] is None:
            layers.append(nn.ReLU())  # one module per layer: DeepExplainer keeps state on each
            continue
        last = depth == len(per_net[0]) - 1
        weights, biases = zip(*ops, strict=True)
        if last:
            weight, bias = torch.cat(weights, dim=1) / k, torch.stack(biases).mean(dim=0)
        else:
            weight, bias = torch.block_diag(*weights), torch.cat(biases)
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        layers.append(layer)
    return nn.Sequential(*layers)
