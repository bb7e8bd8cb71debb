"""Pull with unpack: layers land in snapshots keyed by ChainID, shared layers stored once."""

from __future__ import annotations

import json
import stat

import pytest

from galley.content.digest import Digest
from galley.errors import InvalidArgument, NotFound
from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from galley.images.mediatypes import Descriptor
from galley.images.pull import Progress, pull
from galley.images.store import Store
from galley.images.tree import GC_SNAPSHOT
from galley.metadata.gc import collect
from galley.snapshots.api import Kind
from tests.images.support import read_view

NS = "default"
pytestmark = pytest.mark.root


def _image(seed: int) -> fi.BuiltImage:
    extra = fi.tar_layer(
        [
            fi.TarEntry("etc", "dir", mode=0o755),
            fi.TarEntry("etc/doomed", data=b"x"),
            fi.TarEntry("opaque", "dir", mode=0o755),
            fi.TarEntry("opaque/old", data=b"old"),
            fi.TarEntry(f"seed-{seed}", data=b"s"),
        ]
    )
    layers = [
        fi.busybox_layer(),
        fi.hardlink_layer(),
        extra,
        fi.whiteout_layer(deleted=["etc/doomed"], opaque_dirs=["opaque"]),
    ]
    return fi.build_image(layers, compression="gzip" if seed % 2 else "zstd")


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_pull_unpacks_into_chainid_snapshots(
    store: Store, registry: reg.Registry, hosts: str, snapshotter: str
) -> None:
    image = _image(1 if snapshotter == "overlayfs" else 2)
    ref = f"{registry.host}/unpack/app-{snapshotter}:t"
    fi.push_image(registry.host, f"unpack/app-{snapshotter}", "t", image)
    events: list[Progress] = []
    pull(store, ref, namespace=NS, hosts_dir=hosts, snapshotter=snapshotter, progress=events.append)
    chains = [str(c) for c in image.chain_ids]
    sn = store.snapshotter(snapshotter)
    for chain in chains:
        assert sn.stat(chain).kind is Kind.COMMITTED
    labels = store.meta.content_labels(NS, image.config_descriptor.digest)
    assert labels[f"{GC_SNAPSHOT}{snapshotter}"] == chains[-1]
    assert sum(e.status == "unpacked" for e in events) == len(chains)
    tree = read_view(store, snapshotter, chains[-1])
    assert "bin/busybox" in tree and "etc/passwd" in tree
    assert "etc/doomed" not in tree and "opaque/old" not in tree and "opaque" in tree
    target = tree["links/target"]
    assert tree["links/same-dir"].st_ino == target.st_ino
    assert tree["links/sub/other-dir"].st_ino == target.st_ino
    assert (target.st_uid, target.st_gid, stat.S_IMODE(target.st_mode)) == (1000, 100, 0o640)
    assert stat.S_ISFIFO(tree["links/fifo"].st_mode)
    assert stat.S_ISLNK(tree["links/symlink"].st_mode)
    assert stat.S_IMODE(tree["links/setuid"].st_mode) == 0o4755
    # Pulling again unpacks nothing; a GC keeps everything the image holds.
    again: list[Progress] = []
    pull(store, ref, namespace=NS, hosts_dir=hosts, snapshotter=snapshotter, progress=again.append)
    assert not any(e.status == "unpacking" for e in again)
    collect(store)
    assert all(sn.stat(c).kind is Kind.COMMITTED for c in chains)
    store.meta.delete_image(NS, ref)
    result = collect(store)
    assert {key for _sn, key in result.removed_snapshots} >= set(chains)
    assert not store.content.exists(image.layers[0].descriptor.digest)


def test_shared_base_layers_are_unpacked_once(
    store: Store, registry: reg.Registry, hosts: str
) -> None:
    base = fi.busybox_layer()
    first = fi.build_image([base, fi.random_layer(100, seed=301)])
    second = fi.build_image([base, fi.random_layer(100, seed=302)])
    fi.push_image(registry.host, "unpack/first", "t", first)
    fi.push_image(registry.host, "unpack/second", "t", second)
    pull(store, f"{registry.host}/unpack/first:t", namespace=NS, hosts_dir=hosts)
    events: list[Progress] = []
    pull(store, f"{registry.host}/unpack/second:t", namespace=NS, hosts_dir=hosts,
         progress=events.append)  # fmt: skip
    unpacking = [e.digest for e in events if e.status == "unpacking"]
    assert unpacking == [str(second.layers[1].descriptor.digest)]


def test_wrong_diff_id_is_refused(store: Store, registry: reg.Registry, hosts: str) -> None:
    good = fi.build_image([fi.random_layer(100, seed=303)])
    liar = fi.build_image([fi.random_layer(100, seed=304)])
    # Same layers as good, but a config claiming another diffID.
    manifest = json.loads(good.manifest)
    manifest["config"] = liar.config_descriptor.to_json()
    body = json.dumps(manifest).encode()
    bad = fi.BuiltImage(
        Descriptor(good.descriptor.media_type, Digest.of_bytes(body), len(body)),
        body,
        liar.config,
        liar.config_descriptor,
        good.layers,
    )
    fi.push_image(registry.host, "unpack/liar", "t", bad)
    with pytest.raises(InvalidArgument, match="diffID"):
        pull(store, f"{registry.host}/unpack/liar:t", namespace=NS, hosts_dir=hosts)
    with pytest.raises(NotFound):
        store.meta.get_image(NS, f"{registry.host}/unpack/liar:t")


def test_layer_over_the_size_bound_fails_the_pull(
    store: Store, registry: reg.Registry, hosts: str
) -> None:
    bomb = fi.tar_layer([fi.TarEntry("zeros", data=bytes(8 << 20))])
    image = fi.build_image([fi.random_layer(100, seed=305), bomb])
    fi.push_image(registry.host, "unpack/bomb", "t", image)
    ref = f"{registry.host}/unpack/bomb:t"
    with pytest.raises(InvalidArgument, match="more than 1048576 bytes"):
        pull(store, ref, namespace=NS, hosts_dir=hosts, max_layer_size=1 << 20)
    with pytest.raises(NotFound):
        store.meta.get_image(NS, ref)
    assert store.meta.list_leases(NS) == []
    collect(store)
    assert list(store.snapshotter().walk()) == [] and list(store.content.walk()) == []
    pull(store, ref, namespace=NS, hosts_dir=hosts, max_layer_size=16 << 20)
    assert [i.name for i in store.snapshotter().walk()] == [str(c) for c in image.chain_ids]


def test_gc_during_a_pull_takes_nothing_it_holds(
    store: Store, registry: reg.Registry, hosts: str
) -> None:
    image = fi.build_image(
        [fi.busybox_layer(), *(fi.random_layer(200_000, seed=310 + i) for i in range(3))]
    )
    fi.push_image(registry.host, "unpack/gc-race", "t", image)
    removed: list[object] = []

    def progress(p: Progress) -> None:
        if p.status in ("done", "unpacked"):  # blobs committed, snapshots made, image not yet
            result = collect(store)
            removed.extend(result.removed_blobs)
            removed.extend(result.removed_snapshots)

    pull(store, f"{registry.host}/unpack/gc-race:t", namespace=NS, hosts_dir=hosts,
         progress=progress)  # fmt: skip
    assert removed == []
    for digest in image.blobs():
        assert store.content.exists(digest)
    for chain in image.chain_ids:
        assert store.snapshotter("overlayfs").stat(str(chain)).kind is Kind.COMMITTED
    assert collect(store).removed_blobs == ()
