"""Credentials, Docker config.json, WWW-Authenticate parsing and the Authorizer's token cache."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from galley.errors import PermissionDenied
from galley.images.auth import (
    Authorizer,
    Challenge,
    Credentials,
    docker_config_credentials,
    parse_challenges,
    static_credentials,
)


def test_parse_challenges() -> None:
    (c,) = parse_challenges(
        'Bearer realm="https://auth.example/token",service="reg, x",scope="repository:a/b:pull"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "reg, x",
        "scope": "repository:a/b:pull",
    }
    two = parse_challenges('Basic realm="r", Bearer realm="t",service=s')
    assert [x.scheme for x in two] == ["basic", "bearer"]
    assert two[1].params == {"realm": "t", "service": "s"}


def test_docker_config(tmp_path: Path) -> None:
    auth = base64.b64encode(b"bob:secret").decode()
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": auth},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
            "https://ghcr.io": {"identitytoken": "refresh"},
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    lookup = docker_config_credentials(str(tmp_path / "config.json"))
    hub = lookup("docker.io")
    assert hub is not None and hub.basic() == ("bob", "secret")
    local = lookup("127.0.0.1:5000")
    assert local is not None and local.basic() == ("u", "p")
    ghcr = lookup("ghcr.io")
    assert ghcr is not None and ghcr.identity_token == "refresh" and ghcr.basic() is None
    assert lookup("quay.io") is None
    assert docker_config_credentials(str(tmp_path / "missing.json"))("docker.io") is None


def test_bearer_tokens_are_cached_per_scope() -> None:
    fetched: list[tuple[str, str | None]] = []

    def fetch(challenge: Challenge, scope: str, creds: Credentials | None) -> tuple[str, int]:
        fetched.append((scope, creds.username if creds else None))
        return f"tok{len(fetched)}", 300

    authz = Authorizer(static_credentials(Credentials("u", "p")), fetch)
    assert authz.header("h", "repository:a:pull") == ""
    header = 'Bearer realm="http://t/token",service="svc"'
    assert authz.challenge("h", header, "repository:a:pull") == "Bearer tok1"
    assert authz.header("h", "repository:a:pull") == "Bearer tok1"
    assert authz.header("h", "repository:b:pull") == "Bearer tok2"
    assert authz.header("h", "repository:a:pull") == "Bearer tok1"
    assert fetched == [("repository:a:pull", "u"), ("repository:b:pull", "u")]


def test_basic_challenge_needs_credentials() -> None:
    anon = Authorizer(static_credentials(None), lambda c, s, cr: ("", 0))
    with pytest.raises(PermissionDenied, match="requires credentials"):
        anon.challenge("h", 'Basic realm="r"', "s")
    authz = Authorizer(static_credentials(Credentials("u", "p")), lambda c, s, cr: ("", 0))
    expected = "Basic " + base64.b64encode(b"u:p").decode()
    assert authz.challenge("h", 'Basic realm="r"', "s") == expected
    assert authz.header("h", "other") == expected
    with pytest.raises(PermissionDenied, match="unsupported"):
        authz.challenge("h", 'Negotiate realm="x"', "s")


def test_registry_token_is_used_directly() -> None:
    authz = Authorizer(
        static_credentials(Credentials(registry_token="rt")), lambda c, s, cr: ("", 0)
    )
    assert authz.header("h", "s") == "Bearer rt"


def _helper(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\nread server\n{body}\n")
    script.chmod(0o755)


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    answer = json.dumps({"Username": "bob", "Secret": "pw"})
    _helper(bin_dir, "pass", f"echo \"$server\" >> {calls}\necho '{answer}'")
    _helper(bin_dir, "tok", 'echo "{\\"Username\\": \\"<token>\\", \\"Secret\\": \\"refresh\\"}"')
    _helper(bin_dir, "none", "echo 'credentials not found in native keychain'; exit 1")
    _helper(bin_dir, "broken", "echo boom >&2; exit 3")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = {
        "auths": {"plain.example": {"username": "u", "password": "p"}},
        "credHelpers": {"docker.io": "pass", "ghcr.io": "tok", "bad.example": "broken"},
        "credsStore": "none",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    lookup = docker_config_credentials(str(tmp_path / "config.json"))
    hub = lookup("registry-1.docker.io")
    assert hub is not None and hub.basic() == ("bob", "pw")
    assert lookup("docker.io") is hub, "asked once, then cached"
    assert calls.read_text() == "https://index.docker.io/v1/\n"
    ghcr = lookup("ghcr.io")
    assert ghcr is not None and ghcr.identity_token == "refresh"
    plain = lookup("plain.example")
    assert plain is not None and plain.basic() == ("u", "p")
    assert lookup("quay.io") is None
    with pytest.raises(PermissionDenied, match="boom"):
        lookup("bad.example")
