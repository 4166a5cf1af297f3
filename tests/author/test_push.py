"""``modelroll push``: every file of a package to file:// and to S3 (moto's server on loopback),
read back byte-equal by the init container's own ``modelroll-server fetch`` with the printed
digest; refused uploads exit non-zero with one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.author.support import call, run, sha256_of
from tests.server.fetch_emulators import REGION, Moto, assert_fetched, fetch_env, run_fetch

pytestmark = pytest.mark.server  # local servers on loopback, like the fetch tests


@pytest.fixture(scope="module")
def package_dir(models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    c = models["binary"]
    out = tmp_path_factory.mktemp("push") / "pkg"
    r = call("package", str(c.path), "--reference", str(c.csv), "--target", "target", "--out", str(out), "--version=v1")
    assert r.code == 0, r.err
    return out


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto's S3 with authentication off: any key may write (the bucket ``models`` exists)."""
    m = Moto(tmp_path_factory.mktemp("moto"), {("models", "README"): b"models live here\n"}, auth=False)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def s3_read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto's S3 with IAM on: the user ``reader`` may only s3:GetObject."""
    m = Moto(tmp_path_factory.mktemp("moto-auth"), {("models", "README"): b"models live here\n"}, auth=True)
    yield m
    m.stop()


def s3_env(tmp: Path, endpoint: str, key: str, secret: str) -> dict[str, str]:
    """The machine's environment without cloud settings, then an S3 endpoint and static keys."""
    settings = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION}
    return fetch_env(tmp, {**settings, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})


def _lines(out: str) -> list[tuple[str, str]]:
    """The ``URI  DIGEST`` lines before the spec snippet."""
    head = out.split("\n\n")[0]
    return [tuple(line.split("  ")) for line in head.splitlines()]  # type: ignore[misc]


def test_push_to_a_directory(package_dir, tmp_path):
    from modelroll.spec import parse_spec

    dest = tmp_path / "store" / "fraud" / "v1"
    r = run("push", str(package_dir), dest.as_uri())
    assert r.code == 0, r.err
    names = ["reference.json", "report.json", "model.skops"]  # the artifact last
    assert _lines(r.out) == [((dest / n).as_uri(), sha256_of(package_dir / n)) for n in names]
    for n in names:
        assert (dest / n).read_bytes() == (package_dir / n).read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == sorted(names)  # no temporary file left
    snippet = r.out.split("spec fields for the ModelDeployment:\n")[1]
    spec = parse_spec({**yaml.safe_load(snippet), "replicas": 1})
    assert spec.model.uri == (dest / "model.skops").as_uri() and spec.model.version == "v1"
    assert spec.model.digest == sha256_of(dest / "model.skops")
    assert spec.drift_reference_uri == (dest / "reference.json").as_uri()
    assert spec.drift_reference_digest == sha256_of(dest / "reference.json")


def test_push_to_s3_and_fetch_back_with_the_digest(package_dir, s3, tmp_path):
    env = s3_env(tmp_path, s3.url, "any-key", "any-secret")
    r = run("push", str(package_dir), "s3://models/fraud/v1", "--json", env=env)
    assert r.code == 0, r.err
    got = json.loads(r.out)
    names = ["reference.json", "report.json", "model.skops"]
    assert [(o["uri"], o["digest"], o["size"]) for o in got["objects"]] == [
        (f"s3://models/fraud/v1/{n}", sha256_of(package_dir / n), (package_dir / n).stat().st_size) for n in names
    ]
    assert got["spec"]["model"]["uri"] == "s3://models/fraud/v1/model.skops"
    assert got["spec"]["monitoring"]["drift"] == {
        "referenceUri": "s3://models/fraud/v1/reference.json",
        "referenceDigest": sha256_of(package_dir / "reference.json"),
    }
    for o, n in zip(got["objects"], names, strict=True):  # as the Pod's init container reads them
        dest = tmp_path / "fetched" / n / n
        assert_fetched(run_fetch(tmp_path, o["uri"], dest, o["digest"], env), dest, (package_dir / n).read_bytes())
    keys = sorted(k["Key"] for k in s3.boto("s3").list_objects_v2(Bucket="models")["Contents"])
    assert keys == ["README", *(f"fraud/v1/{n}" for n in sorted(names))]


def test_a_refused_upload_exits_1_with_one_line(package_dir, s3_read_only, tmp_path):
    m = s3_read_only
    env = s3_env(tmp_path, m.url, m.key_id, m.secret)
    r = run("push", str(package_dir), "s3://models/fraud/v2", env=env)
    assert r.code == 1 and r.out == ""
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert r.err.startswith("modelroll: error: PUT s3://models/fraud/v2/reference.json failed: HTTP 403 Forbidden")
    assert r.err.endswith("(credentials: static keys (AWS_ACCESS_KEY_ID)) (0 of 3 files pushed before it)\n")
    # the reader may read: the artifact is not there
    dest = tmp_path / "absent" / "model.skops"
    fetched = run_fetch(tmp_path, "s3://models/fraud/v2/model.skops", dest, None, env)
    assert fetched.returncode != 0 and not dest.exists()


def test_a_missing_bucket_and_bad_arguments(package_dir, s3, tmp_path):
    env = s3_env(tmp_path, s3.url, "any-key", "any-secret")
    r = run("push", str(package_dir), "s3://no-such-bucket/fraud", env=env)
    assert r.code == 1 and r.err == (
        "modelroll: error: PUT s3://no-such-bucket/fraud/reference.json failed: HTTP 404 Not Found NoSuchBucket: "
        "The specified bucket does not exist (0 of 3 files pushed before it)\n"
    )
    r = call("push", str(package_dir), "gs://models/fraud")
    assert (r.code, r.err) == (2, "modelroll: error: push takes file:// or s3:// URIs, not gs: gs://models/fraud\n")
    r = call("push", str(package_dir), "s3://models")
    assert r.code == 2 and r.err.endswith("push writes under a prefix: s3://BUCKET/PREFIX\n")
    r = call("push", str(tmp_path / "nothing"), (tmp_path / "x").as_uri())
    assert (r.code, r.err) == (2, f"modelroll: error: {tmp_path / 'nothing'}: not a directory\n")


def test_an_artifact_that_is_not_the_one_described_is_not_pushed(package_dir, tmp_path):
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(package_dir, changed)
    with open(changed / "model.skops", "ab") as f:
        f.write(b"\0")
    dest = tmp_path / "store"
    r = call("push", str(changed), dest.as_uri())
    assert r.code == 2 and f"{changed / 'model.skops'} is sha256:" in r.err
    assert r.err.endswith(f"but reference.json describes {sha256_of(package_dir / 'model.skops')}\n")
    assert not dest.exists()
