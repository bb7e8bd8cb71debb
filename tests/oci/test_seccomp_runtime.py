"""linux.seccomp through `run`, galley-runc and runc side by side."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.oci.conftest import Runtime
from tests.oci.process_probe import shared_root_bundle

pytestmark = pytest.mark.root

SCRIPT = "mkdir /tmp/x; echo mkdir=$?; kill -0 $$; echo kill0=$?; kill -18 $$; echo kill18=$?"


def run_script(
    rt: Runtime,
    tmp_path: Path,
    rootfs: Path,
    seccomp: dict[str, Any],
    nnp: bool = True,
    args: tuple[str, ...] = ("sh", "-c", SCRIPT),
) -> Any:
    bundle = shared_root_bundle(tmp_path, rootfs, list(args))
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    bundle.config["linux"]["seccomp"] = seccomp
    bundle.config["process"]["noNewPrivileges"] = nnp
    return rt("run", "--bundle", str(bundle.write()), rt.new_id())


def rules(*syscalls: dict[str, Any], default: str = "SCMP_ACT_ALLOW") -> dict[str, Any]:
    return {
        "defaultAction": default,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": list(syscalls),
    }


@pytest.mark.parametrize("nnp", [True, False])
def test_errno_rule_and_argument_conditions(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path, nnp: bool
) -> None:
    seccomp = rules(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        {
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
        },
        {"names": ["not_a_syscall_at_all"], "action": "SCMP_ACT_ERRNO"},
    )
    result = run_script(any_runtime, tmp_path, busybox_rootfs, seccomp, nnp)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mkdir=1", "kill0=1", "kill18=0"]
    assert "Function not implemented" in result.stderr


def test_kill_action_ends_the_container_with_sigsys(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    seccomp = rules({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"})
    result = run_script(any_runtime, tmp_path, busybox_rootfs, seccomp, args=("mkdir", "/tmp/x"))
    assert result.returncode == 128 + signal.SIGSYS
    assert result.stdout == ""


def test_bad_seccomp_config_fails_create(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    seccomp = rules({"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"})
    result = run_script(any_runtime, tmp_path, busybox_rootfs, seccomp)
    assert result.returncode == 1
    assert "SCMP_ACT_EXPLODE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_notify_fd_reaches_the_agent(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    """runtime-spec listenerPath: during create the runtime sends the agent the notify fd with
    the container's state; the agent here closes it, so the notified mkdir fails with ENOSYS."""
    agent_path = tmp_path / "agent.sock"
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(str(agent_path))
    agent.listen(1)
    agent.settimeout(10)
    seccomp = rules({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"})
    seccomp["listenerPath"] = str(agent_path)
    seccomp["listenerMetadata"] = "galley-test"
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, ["mkdir", "/tmp/x"])
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    bundle.config["linux"]["seccomp"] = seccomp
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    command = [
        any_runtime.binary,
        "--root",
        str(any_runtime.root),
        "run",
        "-b",
        str(bundle.write()),
        cid,
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            conn, _ = agent.accept()
            message, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            conn.close()
            for fd in fds:
                os.close(fd)
        finally:
            agent.close()
            _, stderr = proc.communicate(timeout=30)
    state = json.loads(message)
    assert state["fds"] == ["seccompFd"] and len(fds) == 1
    assert state["metadata"] == "galley-test"
    assert state["state"]["id"] == cid and state["pid"] == state["state"]["pid"] > 0
    assert proc.returncode == 1
    assert "Function not implemented" in stderr


@pytest.mark.parametrize("nnp", [True, False])
def test_start_container_hooks_run_under_the_filter(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path, nnp: bool
) -> None:
    """runc 1.1 loads the filter before the startContainer hooks either way (with
    noNewPrivileges, once `start` came); galley-runc loaded that one after them."""
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, ["true"])
    bundle.config["linux"]["seccomp"] = rules(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}
    )
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.config["hooks"] = {
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "mkdir /dev/shm/hooked"]}]
    }
    result = any_runtime("run", "--bundle", str(bundle.write()), any_runtime.new_id())
    assert result.returncode == 1
    assert "error running hook #0: error running hook: signal: bad system call" in result.stderr


# seccomp(2)'s user-notification ioctls (_IOWR('!', n, size)) and the CONTINUE answer
NOTIF_RECV, NOTIF_SEND, NOTIF_CONTINUE = 0xC0502100, 0xC0182101, 1


def _continuing_agent(server: socket.socket, handled: list[int]) -> None:
    """A seccomp agent that lets every notified syscall go on, counting them in handled."""
    conn, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(conn, 65536, 4)
    conn.close()
    listener = fds[0]
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    try:
        while events := poller.poll(10_000):
            if events[0][1] & select.POLLHUP:  # the filter's last user is gone
                return
            notification = bytearray(80)  # struct seccomp_notif
            try:
                fcntl.ioctl(listener, NOTIF_RECV, notification)
            except OSError:  # withdrawn: a signal interrupted the syscall (runc's Go
                continue  # runtime sends SIGURG); the caller will make it again
            answer = notification[:8] + struct.pack("=qiI", 0, 0, NOTIF_CONTINUE)
            with contextlib.suppress(OSError):  # ENOENT: the caller died meanwhile
                fcntl.ioctl(listener, NOTIF_SEND, bytearray(answer))
            handled.append(struct.unpack_from("=i", notification, 16)[0])  # data.nr
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("nnp", [True, False])
def test_a_listener_loaded_early_reaches_the_agent_before_it_is_needed(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path, nnp: bool
) -> None:
    """Without noNewPrivileges the filter is loaded before the process's user and
    capabilities are set: what the runtime does after that (open, read, close) is sent to the
    agent, which must have the fd by then. galley-runc handed it over only at the end of
    its preparations, and hung on its first notified syscall; runc hands it over at once."""
    agent_path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(agent_path))
    server.listen(1)
    server.settimeout(20)
    handled: list[int] = []
    agent = threading.Thread(target=_continuing_agent, args=(server, handled), daemon=True)
    agent.start()
    notified = ["read", "close", "openat", "open"]
    seccomp = rules({"names": notified, "action": "SCMP_ACT_NOTIFY"})
    seccomp["listenerPath"] = str(agent_path)
    try:
        result = run_script(
            any_runtime, tmp_path, busybox_rootfs, seccomp, nnp, ("cat", "/etc/hostname")
        )
    finally:
        agent.join(timeout=20)
        server.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert handled  # the container's own open, read and close at least


@pytest.mark.parametrize("nnp", [True, False])
def test_rlimits_are_set_before_a_filter_that_refuses_setting_them(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path, nnp: bool
) -> None:
    """An allowlist profile need not allow prlimit64: the runtime sets the rlimits before any
    filter is loaded (runc: its parent sets them before the init loads one), for the
    container's process and for an exec'd one."""
    seccomp = rules(  # reading a limit stays allowed: prlimit64 with no new value
        {
            "names": ["prlimit64"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EPERM,
            "args": [{"index": 2, "value": 0, "op": "SCMP_CMP_NE"}],
        },
        {"names": ["setrlimit"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
    )
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, ["sleep", "60"])
    bundle.config["linux"]["seccomp"] = seccomp
    bundle.config["process"]["noNewPrivileges"] = nnp
    # Not RLIMIT_NOFILE: Go (runc's init) raises its soft limit to the hard one at start-up,
    # racing runc's own prlimit of an exec'd process.
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_CORE", "soft": 3210, "hard": 6540}]
    cid = any_runtime.detached(bundle)
    process = dict(bundle.config["process"])
    script = "grep 'core file' /proc/self/limits; ulimit -c 0; echo set=$?"
    process["args"] = ["sh", "-c", script]
    process["rlimits"] = [{"type": "RLIMIT_CORE", "soft": 1230, "hard": 4560}]
    process_json = tmp_path / "process.json"
    process_json.write_text(json.dumps(process))
    result = any_runtime("exec", "--process", str(process_json), cid)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == ["1230", "4560", "bytes", "set=1"]  # the filter holds
    state = json.loads(any_runtime("state", cid).stdout)
    init_limits = Path(f"/proc/{state['pid']}/limits").read_text()
    assert "Max core file size        3210                 6540" in init_limits
