"""Layers drawn at random (galley.fixtures.tarfuzz), and the cases the drawing found.

Hostile layers must be applied or refused with InvalidArgument, never end in the system's own
error, and change nothing outside their target. Legal layers must give the same tree applied
natively as applied as overlay layers and read through a real overlayfs mount.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.fixtures import tarfuzz
from galley.fixtures.images import TarEntry, tar_layer
from galley.images import mediatypes as mt
from galley.images.unpack import apply_layer

pytestmark = pytest.mark.root


def test_hostile_layers_are_applied_or_refused_by_name(tmp_path: Path) -> None:
    problems = {n: tarfuzz.check_case(34, n, tmp_path) for n in range(400)}
    assert {n: p for n, p in problems.items() if p} == {}


def test_legal_layers_give_one_tree_applied_either_way(tmp_path: Path) -> None:
    problems = {n: tarfuzz.check_legal_case(34, n, tmp_path) for n in range(250)}
    assert {n: p for n, p in problems.items() if p} == {}


def pax_layer(name: str, kind: bytes = tarfile.REGTYPE, **headers: str) -> bytes:
    """One member whose PAX headers say what the ustar header cannot."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.type, info.pax_headers = kind, headers
        tar.addfile(info)
    return buf.getvalue()


def apply(layer: bytes, dest: Path, **kw: object) -> None:
    dest.mkdir(exist_ok=True)
    apply_layer(io.BytesIO(layer), mt.OCI_LAYER, str(dest), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (pax_layer("f", uid="-1"), "'f' has uid -1, out of range"),
        (pax_layer("f", uid="4294967295"), "'f' has uid 4294967295, out of range"),
        (pax_layer("f", gid=str(1 << 40)), "'f' has gid 1099511627776, out of range"),
        (pax_layer("f", mtime="nan"), "'f' has modification time nan, which is no time"),
        (pax_layer("f", mtime="inf"), "'f' has modification time inf"),
        (pax_layer("f", mtime="1e30"), "'f' has modification time 1e+30"),
        (tar_layer([TarEntry("c", "char", devmajor=4096)]), "'c' is device 4096:0, past"),
        (tar_layer([TarEntry("c", "block", devminor=1 << 20)]), "'c' is device 0:1048576"),
        (tar_layer([TarEntry("s", "symlink", linkname="")]), "'s' is a symlink with an empty"),
        (tar_layer([TarEntry("s", "symlink", linkname="x" * 4096)]), "4096 bytes long, over 4095"),
        (pax_layer("s", tarfile.SYMTYPE, linkpath="a\0b"), "target contains a NUL byte"),
        (
            tar_layer([TarEntry("d", "dir"), TarEntry("l", "hardlink", linkname="d")]),
            "hard link 'l' names directory 'd'",
        ),
        (tar_layer([TarEntry("l", "hardlink", linkname="./l")]), "'l' names itself"),
        (
            tar_layer([TarEntry("s", "symlink", linkname="f", xattrs={"user.a": "1"})]),
            "'s' has extended attribute 'user.a', which the kernel refuses for it",
        ),
        (
            tar_layer([TarEntry("f", xattrs={"security.capability": "garbage"})]),
            "extended attribute 'security.capability'",
        ),
        (tar_layer([TarEntry("f", xattrs={"user.": "1"})]), "extended attribute 'user.'"),
        (tar_layer([TarEntry("f", xattrs={"user.big": "v" * 70_000})]), "'user.big'"),
    ],
)
@pytest.mark.parametrize("whiteouts", ["overlay", "native"])
def test_what_no_file_can_have_is_refused_by_name(
    tmp_path: Path, layer: bytes, message: str, whiteouts: str
) -> None:
    """Each ended in the system's error (OverflowError, ValueError, OSError) until session 34."""
    with pytest.raises(InvalidArgument) as err:
        apply(layer, tmp_path / "dest", whiteouts=whiteouts)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_attribute_namespace_the_filesystem_lacks_is_left_out(tmp_path: Path) -> None:
    """As containerd does: EOPNOTSUPP for that attribute, the file itself applied."""
    apply(tar_layer([TarEntry("f", data=b"x", xattrs={"nonamespace.key": "v"})]), tmp_path / "d")
    assert (tmp_path / "d/f").read_bytes() == b"x"
    assert os.listxattr(tmp_path / "d/f") == []


@pytest.mark.parametrize("whiteouts", ["overlay", "native"])
def test_a_directory_replaced_in_its_own_layer_takes_no_time(
    tmp_path: Path, whiteouts: str
) -> None:
    """A later entry replaces a directory that had a subdirectory: the subdirectory's time
    was set at the end of the layer, through the replacement, and the layer was refused."""
    layer = tar_layer([TarEntry("a", "dir"), TarEntry("a/b", "dir"), TarEntry("a", data=b"f")])
    apply(layer, tmp_path / "d", whiteouts=whiteouts)
    assert (tmp_path / "d/a").read_bytes() == b"f"


def layers_both_ways(tmp_path: Path, layers: list[list[TarEntry]]) -> tuple[Path, list[str]]:
    """The layers applied natively into one tree, and as overlay upperdirs (nearest last)."""
    native = tmp_path / "native"
    uppers: list[str] = []
    for index, entries in enumerate(layers):
        apply(tar_layer(entries), native, whiteouts="native")
        upper = tmp_path / f"upper{index}"
        apply(tar_layer(entries), upper, lower_dirs=list(reversed(uppers)))
        uppers.append(str(upper))
    return native, uppers


def test_a_whiteout_then_a_path_through_it_makes_an_opaque_directory(tmp_path: Path) -> None:
    """`.wh.c` then `c/d` with no entry `c/`: the overlay layer refused it (`c` was the
    whiteout device), where native application made `c` a directory."""
    below = [TarEntry("c", "dir", mode=0o700, uid=1000), TarEntry("c/old", data=b"o")]
    native, uppers = layers_both_ways(tmp_path, [below, [TarEntry(".wh.c"), TarEntry("c/d")]])
    assert sorted(os.listdir(native / "c")) == ["d"]
    upper = Path(uppers[1])
    assert os.getxattr(upper / "c", "trusted.overlay.opaque") == b"y"
    st = os.stat(upper / "c")  # a new directory: not the attributes of the one it replaced
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 0)


def test_a_directory_back_in_place_of_a_file_hides_what_was_below(tmp_path: Path) -> None:
    """`a` a directory below; this layer makes it a symlink, then a directory again: the
    directory is empty (opaque), as native application leaves it, not merged with below."""
    below = [TarEntry("a", "dir"), TarEntry("a/old", data=b"o")]
    again = [TarEntry("a", "symlink", linkname="x"), TarEntry("a", "dir")]
    native, uppers = layers_both_ways(tmp_path, [below, again])
    assert os.listdir(native / "a") == []
    assert os.getxattr(Path(uppers[1]) / "a", "trusted.overlay.opaque") == b"y"


def test_an_opaque_directory_hides_all_below_it_at_any_depth(tmp_path: Path) -> None:
    """OCI: an opaque whiteout hides every sibling in the lower layers. Native application
    kept the lower contents of a subdirectory this layer had written into; and a hard link's
    copy-up stayed visible in the overlay layer."""
    below = [TarEntry("b/a/old", data=b"o"), TarEntry("b/f", data=b"f")]
    top = [
        TarEntry("b/a/new", data=b"n"),
        TarEntry("l", "hardlink", linkname="b/f"),  # overlay: b/f copied up into this layer
        TarEntry("b/.wh..wh..opq"),
    ]
    native, uppers = layers_both_ways(tmp_path, [below, top])
    assert sorted(p.name for p in (native / "b").rglob("*")) == ["a", "new"]
    assert sorted(p.name for p in (Path(uppers[1]) / "b").rglob("*")) == ["a", "new"]
    assert (native / "l").read_bytes() == (Path(uppers[1]) / "l").read_bytes() == b"f"


def test_a_whiteout_of_what_is_hidden_below_makes_nothing(tmp_path: Path) -> None:
    """`d` was a directory, then a symlink above it: `d/.wh.a` in a new `d` has nothing to
    hide, and a whiteout device in a directory overlayfs does not merge is listed by readdir
    although it cannot be opened."""
    layers = [
        [TarEntry("d/a", data=b"a")],
        [TarEntry("d", "symlink", linkname="x")],
        [TarEntry("d", "dir"), TarEntry("d/.wh.a")],
    ]
    native, uppers = layers_both_ways(tmp_path, layers)
    assert os.listdir(native / "d") == [] == os.listdir(Path(uppers[2]) / "d")


def test_what_a_layer_wrote_in_a_directory_it_then_replaced_is_forgotten(tmp_path: Path) -> None:
    """`b/b/c`, then `b` a file, then `b` a directory, then `b/b/.wh..wh..opq`: `b/b` still
    counted as written, so the overlay layer made it (an empty directory) where native
    application, rightly, had nothing (seed 32, legal case 1852)."""
    layer = [
        TarEntry("b/b/c", data=b"c"),
        TarEntry("b", data=b"f"),
        TarEntry("b", "dir"),
        TarEntry("b/b/.wh..wh..opq"),
    ]
    native, uppers = layers_both_ways(tmp_path, [[TarEntry("b/b/old", data=b"o")], layer])
    assert os.listdir(native / "b") == [] == os.listdir(Path(uppers[1]) / "b")


def test_a_hard_link_to_a_path_inside_itself_is_refused(tmp_path: Path) -> None:
    """`x` linked to `x/f`, with x/f in the layer below: the overlay layer copied x/f up,
    which made the directory `x` where the link was to go, and ended in FileExistsError
    (seed 41, case 296). Native application deletes x first, so the target is gone."""
    lower = tmp_path / "lower"
    apply(tar_layer([TarEntry("x/f", data=b"f")]), lower)
    layer = tar_layer([TarEntry("x", "hardlink", linkname="x/f")])
    for whiteouts, lowers in (("overlay", [str(lower)]), ("native", [])):
        dest = lower if whiteouts == "native" else tmp_path / "upper"
        with pytest.raises(InvalidArgument, match="'x' names itself, or a path inside it"):
            apply(layer, dest, whiteouts=whiteouts, lower_dirs=lowers)
