"""Mount option parsing (runc's table) and path resolution inside a root, without namespaces."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.kernel import mount as k
from galley.oci import paths
from galley.oci.mounts import MOUNT_OPTIONS, MountOptions, bind_attrs, check_proc_target


def test_flags_set_and_clear_in_order() -> None:
    opts = MountOptions(["ro", "nosuid", "rw", "nodev", "dev", "noexec"])
    assert opts.flags == k.MS_NOSUID | k.MS_NOEXEC
    assert opts.clear == k.MS_RDONLY | k.MS_NODEV
    assert opts.data == ""


def test_unknown_options_become_data() -> None:
    opts = MountOptions(["nosuid", "mode=755", "size=65536k", "newinstance"])
    assert opts.data == "mode=755,size=65536k,newinstance"
    assert opts.flags == k.MS_NOSUID


def test_bind_rbind_propagation_recursive_and_extensions() -> None:
    opts = MountOptions(["rbind", "rslave", "private", "rro", "rnosuid", "tmpcopyup", "idmap"])
    assert opts.is_bind and opts.flags & k.MS_REC
    assert opts.propagation == [k.MS_SLAVE | k.MS_REC, k.MS_PRIVATE]
    assert opts.rec_set == k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID
    assert opts.extensions == {"tmpcopyup", "idmap"}
    assert not MountOptions(["nosuid"]).is_bind


@pytest.mark.parametrize(
    ("options", "attribute"),
    [
        (["rro", "rrw"], k.MOUNT_ATTR_RDONLY),
        (["rro", "ro", "rrw"], k.MOUNT_ATTR_RDONLY),
        (["rnosuid", "rsuid"], k.MOUNT_ATTR_NOSUID),
        (["rnodev", "rdev"], k.MOUNT_ATTR_NODEV),
        (["rnoexec", "rexec"], k.MOUNT_ATTR_NOEXEC),
        (["rnosymfollow", "rsymfollow"], k.MOUNT_ATTR_NOSYMFOLLOW),
    ],
)
def test_a_recursive_restriction_outlasts_its_undoing(options: list[str], attribute: int) -> None:
    """As runc gathers them: the kernel clears the attributes, then sets them, so "rro" then
    "rrw" is read-only (galley let the last one win: the whole tree writable)."""
    opts = MountOptions(["rbind", *options])
    assert opts.rec_set & attribute and opts.rec_clr & attribute


def test_recursive_atime_options_replace_each_other() -> None:
    opts = MountOptions(["rnoatime", "rstrictatime"])
    assert opts.rec_set == k.MOUNT_ATTR_STRICTATIME
    assert opts.rec_clr == k.MOUNT_ATTR__ATIME


def test_bind_attrs_from_flags() -> None:
    attr_set, attr_clr = bind_attrs(k.MS_RDONLY | k.MS_NODEV | k.MS_NOATIME, k.MS_NOEXEC)
    assert attr_set == k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NODEV | k.MOUNT_ATTR_NOATIME
    assert attr_clr == k.MOUNT_ATTR_NOEXEC | k.MOUNT_ATTR__ATIME
    assert bind_attrs(0, k.MS_NOATIME) == (0, k.MOUNT_ATTR__ATIME)
    assert bind_attrs(0) == (0, 0)


@pytest.mark.parametrize(
    ("fstype", "said"),
    [(None, "mount /nonexistent/src on /nonexistent/dst"),
     ("tmpfs", "mount tmpfs /nonexistent/src on /nonexistent/dst")],
)  # fmt: skip
def test_a_failed_mount_says_what_it_mounted(fstype: str | None, said: str) -> None:
    with pytest.raises(OSError) as failure:
        k.mount("/nonexistent/src", "/nonexistent/dst", fstype, k.MS_BIND if not fstype else 0)
    assert said in str(failure.value)


def test_every_option_is_known() -> None:
    for name in ("strictatime", "nosymfollow", "lazytime", "runbindable", "rro", "ridmap"):
        assert name in MOUNT_OPTIONS
    assert all(not MountOptions([name]).data for name in MOUNT_OPTIONS)


@pytest.mark.parametrize(
    ("dest", "kind", "allowed"),
    [
        ("/proc", "proc", True),
        ("/proc", "tmpfs", False),
        ("/proc/self/attr", "tmpfs", False),
        ("/proc/cpuinfo", "bind", True),
        ("/proc/sys/kernel/ns_last_pid", "bind", True),
        ("/procfoo", "tmpfs", True),
        ("/sys", "sysfs", True),
    ],
)
def test_proc_targets(dest: str, kind: str, allowed: bool) -> None:
    if allowed:
        check_proc_target(dest, kind, "x")
    else:
        with pytest.raises(InvalidArgument, match="cannot be mounted"):
            check_proc_target(dest, kind, "x")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "root"
    path.mkdir()
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
    yield path, fd
    os.close(fd)


def test_ensure_dir_follows_symlinks_inside_root(root: tuple[Path, int], tmp_path: Path) -> None:
    path, fd = root
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), path / "abs")  # absolute: means <root>/<outside> here
    os.symlink("../../../../..", path / "up")
    os.symlink("missing/deeper", path / "dangling")
    for dest, expected in [
        ("/abs/a/b", f"{outside}/a/b"),
        ("/up/c", "/c"),
        ("/dangling/d", "/missing/deeper/d"),
        ("//x/./y/", "/x/y"),
    ]:
        made = paths.ensure_dir(fd, dest)
        assert paths.container_path(fd, made) == expected
        os.close(made)
    assert os.listdir(outside) == []


def test_ensure_file_and_symlink_loops(root: tuple[Path, int]) -> None:
    path, fd = root
    made = paths.ensure_file(fd, "/etc/conf/file.txt")
    assert (path / "etc/conf/file.txt").is_file()
    os.close(made)
    os.symlink("loop2", path / "loop1")
    os.symlink("loop1", path / "loop2")
    with pytest.raises(OSError, match="symbolic links"):
        paths.ensure_dir(fd, "/loop1/x")
    with pytest.raises(InvalidArgument):
        paths.ensure_file(fd, "/")


def test_magic_links_are_refused(root: tuple[Path, int]) -> None:
    path, fd = root
    os.symlink("/proc/self/root", path / "magic")
    os.makedirs(path / "proc/self", exist_ok=True)
    # inside the root /proc/self/root is a plain (missing) path, created in the root
    made = paths.ensure_dir(fd, "/magic/tmp")
    assert paths.container_path(fd, made) == "/proc/self/root/tmp"
    os.close(made)
    with pytest.raises(OSError, match="symbolic links"):
        paths.open_in_root(os.open("/", os.O_PATH), "/proc/self/root/etc")


def test_ensure_file_through_dangling_symlink(root: tuple[Path, int]) -> None:
    """/etc/resolv.conf -> ../run/resolve/stub.conf (missing): the file is made at the target."""
    path, fd = root
    (path / "etc").mkdir()
    os.symlink("../run/resolve/stub.conf", path / "etc/resolv.conf")
    made = paths.ensure_file(fd, "/etc/resolv.conf")
    assert paths.container_path(fd, made) == "/run/resolve/stub.conf"
    os.close(made)
    assert (path / "run/resolve/stub.conf").is_file()


def test_a_walk_through_dotdot_that_renames_elsewhere_race_is_tried_again(
    root: tuple[Path, int], tmp_path: Path
) -> None:
    """A rename anywhere on the host while openat2 (RESOLVE_IN_ROOT) follows a ".." makes the
    kernel answer EAGAIN: /etc/localtime -> ../usr/share/zoneinfo/UTC failed one walk in ~16
    with another process renaming a file in a loop (crun's test_mounts). Retried, none fails."""
    path, fd = root
    (path / "etc").mkdir()
    (path / "usr/share/zoneinfo").mkdir(parents=True)
    (path / "usr/share/zoneinfo/UTC").write_text("TZif")
    os.symlink("../usr/share/zoneinfo/UTC", path / "etc/localtime")
    churn = tmp_path / "churn"
    churn.mkdir()
    (churn / "a").touch()
    loop = f"import os\nwhile True: os.rename({str(churn / 'a')!r}, {str(churn / 'b')!r}); "
    loop += f"os.rename({str(churn / 'b')!r}, {str(churn / 'a')!r})"
    renamer = subprocess.Popen([sys.executable, "-c", loop])
    try:
        while not (churn / "b").exists() and renamer.poll() is None:  # renaming by now
            pass
        for _ in range(1000):
            os.close(paths.open_in_root(fd, "/etc/localtime"))
    finally:
        renamer.kill()
        renamer.wait()


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("//dev/./", "/dev"), ("dev", "/dev"), ("/proc/../proc", "/proc"), ("/../../x", "/x"),
     ("/", "/"), ("", "/")],
)  # fmt: skip
def test_clean(raw: str, canonical: str) -> None:
    assert paths.clean(raw) == canonical
