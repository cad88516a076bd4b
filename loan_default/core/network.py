"""The network: numeric inputs plus one embedding per categorical feature, then an MLP head that returns logits.

The head is built so SHAP's DeepExplainer can run on it unchanged: a plain ``nn.Sequential`` with one activation
module per layer, no functional activations, no in-place ops, and no sigmoid (``forward`` returns logits (N, 1)).

Two choices in `embed` (measurements: docs/decisions/0003-ann-regularisation-and-embeddings.md):

* **Learned piecewise-linear shape per numeric column.** Credit data is full of policy cut-offs (DTI above 45,
  credit score below 680, LTV above 80/90) where risk jumps between two adjacent integer values. A ReLU MLP
  on standardised inputs bends smoothly (the spectral bias of gradient descent): it needs very large first-layer
  weights to make a step, which dropout and weight decay hold back, while trees find such splits exactly. So each
  numeric column ``x`` enters the head as ``x + s(x)``, where ``s`` is piecewise linear with knots at the column's
  training quantiles (``numeric_bins`` bins, placed by `fit_numeric_bins`) and one learned slope per bin: the
  piecewise-linear encoding of Gorishniy et al., "On Embeddings for Numerical Features in Tabular Deep Learning"
  (NeurIPS 2022), summed back to one column per feature so the head, the SHAP feature groups and the bundle's
  network shape stay as they were. Quantile knots make bins narrow where loans are dense (one or two DTI points
  around 45, 6-8 credit-score points around 680 on the synthetic data), so ``s`` can rise steeply across a cut-off
  with a single weight. The slopes start at 0, so the network begins as a plain MLP, and until
  `fit_numeric_bins` runs every bin has zero width and ``s`` is 0.
* **Embeddings can start near zero** (``embedding_init_std``; the configs use 0.01, not ``nn.Embedding``'s 1): a
  category the model has learned nothing about then looks like the average loan instead of carrying a random vector
  the head can latch on to. With the slower embedding learning rate in `LoanDefaultModule` this stops the ZIP / MSA
  / seller / state embeddings from memorising the few defaults of rare values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

# `fit_numeric_bins` reads at most this many rows (an even stride through the data) to place the knots. With 32 bins a
# knot's rank error from 50k rows is ~0.002 (sd of a quantile estimate), under a tenth of a bin's 1/32; sorting 1M
# rows instead cost ~1.5 s at every fit start (docs/decisions/0051-train-step-overhead.md).
MAX_BIN_ROWS = 50_000


def default_embedding_dim(cardinality: int, cap: int = 16) -> int:
    """fast.ai's rule of thumb: grows sub-linearly with the number of categories, capped at `cap`.

    A small cap matters with rare defaults: wide embeddings of ZIP/MSA/seller let the network memorise the few
    defaulted loans of a category (on the synthetic data a cap of 4 gained ~0.01 validation ROC-AUC over 16).
    """
    return min(cap, max(1, round(1.6 * cardinality**0.56)))


class WideHead(nn.Module):
    """``mlp(z) + linear(z)``: a linear (wide) path beside the MLP on the same embedded input ``z``.

    Both children are plain modules and the sum is linear, so DeepExplainer's attributions stay additive.
    """

    def __init__(self, mlp: nn.Sequential, linear: nn.Linear) -> None:
        super().__init__()
        self.mlp = mlp
        self.linear = linear

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z) + self.linear(z)


class LoanNet(nn.Module):
    """MLP over ``[x_num + s(x_num), embedding_1(x_cat[:, 0]), ..., embedding_C(x_cat[:, C-1])]``.

    Categorical id 0 is the unknown/missing bucket and ids run ``0..cardinality-1``, so each embedding table has
    exactly ``cardinality`` rows. ``s`` is the learned per-column piecewise-linear shape (module docstring) with
    ``numeric_bins`` bins per column; 0 turns it off. It is the identity until `fit_numeric_bins` places the knots.
    The default of 32 is also the shape a bundle's network is rebuilt with when its description omits the number.
    ``embedding_init_std`` scales the initial N(0, 1) embedding vectors. ``wide`` adds a linear path beside the MLP
    (`WideHead`) and zeroes the MLP's last layer; `fit_linear_path` then fits the linear path as a logistic regression,
    so training starts from that model (issue 11; docs/decisions/0054-wide-path.md). False, the default, is also how older bundles without the key are rebuilt.
    """

    def __init__(
        self,
        n_numeric: int,
        cat_cardinalities: Sequence[int],
        embedding_dims: Sequence[int] | None = None,
        hidden_sizes: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        batch_norm: bool = True,
        numeric_bins: int = 32,
        embedding_init_std: float = 1.0,
        wide: bool = False,
    ) -> None:
        super().__init__()
        cards = [int(c) for c in cat_cardinalities]
        hidden_sizes = [int(h) for h in hidden_sizes]
        if any(c < 1 for c in cards):
            raise ValueError(f"every categorical cardinality must be >= 1 (it counts the unknown bucket), got {cards}")
        dims = [default_embedding_dim(c) for c in cards] if embedding_dims is None else [int(d) for d in embedding_dims]
        if len(dims) != len(cards):
            raise ValueError(f"{len(dims)} embedding dims for {len(cards)} categorical features")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if numeric_bins < 0:
            raise ValueError(f"numeric_bins must be >= 0, got {numeric_bins}")
        self.n_numeric = int(n_numeric)
        self.numeric_bins = int(numeric_bins)
        # The constructor's arguments as plain values: what a bundle's model.json needs to rebuild this network.
        self._config = {
            "n_numeric": self.n_numeric, "cat_cardinalities": cards, "embedding_dims": list(dims),
            "hidden_sizes": hidden_sizes, "dropout": float(dropout), "batch_norm": bool(batch_norm),
            "numeric_bins": self.numeric_bins, "embedding_init_std": float(embedding_init_std), "wide": bool(wide),
        }  # fmt: skip
        self.embedding_dims = dims
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cards, dims, strict=True))
        with torch.no_grad():  # scaling (not redrawing) keeps the random stream, so 1.0 is nn.Embedding unchanged
            for emb in self.embeddings:
                emb.weight.mul_(float(embedding_init_std))
        # Knots (a buffer: fitted, not learned, saved with the weights) and one slope per bin, starting flat.
        self.register_buffer("bin_edges", torch.zeros(self.n_numeric, self.numeric_bins + 1))
        self.bin_weight = nn.Parameter(torch.zeros(self.n_numeric, self.numeric_bins))

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
        mlp = nn.Sequential(*layers)
        if wide:
            # The MLP's last layer starts at zero, so at init the logit is the linear path alone: the network begins
            # as a logistic model on the embedded input and the MLP only adds what that model misses.
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
            self.head: nn.Module = WideHead(mlp, nn.Linear(self.embed_dim, 1))
        else:
            self.head = mlp

    def config(self) -> dict:
        """Keyword arguments that rebuild this network's shape (``LoanNet(**net.config())``), as plain JSON values."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._config.items()}

    @property
    def embed_dim(self) -> int:
        """Width D of ``embed``'s output: numeric columns plus all embedding widths."""
        return self.n_numeric + sum(self.embedding_dims)

    @property
    def numeric_bins_fitted(self) -> bool:
        """Whether `fit_numeric_bins` has placed the knots (some bin has positive width)."""
        return bool((self.bin_edges[:, 1:] > self.bin_edges[:, :-1]).any())

    @torch.no_grad()
    def fit_numeric_bins(self, x_num: torch.Tensor | np.ndarray) -> None:
        """Place each numeric column's knots at its quantiles 0, 1/B, ..., 1 over ``x_num`` (N, F), the training rows.

        Repeated quantiles (a binary column, a value shared by many loans) give zero-width bins, which carry no
        weight. Call it before training: the learned slopes belong to the knots they were trained with.
        """
        x = torch.as_tensor(x_num).detach().cpu()
        if x.ndim != 2 or x.shape[1] != self.n_numeric or len(x) == 0:
            raise ValueError(f"fit_numeric_bins needs (N > 0, {self.n_numeric}) numeric rows, got {tuple(x.shape)}")
        x = x[:: -(-len(x) // MAX_BIN_ROWS)].double().numpy()  # stride first: only the rows read get copied
        edges = np.quantile(x, np.linspace(0.0, 1.0, self.numeric_bins + 1), axis=0).T
        self.bin_edges.copy_(torch.from_numpy(edges))

    def fit_linear_path(
        self,
        x_num: torch.Tensor,
        x_cat: torch.Tensor,
        y: torch.Tensor,
        pos_weight: float | None = None,
        l2: float | None = None,
        batch_pos_fraction: float | None = 0.5,
    ) -> None:
        """Start the wide head's linear path as the logistic regression on the shaped numeric columns plus one
        coefficient per category (one-hot), as the logistic baseline; training then starts from that model.

        A category's coefficient is written into the first coordinate of its embedding vector, and the linear path
        reads that coordinate with weight 1 (the other embedding coordinates with 0). So the categorical fields act
        linearly from the start, with no new modules: feature groups, SHAP and the bundle layout are unchanged. (Fitted
        on the embeddings as they are at init, ~0.01-scale random vectors, the categoricals added almost nothing.)

        The fit weights defaults as the training loss will: ``pos_weight`` is the loss weight of defaults, and
        ``batch_pos_fraction`` their share per batch (0.5 = the balanced sampler; None = the data's own share), so the
        intercept matches what training optimises. ``l2`` penalises mean loss + l2 * |coefficients|^2; None chooses it
        from `LINEAR_L2_GRID` by the out-of-fold log loss of `LINEAR_CV_FOLDS` stratified folds of the training rows
        (at most `LINEAR_CV_ROWS` of them), as the logistic baseline's strength is chosen on held-out rows.
        """
        if not isinstance(self.head, WideHead):
            raise ValueError("fit_linear_path needs a wide network (wide=True)")
        with torch.no_grad():
            z_num = self.shape_numeric(x_num).detach().cpu().double()
        cat = x_cat.detach().cpu().long()
        target = y.detach().cpu().reshape(-1).double()
        n_pos = float(target.sum())
        n_neg = float(len(target)) - n_pos
        if n_pos == 0 or n_neg == 0:
            raise ValueError("fit_linear_path needs both classes among the training rows")
        odds = 1.0 if batch_pos_fraction is None else batch_pos_fraction / (1 - batch_pos_fraction) * n_neg / n_pos
        w_pos = odds * (1.0 if pos_weight is None else float(pos_weight))
        cards = [emb.num_embeddings for emb in self.embeddings]
        if l2 is None:
            l2 = _choose_l2(z_num, cat, target, w_pos, cards)
        bias, coef, tables = _fit_logistic(z_num, cat, target, w_pos, cards, float(l2))
        linear = self.head.linear
        with torch.no_grad():
            linear.weight.zero_()
            linear.weight[0, : self.n_numeric] = coef.to(linear.weight)
            linear.bias.fill_(float(bias))
            start = self.n_numeric
            for emb, table in zip(self.embeddings, tables, strict=True):
                emb.weight[:, 0] = table.to(emb.weight)
                linear.weight[0, start] = 1.0
                start += emb.embedding_dim

    def shape_numeric(self, x_num: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N, F): ``x + s(x)`` per column, ``s`` linear inside each bin, 0 below the first knot and flat
        above the last. Computed bin by lookup (O(N F) memory), equal to the sum over bins of
        ``slope_b * clamp((x - lo_b) / width_b, 0, 1)``."""
        if self.numeric_bins == 0:
            return x_num
        lo, hi = self.bin_edges[:, :-1], self.bin_edges[:, 1:]
        width = hi - lo
        live = width > 0
        slope = torch.where(live, self.bin_weight, torch.zeros_like(self.bin_weight))
        # Value of s at each knot: 0 at the first, then the running sum of the slopes of the bins passed.
        at_knot = torch.cat([slope.new_zeros(self.n_numeric, 1), slope.cumsum(dim=1)], dim=1)
        x = x_num.t().contiguous().to(self.bin_edges.dtype)
        # The last knot <= x; with repeated knots that is the last copy, whose bin is the one of positive width.
        bins = (torch.searchsorted(self.bin_edges.contiguous(), x, right=True) - 1).clamp(0, self.numeric_bins - 1)
        safe_width = torch.where(live, width, torch.ones_like(width))
        frac = ((x - lo.gather(1, bins)) / safe_width.gather(1, bins)).clamp(0.0, 1.0)
        shape = at_knot.gather(1, bins) + slope.gather(1, bins) * frac
        return x_num + shape.t().to(x_num.dtype)

    def embed(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """(N, F) float and (N, C) int64 -> (N, D) float: shaped numeric columns, then each embedding in order."""
        parts = [self.shape_numeric(x_num)] + [emb(x_cat[:, j]) for j, emb in enumerate(self.embeddings)]
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


# The wide path's starting logistic regression (`LoanNet.fit_linear_path`): penalties tried, strongest first, on the
# mean weighted loss (l2 = 0.036 is sklearn's C = 0.01 at 1,400 rows), and the cross-validation that picks one.
LINEAR_L2_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003)
LINEAR_CV_FOLDS = 5
LINEAR_CV_ROWS = 50_000


def _design(z_num: np.ndarray, cat: np.ndarray, cards: Sequence[int]):
    """Sparse [numeric columns, one-hot ids of every categorical field (all ``cardinality`` ids)]."""
    from scipy import sparse

    offsets = np.concatenate([[0], np.cumsum(cards)[:-1]]).astype(np.int64) + z_num.shape[1]
    n, n_cat = cat.shape
    rows = np.repeat(np.arange(n), z_num.shape[1] + n_cat)
    cols = np.hstack([np.broadcast_to(np.arange(z_num.shape[1]), (n, z_num.shape[1])), cat + offsets]).ravel()
    values = np.hstack([z_num, np.ones((n, n_cat))]).ravel()
    return sparse.csr_matrix((values, (rows, cols)), shape=(n, z_num.shape[1] + int(sum(cards))))


def _logistic(l2: float, weight_sum: float, tol: float = 1e-6):
    """sklearn's L2 logistic regression for mean weighted loss + l2 * |coef|^2: its objective is
    C * sum_i w_i loss_i + |coef|^2 / 2, the same minimiser at C = 1 / (2 * l2 * sum_i w_i). Intercept unpenalised."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=_inverse_strength(l2, weight_sum), tol=tol, max_iter=2000, warm_start=True)


def _inverse_strength(l2: float, weight_sum: float) -> float:
    """sklearn's C for the penalty ``l2`` on the mean weighted loss (see `_logistic`)."""
    return 1.0 / (2.0 * l2 * weight_sum)


def _weights(y: np.ndarray, w_pos: float) -> np.ndarray:
    return np.where(y > 0.5, w_pos, 1.0)


def _fit_logistic(
    z_num: torch.Tensor, cat: torch.Tensor, y: torch.Tensor, w_pos: float, cards: Sequence[int], l2: float
) -> tuple[float, torch.Tensor, list[torch.Tensor]]:
    """Weighted L2 logistic regression on numeric columns plus one-hot ids (lbfgs, float64): minimises
    sum_i w_i BCE_i / sum_i w_i + l2 * (|coef|^2 + sum of squared category coefficients), defaults weighted w_pos.
    Returns (intercept, numeric coefficients, one coefficient table per categorical field)."""
    target = y.numpy()
    weight = _weights(target, w_pos)
    model = _logistic(l2, weight.sum()).fit(_design(z_num.numpy(), cat.numpy(), cards), target, sample_weight=weight)
    coef = torch.from_numpy(model.coef_[0].copy())
    n_num = z_num.shape[1]
    tables = list(torch.split(coef[n_num:], list(cards))) if cards else []
    return float(model.intercept_[0]), coef[:n_num], tables


def _choose_l2(z_num: torch.Tensor, cat: torch.Tensor, y: torch.Tensor, w_pos: float, cards: Sequence[int]) -> float:
    """The penalty of `LINEAR_L2_GRID`, strongest first, after which the out-of-fold weighted log loss stops falling
    (stratified folds, fixed seed; log loss rather than ROC-AUC: it is smooth in the penalty and prefers the strongest
    one when nothing is learnable; stopping the path skips the slow fits of weak penalties),
    rescaled to the full row count when the folds read a sample (the prior strength, l2 * rows, is what carries)."""
    n = len(y)
    rng = np.random.default_rng(0)
    rows = rng.permutation(n)[:LINEAR_CV_ROWS]
    x = _design(z_num.numpy()[rows], cat.numpy()[rows], cards)
    target = y.numpy()[rows]
    weight = _weights(target, w_pos)
    # Stratified folds: each class's rows dealt round-robin after the shuffle.
    fold = np.empty(len(rows), dtype=np.int64)
    for label in (0.0, 1.0):
        idx = np.flatnonzero(target == label)
        fold[idx] = np.arange(len(idx)) % LINEAR_CV_FOLDS
    models = [None] * LINEAR_CV_FOLDS  # one per fold, warm-started along the path
    scores = []
    for l2 in LINEAR_L2_GRID:
        loss = 0.0
        for k in range(LINEAR_CV_FOLDS):
            train, held = fold != k, fold == k
            model = models[k] = models[k] or _logistic(l2, weight[train].sum(), tol=1e-4)
            model.set_params(C=_inverse_strength(l2, weight[train].sum()))
            model.fit(x[train], target[train], sample_weight=weight[train])
            p = np.clip(model.predict_proba(x[held])[:, 1], 1e-12, 1 - 1e-12)
            loss -= (weight[held] * (target[held] * np.log(p) + (1 - target[held]) * np.log(1 - p))).sum()
        if scores and loss / weight.sum() >= scores[-1]:  # weaker penalties only overfit more from here: stop
            break
        scores.append(loss / weight.sum())
    return LINEAR_L2_GRID[len(scores) - 1] * len(rows) / n
