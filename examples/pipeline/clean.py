"""Raw export -> clean train / test / traffic CSVs (pandas; reads RAW, writes OUT).

In order, and why in this order:

1. **Parse** every cell as text first (so nothing is guessed): ``""``, ``NA`` and ``?`` are
   missing; thousands separators and the ``mm`` unit are removed; what is still not a number
   (stray text) becomes missing; a negative measurement, which cannot be, becomes missing.
   Labels are stripped and lower-cased and mapped ``m``/``malignant`` -> 1, ``b``/``benign``
   -> 0; a label that is none of these stops the script (it names the label) rather than
   guessing; a blank label drops its row (it can neither train nor test a model).
2. **Drop exact duplicates** before splitting, so a row can never be in two splits.
3. **Split** by a seeded, stratified shuffle: 60 % train, 20 % test (the evaluation gate),
   20 % traffic (the rollout demo's live requests, sent with their true labels).
4. **Learn on the training split only** each feature's clip bounds, Tukey's far-out fences
   ``Q1 - 3 IQR`` and ``Q3 + 3 IQR`` (quartiles, so the x1000 values cannot move them; the
   1 % / 99 % quantiles would, with a few such values in 339 rows), and its median; then, in
   every split, clip to the bounds and fill missing values with the median. Learning them on
   all rows would leak the test and traffic rows into the model.

No feature is derived and nothing is scaled here: standardisation is fitted inside the model's
scikit-learn Pipeline (train.py), so the served artifact carries it and the server receives
exactly the columns written here.

Output (OUT/): ``train.csv``, ``test.csv``, ``traffic.csv`` — columns ``columns.FEATURES`` in
that order, then ``columns.TARGET`` (0/1) — and ``cleaning.json``: the learned quantiles and
medians and what was fixed, also printed.

    python examples/pipeline/clean.py examples/pipeline/data/raw.csv --out build/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from columns import DIAGNOSIS, FEATURES, ID, TARGET

SEED = 7
SHARES = {"train": 0.6, "test": 0.2, "traffic": 0.2}
FENCE = 3.0  # clip bounds: this many interquartile ranges beyond the training quartiles
MISSING = ["", "NA", "?"]
DIGITS = 10  # significant digits of every number written: more than the source has
LABELS = {"m": 1, "malignant": 1, "b": 0, "benign": 0}


def parse(raw: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    """Typed columns: ID, FEATURES as float (NaN where unusable), TARGET as 0/1."""
    out = pd.DataFrame({ID: raw[ID].astype("int64")})
    for name in FEATURES:
        text = raw[name].str.strip()
        missing = text.isin(MISSING)
        counts["missing cells"] += int(missing.sum())
        text = text.str.replace(",", "", regex=False).str.removesuffix(" mm")
        value = pd.to_numeric(text.mask(missing), errors="coerce")
        counts["cells with text"] += int((value.isna() & ~missing).sum())
        negative = value < 0  # every feature is a length, area or ratio of them
        counts["negative cells"] += int(negative.sum())
        out[name] = value.mask(negative)

    label = raw[DIAGNOSIS].str.strip().str.lower()
    blank = label == ""
    unknown = sorted(set(label[~blank]) - set(LABELS))
    if unknown:
        sys.exit(f"clean.py: unknown diagnosis {unknown[0]!r}; known: {', '.join(LABELS)}")
    counts["rows without a label"] = int(blank.sum())
    out[TARGET] = label.map(LABELS)
    out = out[~blank].astype({TARGET: "int64"})

    before = len(out)
    out = out.drop_duplicates()
    counts["duplicate rows"] = before - len(out)
    return out


def split(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, rest = train_test_split(df, train_size=SHARES["train"], stratify=df[TARGET], random_state=SEED)
    test, traffic = train_test_split(rest, train_size=0.5, stratify=rest[TARGET], random_state=SEED)
    return {"train": train, "test": test, "traffic": traffic}


def learn(train: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per feature: the clip bounds and, after clipping, the median (NaN ignored)."""
    params = {}
    for name in FEATURES:
        q1, q3 = train[name].quantile([0.25, 0.75])
        low, high = q1 - FENCE * (q3 - q1), q3 + FENCE * (q3 - q1)
        learned = {"low": low, "high": high, "median": train[name].clip(low, high).median()}
        # Rounded as the CSVs are written (DIGITS): a median of 13.25 and 13.26 is then 13.255
        # in both places, not 13.254999999999999.
        params[name] = {k: float(f"{v:.{DIGITS}g}") for k, v in learned.items()}
    return params


def apply(df: pd.DataFrame, params: dict[str, dict[str, float]], counts: dict[str, int]) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for name in FEATURES:
        p = params[name]
        value = df[name]
        counts["clipped cells"] += int(((value < p["low"]) | (value > p["high"])).sum())
        counts["imputed cells"] += int(value.isna().sum())
        out[name] = value.clip(p["low"], p["high"]).fillna(p["median"])
    out[TARGET] = df[TARGET]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", type=Path, help="the raw export (data/raw.csv)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the clean CSVs")
    args = parser.parse_args()
    if not args.raw.is_file():
        sys.exit(f"clean.py: no {args.raw}: `make pipeline-raw` writes it")

    # Every cell as text, nothing turned into NaN by pandas' own list: parse() decides.
    raw = pd.read_csv(args.raw, dtype=str, keep_default_na=False)
    counts: dict[str, int] = {
        "rows read": len(raw),
        "missing cells": 0,
        "cells with text": 0,
        "negative cells": 0,
        "clipped cells": 0,
        "imputed cells": 0,
    }
    parts = split(parse(raw, counts))
    params = learn(parts["train"])
    clean = {name: apply(part, params, counts) for name, part in parts.items()}

    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"counts": counts, "rows": {}, "features": params}
    for name, part in clean.items():
        path = args.out / f"{name}.csv"
        part.to_csv(path, index=False, float_format=f"%.{DIGITS}g")
        report["rows"][name] = len(part)
        malignant = int(part[TARGET].sum())
        print(f"wrote {path}: {len(part)} rows ({malignant} malignant), columns {', '.join(part.columns)}")
    (args.out / "cleaning.json").write_text(json.dumps(report, indent=2) + "\n")
    print("fixed: " + ", ".join(f"{n} {k}" for k, n in counts.items() if k != "rows read"))


if __name__ == "__main__":
    main()
