"""A drifted copy of the traffic split: what a featureDrift gate should notice (reads one CSV,
writes one).

The story: a second site's scanner is calibrated differently and reports every length 30 %
larger. So ``radius_mean`` and ``perimeter_mean`` are multiplied by ``--scale`` and
``area_mean`` by its square (an area grows with the square of a length); the other features
and the true labels are unchanged. Size is what the models lean on most, so the drifted rows
land in the reference's top bins (a large PSI per feature) and benign tumours start to look
malignant (lower live accuracy).

    python examples/pipeline/drift.py build/data/traffic.csv --out build/data/traffic-drifted.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from columns import FEATURES

LENGTHS = ["radius_mean", "perimeter_mean"]
AREAS = ["area_mean"]


def drift(df: pd.DataFrame, scale: float) -> pd.DataFrame:
    out = df.copy()
    out[LENGTHS] = out[LENGTHS] * scale
    out[AREAS] = out[AREAS] * scale**2
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("traffic", type=Path, help="clean traffic CSV (features + label)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the drifted CSV")
    parser.add_argument("--scale", type=float, default=1.3, help="factor on lengths (default 1.3)")
    args = parser.parse_args()
    if not args.traffic.is_file():
        sys.exit(f"drift.py: no {args.traffic}: run `make pipeline-data` first")
    df = pd.read_csv(args.traffic)
    out = drift(df, args.scale)
    out.to_csv(args.out, index=False)
    changed = [f for f in FEATURES if not out[f].equals(df[f])]
    print(f"wrote {args.out}: {len(out)} rows, {', '.join(changed)} scaled (lengths x{args.scale:g})")


if __name__ == "__main__":
    main()
