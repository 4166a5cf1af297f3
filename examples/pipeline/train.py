"""Train two candidates on the clean training split, keep the better one (reads DATA, writes OUT).

Candidates, each a scikit-learn Pipeline so the scaling fitted on the training rows travels
inside the artifact (the server receives the clean, unscaled columns):

- ``logistic_regression``: StandardScaler + LogisticRegression;
- ``mlp``: StandardScaler + MLPClassifier, one hidden layer of 16 units (lbfgs, L2 penalty 1).

Both have fixed random states and train in well under a second. Each is saved, then evaluated
by ``modelroll evaluate``'s own code (``modelroll_author.evaluation``) on the test split, so the
numbers are the ones the evaluation gate will see. The better one by **F1 of the malignant
class** is kept: malignant is the minority class (37 %), so accuracy would look good for a
model that misses tumours; F1 counts both the missed tumours and the false alarms at the
threshold the served model actually uses (ROC AUC only ranks, at no threshold). Ties go to
higher ROC AUC, then to the simpler model (listed first).

``--corrupt-labels FRACTION`` flips that share of the training labels, chosen by a seeded
shuffle, before training: the "bad" model of the rollout demo. It is chosen the same way on
the same clean test split; it loads and answers like any model (so it passes an errorRate
gate), but its answers are often wrong (so a live-accuracy gate catches it).

Output (OUT/): ``model.joblib`` (the chosen candidate), ``candidates/NAME.joblib`` (each) and
``candidates.json`` (each candidate's metrics, the metric chosen by, the choice).

    python examples/pipeline/train.py build/data --out build/model [--corrupt-labels 0.45]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from columns import FEATURES, TARGET

SEED = 0
METRIC = "f1"  # chosen by; see the module docstring
TIE_BREAK = "roc_auc"
SHOWN = ("accuracy", "precision", "recall", "f1", "roc_auc")


def candidates() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        # lbfgs: scikit-learn's advice for small data sets, and unlike adam/sgd it keeps no
        # optimizer object in the model, a type skops' default trust list refuses to load.
        # alpha=1: with the default 1e-4 the net fits all 339 training rows exactly.
        "mlp": make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", alpha=1.0, max_iter=2000, random_state=SEED),
        ),
    }


def corrupt(y: pd.Series, fraction: float) -> pd.Series:
    """``y`` with ``fraction`` of its labels flipped (0 <-> 1), at seeded positions."""
    flip = np.random.RandomState(SEED).permutation(len(y))[: round(fraction * len(y))]
    out = y.copy()
    out.iloc[flip] = 1 - out.iloc[flip]
    return out


def evaluate(path: Path, test_csv: Path) -> dict[str, Any]:
    """``modelroll evaluate PATH --data TEST --target TARGET --json``, in this process."""
    from modelroll_author import data, evaluation, model

    m = model.load(str(path))
    ds = data.match(data.read_csv(str(test_csv)), str(test_csv), m, TARGET)
    return evaluation.evaluate(m, ds).report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="clean.py's output directory (train.csv, test.csv)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the models")
    parser.add_argument("--corrupt-labels", type=float, default=0.0, metavar="FRACTION", help="flip this share")
    args = parser.parse_args()
    if not 0 <= args.corrupt_labels <= 1:
        sys.exit(f"train.py: --corrupt-labels {args.corrupt_labels}: a share between 0 and 1")
    train_csv, test_csv = args.data / "train.csv", args.data / "test.csv"
    for path in (train_csv, test_csv):
        if not path.is_file():
            sys.exit(f"train.py: no {path}: run `make pipeline-data` first")

    train = pd.read_csv(train_csv)
    X, y = train[FEATURES], train[TARGET]  # a DataFrame: the model records FEATURES as its inputs
    if args.corrupt_labels:
        y = corrupt(y, args.corrupt_labels)
        print(f"corrupted labels: flipped {int((y != train[TARGET]).sum())} of {len(y)} training labels")

    (args.out / "candidates").mkdir(parents=True, exist_ok=True)
    results = {}
    for name, estimator in candidates().items():
        path = args.out / "candidates" / f"{name}.joblib"
        joblib.dump(estimator.fit(X, y), path)
        results[name] = {k: evaluate(path, test_csv)[k] for k in SHOWN}
        print(f"{name:<20} " + "  ".join(f"{k} {results[name][k]:.4f}" for k in SHOWN))

    chosen = max(results, key=lambda n: (results[n][METRIC], results[n][TIE_BREAK], -list(results).index(n)))
    shutil.copyfile(args.out / "candidates" / f"{chosen}.joblib", args.out / "model.joblib")
    summary = {
        "chosen": chosen,
        "metric": METRIC,
        "tie_break": TIE_BREAK,
        "test_data": str(test_csv),
        "corrupt_labels": args.corrupt_labels,
        "candidates": results,
    }
    (args.out / "candidates.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"chose {chosen} by {METRIC} on {test_csv}: wrote {args.out / 'model.joblib'}")


if __name__ == "__main__":
    main()
