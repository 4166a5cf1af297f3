"""Helpers for the author command's tests: two ways to run ``modelroll`` (the installed console
script as a subprocess, and ``main()`` in this process, fast, for the many input cases) and a
trained model with its held-out data."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
MODELROLL = Path(sys.executable).parent / "modelroll"  # the console script of this venv


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """``modelroll ARGS`` as a user runs it: the installed script, a separate process."""
    r = subprocess.run([str(MODELROLL), *args], capture_output=True, text=True, timeout=120, env=env)
    return Result(r.returncode, r.stdout, r.stderr)


def call(*args: str) -> Result:
    """``modelroll ARGS`` in this process (argparse usage errors exit through SystemExit)."""
    from modelroll_author.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(list(args), out, err)
    except SystemExit as e:
        code = int(e.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Case:
    """A trained model, its file, and its held-out data (``test``: features + ``target``)."""

    model: Any
    path: Path
    csv: Path
    test: pd.DataFrame
    target: str = "target"

    @property
    def features_csv(self) -> Path:
        """The held-out data without the target column (reference data as most authors have it)."""
        path = self.csv.with_name(self.csv.stem + "-features.csv")
        if not path.exists():
            self.X.to_csv(path, index=False)
        return path

    @property
    def X(self) -> pd.DataFrame:
        return self.test.drop(columns=[self.target])

    @property
    def y(self) -> pd.Series:
        return self.test[self.target]


def split(X: pd.DataFrame, y: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    from sklearn.model_selection import train_test_split

    parts: Any = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y if y.nunique() < 10 else None)
    return parts[0], parts[1], parts[2], parts[3]
