"""galley.kernel.pathnames against os.path, os.makedirs and os.walk, which it stands in for,
and the reason it exists: galley-runc's modules never import os."""

from __future__ import annotations

import itertools
import os
import posixpath
from pathlib import Path

import pytest

from galley.kernel import pathnames
from tests.conftest import fresh_python

PARTS = ["", "/", "//", "///", ".", "..", "a", "b/", "/c", "a/./b", "a/../..", "x//y", "../z/"]
PATHS = sorted({"".join(p) for p in itertools.product(PARTS, repeat=3)})


@pytest.mark.parametrize("name", ["dirname", "basename", "normpath"])
def test_string_functions_agree_with_posixpath(name: str) -> None:
    ours, theirs = getattr(pathnames, name), getattr(posixpath, name)
    assert [ours(p) for p in PATHS] == [theirs(p) for p in PATHS]


def test_join_agrees_with_posixpath() -> None:
    for first, second in itertools.product(PARTS, repeat=2):
        assert pathnames.join(first, second, "t") == posixpath.join(first, second, "t")


def test_abspath_and_relpath_agree_with_posixpath() -> None:
    relatives = [p for p in PATHS if p]
    assert [pathnames.abspath(p) for p in PATHS] == [posixpath.abspath(p) for p in PATHS]
    for start in ("/", "/usr/lib", "a/b", ".."):
        assert [pathnames.relpath(p, start) for p in relatives] == [
            posixpath.relpath(p, start) for p in relatives
        ]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Links of every kind: relative, absolute, chained, dangling, looping, through ..."""
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "f").write_text("")
    (tmp_path / "rel").symlink_to("d/e")
    (tmp_path / "abs").symlink_to(tmp_path / "d")
    (tmp_path / "chain").symlink_to("rel")
    (tmp_path / "up").symlink_to("d/e/..")
    (tmp_path / "dangling").symlink_to("nowhere/x")
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "d" / "e" / "back").symlink_to("../../abs")
    return tmp_path


NAMES = ["d", "f", "rel", "abs", "chain", "up", "dangling", "loop1", "missing", "d/e/back",
         "rel/../f", "chain/back/e", "abs/../rel", "f/x", "d/./e/"]  # fmt: skip


def test_realpath_agrees_with_os_path(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "d")
    for name in NAMES:
        for path in (f"{tree}/{name}", f"../{name}"):
            assert pathnames.realpath(path) == os.path.realpath(path), path


def test_predicates_agree_with_os_path(tree: Path) -> None:
    for name in [*NAMES, "/", "/proc", "/proc/self"]:
        path = name if name.startswith("/") else f"{tree}/{name}"
        for check in ("exists", "lexists", "isdir", "isfile", "ismount"):
            assert getattr(pathnames, check)(path) == getattr(os.path, check)(path), (check, path)


def test_makedirs(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    pathnames.makedirs(str(deep), 0o700)
    assert deep.is_dir() and deep.stat().st_mode & 0o777 == 0o700
    pathnames.makedirs(str(deep), exist_ok=True)
    with pytest.raises(FileExistsError):
        pathnames.makedirs(str(deep))
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        pathnames.makedirs(str(tmp_path / "file"), exist_ok=True)
    with pytest.raises(NotADirectoryError):
        pathnames.makedirs(str(tmp_path / "file" / "below"))


def test_private_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tempfile.mkdtemp's job: new directories in $TMPDIR, each its own, 0700."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    made = {pathnames.private_directory("galley-x-") for _ in range(5)}
    assert len(made) == 5
    for path in made:
        assert os.path.dirname(path) == str(tmp_path)
        assert os.path.basename(path).startswith("galley-x-")
        assert os.stat(path).st_mode & 0o777 == 0o700


def test_directories_list_what_os_walk_lists(tree: Path) -> None:
    (tree / "d" / "e" / "g" / "h").mkdir(parents=True)
    walked = [top for top, _, _ in os.walk(tree)]
    assert sorted(pathnames.directories(str(tree))) == sorted(walked)
    order = pathnames.directories(str(tree), bottom_up=True)
    assert all(order.index(d) < order.index(os.path.dirname(d)) for d in order if d != str(tree))
    assert pathnames.directories(str(tree / "missing")) == [str(tree / "missing")]


def test_galley_runcs_modules_never_import_os() -> None:
    """`import os` costs every command ~2 ms (os's and _collections_abc's code), and posix
    has what galley-runc calls: none of the modules a command imports may pull os in."""
    script = (
        "import sys\n"
        "from galley import codecache\n"
        "import galley.oci.cli, galley.oci.launch, galley.oci.init, galley.oci.rootfs\n"
        "import galley.oci.commands.lifecycle, galley.oci.commands.query\n"
        "import galley.oci.cgroups.factory, galley.oci.cgroups.v1, galley.oci.cgroups.v2\n"
        "import galley.oci.seccomp, galley.oci.execution, galley.oci.hooks\n"
        "import galley.oci.console, galley.oci.commands.terminal, galley.oci.commands.notify\n"
        "import galley.oci.hosttrees, galley.kernel.unixsock\n"
        "print(sorted({'os', 'posixpath', '_collections_abc', 'typing'} & set(sys.modules)))\n"
    )
    assert fresh_python(script).strip() == "[]"


def test_read_bytes_reads_the_whole_file(tmp_path: Path) -> None:
    big = os.urandom(200_000)  # more than one read's worth
    (tmp_path / "big").write_bytes(big)
    assert pathnames.read_bytes(str(tmp_path / "big")) == big
    (tmp_path / "empty").write_bytes(b"")
    assert pathnames.read_bytes(str(tmp_path / "empty")) == b""


def test_read_bytes_reads_a_proc_file_longer_than_a_page_to_the_end() -> None:
    with open("/proc/zoneinfo", "rb") as f:
        expected = f.read()
    assert len(expected) > 4096
    got = pathnames.read_bytes("/proc/zoneinfo")
    assert got.splitlines()[0] == expected.splitlines()[0]
    assert len(got.splitlines()) == len(expected.splitlines())


def test_read_text_keeps_carriage_returns_and_decodes_as_asked(tmp_path: Path) -> None:
    """A name in a /proc or cgroup file may hold a "\\r": open()'s text mode would end the
    line there."""
    path = tmp_path / "f"
    path.write_bytes(b"a\rb\nc\xff\n")
    assert pathnames.read_text(str(path), "surrogateescape") == "a\rb\nc\udcff\n"
    with pytest.raises(UnicodeDecodeError):
        pathnames.read_text(str(path))


def test_read_bytes_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        pathnames.read_bytes(str(tmp_path / "nope"))
    assert missing.value.filename == str(tmp_path / "nope")
    with pytest.raises(IsADirectoryError):
        pathnames.read_bytes(str(tmp_path))


@pytest.mark.parametrize(
    ("path", "absolute"),
    [("//tmp/b", "/tmp/b"), ("///tmp/b/", "/tmp/b"), ("/tmp//b/.", "/tmp/b"), ("//", "/")],
)
def test_go_abspath_keeps_no_second_leading_slash(path: str, absolute: str) -> None:
    """As Go's filepath.Abs (runc's bundle path); posixpath keeps two leading slashes."""
    assert pathnames.go_abspath(path) == absolute
