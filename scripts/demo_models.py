"""The demo's models and the examples pointed at them (used by scripts/demo.sh; I/O: files, S3).

Trains a small fraud classifier per example version on synthetic data (no download), writes
each into the demo's host volume (``pvc://models/...``) or uploads it to the demo's local
S3-compatible server (``s3://models/...``), and prints examples/*.yaml as one YAML stream with
each ``spec.model.digest`` set to the sha256 of the file really stored, so every example the
demo applies is served by a model that exists. It also stores the next version of
``fraud-canary`` and prints, on stderr, the one command that rolls it out as a canary.

    python scripts/demo_models.py --volume DIR --s3-endpoint http://HOST:PORT > manifests.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BUCKET = "models"
# The demo runs on one small machine: these fit its CPU (each example still works as written
# on a real cluster).
DEMO_LIMITS = {"replicas": 2, "cpu_request": "100m"}


def train(version: str, fmt: str) -> Any:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=2000, n_features=8, n_informative=5, weights=[0.9], random_state=7)
    seed = int(version.lstrip("v"))
    # skops trusts scikit-learn's linear models by default; a forest's tree type must be
    # reviewed and listed first (spec.server.env MODELROLL_SERVER_TRUSTED_TYPES).
    if seed % 2 or fmt == "skops":
        return LogisticRegression(C=0.1 * seed, max_iter=1000).fit(X, y)
    return RandomForestClassifier(n_estimators=20, max_depth=6, random_state=seed).fit(X, y)


def serialize(model: Any, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "skops":
        import skops.io

        return bytes(skops.io.dumps(model))
    import joblib

    joblib.dump(model, buf)
    return buf.getvalue()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
        region_name="us-east-1",
    )


def store(uri: str, data: bytes, volume: Path, s3: Any) -> None:
    if uri.startswith("pvc://"):
        path = volume / uri[len("pvc://") :].split("/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    elif uri.startswith("s3://"):
        bucket, key = uri[len("s3://") :].split("/", 1)
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    else:
        raise SystemExit(f"demo: no demo store for {uri}")


def model_of(version: str, fmt: str, made: Path) -> tuple[bytes, str]:
    """The model file of `version`, made once: a skops file is a zip with timestamps, so a new
    file would have a new digest, and a re-run of the demo would roll out an unchanged model."""
    path = made / f"{version}.{fmt}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(serialize(train(version, fmt), fmt))
    data = path.read_bytes()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def fit_demo(spec: dict[str, Any]) -> None:
    spec["replicas"] = min(spec.get("replicas", 1), DEMO_LIMITS["replicas"])
    requests = spec.get("server", {}).get("resources", {}).get("requests")
    if requests and "cpu" in requests:
        requests["cpu"] = DEMO_LIMITS["cpu_request"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volume", type=Path, required=True, help="host directory behind pvc://models")
    parser.add_argument("--s3-endpoint", required=True, help="the demo's S3-compatible server")
    parser.add_argument("--made", type=Path, required=True, help="where made model files are kept between runs")
    args = parser.parse_args()
    s3 = s3_client(args.s3_endpoint)
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
    args.volume.mkdir(parents=True, exist_ok=True)
    os.chmod(args.volume, 0o755)

    docs = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            model = doc["spec"]["model"]
            if model["uri"].startswith("file://"):
                # A file:// model must already be inside the Pod; the demo's host volume is the
                # way to get it there.
                model["uri"] = "pvc://models/" + model["uri"][len("file:///models/") :]
            data, model["digest"] = model_of(model["version"], model.get("format", "joblib"), args.made)
            store(model["uri"], data, args.volume, s3)
            fit_demo(doc["spec"])
            docs.append(doc)
            if doc["metadata"]["name"] == "fraud-canary":
                nxt = f"v{int(model['version'].lstrip('v')) + 10}"
                uri = model["uri"].replace(f"/{model['version']}/", f"/{nxt}/")
                data, digest = model_of(nxt, model.get("format", "joblib"), args.made)
                store(uri, data, args.volume, s3)
                patch = {"spec": {"model": {"uri": uri, "digest": digest, "version": nxt}}}
                print(
                    f"kubectl patch mdep fraud-canary -n modelroll-demo --type merge -p '{json.dumps(patch)}'",
                    file=sys.stderr,
                )
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
