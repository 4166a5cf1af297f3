"""Package, push, release: the artifact's sha256 is the printed digest, the push puts those
bytes in S3 (moto's server on loopback, as the author tests use it), and the release rewrites
exactly the release's fields of the manifest, comments and all else unchanged."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.author.test_push import s3 as s3  # noqa: F401 - the fixture: moto's S3, bucket models
from tests.pipeline.support import MANIFEST, PIPELINE, Build, columns, sha256_of
from tests.server.fetch_emulators import REGION, Moto, fetch_env

pytestmark = pytest.mark.server  # a local S3 server on loopback, like the author's push tests

RELEASE_KEYS = {"uri", "digest", "version", "referenceUri", "referenceDigest"}


def test_package_writes_the_artifact_with_the_printed_digest(build, packaged):
    printed = dict(re.findall(r"^wrote (\S+)  (sha256:[0-9a-f]{64})", packaged, re.M))
    artifact = build.root / "package" / "model.skops"
    assert printed[str(artifact)] == sha256_of(artifact)
    ref = json.loads((build.root / "package" / "reference.json").read_text())
    assert ref["model"]["digest"] == sha256_of(artifact) and ref["model"]["version"] == "v7"
    assert ref["feature_names"] == columns.FEATURES  # what the server's drift counting maps inputs to
    assert ref["rows"] == len((build.data / "train.csv").read_text().splitlines()) - 1  # the training split


@pytest.fixture(scope="module")
def pushed(build: Build, packaged: str, s3: Moto, tmp_path_factory: pytest.TempPathFactory) -> dict:
    keys = {"AWS_ACCESS_KEY_ID": "any-key", "AWS_SECRET_ACCESS_KEY": "any-secret"}
    env = fetch_env(tmp_path_factory.mktemp("env"), {"AWS_ENDPOINT_URL": s3.url, "AWS_REGION": REGION, **keys})
    build.make("pipeline-push", env=env, PIPELINE_STORE="s3://models/cancer", PIPELINE_VERSION="v7")
    return json.loads((build.root / "push.json").read_text())


def test_push_puts_the_package_in_s3_with_its_digests(build, pushed, s3):
    client = s3.boto("s3")
    uris = []
    for obj in pushed["objects"]:
        uris.append(obj["uri"])
        body = client.get_object(Bucket="models", Key=obj["uri"].removeprefix("s3://models/"))["Body"].read()
        assert "sha256:" + hashlib.sha256(body).hexdigest() == obj["digest"]
    assert uris[-1] == "s3://models/cancer/v7/model.skops"  # the artifact last
    model = pushed["spec"]["model"]
    assert model["uri"] == uris[-1] and model["digest"] == sha256_of(build.root / "package" / "model.skops")


def test_release_rewrites_only_the_releases_fields(build, pushed, tmp_path):
    from modelroll.spec import parse_spec

    committed = MANIFEST.read_bytes()
    out = tmp_path / "deploy" / "modeldeployment.yaml"
    r = build.make("pipeline-release", PIPELINE_MANIFEST=str(out))
    assert MANIFEST.read_bytes() == committed  # the committed file is only the template here
    old, new = committed.decode().splitlines(), out.read_text().splitlines()
    assert len(new) == len(old)
    changed = {line.split(":")[0].strip() for a, line in zip(old, new, strict=True) if a != line}
    assert changed == RELEASE_KEYS  # v1 -> v7 too; comments and every other line as they were
    spec = yaml.safe_load(out.read_text())["spec"]
    assert spec["model"] | pushed["spec"]["model"] == spec["model"]
    assert spec["monitoring"]["drift"] == pushed["spec"]["monitoring"]["drift"]
    parsed = parse_spec(spec)  # a valid ModelDeployment spec
    assert parsed.model.digest == pushed["spec"]["model"]["digest"] and parsed.model.version == "v7"
    assert "5 fields changed" in r.stdout


def run_release(pushed_json: Path, manifest: Path, out: Path) -> subprocess.CompletedProcess[str]:
    script = PIPELINE / "release.py"
    cmd = [sys.executable, str(script), str(pushed_json), str(manifest), "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_release_quotes_a_version_yaml_would_read_as_a_number(pushed, tmp_path):
    fields = json.loads(json.dumps(pushed))
    fields["spec"]["model"]["version"] = "1.10"
    (tmp_path / "push.json").write_text(json.dumps(fields))
    r = run_release(tmp_path / "push.json", MANIFEST, tmp_path / "out.yaml")
    assert r.returncode == 0, r.stderr
    assert '    version: "1.10"\n' in (tmp_path / "out.yaml").read_text()
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["spec"]["model"]["version"] == "1.10"


def test_release_refuses_a_manifest_without_a_releases_field(build, pushed, tmp_path):
    text = MANIFEST.read_text()
    start = text.index("  monitoring:")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text[:start] + text[text.index("  replicas:") :])
    r = run_release(build.root / "push.json", broken, tmp_path / "out.yaml")
    assert r.returncode == 1 and "has no spec.monitoring" in r.stderr
    assert not (tmp_path / "out.yaml").exists()
