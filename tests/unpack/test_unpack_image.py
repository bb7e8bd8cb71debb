"""unpack_image: layers from a real content store into snapshots by ChainID, stored once."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from galley.errors import FailedPrecondition, InvalidArgument
from galley.fixtures.images import (
    BuiltImage,
    TarEntry,
    build_image,
    busybox_image,
    busybox_layer,
    random_layer,
    tar_layer,
    whiteout_layer,
)
from galley.images import unpack as unpack_module
from galley.images.store import Store
from galley.images.unpack import AppliedLayer, LayerUnpacker, unpack_image
from galley.snapshots.api import Kind, Mount, mount_all
from tests.images.support import put_blobs

pytestmark = pytest.mark.root

SNAPSHOTTERS = ["overlayfs", "native"]


def unpack(store: Store, image: BuiltImage, snapshotter: str) -> str:
    put_blobs(store, image)
    return unpack_image(store, json.loads(image.manifest), json.loads(image.config), snapshotter)


def view_files(store: Store, snapshotter: str, chain: str, tmp_path: Path) -> set[str]:
    """Relative paths a read-only view of chain shows (mounted for real, then unmounted)."""
    sn = store.snapshotter(snapshotter)
    target = tmp_path / "view"
    target.mkdir(exist_ok=True)
    mount_all(sn.view("view", chain), str(target))
    try:
        return {
            os.path.relpath(os.path.join(d, n), target)
            for d, dirs, files in os.walk(target)
            for n in dirs + files
        }
    finally:
        Mount.unmount(str(target))
        sn.remove("view")


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_unpack_busybox(store: Store, snapshotter: str, compression: str, tmp_path: Path) -> None:
    image = busybox_image(compression, extra_layers=2)
    top = unpack(store, image, snapshotter)
    assert top == str(image.chain_ids[-1])
    sn = store.snapshotter(snapshotter)
    infos = list(sn.walk())
    assert [i.name for i in infos] == [str(c) for c in image.chain_ids]
    assert all(i.kind is Kind.COMMITTED for i in infos)
    assert sn.stat(top).labels["containerd.io/snapshot.ref"] == top
    files = view_files(store, snapshotter, top, tmp_path)
    assert {"bin/busybox", "bin/ls", "etc/passwd", "l0", "l1"} <= files


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_shared_layers_are_stored_once(store: Store, snapshotter: str) -> None:
    first, second = busybox_image(seed=1), busybox_image(seed=2)
    unpack(store, first, snapshotter)
    unpack(store, second, snapshotter)
    unpack(store, first, snapshotter)  # again: nothing to do
    names = [i.name for i in store.snapshotter(snapshotter).walk()]
    assert len(names) == 3 and names[0] == str(first.chain_ids[0])


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_whiteouts_and_links_across_layers(store: Store, snapshotter: str, tmp_path: Path) -> None:
    links = tar_layer(
        [
            TarEntry("extra", "dir", mode=0o755),
            TarEntry("extra/sh", "hardlink", linkname="bin/busybox"),
        ]
    )
    image = build_image(
        [busybox_layer(), whiteout_layer(deleted=["bin/ls"], opaque_dirs=["etc"]), links]
    )
    top = unpack(store, image, snapshotter)
    files = view_files(store, snapshotter, top, tmp_path)
    assert "bin/ls" not in files and "bin/cat" in files
    assert "etc" in files and not any(f.startswith("etc/") for f in files)
    assert "extra/sh" in files


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_wrong_diff_id_leaves_nothing(store: Store, snapshotter: str) -> None:
    image = busybox_image(extra_layers=1)
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"][1] = "sha256:" + "0" * 64
    put_blobs(store, image)
    with pytest.raises(InvalidArgument, match="layer 1 unpacks to diffID"):
        unpack_image(store, json.loads(image.manifest), config, snapshotter)
    names = [i.name for i in store.snapshotter(snapshotter).walk()]
    assert names == [str(image.chain_ids[0])]


@pytest.mark.parametrize(
    ("part", "change", "fragment"),
    [
        ("manifest", {"layers": "sha256:abc"}, "'layers' must be a list"),
        ("manifest", {"layers": [{"mediaType": 1}]}, "descriptor"),
        ("config", {"rootfs": {"diff_ids": [7]}}, r"rootfs\.diff_ids must be a list"),
        ("config", {"rootfs": None}, r"rootfs\.diff_ids must be a list"),
        ("config", {"rootfs": {"diff_ids": ["md5:00"]}}, "md5"),
    ],
)
def test_malformed_manifest_or_config_is_refused(
    store: Store, part: str, change: dict[str, object], fragment: str
) -> None:
    image = busybox_image(seed=5)
    put_blobs(store, image)
    docs = {"manifest": json.loads(image.manifest), "config": json.loads(image.config)}
    docs[part].update(change)
    with pytest.raises(InvalidArgument, match=fragment):
        unpack_image(store, docs["manifest"], docs["config"], "native")
    assert list(store.snapshotter("native").walk()) == []


def test_concurrent_unpacks_do_the_work_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    image = build_image([busybox_layer(), random_layer(1 << 20, seed=7)])
    put_blobs(store, image)
    applied: list[str] = []
    real_apply = unpack_module.apply_layer

    def counting(stream: BinaryIO, media_type: str, dest: str, **kw: object) -> AppliedLayer:
        applied.append(dest)
        return real_apply(stream, media_type, dest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(unpack_module, "apply_layer", counting)
    results: list[str] = []
    manifest, config = json.loads(image.manifest), json.loads(image.config)

    def run() -> None:
        results.append(unpack_image(store, manifest, config, "overlayfs"))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [str(image.chain_ids[-1])] * 3
    assert len(list(store.snapshotter().walk())) == 2
    assert len(applied) == 2, "a layer was applied more than once"


def test_layer_unpacker_applies_in_order(store: Store) -> None:
    image = busybox_image(extra_layers=1)
    unpacker = LayerUnpacker(store.snapshotter(), [layer.diff_id for layer in image.layers])
    layer = image.layers[1]
    with pytest.raises(FailedPrecondition, match="before layer 0"):
        unpacker.apply(1, io.BytesIO(layer.data), layer.descriptor.media_type)
    for i, built in enumerate(image.layers):
        assert not unpacker.skipped(i)
        unpacker.apply(i, io.BytesIO(built.data), built.descriptor.media_type)
        assert unpacker.skipped(i)
