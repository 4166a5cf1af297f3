"""The release workflow (examples/pipeline/github-workflow.yml) runs nothing but make targets
and git, every target exists in the Makefile, and every one is run by a test here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tests.pipeline.support import MANIFEST, REPO, WORKFLOW, Build, columns

HERE = Path(__file__).parent
RULE = re.compile(r"^([A-Za-z0-9_.-]+):(?!=)([^=]*)$")


def makefile_rules() -> dict[str, list[str]]:
    """target -> prerequisites, for every rule of the top-level Makefile."""
    rules = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        m = RULE.match(line)
        if m and not line.startswith((".", "\t")):
            rules[m.group(1)] = m.group(2).split()
    return rules


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def run_lines() -> list[str]:
    steps = workflow()["jobs"]["release"]["steps"]
    lines = []
    for step in steps:
        for line in step.get("run", "").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip())
    return lines


def make_targets() -> list[str]:
    """The targets of the workflow's `make TARGET [VAR=VALUE ...]` lines."""
    targets = []
    for line in run_lines():
        words = shlex.split(line)
        if words[0] == "make":
            assert len(words) >= 2 and all("=" in w for w in words[2:]), f"not `make TARGET [VAR=VALUE]`: {line}"
            targets.append(words[1])
    return targets


def test_the_workflow_releases_on_push_to_main_and_by_hand():
    w = workflow()
    on = w.get("on", w.get(True))  # YAML 1.1 (PyYAML) reads the key `on` as True
    assert on["push"]["branches"] == ["main"] and "workflow_dispatch" in on
    assert w["permissions"] == {"contents": "write"}  # the manifest commit is pushed
    env = w["jobs"]["release"]["env"]
    assert REPO / env["PIPELINE_MANIFEST"] == MANIFEST  # the committed manifest is the one edited
    assert "secrets." in env["AWS_SECRET_ACCESS_KEY"] and env["PIPELINE_STORE"]


def test_every_run_line_is_a_make_target_or_git():
    lines = run_lines()
    others = [line for line in lines if shlex.split(line)[0] not in ("make", "git")]
    assert others == []
    assert make_targets() == [
        "venv",
        "pipeline-data",
        "pipeline-train",
        "pipeline-evaluate",
        "pipeline-package",
        "pipeline-push",
        "pipeline-release",
    ]
    git = [shlex.split(line)[1] for line in lines if line.startswith("git ")]
    assert "commit" in git and git[-1] == "push"


def test_every_target_exists_and_is_run_by_a_test_here():
    rules = makefile_rules()
    tests = "\n".join(p.read_text() for p in HERE.glob("test_*.py") if p.name != Path(__file__).name)
    tests += (HERE / "conftest.py").read_text()
    for target in make_targets():
        assert target in rules, f"make {target}: no such target in the Makefile"
        if target == "venv":
            continue  # every pipeline target depends on it, so each make below runs it
        assert re.search(rf'\.make\(\s*"{target}"', tests), f"make {target} is run by no test in {HERE}"
    for target in [t for t in rules if t.startswith("pipeline")]:
        assert rules[target][:1] == ["venv"], f"{target} does not depend on venv"


def test_make_pipeline_runs_every_step_in_order(tmp_path):
    """`make -n pipeline`: the sub-makes run (dry) and print each step's command in order."""
    r = Build(tmp_path).make("pipeline", dry=True)
    expected = ["clean.py", "train.py", "modelroll evaluate", "modelroll package", "modelroll push", "release.py"]
    expected += ["train.py", "--corrupt-labels", "modelroll package", "modelroll push", "release.py", "drift.py"]
    at = 0
    for needle in expected:
        found = r.stdout.find(needle, at)
        assert found >= 0, f"{needle!r} missing after offset {at} in:\n{r.stdout}"
        at = found + len(needle)
    assert not (tmp_path / "data").exists()  # dry: nothing written


def test_the_makefile_label_column_is_the_scripts():
    assert f"PIPELINE_TARGET := {columns.TARGET}\n" in (REPO / "Makefile").read_text()
