"""Push round trips through the real registry: monolithic, chunked, cross-repo mount, index."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.errors import NotFound
from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from galley.images.mediatypes import Platform
from galley.images.pull import Progress, pull
from galley.images.push import push
from galley.images.store import Store
from tests.images.support import put_image

NS = "default"


@pytest.mark.parametrize("chunk_size", [None, 1500])
def test_pull_push_pull_round_trip(
    stores: tuple[Store, Store], registry: reg.Registry, hosts: str, chunk_size: int | None
) -> None:
    first, second = stores
    image = fi.build_image([fi.random_layer(6000, seed=70 + (chunk_size or 0))])
    fi.push_image(registry.host, "push/src", "t", image)
    pull(first, f"{registry.host}/push/src:t", namespace=NS, hosts_dir=hosts, unpack=False)
    dest = f"{registry.host}/push/dest-{chunk_size or 0}:v2"
    events: list[Progress] = []
    pushed = push(
        first,
        f"{registry.host}/push/src:t",
        dest,
        namespace=NS,
        hosts_dir=hosts,
        chunk_size=chunk_size,
        progress=events.append,
    )
    assert pushed.digest == image.descriptor.digest
    statuses = {e.digest: e.status for e in events if e.kind == "blob"}
    # Layer and config were pulled from push/src on this registry: mounted, not uploaded.
    assert statuses[str(image.layers[0].descriptor.digest)] == "mounted"
    got = pull(second, dest, namespace=NS, hosts_dir=hosts, unpack=False)
    assert got.target.digest == image.descriptor.digest


def test_push_uploads_new_blobs_monolithic_and_chunked(
    stores: tuple[Store, Store], tmp_path: Path, registry: reg.Registry, hosts: str
) -> None:
    first, second = stores
    image = fi.build_image([fi.random_layer(10000, seed=80), fi.random_layer(3000, seed=81)])
    layout = fi.write_oci_layout(tmp_path / "layout", image, "t")
    put_image(first, "local/app:1", image)
    for i, chunk_size in enumerate((None, 4096)):
        dest = f"{registry.host}/push/new{i}:1"
        events: list[Progress] = []
        push(first, "local/app:1", dest, namespace=NS, hosts_dir=hosts, chunk_size=chunk_size,
             progress=events.append)  # fmt: skip
        assert {e.status for e in events if e.kind == "blob"} >= {"done"}
        got = pull(second, dest, namespace=NS, hosts_dir=hosts, unpack=False)
        assert got.target.digest == image.descriptor.digest
    assert layout.exists()


def test_push_index_and_partial_index(
    stores: tuple[Store, Store], registry: reg.Registry, hosts: str
) -> None:
    first, second = stores
    amd = fi.build_image([fi.random_layer(100, seed=90)])
    arm = fi.build_image([fi.random_layer(100, seed=91)], platform=Platform("linux", "arm64"))
    index = fi.build_index([amd, arm])
    fi.push_image(registry.host, "push/index", "t", index)
    src = f"{registry.host}/push/index:t"
    pull(first, src, namespace=NS, hosts_dir=hosts, platform="linux/amd64", unpack=False)
    pushed = push(first, src, f"{registry.host}/push/partial:t", namespace=NS, hosts_dir=hosts)
    assert pushed.digest == amd.descriptor.digest
    for data, digest in ((arm.manifest, arm.descriptor.digest), (arm.config, None)):
        first.content.put(data, digest)
    first.content.put(arm.layers[0].data)
    pushed = push(first, src, f"{registry.host}/push/whole:t", namespace=NS, hosts_dir=hosts)
    assert pushed.digest == index.descriptor.digest
    got = pull(second, f"{registry.host}/push/whole:t", namespace=NS, hosts_dir=hosts,
               platform="linux/arm64", unpack=False)  # fmt: skip
    assert got.target.digest == index.descriptor.digest
    with pytest.raises(NotFound):
        push(first, "nothing:here", f"{registry.host}/push/x:1", namespace=NS, hosts_dir=hosts)
