"""Pull from the real registry: tags, digests, indexes, Docker types, auth, TLS, mirrors."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import pytest

from galley.content.digest import Digest
from galley.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from galley.images import mediatypes as mt
from galley.images.auth import Credentials
from galley.images.pull import Progress, pull
from galley.images.store import Store
from galley.images.tree import GC_CONTENT, UNCOMPRESSED
from tests.images.support import write_hosts

NS = "default"


def _push(registry: reg.Registry, repo: str, image: fi.BuiltImage | fi.BuiltIndex) -> str:
    fi.push_image(registry.host, repo, "t", image)
    return f"{registry.host}/{repo}:t"


def _assert_stored(store: Store, image: fi.BuiltImage) -> None:
    for digest, data in image.blobs().items():
        with store.content.open(digest) as fh:
            assert fh.read() == data
    assert store.content.ingests() == []


def test_pull_by_tag_records_image_and_gc_labels(
    store: Store, registry: reg.Registry, hosts: str
) -> None:
    image = fi.busybox_image(seed=11, extra_layers=2)
    ref = _push(registry, "pull/tag", image)
    events: list[Progress] = []
    got = pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False, progress=events.append)
    assert got.name == ref and got.target.digest == image.descriptor.digest
    assert store.meta.get_image(NS, ref).target.digest == image.descriptor.digest
    _assert_stored(store, image)
    labels = store.meta.content_labels(NS, image.descriptor.digest)
    assert labels[f"{GC_CONTENT}config"] == str(image.config_descriptor.digest)
    for i, layer in enumerate(image.layers):
        assert labels[f"{GC_CONTENT}l.{i}"] == str(layer.descriptor.digest)
        layer_labels = store.meta.content_labels(NS, layer.descriptor.digest)
        assert layer_labels[UNCOMPRESSED] == str(layer.diff_id)
    assert any(e.status == "done" and e.kind == "layer" for e in events)
    assert store.meta.list_leases(NS) == []
    again: list[Progress] = []
    pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False, progress=again.append)
    assert {e.status for e in again if e.kind == "layer"} == {"exists"}


def test_pull_by_digest_and_wrong_digest(store: Store, registry: reg.Registry, hosts: str) -> None:
    image = fi.busybox_image(seed=12)
    _push(registry, "pull/digest", image)
    ref = f"{registry.host}/pull/digest@{image.descriptor.digest}"
    assert pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False).name == ref
    missing = f"{registry.host}/pull/digest@{Digest.of_bytes(b'nothing')}"
    with pytest.raises(NotFound, match="pull/digest"):
        pull(store, missing, namespace=NS, hosts_dir=hosts, unpack=False)
    with pytest.raises(NotFound):
        pull(store, f"{registry.host}/pull/nothing:1", namespace=NS, hosts_dir=hosts)


def test_index_platform_selection(store: Store, registry: reg.Registry, hosts: str) -> None:
    amd = fi.build_image([fi.random_layer(2000, seed=21)])
    arm = fi.build_image(
        [fi.random_layer(2000, seed=22)],
        platform=mt.Platform("linux", "arm64", "v8"),
        compression="zstd",
    )
    index = fi.build_index([amd, arm])
    ref = _push(registry, "pull/multi", index)
    got = pull(store, ref, namespace=NS, hosts_dir=hosts, platform="linux/arm64", unpack=False)
    assert got.target.media_type == mt.OCI_INDEX
    _assert_stored(store, arm)
    assert not store.content.exists(amd.layers[0].descriptor.digest)
    labels = store.meta.content_labels(NS, index.descriptor.digest)
    assert labels[f"{GC_CONTENT}m.1"] == str(arm.descriptor.digest)
    with pytest.raises(NotFound, match=r"linux/s390x.*linux/amd64, linux/arm64/v8"):
        pull(store, ref, namespace=NS, hosts_dir=hosts, platform="linux/s390x", unpack=False)


def test_docker_manifest_list(store: Store, registry: reg.Registry, hosts: str) -> None:
    image = fi.build_image([fi.random_layer(3000, seed=31)], fmt="docker")
    index = fi.build_index([image], fmt="docker")
    ref = _push(registry, "pull/docker", index)
    got = pull(store, ref, namespace=NS, hosts_dir=hosts, platform="linux/amd64", unpack=False)
    assert got.target.media_type == mt.DOCKER_MANIFEST_LIST
    _assert_stored(store, image)


def test_concurrent_pulls_share_the_work(
    store: Store, tmp_path: Path, registry: reg.Registry, hosts: str
) -> None:
    image = fi.build_image([fi.random_layer(1 << 20, seed=41, files=2)], compression="")
    ref = _push(registry, "pull/concurrent", image)
    other = Store.open(store.root)
    errors: list[BaseException] = []
    events: list[Progress] = []

    def run(s: Store) -> None:
        try:
            pull(s, ref, namespace=NS, hosts_dir=hosts, unpack=False, progress=events.append)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (store, other, store)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    _assert_stored(store, image)
    layer = str(image.layers[0].descriptor.digest)
    finals = sorted(
        e.status for e in events if e.digest == layer and e.status in ("done", "exists")
    )
    assert finals == ["done", "exists", "exists"], "the layer is downloaded once"


def test_tampered_blob_is_refused_and_nothing_kept(
    store: Store, registry: reg.Registry, hosts: str
) -> None:
    image = fi.build_image([fi.random_layer(5000, seed=51)])
    ref = _push(registry, "pull/tampered", image)
    layer = image.layers[0]
    path = registry.blob_path(layer.descriptor.digest.hex)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidArgument, match=str(layer.descriptor.digest)):
        pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False)
    assert not store.content.exists(layer.descriptor.digest)
    assert store.content.ingests() == []
    with pytest.raises(NotFound):
        store.meta.get_image(NS, ref)


def test_truncated_blob_is_refused(store: Store, registry: reg.Registry, hosts: str) -> None:
    image = fi.build_image([fi.random_layer(5000, seed=52)])
    ref = _push(registry, "pull/short", image)
    path = registry.blob_path(image.layers[0].descriptor.digest.hex)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InvalidArgument, match="bytes"):
        pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False)
    assert store.content.ingests() == []


def test_basic_auth(
    store: Store, tmp_path: Path, registry: reg.Registry, basic_registry: reg.Registry
) -> None:
    image = fi.busybox_image(seed=61)
    fi.push_image(registry.host, "pull/basic", "t", image)
    hosts = write_hosts(tmp_path, basic_registry.host)
    ref = f"{basic_registry.host}/pull/basic:t"
    with pytest.raises(PermissionDenied, match="credentials"):
        pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False, credentials=Credentials())
    with pytest.raises(PermissionDenied):
        bad = Credentials("alice", "wrong")
        pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False, credentials=bad)
    auth = base64.b64encode(b"alice:wonderland").decode()
    pull(
        store, ref, namespace=NS, hosts_dir=hosts, unpack=False, credentials=Credentials(auth=auth)
    )
    _assert_stored(store, image)


def test_token_auth_with_docker_config(
    store: Store,
    tmp_path: Path,
    registry: reg.Registry,
    token_registry: reg.Registry,
    token_server: reg.TokenServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = fi.busybox_image(seed=62, extra_layers=3)
    fi.push_image(registry.host, "pull/token", "t", image)
    hosts = write_hosts(tmp_path, token_registry.host)
    config = tmp_path / "docker"
    config.mkdir()
    auths = {token_registry.host: {"username": "alice", "password": "wonderland"}}
    (config / "config.json").write_text(json.dumps({"auths": auths}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    before = len(token_server.requests)
    ref = f"{token_registry.host}/pull/token:t"
    pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False)
    _assert_stored(store, image)
    asked = token_server.requests[before:]
    assert len(asked) == 1, "one token for the scope, reused for every blob"
    assert asked[0]["scope"] == ["repository:pull/token:pull"]
    assert asked[0]["service"] == [reg.SERVICE]


def test_tls_registry_needs_its_ca(
    store: Store, tmp_path: Path, registry: reg.Registry, tls_registry: reg.Registry
) -> None:
    image = fi.busybox_image(seed=63)
    fi.push_image(registry.host, "pull/tls", "t", image)
    ref = f"{tls_registry.host}/pull/tls:t"
    bare = write_hosts(
        tmp_path / "bare", tls_registry.host, f'server = "https://{tls_registry.host}"\n'
    )
    with pytest.raises(Unavailable, match="TLS"):
        pull(store, ref, namespace=NS, hosts_dir=bare, unpack=False)
    good = write_hosts(
        tmp_path / "good",
        tls_registry.host,
        f'server = "https://{tls_registry.host}"\nca = "{tls_registry.ca}"\n',
    )
    pull(store, ref, namespace=NS, hosts_dir=good, unpack=False)
    _assert_stored(store, image)


def test_mirror_is_used_for_an_unreachable_upstream(
    store: Store, tmp_path: Path, registry: reg.Registry
) -> None:
    image = fi.busybox_image(seed=64)
    fi.push_image(registry.host, "pull/mirrored", "t", image)
    hosts = write_hosts(
        tmp_path,
        "upstream.invalid",
        f'server = "http://127.0.0.1:9"\n[host."http://{registry.host}"]\n'
        '  capabilities = ["pull", "resolve"]\n',
    )
    got = pull(
        store, "upstream.invalid/pull/mirrored:t", namespace=NS, hosts_dir=hosts, unpack=False
    )
    assert got.name == "upstream.invalid/pull/mirrored:t"
    _assert_stored(store, image)
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:9"):
        pull(store, "upstream.invalid/pull/absent:t", namespace=NS, hosts_dir=hosts, unpack=False)


def test_loopback_without_hosts_toml_falls_back_to_http(
    store: Store, tmp_path: Path, registry: reg.Registry
) -> None:
    image = fi.busybox_image(seed=65)
    ref = _push(registry, "pull/fallback", image)
    pull(store, ref, namespace=NS, hosts_dir=str(tmp_path / "none"), unpack=False)
    _assert_stored(store, image)


def test_pull_keeps_no_lease_after_failure(
    store: Store, registry: reg.Registry, hosts: str
) -> None:
    with pytest.raises(NotFound):
        pull(store, f"{registry.host}/pull/none:x", namespace=NS, hosts_dir=hosts)
    assert store.meta.list_leases(NS) == []
    assert os.listdir(os.path.join(store.root, "content", "ingest")) == []


def test_repeated_layer(store: Store, registry: reg.Registry, hosts: str) -> None:
    layer = fi.random_layer(3000, seed=66)
    image = fi.build_image([layer, fi.random_layer(10, seed=67), layer])
    ref = _push(registry, "pull/repeated", image)
    got = pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False)
    assert got.target.digest == image.descriptor.digest
    _assert_stored(store, image)
