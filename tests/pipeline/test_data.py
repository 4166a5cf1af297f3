"""Raw to clean: the committed raw CSV is make_raw.py's output byte for byte and has every
fault it claims; `make pipeline-data` removes all of them, splits without overlap and learns
its parameters on the training split only."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest

from tests.pipeline.support import PIPELINE, Build, columns

FEATURES, TARGET = columns.FEATURES, columns.TARGET
SPLITS = ("train", "test", "traffic")


def test_the_committed_raw_csv_is_what_make_raw_writes(tmp_path):
    out = tmp_path / "raw.csv"
    r = Build(tmp_path).make("pipeline-raw", PIPELINE_RAW=str(out))
    assert out.read_bytes() == (PIPELINE / "data" / "raw.csv").read_bytes()
    assert "584 rows" in r.stdout


@pytest.fixture(scope="module")
def raw() -> list[dict[str, str]]:
    with open(PIPELINE / "data" / "raw.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == [columns.ID, columns.DIAGNOSIS, *FEATURES]
        return list(reader)


def test_the_raw_csv_has_every_fault(raw):
    from sklearn.datasets import load_breast_cancer

    cells = [row[f] for row in raw for f in FEATURES]
    assert {"", "NA", "?"} <= set(cells)  # missing values, three spellings
    lines = [tuple(row.values()) for row in raw]
    assert len(lines) - len(set(lines)) == 15  # exact duplicate rows
    assert any(re.fullmatch(r"\d{1,3}(,\d{3})+\.\d", row["area_mean"]) for row in raw)  # 1,326.0
    assert any(row["radius_mean"].endswith(" mm") for row in raw)  # a unit
    texts = {row["texture_mean"] for row in raw if re.search("[a-z]", row["texture_mean"])}
    assert len(texts) >= 3  # stray text in a numeric column
    source_max = load_breast_cancer(as_frame=True).frame[list(columns.SOURCE)].max().to_numpy()
    numbers = pd.DataFrame([[row[f] for f in FEATURES] for row in raw], columns=FEATURES)
    numbers = numbers.apply(lambda c: pd.to_numeric(c.str.replace(",", "").str.removesuffix(" mm"), errors="coerce"))
    assert (numbers > 100 * source_max).to_numpy().sum() >= 15  # the x1000 values
    assert (numbers < 0).to_numpy().sum() >= 10  # impossible negatives
    labels = {row[columns.DIAGNOSIS] for row in raw}
    assert {"M", "malignant", "Malignant ", " m", "B", "benign", "b ", ""} <= labels


@pytest.fixture(scope="module")
def clean(build: Build) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(build.data / f"{name}.csv") for name in SPLITS}


def test_clean_splits_have_no_fault_left(clean):
    for name, df in clean.items():
        assert list(df.columns) == [*FEATURES, TARGET], name  # the model's input order, then the label
        assert not df.isna().any().any(), name
        assert all(df[f].dtype == np.float64 for f in FEATURES), name
        assert df[TARGET].dtype == np.int64 and set(df[TARGET]) == {0, 1}, name
        assert (df[FEATURES] >= 0).all().all(), name
    everything = pd.concat(clean.values())
    assert not everything.duplicated().any()  # no duplicate within a split, no row in two splits


def test_splits_are_stratified_60_20_20_of_the_usable_rows(build, clean):
    report = json.loads((build.data / "cleaning.json").read_text())
    counts = report["counts"]
    usable = counts["rows read"] - counts["rows without a label"] - counts["duplicate rows"]
    assert usable == 569 - 4  # the source's rows, less the four whose label was blanked
    sizes = {name: len(df) for name, df in clean.items()}
    assert sum(sizes.values()) == usable and sizes == report["rows"]
    assert sizes["train"] == round(0.6 * usable)
    shares = [df[TARGET].mean() for df in clean.values()]
    assert max(shares) - min(shares) < 0.02  # about 37 % malignant in each


def test_bounds_and_medians_are_the_training_splits(build, clean):
    params = json.loads((build.data / "cleaning.json").read_text())["features"]
    for name, df in clean.items():
        for f in FEATURES:
            assert params[f]["low"] <= df[f].min() and df[f].max() <= params[f]["high"], (name, f)
    # Filling with the median leaves the median where it was: only the training split's
    # median is the learned one (the others have their own).
    medians = {name: sum(df[f].median() == params[f]["median"] for f in FEATURES) for name, df in clean.items()}
    assert medians["train"] == len(FEATURES)
    assert medians["test"] < len(FEATURES) / 2 and medians["traffic"] < len(FEATURES) / 2
