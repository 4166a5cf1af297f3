"""MODELROLL_* configuration: defaults, and a bad value refused with the variable named."""

import subprocess
import sys
from pathlib import Path

import pytest
from modelroll.settings import DEFAULT_SERVER_IMAGE, SettingsError, load_settings


def test_defaults_watch_every_namespace():
    s = load_settings({})
    assert s.clusterwide and s.namespaces == ()
    assert (s.server_image, s.resync_seconds, s.log_level, s.log_json, s.metrics_port, s.workers) == (
        DEFAULT_SERVER_IMAGE,
        300.0,
        "INFO",
        False,
        8081,
        8,
    )


def test_namespaces_and_overrides():
    s = load_settings(
        {
            "MODELROLL_NAMESPACES": " ml, fraud ,",
            "MODELROLL_LOG_JSON": "yes",
            "MODELROLL_WORKERS": "3",
            "MODELROLL_PROMETHEUS_URL": "http://prom:9090",
        }
    )
    assert s.namespaces == ("ml", "fraud") and not s.clusterwide
    assert s.log_json and s.workers == 3 and s.prometheus_url == "http://prom:9090"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MODELROLL_RESYNC_SECONDS": "soon"}, "MODELROLL_RESYNC_SECONDS"),
        ({"MODELROLL_RESYNC_SECONDS": "0"}, "MODELROLL_RESYNC_SECONDS"),
        ({"MODELROLL_METRICS_PORT": "70000"}, "MODELROLL_METRICS_PORT"),
        ({"MODELROLL_LOG_LEVEL": "LOUD"}, "MODELROLL_LOG_LEVEL"),
        ({"MODELROLL_LOG_JSON": "maybe"}, "MODELROLL_LOG_JSON"),
        ({"MODELROLL_WORKERS": "-1"}, "MODELROLL_WORKERS"),
        ({"MODELROLL_SERVER_IMAGE": "bad image"}, "MODELROLL_SERVER_IMAGE"),
        ({"MODELROLL_PROMETHEUS_URL": "prom:9090"}, "MODELROLL_PROMETHEUS_URL"),
        ({"MODELROLL_LEADER_ELECTION": "sometimes"}, "MODELROLL_LEADER_ELECTION"),
    ],
)
def test_bad_value_names_the_variable(env, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_the_operator_refuses_to_start_on_a_bad_value():
    exe = Path(sys.executable).parent / "modelroll-operator"
    proc = subprocess.run(
        [str(exe)],
        env={"MODELROLL_RESYNC_SECONDS": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "MODELROLL_RESYNC_SECONDS='soon' is not a number" in proc.stderr
