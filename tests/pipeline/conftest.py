"""The pipeline run once per session into a temporary build directory: data and training here,
each later step in the fixture or test that checks it."""

from __future__ import annotations

import pytest

from tests.pipeline.support import Build


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    b = Build(tmp_path_factory.mktemp("pipeline-build"))
    b.make("pipeline-data")
    b.make("pipeline-train")
    return b


@pytest.fixture(scope="session")
def packaged(build: Build) -> str:
    """``make pipeline-package PIPELINE_VERSION=v7``'s output."""
    return build.make("pipeline-package", PIPELINE_VERSION="v7").stdout
