"""schemathesis over the server's own /openapi.json: whatever it generates, no 5xx.

Its command line, not its pytest plugin (which does not run under this pytest); seeded, and
bounded so the run stays a few seconds. The response checks are schemathesis's own: no
server error, the documented status codes, content types and response schemas.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_generated_requests_get_no_server_error(lr_server, tmp_path):
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is in the dev extra")
    r = subprocess.run(
        [st, "run", lr_server.url + "/openapi.json", "--checks", CHECKS, "--max-examples", "60", "--seed", "7",
         "--generation-deterministic", "--workers", "1", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # it writes a .schemathesis/ cache
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert lr_server.get("/v2/health/ready").status_code == 200
    assert not any('code="5' in k and v for k, v in lr_server.metrics().items())
