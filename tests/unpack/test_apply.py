"""apply_layer: every entry kind, compressions, diffIDs, and both whiteout styles."""

from __future__ import annotations

import io
import os
import resource
import stat
from pathlib import Path

import pytest

from galley.content.digest import Digest
from galley.errors import InvalidArgument
from galley.fixtures.images import (
    TarEntry,
    busybox_layer,
    compress,
    hardlink_layer,
    tar_layer,
    whiteout_layer,
)
from galley.images import decompress
from galley.images import mediatypes as mt
from galley.images.unpack import apply_layer

pytestmark = pytest.mark.root

MEDIA = {"": mt.OCI_LAYER, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


def apply(tar: bytes, dest: Path, compression: str = "", **kw: object) -> Digest:
    dest.mkdir(exist_ok=True)
    blob = compress(tar, compression)
    applied = apply_layer(io.BytesIO(blob), MEDIA[compression], str(dest), **kw)  # type: ignore[arg-type]
    assert applied.size == len(tar)
    return applied.diff_id


@pytest.mark.parametrize("binaries", [True, False], ids=["binaries", "python"])
@pytest.mark.parametrize("compression", ["", "gzip", "zstd"])
def test_busybox_layer_every_compression(
    compression: str, binaries: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not binaries:
        monkeypatch.setattr(decompress, "command_for", lambda _c: None)
    tar = busybox_layer()
    diff_id = apply(tar, tmp_path / "root", compression)
    assert diff_id == Digest.of_bytes(tar)
    root = tmp_path / "root"
    busybox, ls = os.stat(root / "bin/busybox"), os.stat(root / "bin/ls")
    assert busybox.st_ino == ls.st_ino and busybox.st_mode & 0o111
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (root / "etc/passwd").read_text().startswith("root:")
    assert int((root / "etc").stat().st_mtime) == 1_700_000_000


def test_links_fifos_modes_owners_xattrs(tmp_path: Path) -> None:
    apply(hardlink_layer(), tmp_path / "r")
    links = tmp_path / "r/links"
    target = os.stat(links / "target")
    assert target.st_nlink == 3 and (target.st_uid, target.st_gid) == (1000, 100)
    assert stat.S_IMODE(target.st_mode) == 0o640
    assert os.stat(links / "sub/other-dir").st_ino == target.st_ino
    assert os.readlink(links / "symlink") == "target"
    assert stat.S_ISFIFO(os.lstat(links / "fifo").st_mode)
    assert stat.S_IMODE(os.stat(links / "setuid").st_mode) == 0o4755
    assert os.getxattr(links / "xattr", "user.galley") == b"yes"
    sub = os.stat(links / "sub")
    assert (sub.st_uid, stat.S_IMODE(sub.st_mode)) == (1000, 0o700)


def test_devices_applied_or_refused(tmp_path: Path) -> None:
    tar = tar_layer(
        [
            TarEntry("dev", "dir", mode=0o755),
            TarEntry("dev/null", "char", devmajor=1, devminor=3, mode=0o666),
        ]
    )
    apply(tar, tmp_path / "ok")
    st = os.lstat(tmp_path / "ok/dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    with pytest.raises(InvalidArgument, match=r"dev/null.*device"):
        apply(tar, tmp_path / "no", allow_devices=False)
    assert not (tmp_path / "no/dev/null").exists()


def base_layer() -> bytes:
    return tar_layer(
        [
            TarEntry("a", "dir", mode=0o755),
            TarEntry("a/keep", data=b"k"),
            TarEntry("a/gone", data=b"g"),
            TarEntry("opq", "dir", mode=0o755),
            TarEntry("opq/old", data=b"o"),
        ]
    )


def test_native_whiteouts_delete(tmp_path: Path) -> None:
    root = tmp_path / "r"
    apply(base_layer(), root)
    top = tar_layer(
        [
            TarEntry("opq", "dir", mode=0o755),
            TarEntry("opq/.wh..wh..opq"),
            TarEntry("opq/new", data=b"n"),
            TarEntry("a/.wh.gone"),
            TarEntry("never/was/.wh.there"),
        ]
    )
    apply(top, root, whiteouts="native")
    assert sorted(os.listdir(root / "a")) == ["keep"]
    assert not (root / "never").exists()
    assert sorted(os.listdir(root / "opq")) == ["new"]


def test_overlay_whiteouts_are_devices_and_xattrs(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    apply(base_layer(), lower)
    apply(tar_layer([TarEntry("top", data=b"t")]), lower)
    deleted = ["a/gone", "top", "a/never-was", "never/was"]
    apply(whiteout_layer(deleted, opaque_dirs=["opq"]), upper, lower_dirs=[str(lower)])
    st = os.lstat(upper / "a/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert stat.S_ISCHR(os.lstat(upper / "top").st_mode)
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    assert not (upper / "opq/.wh..wh..opq").exists()
    # Nothing below to hide: no device, which overlayfs would list in a directory it does not
    # merge (`ls` naming a file that cannot be opened), and no directory native lacks
    assert not os.path.lexists(upper / "a/never-was")
    assert not os.path.lexists(upper / "never")


def test_whiteout_never_hides_its_own_layer(tmp_path: Path) -> None:
    tar = tar_layer([TarEntry("f", data=b"mine"), TarEntry(".wh.f")])
    apply(tar, tmp_path / "n", whiteouts="native")
    apply(tar, tmp_path / "o", whiteouts="overlay")
    assert (tmp_path / "n/f").read_bytes() == (tmp_path / "o/f").read_bytes() == b"mine"


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    root = tmp_path / "r"
    apply(base_layer(), root)
    os.link(root / "a/keep", root / "a/keep-link")
    top = tar_layer([TarEntry("a/keep", data=b"new"), TarEntry("opq", "symlink", linkname="a")])
    apply(top, root, whiteouts="native")
    assert (root / "a/keep").read_bytes() == b"new"
    assert (root / "a/keep-link").read_bytes() == b"k"  # the old inode was not written through
    assert os.readlink(root / "opq") == "a"


def test_hard_link_to_lower_layer_is_copied_up(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    apply(base_layer(), lower)
    tar = tar_layer(
        [TarEntry("b", "dir", mode=0o755), TarEntry("b/link", "hardlink", linkname="a/keep")]
    )
    apply(tar, upper, lower_dirs=[str(lower)])
    assert (upper / "b/link").read_bytes() == b"k"
    assert os.stat(upper / "b/link").st_ino == os.stat(upper / "a/keep").st_ino
    assert os.stat(lower / "a/keep").st_nlink == 1


@pytest.mark.parametrize("binaries", [True, False], ids=["binaries", "python"])
def test_corrupt_streams_are_refused(
    binaries: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not binaries:
        monkeypatch.setattr(decompress, "command_for", lambda _c: None)
    blob = compress(busybox_layer(), "gzip")
    with pytest.raises(InvalidArgument, match=r"gzip.*corrupt"):
        apply_layer(io.BytesIO(blob[: len(blob) // 2]), mt.OCI_LAYER_GZIP, str(tmp_path))
    with pytest.raises(InvalidArgument, match="not a layer type"):
        apply_layer(io.BytesIO(b""), mt.OCI_CONFIG, str(tmp_path))
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        apply_layer(io.BytesIO(b"x" * 1024), mt.OCI_LAYER, str(tmp_path))


def test_source_errors_win_over_decompressor_complaints(tmp_path: Path) -> None:
    blob = compress(busybox_layer(), "gzip")

    class Failing(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if self.tell() > len(blob) // 3:
                raise ConnectionResetError("registry went away")
            return super().read(min(n or 65536, 65536) if n and n > 0 else 65536)

    with pytest.raises(ConnectionResetError, match="registry went away"):
        apply_layer(Failing(blob), mt.OCI_LAYER_GZIP, str(tmp_path))


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_file_streams_are_read_by_the_decompressor_itself(
    compression: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decompress, "_Feeder", None)  # no copying thread for a file
    monkeypatch.setattr(decompress, "SMALL", 0)  # the child even for this small blob
    tar = busybox_layer()
    blob = tmp_path / "blob"
    blob.write_bytes(b"0123456789" + compress(tar, compression))
    (tmp_path / "root").mkdir()
    (tmp_path / "other").mkdir()
    with open(blob, "rb") as f:
        f.seek(10)  # the layer starts where the caller's stream stands
        applied = apply_layer(f, MEDIA[compression], str(tmp_path / "root"))
        assert f.tell() >= 10
    assert applied.diff_id == Digest.of_bytes(tar)
    good = blob.read_bytes()
    blob.write_bytes(good[: len(good) // 2])
    with open(blob, "rb") as f, pytest.raises(InvalidArgument, match="corrupt"):
        f.seek(10)
        apply_layer(f, MEDIA[compression], str(tmp_path / "other"))


def test_small_file_blobs_are_decompressed_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decompress, "_through_process", None)  # no child at all
    blob = tmp_path / "blob"
    blob.write_bytes(compress(busybox_layer(), "zstd"))
    with open(blob, "rb") as f:
        apply_layer(f, mt.OCI_LAYER_ZSTD, str(tmp_path))
    assert (tmp_path / "bin/busybox").exists()


@pytest.mark.parametrize("whiteouts", ["overlay", "native"])
def test_more_directories_than_the_process_may_open_files(tmp_path: Path, whiteouts: str) -> None:
    """Every directory's descriptor stayed open to the end of the layer: a layer with more
    directories than RLIMIT_NOFILE (1,024 in a login shell) ended in EMFILE."""
    entries = [TarEntry(f"d{i}/e{j}/f", data=b"x") for i in range(10) for j in range(60)]
    entries += [TarEntry(f"d{i}", "dir", mode=0o750) for i in range(10)]  # times set at the end
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 300, hard))
    try:
        apply(tar_layer(entries), tmp_path / "r", whiteouts=whiteouts)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(list((tmp_path / "r").rglob("f"))) == 600
