"""The network: numeric inputs plus one embedding per categorical feature, then an MLP head that returns logits.

The head is built so SHAP's DeepExplainer can run on it unchanged: a plain ``nn.Sequential`` with one activation
module per layer, no functional activations, no in-place ops, and no sigmoid (``forward`` returns logits (N, 1)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def default_embedding_dim(cardinality: int) -> int:
    """fast.ai's rule of thumb: grows sub-linearly with the number of categories, capped at 16."""
    return min(16, max(1, round(1.6 * cardinality**0.56)))


class LoanNet(nn.Module):
    """MLP over ``[x_num, embedding_1(x_cat[:, 0]), ..., embedding_C(x_cat[:, C-1])]``.

    Categorical id 0 is the unknown/missing bucket and ids run ``0..cardinality-1``, so each embedding table has
    exactly ``cardinality`` rows.
    """

    def __init__(
        self,
        n_numeric: int,
        cat_cardinalities: Sequence[int],
        embedding_dims: Sequence[int] | None = None,
        hidden_sizes: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        cards = [int(c) for c in cat_cardinalities]
        if any(c < 1 for c in cards):
            raise ValueError(f"every categorical cardinality must be >= 1 (it counts the unknown bucket), got {cards}")
        dims = [default_embedding_dim(c) for c in cards] if embedding_dims is None else [int(d) for d in embedding_dims]
        if len(dims) != len(cards):
            raise ValueError(f"{len(dims)} embedding dims for {len(cards)} categorical features")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_numeric = int(n_numeric)
        self.embedding_dims = dims
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cards, dims, strict=True))

        layers: list[nn.Module] = []
        width = self.embed_dim
        for size in hidden_sizes:
            layers.append(nn.Linear(width, int(size)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(size)))
            # A fresh ReLU per layer: DeepExplainer stores each module's input/output on the module itself.
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    @property
    def embed_dim(self) -> int:
        """Width D of ``embed``'s output: numeric columns plus all embedding widths."""
        return self.n_numeric + sum(self.embedding_dims)

    def embed(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """(N, F) float and (N, C) int64 -> (N, D) float: numeric columns, then each embedding in feature order."""
        parts = [x_num] + [emb(x_cat[:, j]) for j, emb in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, 1); apply ``torch.sigmoid`` outside for probabilities."""
        return self.head(self.embed(x_num, x_cat))

    def feature_groups(self) -> list[list[int]]:
        """Columns of ``embed``'s output per input feature: numeric i -> [i], then categorical j -> its slice.

        Summing SHAP values of the embedded input over each group gives one value per input feature (F + C of them).
        """
        groups = [[i] for i in range(self.n_numeric)]
        start = self.n_numeric
        for dim in self.embedding_dims:
            groups.append(list(range(start, start + dim)))
            start += dim
        return groups
