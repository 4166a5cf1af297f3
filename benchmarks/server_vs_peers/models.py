"""The benchmark's models and scikit-learn's own predict rate, run by bench.py in a child process.

``python models.py train DIR`` trains the two models of issue 4 with fixed seeds into
DIR/<name>/model.joblib and prints {name: path} as JSON; ``python models.py limit PATH``
prints [one-row predict calls/s, 64-row predict rows/s] for the model at PATH.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench import LR, RF, ROW, reference_path


def train(workdir: Path) -> dict[str, str]:
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    paths = {}
    for key, est in ((LR, LogisticRegression(max_iter=500)),
                     (RF, RandomForestClassifier(n_estimators=100, random_state=0))):  # fmt: skip
        d = workdir / key
        d.mkdir(parents=True, exist_ok=True)
        joblib.dump(est.fit(X, y), d / "model.joblib")
        paths[key] = str(d / "model.joblib")
        reference_path(d / "model.joblib").write_bytes(reference(d / "model.joblib", est, X))
    return paths


def reference(path: Path, est: object, X: object) -> bytes:
    """reference.json for the model at ``path`` (decile bins of each feature): BENCH_DRIFT, part quality."""
    import hashlib

    import numpy as np
    from modelroll_contract import reference as contract

    X = np.asarray(X)
    features = []
    for i in range(X.shape[1]):
        cuts = np.unique(np.quantile(X[:, i], np.arange(1, 10) / 10, method="inverted_cdf"))
        edges = [float(e) for e in cuts[cuts < X[:, i].max()]]
        features.append(contract.Feature(f"x{i}", contract.histogram(edges, X[:, i].tolist())))
    pred = est.predict(X)  # type: ignore[attr-defined]
    classes = est.classes_  # type: ignore[attr-defined]
    info = contract.ModelInfo(path.name, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), "joblib",
                              None, "predict", type(est).__name__, "classifier")  # fmt: skip
    return contract.dumps(contract.Reference(
        "bench", info, len(X), tuple(features), tuple(str(c) for c in classes),
        tuple(float(np.mean(pred == c)) for c in classes), None, None,
    ))  # fmt: skip


def limit(path: Path, seconds: float = 3.0) -> tuple[float, float]:
    """(one-row predict calls/s, 64-row predict rows/s) with scikit-learn itself."""
    import joblib
    import numpy as np

    model = joblib.load(path)
    one = np.array([ROW])
    many = np.tile(one, (64, 1))

    def rate(X: np.ndarray) -> float:
        model.predict(X)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model.predict(X)
            n += 1
        return n / (time.perf_counter() - start)

    return rate(one), rate(many) * 64


if __name__ == "__main__":
    what, arg = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(train(arg) if what == "train" else limit(arg)))
