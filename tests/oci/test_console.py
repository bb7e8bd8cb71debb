"""--console-socket: the pty master arrives by SCM_RIGHTS; the slave is the process's terminal."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import GALLEY_RUNC
from tests.oci.conftest import Bundle, Runtime

pytestmark = pytest.mark.root


def _read_until_eof(fd: int, deadline: float) -> bytes:
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the slave side closed
            break
        if not chunk:
            break
        data += chunk
    return data


def test_console_socket_receives_master(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 33, "width": 101}
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && echo isatty; stty size; ls -l /dev/console",
    ]
    sock_path = str(tmp_path / "console.sock")
    cid = runtime.new_id()
    runtime.created.append(cid)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(sock_path)
        server.listen(1)
        server.settimeout(30)
        proc = subprocess.Popen(
            [
                GALLEY_RUNC,
                "--root",
                str(runtime.root),
                "create",
                "--console-socket",
                sock_path,
                "-b",
                str(bundle.write()),
                cid,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        conn, _ = server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(fds) == 1
    master = fds[0]
    try:
        assert runtime("start", cid).returncode == 0
        out = _read_until_eof(master, time.monotonic() + 10)
    finally:
        os.close(master)
    assert out.startswith(b"isatty\n33 101\n"), out  # no \r: ONLCR cleared as runc does
    assert b"/dev/console" in out


def test_terminal_without_console_socket_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["terminal"] = True
    cid = runtime.new_id()
    res = runtime("create", "-b", str(bundle.write()), cid)
    assert res.returncode == 1
    assert "console socket" in res.stderr
    assert not (runtime.root / cid).exists()
