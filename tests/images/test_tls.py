"""hosts.toml TLS settings against real HTTPS registries: ca, skip_verify, client certificates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.errors import Unavailable
from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from galley.images.pull import pull
from galley.images.store import Store
from tests.images.support import write_hosts

NS = "default"


@pytest.fixture(scope="module")
def mtls_registry(
    tmp_path_factory: pytest.TempPathFactory, registry: reg.Registry, test_ca: tuple[Path, Path]
) -> Iterator[tuple[reg.Registry, tuple[Path, Path]]]:
    """An HTTPS registry that wants a client certificate signed by test_ca; and one such pair."""
    workdir = tmp_path_factory.mktemp("mtls-registry")
    tls = reg.issue_cert(workdir, test_ca, "server", "127.0.0.1")
    client = reg.issue_cert(workdir, test_ca, "client", "127.0.0.1")
    started = reg.start_registry(
        workdir, storage=registry.storage, tls=tls, ca=test_ca[0], client_ca=test_ca[0]
    )
    try:
        yield started, client
    finally:
        started.stop()


def _hosts(root: Path, host: str, text: str) -> str:
    return write_hosts(root, host, f'server = "https://{host}"\n' + text)


def test_skip_verify(
    store: Store, tmp_path: Path, registry: reg.Registry, tls_registry: reg.Registry
) -> None:
    image = fi.busybox_image(seed=501)
    fi.push_image(registry.host, "tls/skip", "t", image)
    hosts = _hosts(tmp_path, tls_registry.host, "skip_verify = true\n")
    got = pull(
        store, f"{tls_registry.host}/tls/skip:t", namespace=NS, hosts_dir=hosts, unpack=False
    )
    assert got.target.digest == image.descriptor.digest


def test_client_certificates(
    store: Store,
    tmp_path: Path,
    registry: reg.Registry,
    mtls_registry: tuple[reg.Registry, tuple[Path, Path]],
) -> None:
    server, (cert, key) = mtls_registry
    image = fi.busybox_image(seed=502)
    fi.push_image(registry.host, "tls/mutual", "t", image)
    ref = f"{server.host}/tls/mutual:t"
    without = _hosts(tmp_path / "without", server.host, f'ca = "{server.ca}"\n')
    with pytest.raises(Unavailable):
        pull(store, ref, namespace=NS, hosts_dir=without, unpack=False)
    with_client = _hosts(
        tmp_path / "with", server.host, f'ca = "{server.ca}"\nclient = [["{cert}", "{key}"]]\n'
    )
    got = pull(store, ref, namespace=NS, hosts_dir=with_client, unpack=False)
    assert got.target.digest == image.descriptor.digest
