"""Registry fixtures: Debian's docker-registry, plain HTTP, TLS, htpasswd Basic and token auth.

The plain registry is GALLEY_TEST_REGISTRY (with GALLEY_TEST_REGISTRY_STORAGE) when
scripts/test-registry.sh started one, else one started for the session. The TLS and auth
registries serve the same storage, so tests push to the plain one and pull from the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.fixtures import registry as reg
from tests.images.fakeregistry import FakeRegistry
from tests.images.support import store, stores, write_hosts

__all__ = ["store", "stores"]  # fixtures defined with the helpers, shared with tests/unpack

USERS = {"alice": "wonderland"}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[reg.Registry]:
    """The plain-HTTP registry (shared by the session)."""
    host = os.environ.get("GALLEY_TEST_REGISTRY", "")
    storage = os.environ.get("GALLEY_TEST_REGISTRY_STORAGE", "")
    if host and storage:
        yield reg.Registry(host, Path(storage).parent, Path(storage), None)
        return
    started = reg.start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A test CA: (ca.pem, ca.key)."""
    return reg.make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, registry: reg.Registry, test_ca: tuple[Path, Path]
) -> Iterator[reg.Registry]:
    """An HTTPS registry (certificate from test_ca) on the plain registry's storage."""
    workdir = tmp_path_factory.mktemp("tls-registry")
    tls = reg.issue_cert(workdir, test_ca, "server", "127.0.0.1")
    started = reg.start_registry(workdir, storage=registry.storage, tls=tls, ca=test_ca[0])
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def basic_registry(
    tmp_path_factory: pytest.TempPathFactory, registry: reg.Registry
) -> Iterator[reg.Registry]:
    """A plain-HTTP registry requiring htpasswd Basic auth (USERS), on the shared storage."""
    workdir = tmp_path_factory.mktemp("basic-registry")
    auth = reg.htpasswd_auth_config(reg.make_htpasswd(workdir / "htpasswd", USERS))
    started = reg.start_registry(workdir, storage=registry.storage, auth=auth)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[reg.TokenServer]:
    """A token endpoint granting USERS what they ask for (anonymous: pull only)."""
    issuer = reg.TokenIssuer.create(tmp_path_factory.mktemp("token"))
    server = reg.TokenServer(
        issuer, dict(USERS), anonymous_pull=True, refresh_tokens={"alice": "refresh-alice"}
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
    registry: reg.Registry,
    token_server: reg.TokenServer,
) -> Iterator[reg.Registry]:
    """A plain-HTTP registry with Bearer token auth from token_server, on the shared storage."""
    workdir = tmp_path_factory.mktemp("token-registry")
    auth = reg.token_auth_config(token_server)
    started = reg.start_registry(workdir, storage=registry.storage, auth=auth)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def hosts(tmp_path: Path, registry: reg.Registry) -> str:
    """A certs.d directory reaching the plain registry over HTTP."""
    return write_hosts(tmp_path, registry.host)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    """A scripted registry for the lies a real one will not tell."""
    server = FakeRegistry()
    try:
        yield server
    finally:
        server.close()
