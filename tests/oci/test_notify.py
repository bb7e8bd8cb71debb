"""NOTIFY_SOCKET: sd_notify from the container to a service manager, as runc passes it on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime, create_in_files

pytestmark = pytest.mark.root


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """The service manager's side: a datagram socket bound where NOTIFY_SOCKET points."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "manager.sock"))
        sock.settimeout(10)
        yield sock


def _notify_env(manager: socket.socket) -> dict[str, str]:
    return {**os.environ, "NOTIFY_SOCKET": manager.getsockname()}


def _send_ready(rt: Runtime, cid: str, message: bytes) -> None:
    """What the container's sd_notify sends, from outside: the socket the runtime bound in its
    state directory is the one bound into the container."""
    path = rt.root / cid / "notify" / "notify.sock"
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never came"
        time.sleep(0.02)
    directory = os.open(path.parent, os.O_PATH)  # a socket's path has room for 107 bytes
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def _ready_and_heard(
    rt: Runtime,
    cid: str,
    waiting: subprocess.Popen[bytes],
    manager: socket.socket,
    message: bytes,
) -> None:
    """Send message (a READY) while waiting (start, or run -d) waits for it: it ends with 0,
    and the manager hears the first line, then MAINPID, the container's init."""
    try:
        _send_ready(rt, cid, message)
        assert waiting.wait(timeout=10) == 0
    finally:
        waiting.kill()
        waiting.wait()
    assert manager.recv(4096) == message.split(b"\n")[0] + b"\n"
    pid = int(json.loads(rt("state", cid).stdout)["pid"])
    assert manager.recv(4096) == f"MAINPID={pid}\n".encode()


def test_the_container_gets_the_socket(
    any_runtime: Runtime, bundle: Bundle, manager: socket.socket
) -> None:
    """create: NOTIFY_SOCKET=/run/notify/notify.sock in the process's environment, the state
    directory's notify directory bound read-only at /run/notify; start binds the socket there
    (and returns when the process ends without a READY)."""
    probe = "env | grep NOTIFY_; grep ' /run/notify ' /proc/self/mountinfo; ls /run/notify"
    bundle.config["process"]["args"] = ["sh", "-c", probe]
    cid = any_runtime.new_id()
    env = _notify_env(manager)
    created = create_in_files(any_runtime, bundle, cid, env=env)
    assert created.returncode == 0, created.stderr
    assert any_runtime("start", cid, env=env).returncode == 0
    deadline = time.monotonic() + 10
    out_file = next(bundle.path.glob("stdout-*"))
    while "notify.sock" not in out_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = out_file.read_text().splitlines()
    assert lines[0] == "NOTIFY_SOCKET=/run/notify/notify.sock", lines
    assert lines[1].split()[4] == "/run/notify" and lines[1].split()[5].startswith("ro,"), lines
    assert lines[2] == "notify.sock", lines


@pytest.mark.parametrize("command", ["start", "run -d"])
def test_ready_goes_to_the_manager_with_the_inits_pid(
    any_runtime: Runtime, bundle: Bundle, manager: socket.socket, command: str
) -> None:
    """start and run -d wait for the container's READY, then send the manager its first line
    and MAINPID, the container's init."""
    bundle.config["process"]["args"] = ["sleep", "30"]
    env = _notify_env(manager)
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    if command == "start":
        assert create_in_files(any_runtime, bundle, cid, env=env).returncode == 0
        argv = ["start", cid]
    else:
        argv = ["run", "-d", "-b", str(bundle.write()), cid]
    waiting = subprocess.Popen(
        [any_runtime.binary, "--root", str(any_runtime.root), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    _send_ready(any_runtime, cid, b"STATUS=starting")  # not READY: it waits on
    time.sleep(0.3)
    assert waiting.poll() is None
    _ready_and_heard(any_runtime, cid, waiting, manager, b"READY=1\nSTATUS=up")


def test_a_manager_in_the_abstract_namespace(any_runtime: Runtime, bundle: Bundle) -> None:
    """NOTIFY_SOCKET=@name: systemd's notation for an abstract socket, which runc (Go) reads
    as one."""
    bundle.config["process"]["args"] = ["sleep", "30"]
    name = f"galley-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(10)
        cid = any_runtime.new_id()
        any_runtime.created.append(cid)
        argv = [any_runtime.binary, "--root", str(any_runtime.root), "run", "-d"]
        waiting = subprocess.Popen(
            [*argv, "-b", str(bundle.write()), cid],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "NOTIFY_SOCKET": f"@{name}"},
        )
        _ready_and_heard(any_runtime, cid, waiting, manager, b"READY=1")


def test_a_foreground_run_names_itself_as_the_main_pid(
    runtime: Runtime, bundle: Bundle, manager: socket.socket
) -> None:
    """`run` in the foreground: READY goes on while it waits, with MAINPID its own pid (the
    process the manager watches); it still returns the container's status."""
    bundle.config["process"]["args"] = ["sh", "-c", "sleep 1; exit 3"]
    cid = runtime.new_id()
    runtime.created.append(cid)
    running = subprocess.Popen(
        [runtime.binary, "--root", str(runtime.root), "run", "-b", str(bundle.write()), cid],
        stdin=subprocess.DEVNULL,
        env=_notify_env(manager),
    )
    try:
        _send_ready(runtime, cid, b"READY=1")
        assert manager.recv(4096) == b"READY=1\n"
        assert manager.recv(4096) == f"MAINPID={running.pid}\n".encode()
        assert running.wait(timeout=10) == 3
    finally:
        running.kill()
        running.wait()
    assert not (runtime.root / cid).exists()  # the notify directory went with the rest


@pytest.mark.parametrize("detach", [True, False])
def test_a_container_that_never_says_ready_does_not_hold_the_runtime(
    runtime: Runtime, bundle: Bundle, manager: socket.socket, detach: bool
) -> None:
    """No READY before the process ends: run returns (runc 1.1.5 waits for ever in both, on
    the zombie's /proc entry or its own); the manager hears nothing."""
    bundle.config["process"]["args"] = ["sh", "-c", "sleep 0.5; exit 4"]
    cid = runtime.new_id()
    argv = ["run", *(["-d"] if detach else []), "-b", str(bundle.write()), cid]
    result = runtime(*argv, env=_notify_env(manager), timeout=20)
    assert result.returncode == (0 if detach else 4), result.stderr
    manager.settimeout(0.2)
    with pytest.raises(TimeoutError):
        manager.recv(4096)
    if detach:
        assert runtime("delete", cid).returncode == 0
    assert not (runtime.root / cid).exists()


def test_without_notify_socket_nothing_is_added(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sh", "-c", "env; ls /run"]
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    result = runtime("run", "-b", str(bundle.write()), runtime.new_id(), env=env)
    assert result.returncode == 0, result.stderr
    assert "NOTIFY_SOCKET" not in result.stdout and "notify" not in result.stdout
