"""The pipeline's column names, in one place (no I/O).

The raw export names its columns as the original Wisconsin Diagnostic Breast Cancer file does
(``radius_mean``, ...; ``diagnosis`` M/B). The clean files keep those feature names, in
``FEATURES`` order, and end with ``TARGET``. That order is the model's input order: the model
is fitted on a DataFrame with exactly these columns, ``modelroll package`` records them as
``feature_names`` in reference.json, and the server takes row ``[v0, v1, ...]`` as column ``i``
= ``FEATURES[i]``. A client sending live rows sends the clean files' feature columns as they are.
"""

from __future__ import annotations

# scikit-learn's name -> the export's name. The ten "mean" measurements only: they keep the
# committed raw file small and a request row readable, and the models still score an F1 above
# 0.9 on them (train.py prints it).
SOURCE = {
    "mean radius": "radius_mean",
    "mean texture": "texture_mean",
    "mean perimeter": "perimeter_mean",
    "mean area": "area_mean",
    "mean smoothness": "smoothness_mean",
    "mean compactness": "compactness_mean",
    "mean concavity": "concavity_mean",
    "mean concave points": "concave_points_mean",
    "mean symmetry": "symmetry_mean",
    "mean fractal dimension": "fractal_dimension_mean",
}
FEATURES = list(SOURCE.values())

ID = "id"  # the raw export's record id: not a feature, dropped by clean.py
DIAGNOSIS = "diagnosis"  # the raw export's label text: M/B, spelt many ways
TARGET = "malignant"  # the clean label: 1 malignant (the positive class), 0 benign
