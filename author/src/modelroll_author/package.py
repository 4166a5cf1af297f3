"""``modelroll package``: the artifact, its reference statistics and its report, written into one
directory (file I/O).

The artifact is re-serialised in the chosen format, written, and then loaded back by the
inference server's own loader with its digest checked, exactly as a Pod will; the reloaded model
must predict what the original predicts on the reference data. The reference statistics and the
report describe that reloaded model. Every file is written to a temporary name and renamed into
place, so a failed run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from modelroll_contract import METHOD_PREDICT, METHOD_PREDICT_PROBA
from modelroll_contract import reference as contract
from modelroll_server.errors import LoadError

from . import reference_stats
from .data import Dataset
from .errors import CheckFailed, InputError
from .evaluation import Evaluation, evaluate
from .model import Model, call, load_artifact

DEFAULT_FORMAT = "skops"  # loading it runs no code from the file: only trusted types are built
ARTIFACT_NAMES = {"joblib": "model.joblib", "pickle": "model.pkl", "skops": "model.skops"}
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class Written:
    path: Path
    digest: str  # sha256:<hex> of exactly the bytes written
    size: int


@dataclass(frozen=True)
class Package:
    artifact: Written
    reference: Written
    report: Written | None
    format: str
    version: str | None
    method: str
    statistics: contract.Reference
    evaluation: Evaluation | None


def serialise(estimator: Any, fmt: str) -> bytes:
    if fmt == "joblib":
        import joblib

        buf = io.BytesIO()
        joblib.dump(estimator, buf)
        return buf.getvalue()
    if fmt == "pickle":
        return pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    import skops.io as sio

    data: bytes = sio.dumps(estimator)
    return data


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_file(path: Path, data: bytes) -> Written:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Written(path, digest_of(data), len(data))


def prepare_out(out: Path, names: set[str]) -> None:
    """Create OUT; refuse one that holds other files (``modelroll push`` uploads every file)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create the directory: {e.strerror or e}") from e
    if not out.is_dir():
        raise InputError(f"--out {out}: not a directory")
    others = sorted(p.name for p in out.iterdir() if p.name not in names)
    if others:
        raise InputError(
            f"--out {out} holds other files ({', '.join(others[:5])}); `modelroll push` uploads every file of it, "
            "so give an empty or new directory"
        )


def package(
    model: Model,
    data: Dataset,
    out: Path,
    fmt: str = DEFAULT_FORMAT,
    version: str | None = None,
    method: str | None = None,
    bins: int = reference_stats.DEFAULT_BINS,
) -> Package:
    has_proba = model.loaded.has_proba
    if method is None:
        method = METHOD_PREDICT_PROBA if has_proba else METHOD_PREDICT
    elif method == METHOD_PREDICT_PROBA and not has_proba:
        raise InputError(f"--method {method}: {model.path} has no predict_proba")
    if bins < 2:
        raise InputError(f"--bins {bins}: at least 2")
    # Refuse what the server or the model cannot take before anything is written.
    data.numeric_features()
    original = call(model, "predict", data.X, data.path)
    name = ARTIFACT_NAMES[fmt]
    prepare_out(out, {name, contract.REFERENCE_FILE, REPORT_FILE})

    artifact = write_file(out / name, serialise(model.estimator, fmt))
    try:
        # No extra trusted types: the operator's server Pods trust skops' defaults only.
        loaded = load_artifact(str(artifact.path), fmt, artifact.digest, None)
    except LoadError as e:
        artifact.path.unlink()
        hint = (
            "; a model skops cannot hold by its defaults can be packaged with --format joblib" if fmt == "skops" else ""
        )
        raise CheckFailed(f"the server's loader refuses the {fmt} artifact: {e}{hint}") from e
    reloaded = Model(str(artifact.path), loaded, model.task)
    differ = int(np.sum(original != call(reloaded, "predict", data.X, data.path)))
    if differ:
        artifact.path.unlink()
        raise CheckFailed(f"the {fmt} artifact predicts differently from {model.path} on {differ} reference rows")

    info = contract.ModelInfo(
        artifact=name,
        digest=artifact.digest,
        format=fmt,
        version=version,
        method=method,
        estimator=reloaded.estimator_name,
        task=model.task,
    )
    statistics = reference_stats.build(reloaded, data, info, bins)
    reference = write_file(out / contract.REFERENCE_FILE, contract.dumps(statistics))
    evaluation = report = None
    if data.y is not None:
        evaluation = evaluate(reloaded, data)
        text = json.dumps(evaluation.report, indent=2, allow_nan=False) + "\n"
        report = write_file(out / REPORT_FILE, text.encode())
    elif (out / REPORT_FILE).exists():
        (out / REPORT_FILE).unlink()  # a report of an earlier run would describe another artifact
    return Package(artifact, reference, report, fmt, version, method, statistics, evaluation)


def spec_fields(
    uri: str, digest: str, fmt: str, version: str | None, method: str, reference_uri: str, reference_digest: str
) -> dict[str, Any]:
    """The ModelDeployment spec fields that name this artifact and its reference statistics."""
    model: dict[str, Any] = {"uri": uri, "digest": digest, "format": fmt}
    if version is not None:
        model["version"] = version
    model["method"] = method
    drift = {"referenceUri": reference_uri, "referenceDigest": reference_digest}
    return {"model": model, "monitoring": {"drift": drift}}


def spec_yaml(fields: dict[str, Any]) -> str:
    """``spec_fields`` as YAML to paste under ``spec:`` (strings JSON-quoted where YAML would
    read them as something else, such as a version 1.10)."""
    lines = ["model:"]
    for key, value in fields["model"].items():
        shown = json.dumps(value) if key == "version" else value
        lines.append(f"  {key}: {shown}")
    lines += ["monitoring:", "  drift:"]
    lines += [f"    {key}: {value}" for key, value in fields["monitoring"]["drift"].items()]
    return "\n".join(lines)


def package_spec(pkg: Package) -> dict[str, Any]:
    """The spec fields with the package's local files as file:// URIs."""
    return spec_fields(
        pkg.artifact.path.resolve().as_uri(),
        pkg.artifact.digest,
        pkg.format,
        pkg.version,
        pkg.method,
        pkg.reference.path.resolve().as_uri(),
        pkg.reference.digest,
    )
