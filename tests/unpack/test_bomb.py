"""Decompression bombs: a layer may not decompress past its bound (a maximum, or the free space)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.fixtures.images import TarEntry, build_image, compress, tar_layer
from galley.images import mediatypes as mt
from galley.images.decompress import command_for
from galley.images.store import Store
from galley.images.unpack import apply_layer, unpack_image
from tests.images.support import put_blobs

pytestmark = pytest.mark.root

MIB = 1 << 20
COMPRESSIONS = ["gzip", "zstd"]
MEDIA_TYPES = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


def _bomb(size: int, *, after_end: bool = False) -> bytes:
    """A layer tar of size zeros: one file of zeros, or (after_end) zeros past the tar's end."""
    if after_end:
        return tar_layer([TarEntry("small", data=b"hi")]) + bytes(size)
    return tar_layer([TarEntry("zeros", data=bytes(size))])


def _children() -> set[int]:
    """This process's child PIDs (from every thread)."""
    out: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as fh:
            out |= {int(pid) for pid in fh.read().split()}
    return out


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("after_end", [False, True], ids=["in-a-file", "past-the-end"])
@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_bomb_in_the_store_is_refused_and_leaves_nothing(
    store: Store, compression: str, after_end: bool, snapshotter: str
) -> None:
    image = build_image([_bomb(16 * MIB, after_end=after_end)], compression=compression)
    assert image.layers[0].descriptor.size < 128 << 10  # a bomb: small blob, large tar
    put_blobs(store, image)
    manifest, config = (
        mt.parse_json_object(image.manifest, "m"),
        mt.parse_json_object(image.config, "c"),
    )
    with pytest.raises(InvalidArgument, match=f"more than {MIB} bytes, the maximum layer size"):
        unpack_image(store, manifest, config, snapshotter, max_layer_size=MIB)
    sn = store.snapshotter(snapshotter)
    assert list(sn.walk()) == []
    home = Path(sn.root)
    assert [
        p for d in ("snapshots", "tmp") if (home / d).exists() for p in (home / d).iterdir()
    ] == []
    # The same layer within a generous bound unpacks.
    assert unpack_image(store, manifest, config, snapshotter, max_layer_size=32 * MIB)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_bomb_through_the_decompressor_process(tmp_path: Path, compression: str) -> None:
    if command_for(compression) is None:
        pytest.skip(f"no {compression} binary installed")
    blob = compress(_bomb(64 * MIB), compression)
    before = _children()
    with pytest.raises(InvalidArgument, match="more than 2097152 bytes"):
        # A stream that is not a file goes through pigz / zstd.
        apply_layer(io.BytesIO(blob), MEDIA_TYPES[compression], str(tmp_path), max_size=2 * MIB)
    assert _children() <= before  # the decompressor was killed and reaped


def test_layer_larger_than_the_free_space_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "small-fs"
    dest.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(dest)], check=True)
    try:
        blob = compress(_bomb(4 * MIB), "gzip")
        with pytest.raises(InvalidArgument, match=f"bytes free under {dest}"):
            apply_layer(io.BytesIO(blob), mt.OCI_LAYER_GZIP, str(dest))
    finally:
        subprocess.run(["umount", str(dest)], check=True)


def test_maximum_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="must be positive"):
        apply_layer(io.BytesIO(compress(_bomb(10), "")), mt.OCI_LAYER, str(tmp_path), max_size=0)
