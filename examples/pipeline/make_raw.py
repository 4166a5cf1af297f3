"""Write the pipeline's raw CSV: scikit-learn's breast cancer data, damaged the way exports are.

The source is ``sklearn.datasets.load_breast_cancer``, which ships inside scikit-learn's wheel
(the Wisconsin Diagnostic Breast Cancer data, 569 rows): nothing is downloaded. To it this adds,
at seeded places, the faults real data has, so that clean.py has something to do:

- missing values: blank cells and the tokens ``NA`` and ``?``; a few rows with no diagnosis;
- exact duplicate rows (an export run twice over a range);
- wrong types: ``area_mean`` with a thousands separator (``1,326.0``) in about half the rows,
  ``radius_mean`` with its unit (``17.99 mm``) in some, stray text in ``texture_mean``;
- outliers: values x1000 (a unit mix-up) and negative values of measurements that cannot be;
- label spellings: ``M``, ``malignant``, ``Malignant ``, ``MALIGNANT``, `` m`` (and B alike).

The committed ``data/raw.csv`` is this script's output, byte for byte (a test checks), so the
faults are reproducible: numpy's legacy ``RandomState`` is used because its streams are frozen
across numpy versions, and every number is written with an explicit format.

    python examples/pipeline/make_raw.py examples/pipeline/data/raw.csv
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from columns import DIAGNOSIS, FEATURES, ID, SOURCE

SEED = 20240607
FIRST_ID = 100001

MISSING_SHARE = 0.02  # of feature cells: blank, "NA" or "?"
MISSING_TOKENS = ["", "NA", "?"]
BLANK_LABELS = 4  # rows whose diagnosis is blank: unusable for training, dropped by clean.py
DUPLICATES = 15  # rows written twice
TIMES_1000 = 20  # feature cells multiplied by 1000
NEGATIVE = 10  # feature cells written negative
STRAY_TEXT = ["see comment", "pending", "n/a (re-scan)", "illegible"]
UNIT_SHARE = 0.15  # of rows: radius_mean written "17.99 mm"
SEPARATOR_SHARE = 0.5  # of rows: area_mean written "1,326.0" (a spreadsheet's number format)
SPELLINGS = {
    "M": ["M", "M", "M", "malignant", "Malignant ", "MALIGNANT", " m"],
    "B": ["B", "B", "B", "benign", "Benign", "BENIGN ", "b "],
}


def number(value: float) -> str:
    """A measurement as the source prints it: at most six significant digits, no exponent."""
    return np.format_float_positional(value, precision=6, unique=True, fractional=False, trim="-")


def raw_rows(rng: np.random.RandomState) -> list[list[str]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    values = data.frame[list(SOURCE)].to_numpy(dtype=float, copy=True)  # (569, 10), in FEATURES order
    labels = np.where(data.target.to_numpy() == 0, "M", "B")  # scikit-learn's 0 is malignant
    n, f = values.shape

    # Outliers first, on the numbers; the text faults below are how they are then written.
    cells = rng.choice(n * f, TIMES_1000 + NEGATIVE, replace=False)
    for k, cell in enumerate(cells):
        r, c = divmod(int(cell), f)
        values[r, c] = values[r, c] * 1000 if k < TIMES_1000 else -values[r, c] - 0.01

    area, radius, texture = FEATURES.index("area_mean"), FEATURES.index("radius_mean"), FEATURES.index("texture_mean")
    separated = rng.random_sample(n) < SEPARATOR_SHARE
    with_unit = rng.random_sample(n) < UNIT_SHARE
    table = []
    for r in range(n):
        row = [number(v) for v in values[r]]
        if separated[r]:
            row[area] = f"{values[r, area]:,.1f}"
        if with_unit[r]:
            row[radius] += " mm"
        table.append(row)
    for r in rng.choice(n, len(STRAY_TEXT), replace=False):
        table[r][texture] = STRAY_TEXT[int(r) % len(STRAY_TEXT)]
    for cell in rng.choice(n * f, int(MISSING_SHARE * n * f), replace=False):
        r, c = divmod(int(cell), f)
        table[r][c] = MISSING_TOKENS[int(cell) % len(MISSING_TOKENS)]

    spelt = [SPELLINGS[label][rng.randint(len(SPELLINGS[label]))] for label in labels]
    for r in rng.choice(n, BLANK_LABELS, replace=False):
        spelt[r] = ""
    rows = [[str(FIRST_ID + r), spelt[r], *table[r]] for r in range(n)]

    # Each duplicate goes right after its original, as a re-run export range would put it.
    for r in sorted(rng.choice(n, DUPLICATES, replace=False), reverse=True):
        rows.insert(int(r) + 1, list(rows[r]))
    return rows


def render() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([ID, DIAGNOSIS, *FEATURES])
    writer.writerows(raw_rows(np.random.RandomState(SEED)))
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="where to write the raw CSV")
    args = parser.parse_args()
    data = render()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    rows = data.count(b"\n") - 1  # the header is not a row
    print(f"wrote {args.out}: {rows} rows, {len(data)} bytes")


if __name__ == "__main__":
    main()
