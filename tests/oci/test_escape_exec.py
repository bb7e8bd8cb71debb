"""What exec's stage reads of a running container while it still holds the host's privileges
(after joining the container's mount namespace, before the user and capability switch and
execve): a hostile container must get nothing from it."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime, exec_with_console

pytestmark = pytest.mark.root


def _sleeping(runtime: Runtime, bundle: Bundle, **resources: object) -> str:
    bundle.config["process"]["args"] = ["sleep", "300"]
    bundle.config["linux"].setdefault("resources", {}).update(resources)
    return runtime.detached(bundle)


def _sh(runtime: Runtime, cid: str, script: str) -> None:
    done = runtime("exec", cid, "sh", "-c", script)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("tamper", ["rm /dev/null", "rm /dev/null && touch /dev/null"])
def test_exec_does_not_chown_host_null_device(
    runtime: Runtime, bundle: Bundle, tmp_path: Path, tamper: str
) -> None:
    """stdio goes to the exec user unless it is /dev/null, known by its device number: the
    container's own /dev/null, which it may remove or replace, must not decide."""
    cid = _sleeping(runtime, bundle)
    _sh(runtime, cid, tamper)  # what the container's root may do to its own /dev tmpfs
    # A host null device (1:3) standing in for the host's /dev/null, given as exec's stdin the
    # way `exec -d ... </dev/null` or a shim's null stdio would.
    node = tmp_path / "host-null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with node.open("rb") as stdin:
        done = subprocess.run(
            [runtime.binary, "--root", str(runtime.root), "exec", "-u", "1000:1000", cid, "true"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    owner = node.stat().st_uid
    assert owner == 0, f"host null device now owned by uid {owner} (exec: {done.stderr!r})"


@pytest.mark.parametrize(
    "tamper",
    ["rm /etc/passwd && ln -s /dev/zero /etc/passwd", "rm /etc/passwd && mkfifo /etc/passwd"],
)
def test_exec_with_home_survives_hostile_passwd(
    runtime: Runtime, bundle: Bundle, tamper: str
) -> None:
    """/etc/passwd is read only when HOME is missing, and then only a regular file, at most
    1 MiB, never waiting on a FIFO (/dev/zero grew the stage until its cgroup killed it)."""
    cid = _sleeping(runtime, bundle, memory={"limit": 64 << 20})
    _sh(runtime, cid, tamper)
    try:
        done = runtime("exec", "--env", "HOME=/root", cid, "true", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("exec hung on the container's /etc/passwd")
    assert done.returncode == 0, done.stderr  # HOME is given: /etc/passwd is not needed
    try:
        looked_up = runtime("exec", cid, "sh", "-c", "echo $HOME", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("exec hung on the container's /etc/passwd")
    assert looked_up.returncode == 0, looked_up.stderr
    assert looked_up.stdout.strip() == "/"  # not a regular file: runc's default


def test_exec_terminal_refuses_a_ptmx_that_is_not_one(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The container owns its /dev/ptmx: exec takes a pty from it only if it is the ptmx
    device (resolved inside the root, no magic links)."""
    cid = _sleeping(runtime, bundle)
    _sh(runtime, cid, "rm /dev/ptmx && ln -s /dev/null /dev/ptmx")
    process = {"terminal": True, "args": ["/bin/true"], "env": ["PATH=/bin"], "cwd": "/"}
    errors = exec_with_console(runtime, cid, process, tmp_path)
    assert "/dev/ptmx is not the ptmx device" in errors


def test_a_faked_setgroups_file_does_not_leak_the_callers_groups(
    runtime: Runtime, bundle: Bundle
) -> None:
    """A container with CAP_SYS_ADMIN puts a fake /proc over its own, whose self/setgroups
    says "deny": exec read it there, skipped setgroups, and the process kept the caller's
    supplementary groups (root's 0, or disk, docker). The kernel is asked now, not /proc."""
    caps = bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = sorted({*caps.get(kind, []), "CAP_SYS_ADMIN"})
    fake = "mkdir -p /fake/self && echo deny > /fake/self/setgroups && mount --bind /fake /proc"
    bundle.config["process"]["args"] = ["sh", "-c", f"{fake} && touch /faked && sleep 60"]
    cid = runtime.detached(bundle)
    deadline = time.monotonic() + 10
    while runtime("exec", cid, "test", "-e", "/faked").returncode and time.monotonic() < deadline:
        time.sleep(0.05)
    res = subprocess.run(
        ["setpriv", "--groups", "4,27,100", runtime.binary, "--root", str(runtime.root),
         "exec", "--user", "65534:65534", "--additional-gids", "5", cid, "id", "-G"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["65534", "5"]
