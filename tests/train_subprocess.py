"""Run train.py in a subprocess: DDP needs it (Lightning's launcher re-runs the started script, not pytest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train_py(root: Path, name: str, base: list[str], *overrides: str, timeout: int) -> Path:
    """train.py on the Freddie-format files in ``root/freddie`` with ``base`` then ``overrides``; returns the run
    folder (``root/name``) after asserting the run succeeded."""
    env = {**os.environ, "LOAN_DEFAULT_ROOT": str(root), "CI": "true"}
    run = root / name
    result = subprocess.run(
        [sys.executable, "train.py", *base, f"data.folder={root / 'freddie'}", *overrides, f"hydra.run.dir={run}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run
