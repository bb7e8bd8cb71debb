"""Auth and host settings end to end: refresh tokens, push scopes, hosts.toml headers and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.errors import PermissionDenied
from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from galley.images.auth import Credentials
from galley.images.pull import pull
from galley.images.push import push
from galley.images.store import Store
from tests.images.fakeregistry import FakeRegistry
from tests.images.support import write_hosts

NS = "default"
ALICE = Credentials("alice", "wonderland")


def test_identity_token_uses_refresh_grant(
    store: Store,
    tmp_path: Path,
    registry: reg.Registry,
    token_registry: reg.Registry,
    token_server: reg.TokenServer,
) -> None:
    image = fi.busybox_image(seed=401)
    fi.push_image(registry.host, "auth/refresh", "t", image)
    hosts = write_hosts(tmp_path, token_registry.host)
    before = len(token_server.requests)
    creds = Credentials(identity_token="refresh-alice")
    pull(store, f"{token_registry.host}/auth/refresh:t", namespace=NS, hosts_dir=hosts,
         credentials=creds, unpack=False)  # fmt: skip
    (asked,) = token_server.requests[before:]
    assert asked["method"] == ["POST"] and asked["grant_type"] == ["refresh_token"]
    with pytest.raises(PermissionDenied, match="token endpoint"):
        pull(store, f"{token_registry.host}/auth/refresh:t", namespace=NS, hosts_dir=hosts,
             credentials=Credentials(identity_token="stolen"), unpack=False)  # fmt: skip


@pytest.mark.parametrize("kind", ["token", "basic"])
def test_push_needs_credentials(
    store: Store,
    tmp_path: Path,
    kind: str,
    registry: reg.Registry,
    token_registry: reg.Registry,
    basic_registry: reg.Registry,
) -> None:
    target = token_registry if kind == "token" else basic_registry
    image = fi.busybox_image(seed=402 if kind == "token" else 403)
    fi.push_image(registry.host, f"auth/src-{kind}", "t", image)
    plain = write_hosts(tmp_path / "p", registry.host)
    pull(store, f"{registry.host}/auth/src-{kind}:t", namespace=NS, hosts_dir=plain, unpack=False)
    hosts = write_hosts(tmp_path / "t", target.host)
    dest = f"{target.host}/auth/dest-{kind}:1"
    with pytest.raises(PermissionDenied):
        push(store, f"{registry.host}/auth/src-{kind}:t", dest, namespace=NS, hosts_dir=hosts,
             credentials=Credentials())  # fmt: skip
    push(store, f"{registry.host}/auth/src-{kind}:t", dest, namespace=NS, hosts_dir=hosts,
         credentials=ALICE)  # fmt: skip
    with Store.open(str(tmp_path / "other")) as other:
        got = pull(other, dest, namespace=NS, hosts_dir=hosts, credentials=ALICE, unpack=False)
        assert got.target.digest == image.descriptor.digest


def test_hosts_headers_and_override_path(store: Store, tmp_path: Path, fake: FakeRegistry) -> None:
    image = fi.build_image([fi.random_layer(100, seed=404)])
    prefix = "/custom/api"
    fake.serve_image("a/b", image, api=prefix)
    hosts = write_hosts(
        tmp_path,
        "registry.invalid",
        f'server = "http://127.0.0.1:9"\n[host."http://{fake.host}{prefix}"]\n'
        '  capabilities = ["pull", "resolve"]\n  override_path = true\n'
        f'  [host."http://{fake.host}{prefix}".header]\n    x-galley = ["one", "two"]\n',
    )
    pull(store, "registry.invalid/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    assert fake.seen[0] == f"{prefix}/a/b/manifests/t?ns=registry.invalid"
    assert all(h.get("x-galley") == "one, two" for h in fake.headers)
    assert all(h.get("User-Agent", "").startswith("galley/") for h in fake.headers)
