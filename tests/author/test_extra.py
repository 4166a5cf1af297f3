"""The ``author`` extra is enough for ``modelroll``, and the images never get pandas."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from tests.author.support import REPO

# What the server and operator extras bring and the author extra does not.
NOT_IN_AUTHOR_EXTRA = (
    *("httptools", "uvloop", "orjson", "grpc", "google"),  # server
    *("kopf", "lightkube", "prometheus_client", "yaml"),  # operator
)


def test_package_and_push_run_without_the_server_and_operator_extras(models, tmp_path):
    """A fresh interpreter in which every module outside the author extra fails to import runs
    package and push to file://."""
    c = models["binary"]
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {NOT_IN_AUTHOR_EXTRA!r}:
                    raise ImportError(f"{{name}} is not in the author extra")
                return None

        sys.meta_path.insert(0, Refuse())
        from modelroll_author.cli import main
        pkg = {str(tmp_path / "pkg")!r}
        data = ["--reference", {str(c.csv)!r}, "--target", "target"]
        assert main(["package", {str(c.path)!r}, *data, "--out", pkg]) == 0
        assert main(["push", pkg, {(tmp_path / "pushed").as_uri()!r}]) == 0
        print("imported:", sorted(m for m in sys.modules if m.split(".")[0] in {NOT_IN_AUTHOR_EXTRA!r}))
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "imported: []" in r.stdout
    assert sorted(p.name for p in (tmp_path / "pushed").iterdir()) == ["model.skops", "reference.json", "report.json"]


def test_the_images_install_their_own_extra_only():
    for dockerfile, extra in (("server_image/Dockerfile", "server"), ("operator/Dockerfile", "operator")):
        installs = re.findall(r'pip install "\.\[([a-z,]+)\]"', (REPO / dockerfile).read_text())
        assert installs == [extra], (dockerfile, installs)
