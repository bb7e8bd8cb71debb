"""process.user: groups, gid, uid and umask as a real program sees them; user-namespace rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from galley.errors import FailedPrecondition
from galley.oci.identity import apply_user, home_dir
from tests.oci.process_probe import BUSYBOX, run_child

pytestmark = pytest.mark.root

STATUS = [BUSYBOX, "cat", "/proc/self/status"]


def test_uid_gid_groups_and_umask(tmp_path: Path) -> None:
    user = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20, 10, 1001, 20], "umask": 0o027}
    probe = run_child(lambda: apply_user(user), STATUS, tmp_path)  # type: ignore[arg-type]
    assert probe.status == 0, probe.stderr
    assert probe.field("Uid").split() == ["1000"] * 4
    assert probe.field("Gid").split() == ["1001"] * 4
    assert probe.field("Groups").split() == ["10", "20", "1001"]  # each once, as runc
    assert probe.field("Umask") == "0027"


def test_defaults_clear_groups_and_set_umask_0022(tmp_path: Path) -> None:
    def setup() -> None:
        os.setgroups([0, 4, 27])
        os.umask(0o077)
        apply_user({})

    probe = run_child(setup, STATUS, tmp_path)
    assert probe.status == 0, probe.stderr
    assert probe.field("Uid").split() == ["0"] * 4
    assert probe.field("Groups") == ""
    assert probe.field("Umask") == "0022"


def test_id_applet_agrees(tmp_path: Path) -> None:
    user = {"uid": 4242, "gid": 4243, "additionalGids": [7]}
    probe = run_child(lambda: apply_user(user), [BUSYBOX, "id"], tmp_path)  # type: ignore[arg-type]
    assert probe.stdout.split()[:2] == ["uid=4242", "gid=4243"]
    assert "groups=7" in probe.stdout


def test_stdio_is_given_to_the_user(tmp_path: Path) -> None:
    """As runc: a pipe on stdout becomes the container user's, so it can reopen /proc/self/fd/1."""
    read_end, write_end = os.pipe()
    try:
        probe = run_child(
            lambda: apply_user({"uid": 1000, "gid": 1000}),
            [BUSYBOX, "true"],
            tmp_path,
            stdout_fd=write_end,
        )
        assert probe.status == 0, probe.stderr
        st = os.fstat(read_end)
        assert (st.st_uid, st.st_gid) == (1000, os.getegid())  # only the owner changes
    finally:
        os.close(read_end)
        os.close(write_end)


def in_user_ns(ns: Any) -> None:
    """unshare a user namespace mapping only root, with setgroups denied (as rootless runc)."""
    ns.unshare(ns.CLONE_NEWUSER)
    for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def run_in_user_ns(tmp_path: Path, user: dict[str, object]) -> str:
    ns = pytest.importorskip("galley.kernel.ns")

    def setup() -> None:
        in_user_ns(ns)
        try:
            apply_user(user)  # type: ignore[arg-type]
        except FailedPrecondition as e:
            os.write(1, f"Error: {e}\n".encode())

    probe = run_child(setup, STATUS, tmp_path)
    assert probe.status == 0, probe.stderr
    return probe.stdout


def test_user_ns_with_setgroups_denied_skips_setgroups(tmp_path: Path) -> None:
    out = run_in_user_ns(tmp_path, {"uid": 0, "gid": 0})
    assert "Error" not in out and "Uid:\t0\t0\t0\t0" in out


def test_user_ns_additional_gids_are_skipped_as_runc(tmp_path: Path) -> None:
    out = run_in_user_ns(tmp_path, {"uid": 0, "gid": 0, "additionalGids": [5]})
    groups = next(line for line in out.splitlines() if line.startswith("Groups:"))
    assert "Error:" not in out and "5" not in groups.split()[1:]


def test_user_ns_unmapped_uid_is_a_clear_error(tmp_path: Path) -> None:
    out = run_in_user_ns(tmp_path, {"uid": 1000, "gid": 0})
    assert "Error: process.user.uid: 1000 is not mapped in the container's user namespace" in out


def test_home_dir(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\nnohome:x:7:7:::\n"
    )
    assert home_dir(1000, str(passwd)) == "/home/bob"
    assert home_dir(0, str(passwd)) == "/root"
    assert home_dir(7, str(passwd)) == "/"
    assert home_dir(5, str(passwd)) == "/"
    assert home_dir(0, str(tmp_path / "missing")) == "/"


def test_home_dir_reads_ids_as_numbers(tmp_path: Path) -> None:
    """As runc's lookup (Go's Atoi): "01000" is uid 1000; "1_000" and " 1000" are no id."""
    passwd = tmp_path / "passwd"
    passwd.write_text("a:x:1_000:1::/a:\nb:x: 1000:1::/b:\nc:x:01000:1::/c:\nd:x:+7:1::/d:\n")
    assert home_dir(1000, str(passwd)) == "/c"
    assert home_dir(7, str(passwd)) == "/d"


def test_home_dir_reads_only_a_regular_file_inside_the_root(tmp_path: Path) -> None:
    """The stage reads the container's /etc/passwd as the host's root: no magic link to one of
    its own fds (a host file), no FIFO to wait on, no endless device."""
    secret = tmp_path / "host-file"
    secret.write_text("x:x:0:0::/host-secret:/bin/sh\n")
    fd = os.open(secret, os.O_RDONLY)
    try:
        magic = tmp_path / "magic"
        magic.symlink_to(f"/proc/self/fd/{fd}")
        assert home_dir(0, str(magic)) == "/"
        plain = tmp_path / "plain"
        plain.symlink_to(secret)
        assert home_dir(0, str(plain)) == "/host-secret"  # an ordinary symlink is followed
    finally:
        os.close(fd)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert home_dir(0, str(fifo)) == "/"
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    assert home_dir(0, str(zero)) == "/"
