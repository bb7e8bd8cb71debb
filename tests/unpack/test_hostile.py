"""Hostile layers: each is refused with a clear error and nothing outside the target changes."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.fixtures.images import TarEntry, tar_layer
from galley.fixtures.tarfuzz import snapshot
from galley.images import mediatypes as mt
from galley.images.unpack import apply_layer

pytestmark = pytest.mark.root


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(dest, outside): the layer target and a sentinel directory beside it."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"host data")
    return dest, outside


def refused(entries: list[TarEntry], dest: Path, outside: Path, match: str, **kw: object) -> None:
    before = snapshot(outside)
    with pytest.raises(InvalidArgument, match=match):
        apply_layer(io.BytesIO(tar_layer(entries)), mt.OCI_LAYER, str(dest), **kw)  # type: ignore[arg-type]
    assert snapshot(outside) == before, "the layer changed something outside its target"


def test_dotdot_escapes(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    refused([TarEntry("../outside/pwned", data=b"x")], dest, outside, "climbs out")
    refused([TarEntry("a/../../outside/pwned", data=b"x")], dest, outside, "climbs out")
    refused([TarEntry("./../outside/secret", data=b"x")], dest, outside, "climbs out")


def test_absolute_paths(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    refused([TarEntry(f"{outside}/pwned", data=b"x")], dest, outside, "absolute path")
    assert not (outside / "pwned").exists()


@pytest.mark.parametrize("to", ["outside", "root"])
def test_write_through_symlink(sandbox: tuple[Path, Path], to: str) -> None:
    dest, outside = sandbox
    link = str(outside) if to == "outside" else "/"
    name = "pwned" if to == "outside" else f"tmp/galley-escape-{uuid.uuid4().hex}"
    entries = [TarEntry("evil", "symlink", linkname=link), TarEntry(f"evil/{name}", data=b"x")]
    refused(entries, dest, outside, "'evil', which is a symlink")
    assert not os.path.exists(os.path.join(link, name))
    assert os.readlink(dest / "evil") == link  # the symlink itself is fine, never followed


def test_symlink_chain(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    entries = [
        TarEntry("a", "symlink", linkname="b"),
        TarEntry("b", "symlink", linkname="c/.."),
        TarEntry("c", "symlink", linkname="../outside"),
        TarEntry("a/secret", data=b"overwritten"),
    ]
    refused(entries, dest, outside, "symlink")


def test_relative_symlink_climbing_out(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    entries = [
        TarEntry("d", "dir", mode=0o755),
        TarEntry("d/up", "symlink", linkname="../../outside"),
        TarEntry("d/up/secret", data=b"overwritten"),
    ]
    refused(entries, dest, outside, "'d/up', which is a symlink")


def test_hard_links_to_host_files(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    host = str(outside / "secret")
    refused([TarEntry("l", "hardlink", linkname=host)], dest, outside, "absolute path")
    refused([TarEntry("l", "hardlink", linkname="../outside/secret")], dest, outside, "climbs out")
    entries = [
        TarEntry("evil", "symlink", linkname=str(outside)),
        TarEntry("l", "hardlink", linkname="evil/secret"),
        TarEntry("l", data=b"overwritten"),
    ]
    refused(entries, dest, outside, "symlink")
    assert os.stat(outside / "secret").st_nlink == 1


def test_hard_link_to_missing_target(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    refused([TarEntry("l", "hardlink", linkname="nothing")], dest, outside, "not in the layer")


def test_entry_replaces_symlink_instead_of_following_it(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    before = snapshot(outside)
    entries = [
        TarEntry("file", "symlink", linkname=str(outside / "secret")),
        TarEntry("file", data=b"replaced", mode=0o777),
        TarEntry("dir", "symlink", linkname=str(outside)),
        TarEntry("dir", "dir", mode=0o777),
        TarEntry("link-to-symlink", "symlink", linkname=str(outside / "secret")),
        TarEntry("hl", "hardlink", linkname="link-to-symlink"),
    ]
    apply_layer(io.BytesIO(tar_layer(entries)), mt.OCI_LAYER, str(dest))
    assert snapshot(outside) == before
    assert (dest / "file").read_bytes() == b"replaced" and not (dest / "file").is_symlink()
    assert (dest / "dir").is_dir() and not (dest / "dir").is_symlink()
    assert (dest / "hl").is_symlink()  # a link to the symlink itself, never to its target


@pytest.mark.parametrize("whiteouts", ["overlay", "native"])
def test_whiteouts_through_symlinks(sandbox: tuple[Path, Path], whiteouts: str) -> None:
    dest, outside = sandbox
    link = TarEntry("evil", "symlink", linkname=str(outside))
    for name in ("evil/.wh.secret", "evil/.wh..wh..opq"):
        refused([link, TarEntry(name)], dest, outside, "symlink", whiteouts=whiteouts)
        (dest / "evil").unlink()
    for name in (".wh...", ".wh..", "a/.wh."):
        refused([TarEntry(name)], dest, outside, "names no file", whiteouts=whiteouts)


def test_over_long_names(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    refused([TarEntry("a" * 300, data=b"x")], dest, outside, "over 255 bytes")
    refused([TarEntry("/".join(["d" * 200] * 25), data=b"x")], dest, outside, "over 4096")


def test_device_nodes_when_disallowed(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    for kind in ("char", "block"):
        entry = TarEntry("sda", kind, devmajor=8, devminor=0, mode=0o666)
        refused([entry], dest, outside, "device node", allow_devices=False)
        assert not (dest / "sda").exists()


def test_overlay_xattrs_from_the_layer_are_ignored(tmp_path: Path) -> None:
    entry = TarEntry("d", "dir", xattrs={"trusted.overlay.redirect": "/etc", "user.ok": "1"})
    apply_layer(io.BytesIO(tar_layer([entry])), mt.OCI_LAYER, str(tmp_path))
    assert os.listxattr(tmp_path / "d") == ["user.ok"]


def test_huge_header_extension_is_refused_before_reading_it(sandbox: tuple[Path, Path]) -> None:
    dest, _ = sandbox
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 1 << 40
    blob = header.tobuf(format=tarfile.GNU_FORMAT) + b"x" * 4096
    with pytest.raises(InvalidArgument, match="header extension"):
        apply_layer(io.BytesIO(blob), mt.OCI_LAYER, str(dest))
    assert os.listdir(dest) == []
