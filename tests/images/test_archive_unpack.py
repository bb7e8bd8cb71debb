"""Import unpacks (as `ctr import`): snapshots by ChainID, GC labels, platform choice, failures."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.fixtures import images as fi
from galley.images.archive import import_archive
from galley.images.mediatypes import Platform
from galley.images.store import Store
from galley.images.tree import GC_SNAPSHOT, UNCOMPRESSED
from galley.metadata.gc import collect
from galley.snapshots.api import Kind
from tests.images.support import NS, read_view

pytestmark = pytest.mark.root
ARM64 = Platform("linux", "arm64", "v8")


def _layout_tar(tmp_path: Path, image: fi.BuiltImage | fi.BuiltIndex, name: str) -> str:
    """An OCI layout tar of image, tagged "1"."""
    layout = fi.write_oci_layout(tmp_path / f"{name}-layout", image, "1")
    path = tmp_path / f"{name}.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(layout, arcname=".")
    return str(path)


def _names(store: Store, snapshotter: str) -> list[str]:
    return [info.name for info in store.snapshotter(snapshotter).walk()]


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_import_unpacks_into_chainid_snapshots(
    store: Store, tmp_path: Path, snapshotter: str
) -> None:
    image = fi.build_image([fi.busybox_layer(), fi.random_layer(3000, seed=901, prefix="app")])
    path = _layout_tar(tmp_path, image, "app")
    (got,) = import_archive(store, path, NS, base_name="x/app", snapshotter=snapshotter)
    chains = [str(c) for c in image.chain_ids]
    sn = store.snapshotter(snapshotter)
    assert all(sn.stat(c).kind is Kind.COMMITTED for c in chains)
    assert _names(store, snapshotter) == chains
    labels = store.meta.content_labels(NS, image.config_descriptor.digest)
    assert labels[f"{GC_SNAPSHOT}{snapshotter}"] == chains[-1]
    layer = image.layers[1]
    assert store.meta.content_labels(NS, layer.descriptor.digest)[UNCOMPRESSED] == str(
        layer.diff_id
    )
    files = read_view(store, snapshotter, chains[-1])
    assert "bin/busybox" in files and "app/blob-901-3" in files
    assert store.meta.list_leases(NS) == []
    # Importing again unpacks nothing new; GC keeps what the image holds, then frees it.
    import_archive(store, path, NS, base_name="x/app", snapshotter=snapshotter)
    assert _names(store, snapshotter) == chains
    collect(store)
    assert _names(store, snapshotter) == chains
    store.meta.delete_image(NS, got.name)
    removed = collect(store).removed_snapshots
    assert {key for _sn, key in removed} == set(chains)
    assert _names(store, snapshotter) == []


def test_import_without_unpack_stores_only(store: Store, tmp_path: Path) -> None:
    image = fi.build_image([fi.random_layer(2000, seed=902)])
    path = _layout_tar(tmp_path, image, "plain")
    (got,) = import_archive(store, path, NS, base_name="x/plain", unpack=False)
    assert got.target.digest == image.descriptor.digest
    assert _names(store, "overlayfs") == []
    labels = store.meta.content_labels(NS, image.config_descriptor.digest)
    assert not any(key.startswith(GC_SNAPSHOT) for key in labels)


def test_import_unpacks_the_chosen_platform_only(store: Store, tmp_path: Path) -> None:
    amd = fi.build_image([fi.random_layer(1000, seed=903)])
    arm = fi.build_image([fi.random_layer(1000, seed=904)], platform=ARM64)
    path = _layout_tar(tmp_path, fi.build_index([amd, arm]), "multi")
    import_archive(store, path, NS, base_name="x/multi", platform="linux/arm64", unpack=True)
    assert _names(store, "overlayfs") == [str(arm.chain_ids[-1])]
    (image,) = import_archive(store, path, NS, base_name="x/other", platform="linux/s390x")
    assert image.name == "docker.io/x/other:1"  # recorded, nothing for s390x to unpack
    assert _names(store, "overlayfs") == [str(arm.chain_ids[-1])]


def _docker_save(path: Path, layers: list[bytes], diff_ids: list[str]) -> None:
    """A classic `docker save` tar of layers whose config claims diff_ids."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    names = [f"{i}/layer.tar" for i in range(len(layers))]
    manifest = [{"Config": "c.json", "RepoTags": ["me/bad:1"], "Layers": names}]
    with tarfile.open(path, "w") as tar:
        for name, data in [
            ("c.json", json.dumps(config).encode()),
            *zip(names, layers, strict=True),
            ("manifest.json", json.dumps(manifest).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_failed_unpack_records_no_image(store: Store, tmp_path: Path) -> None:
    layers = [fi.random_layer(1000, seed=905), fi.random_layer(1000, seed=906)]
    wrong = [f"sha256:{fi.sha256_hex(layers[0])}", "sha256:" + "0" * 64]
    path = tmp_path / "bad.tar"
    _docker_save(path, layers, wrong)
    with pytest.raises(InvalidArgument, match="layer 1 unpacks to diffID"):
        import_archive(store, str(path), NS)
    assert store.meta.list_images(NS) == [] and store.meta.list_leases(NS) == []
    collect(store)
    assert _names(store, "overlayfs") == [] and list(store.content.walk()) == []
