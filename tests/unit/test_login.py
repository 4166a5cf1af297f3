"""kopf's in-cluster login: the `kubernetes` Service's address from the kubelet's environment
(as client-go and lightkube do), never the DNS name https://kubernetes.default.svc."""

from __future__ import annotations

from modelroll.login import in_cluster

ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def account(tmp_path, token="tok-1\n", namespace="ops", ca=True):
    (tmp_path / "token").write_text(token)
    (tmp_path / "namespace").write_text(namespace)
    if ca:
        (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def test_service_address_token_ca_and_namespace(tmp_path):
    info = in_cluster(env=ENV, account=account(tmp_path))
    assert info.server == "https://10.96.0.1:443"
    assert (info.token, info.default_namespace, info.ca_path) == ("tok-1", "ops", str(tmp_path / "ca.crt"))


def test_token_is_read_again_at_every_login(tmp_path):
    acct = account(tmp_path)
    assert in_cluster(env=ENV, account=acct).token == "tok-1"
    (acct / "token").write_text("tok-2")  # the kubelet rotated the projected token
    assert in_cluster(env=ENV, account=acct).token == "tok-2"


def test_ipv6_service_address_is_bracketed(tmp_path):
    env = {"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert in_cluster(env=env, account=account(tmp_path)).server == "https://[fd00:10:96::1]:6443"


def test_not_in_a_pod(tmp_path):
    assert in_cluster(env=ENV, account=tmp_path) is None  # no token file
    assert in_cluster(env={}, account=account(tmp_path)) is None  # no service environment
    empty = tmp_path / "empty"
    empty.mkdir()
    assert in_cluster(env=ENV, account=account(empty, token="")) is None  # an empty token
