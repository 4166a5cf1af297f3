"""Helpers for the pipeline's tests: run a pipeline make target into a build directory, and the
pipeline's column names (examples/pipeline/columns.py, loaded from its file: the example's
scripts are scripts, not an installed package)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "examples" / "pipeline"
MANIFEST = PIPELINE / "deploy" / "modeldeployment.yaml"
WORKFLOW = PIPELINE / "github-workflow.yml"


def _columns() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pipeline_columns", PIPELINE / "columns.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


columns = _columns()


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Build:
    """A PIPELINE_BUILD directory; ``make`` runs a target into it as the README says."""

    root: Path

    def make(
        self, target: str, env: dict[str, str] | None = None, check: bool = True, dry: bool = False, **variables: str
    ) -> subprocess.CompletedProcess[str]:
        # A make above pytest (`make test`) passes its flags and jobserver through MAKEFLAGS;
        # the pipeline's make must not inherit them.
        base = env if env is not None else os.environ
        clean = {k: v for k, v in base.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        assigned = [f"{k}={v}" for k, v in {"PIPELINE_BUILD": str(self.root), **variables}.items()]
        r = subprocess.run(
            ["make", "--no-print-directory", *(["-n"] if dry else []), "-C", str(REPO), target, *assigned],
            capture_output=True,
            text=True,
            env=clean,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, f"make {target} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r

    @property
    def data(self) -> Path:
        return self.root / "data"
