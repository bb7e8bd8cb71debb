"""Lying registries: redirect loops, huge or schema 1 manifests, oversized blobs, leaked auth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.fixtures import images as fi
from galley.images import mediatypes as mt
from galley.images.pull import pull
from galley.images.store import Store
from tests.images.fakeregistry import FakeRegistry
from tests.images.support import write_hosts

NS = "default"


@pytest.fixture
def hosts(tmp_path: Path, fake: FakeRegistry) -> str:
    """A certs.d directory reaching the fake registry (not the real one of conftest)."""
    return write_hosts(tmp_path, fake.host)


def _clean(store: Store) -> None:
    assert store.content.ingests() == []
    assert list(store.content.walk()) == []
    assert store.meta.list_images(NS) == []


def test_redirect_loop_is_refused(store: Store, fake: FakeRegistry, hosts: str) -> None:
    image = fi.build_image([fi.random_layer(100, seed=1)])
    fake.serve_image("a/b", image)
    layer = f"/v2/a/b/blobs/{image.layers[0].descriptor.digest}"
    fake.routes[layer] = (307, {"Location": layer}, b"")
    with pytest.raises(InvalidArgument, match="redirects"):
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    assert store.content.ingests() == [] and store.meta.list_images(NS) == []


def test_redirect_to_another_host_is_followed_without_credentials(
    store: Store, fake: FakeRegistry, hosts: str
) -> None:
    image = fi.build_image([fi.random_layer(100, seed=2)])
    fake.serve_image("a/b", image)
    other = FakeRegistry()
    try:
        digest = image.layers[0].descriptor.digest
        other.routes["/storage/blob"] = (200, {}, image.layers[0].data)
        fake.routes[f"/v2/a/b/blobs/{digest}"] = (
            302,
            {"Location": f"http://{other.host}/storage/blob?sig=1"},
            b"",
        )
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
        assert store.content.exists(digest)
        assert other.seen == ["/storage/blob?sig=1"]
    finally:
        other.close()


def test_huge_manifest_is_refused(store: Store, fake: FakeRegistry, hosts: str) -> None:
    huge = b'{"schemaVersion":2,"layers":[' + b" " * (5 << 20) + b"]}"
    fake.routes["/v2/a/b/manifests/t"] = (200, {"Content-Type": mt.OCI_MANIFEST}, huge)
    with pytest.raises(InvalidArgument, match="limit"):
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    _clean(store)


def test_huge_manifest_without_length_is_refused(
    store: Store, fake: FakeRegistry, hosts: str
) -> None:
    body = b"x" * (5 << 20)

    def chunked(_path: str, _headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        # Close-delimited body: no Content-Length, the reader must stop at the limit itself.
        return (
            200,
            {"Content-Type": mt.OCI_MANIFEST, "Connection": "close", "Content-Length": ""},
            body,
        )

    fake.routes["/v2/a/b/manifests/t"] = chunked
    with pytest.raises(InvalidArgument, match="limit"):
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    _clean(store)


def test_schema1_is_refused_clearly(store: Store, fake: FakeRegistry, hosts: str) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "a/b", "tag": "t", "fsLayers": []}).encode()
    fake.routes["/v2/a/b/manifests/t"] = (200, {"Content-Type": mt.DOCKER_SCHEMA1_SIGNED}, body)
    with pytest.raises(InvalidArgument, match="schema 1"):
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    _clean(store)


def test_blob_longer_than_declared_is_refused(store: Store, fake: FakeRegistry, hosts: str) -> None:
    image = fi.build_image([fi.random_layer(1000, seed=3)])
    fake.serve_image("a/b", image)
    digest = image.layers[0].descriptor.digest
    fake.routes[f"/v2/a/b/blobs/{digest}"] = (200, {}, image.layers[0].data + b"extra")
    with pytest.raises(InvalidArgument, match=r"declared|descriptor says"):
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    assert not store.content.exists(digest)
    assert store.content.ingests() == []


def test_manifest_not_matching_its_digest_is_refused(
    store: Store, fake: FakeRegistry, hosts: str
) -> None:
    image = fi.build_image([fi.random_layer(100, seed=4)])
    other = fi.build_image([fi.random_layer(100, seed=5)])
    fake.routes[f"/v2/a/b/manifests/{image.descriptor.digest}"] = (
        200,
        {"Content-Type": mt.OCI_MANIFEST},
        other.manifest,
    )
    ref = f"{fake.host}/a/b@{image.descriptor.digest}"
    with pytest.raises(InvalidArgument, match="expected"):
        pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False)
    _clean(store)


def test_unknown_layer_media_type_is_refused(store: Store, fake: FakeRegistry, hosts: str) -> None:
    image = fi.build_image([fi.random_layer(100, seed=6)])
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["mediaType"] = "application/x-evil"
    body = json.dumps(manifest).encode()
    fake.routes["/v2/a/b/manifests/t"] = (200, {"Content-Type": mt.OCI_MANIFEST}, body)
    with pytest.raises(InvalidArgument, match="application/x-evil"):
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)


def _partial(store: Store, image: fi.BuiltImage, upto: int) -> None:
    """Leave a partial ingest of the first layer, as a killed pull would."""
    layer = image.layers[0]
    writer = store.content.writer(f"fetch-{layer.descriptor.digest}", layer.descriptor.digest,
                                  layer.descriptor.size)  # fmt: skip
    writer.write(layer.data[:upto])
    writer.close()


def test_resume_from_a_server_ignoring_range(store: Store, fake: FakeRegistry, hosts: str) -> None:
    image = fi.build_image([fi.random_layer(5000, seed=7)])
    fake.serve_image("a/b", image)
    _partial(store, image, 1000)
    pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    assert store.content.exists(image.layers[0].descriptor.digest)
    assert store.content.ingests() == []


def _pull_resumed(store: Store, fake: FakeRegistry, hosts: str, repo: str, first: str) -> None:
    """Pull repo once 1000 bytes of its layer are in; the registry answers the resume with
    the bytes from `first` on, and says so in its Content-Range."""
    image = fi.build_image([fi.random_layer(5000, seed=len(repo) + len(first))])
    fake.serve_image(repo, image)
    data = image.layers[0].data
    start = int(first) if first.isascii() and first.isdigit() else 1000
    fake.routes[f"/v2/{repo}/blobs/{image.layers[0].descriptor.digest}"] = (
        206,
        {"Content-Range": f"bytes {first}-{len(data) - 1}/{len(data)}"},
        data[start:],
    )
    _partial(store, image, 1000)
    pull(store, f"{fake.host}/{repo}:t", namespace=NS, hosts_dir=hosts, unpack=False)


def test_resume_with_a_lying_content_range(store: Store, fake: FakeRegistry, hosts: str) -> None:
    with pytest.raises(InvalidArgument, match="asked for bytes from 1000"):
        _pull_resumed(store, fake, hosts, "a/b", "0")
    assert store.meta.list_images(NS) == []


def test_dropped_connection_is_resumed(store: Store, fake: FakeRegistry, hosts: str) -> None:
    image = fi.build_image([fi.random_layer(300_000, seed=9)])
    fake.serve_image("a/b", image)
    data = image.layers[0].data
    calls: list[str] = []

    def flaky(_path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        calls.append(headers.get("Range", ""))
        index = len(calls) - 1
        if index == 0:  # promise everything, send a third, hang up
            return 200, {"Content-Length": str(len(data)), "Connection": "close"}, data[:100_000]
        start = int(calls[-1].removeprefix("bytes=").rstrip("-"))
        answer = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        return 206, answer, data[start:]

    fake.routes[f"/v2/a/b/blobs/{image.layers[0].descriptor.digest}"] = flaky
    pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    assert calls == ["", "bytes=100000-"]
    assert store.content.exists(image.layers[0].descriptor.digest)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("layers", 5, "must be a list"),
        ("config", "x", "descriptor must be an object"),
        # found by mutating manifests (session 26): these ended in "TypeError: 'int' object
        # is not iterable" where a hostile registry's answer must be refused by name
        ("layers.0.urls", 5, "urls must be a list of strings"),
        ("config.urls", [1], "urls must be a list of strings"),
    ],
)
def test_malformed_manifest_fields(
    store: Store, fake: FakeRegistry, hosts: str, field: str, value: object, fragment: str
) -> None:
    image = fi.build_image([fi.random_layer(100, seed=10)])
    manifest = json.loads(image.manifest)
    *parents, last = field.split(".")
    node = manifest
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    body = json.dumps(manifest).encode()
    fake.routes["/v2/a/b/manifests/t"] = (200, {"Content-Type": mt.OCI_MANIFEST}, body)
    with pytest.raises(InvalidArgument, match=fragment):
        pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)


def test_a_length_in_digits_that_are_not_ascii_is_no_length(
    store: Store, fake: FakeRegistry, hosts: str
) -> None:
    """ "²" is a digit to str.isdigit() and no number to int(): a registry sending it as the
    Content-Length (of a manifest, of a blob) or in a Content-Range ended the pull in a
    ValueError. A length that is no number is no length (the body is read to its end and
    checked against its digest); a Content-Range that is none is refused by name."""
    image = fi.build_image([fi.random_layer(5000, seed=10)])
    fake.serve_image("a/b", image)
    digest = image.layers[0].descriptor.digest
    odd = {"Content-Length": "\u00b2", "Connection": "close"}
    manifest = fake.routes["/v2/a/b/manifests/t"]
    assert isinstance(manifest, tuple)
    fake.routes["/v2/a/b/manifests/t"] = (manifest[0], {**manifest[1], **odd}, manifest[2])
    fake.routes[f"/v2/a/b/blobs/{digest}"] = (200, odd, image.layers[0].data)
    pull(store, f"{fake.host}/a/b:t", namespace=NS, hosts_dir=hosts, unpack=False)
    assert store.content.exists(digest)

    with pytest.raises(InvalidArgument, match="bad Content-Range"):
        _pull_resumed(store, fake, hosts, "c/d", "\u00b9000")
