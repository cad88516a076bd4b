"""A small, real model bundle built in seconds, without Lightning: for the API tests, the serving benchmark and for
trying the API before a model has been trained.

Every part is the real thing (a fitted Preprocessor, a SUOD outlier detector exported for in-process scoring, a
`LoanNet`, `write_bundle`); only the training is short (twenty full-batch Adam steps) on a small loan table from the
synthetic generator, read back from Freddie Mac-format files.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError

from loan_default.core.bundle import write_bundle
from loan_default.core.drift import build_reference
from loan_default.core.network import LoanNet
from loan_default.core.preprocess import Preprocessor
from loan_default.freddie.errors import FreddieDataWarning
from loan_default.freddie.loans import load_loan_table
from loan_default.serving.schemas import FEATURE_FIELDS, Loan
from loan_default.synthetic.generate import generate
from loan_default.training.outliers import OutlierFilter


def demo_loans(n: int = 2000, seed: int = 0, folder: str | Path | None = None) -> pd.DataFrame:
    """A labelled loan table from the synthetic generator: Freddie Mac files written to `folder` (default: a
    temporary folder) and read back with `load_loan_table`, so every field has the real contract."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="loan-default-demo-") as tmp:
            return demo_loans(n, seed, tmp)
    generate(folder, n, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FreddieDataWarning)  # censored loans dropped: expected, and reported
        table, _ = load_loan_table(folder=folder)
    return table


def loan_requests(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a loan table as JSON request bodies (feature fields and loan_id; missing values left out), keeping
    only those the API accepts: corrupted records with values outside the valid ranges are left out."""
    names = ["loan_id", *(f for f in FEATURE_FIELDS if f in frame.columns)]
    requests = []
    for row in frame[names].itertuples(index=False):
        loan = {}
        for name, value in zip(names, row, strict=True):
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                continue
            loan[name] = int(value) if isinstance(value, float) and value.is_integer() else value
        try:
            Loan.model_validate(loan)
        except ValidationError:
            continue
        requests.append(loan)
    return requests


def build_demo_bundle(
    path: str | Path,
    n_loans: int = 2000,
    seed: int = 0,
    outlier_method: str = "suod",
    detectors: tuple[str, ...] = ("IForest", "ECOD"),
    hidden_sizes: tuple[int, ...] = (128, 64),
    steps: int = 20,
) -> Path:
    """Fit everything on `demo_loans(n_loans, seed)` and write a bundle at `path`; returns the path."""
    loans = demo_loans(n_loans, seed)
    y = loans["default"].to_numpy()
    preprocessor = Preprocessor(min_frequency=10).fit(loans)
    x_num, x_cat = preprocessor.transform(loans)
    outlier = OutlierFilter(method=outlier_method, detectors=detectors if outlier_method == "suod" else (), seed=seed)
    outlier.fit(preprocessor.outlier_matrix(loans), y)

    torch.manual_seed(seed)
    net = LoanNet(len(preprocessor.numeric_names), preprocessor.cat_cardinalities, hidden_sizes=hidden_sizes)
    pos_weight = (1 - y.mean()) / max(y.mean(), 1e-3)
    _fit(net, x_num, x_cat, y, steps, pos_weight)
    # Weighting the positives multiplies the odds the network learns by pos_weight: the offset takes it back out.
    logit_offset = -math.log(pos_weight)
    net_kwargs = {
        "n_numeric": len(preprocessor.numeric_names),
        "cat_cardinalities": list(preprocessor.cat_cardinalities),
        "embedding_dims": list(net.embedding_dims),
        "hidden_sizes": list(hidden_sizes),
        "dropout": 0.1,
        "batch_norm": True,
    }
    with torch.inference_mode():
        logits = net(torch.from_numpy(x_num), torch.from_numpy(x_cat))[:, 0].double().numpy() + logit_offset
    threshold = float(np.quantile(1 / (1 + np.exp(-logits)), 0.8))
    background = np.random.default_rng(seed).permutation(len(loans))[:100]
    return write_bundle(
        path,
        net=net,
        net_kwargs=net_kwargs,
        preprocessor=preprocessor,
        outlier_filter=outlier,
        logit_offset=logit_offset,
        decision={"threshold": threshold, "method": "demo: 80th percentile of training scores"},
        background=(x_num[background], x_cat[background]),
        config_yaml=f"demo: true\nn_loans: {n_loans}\nseed: {seed}\n",
        metrics={"train_default_rate": float(y.mean()), "n_train": n_loans},
        model_name="loan-default-demo",
        monitoring=build_reference(1 / (1 + np.exp(-logits)), loans),  # the training rows' scores and fields
    )


def reference_scores(bundle, loans: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """Probability, decision, risk band and outlier score computed straight from the bundle's parts (not through
    `Scorer`): the in-process reference the API and training tests compare the served answers with."""
    frame = loans if isinstance(loans, pd.DataFrame) else pd.DataFrame(list(loans))
    p = bundle.predict_proba(frame)
    raw = bundle.preprocessor.outlier_matrix(frame)
    return pd.DataFrame(
        {
            "default_probability": p,
            "decision": np.where(p >= bundle.threshold, "default", "no_default"),
            "risk_band": bundle.risk_bands(p),
            "outlier_score": bundle.outlier.score(raw),
            "is_outlier": bundle.outlier.is_outlier(raw),
        }
    )


def _fit(net: LoanNet, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, steps: int, pos_weight: float) -> None:
    """Full-batch Adam on BCE with the positives weighted up: enough to learn the main risk drivers."""
    xn, xc, target = torch.from_numpy(x_num), torch.from_numpy(x_cat), torch.from_numpy(y.astype(np.float32))
    weight = torch.tensor(pos_weight)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: a second thread only adds contention (measured 20x slower when busy)
    net.train()
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            logits = net(xn, xc)[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
        net.eval()
