"""--console-socket: the pty master arrives by SCM_RIGHTS; the slave is the process's terminal."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime, under_a_tty

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


def _create_with_console(rt: Runtime, bundle: Bundle, sock_path: str) -> tuple[str, int]:
    """`create --console-socket` with rt; (container id, the pty master it sent)."""
    cid = rt.new_id()
    rt.created.append(cid)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(sock_path)
        server.listen(1)
        server.settimeout(30)
        proc = subprocess.Popen(
            [
                rt.binary,
                "--root",
                str(rt.root),
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
    return cid, fds[0]


def console_output(rt: Runtime, bundle: Bundle, sock_path: str) -> bytes:
    """Create with a console socket, start, and read the terminal until the process ends."""
    cid, master = _create_with_console(rt, bundle, sock_path)
    try:
        assert rt("start", cid).returncode == 0
        return _read_until_eof(master, time.monotonic() + 10)
    finally:
        os.close(master)


def test_console_socket_receives_master(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 33, "width": 101}
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && echo isatty; stty size; ls -l /dev/console",
    ]
    out = console_output(any_runtime, bundle, str(tmp_path / "console.sock"))
    # ONLCR on, as runc leaves it: a reader in raw mode (kubectl exec -t) needs the \r
    assert out.startswith(b"isatty\r\n33 101\r\n"), out
    assert b"/dev/console" in out


def test_pty_comes_from_the_containers_devpts(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """As runc: `tty` is /dev/pts/0 of the container's own devpts, bound onto /dev/console,
    and stdio are the only fds the process gets (checked against runc with any_runtime)."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "tty; stat -c 'console %t:%T' /dev/console; stat -c 'pts %t:%T' /dev/pts/0;"
        " ls /dev/pts; ls -l /proc/self/fd",
    ]
    out = console_output(any_runtime, bundle, str(tmp_path / "console.sock")).decode()
    lines = out.splitlines()
    assert lines[0] == "/dev/pts/0", out
    assert lines[1] == lines[2].replace("pts", "console"), out  # the same device
    assert lines[3].split() == ["0", "ptmx"], out  # a fresh devpts: only our pty
    fds = {line.split()[-3]: line.split()[-1] for line in lines[5:] if "->" in line}
    assert fds.pop("0") == fds.pop("1") == fds.pop("2") == "/dev/pts/0", out
    assert all(target.startswith("/proc/") for target in fds.values()), out  # ls's own dir


def test_terminal_without_console_socket_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["terminal"] = True
    cid = runtime.new_id()
    res = runtime("create", "-b", str(bundle.write()), cid)
    assert res.returncode == 1
    assert "console socket" in res.stderr
    assert not (runtime.root / cid).exists()


def test_line_ends_of_a_foreground_terminal(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """`run` with a terminal, in the foreground on a tty of its own (script(1)): runc and
    galley-runc leave the container's ONLCR on and put their own tty in raw mode, so the
    user's terminal gets "\\r\\n" once, and lines do not stair-step."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "echo a; echo b"]
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    command = [any_runtime.binary, "--root", str(any_runtime.root), "run"]
    command += ["--bundle", str(bundle.write()), cid]
    assert b"a\r\nb\r\n" in under_a_tty(command, tmp_path)


def test_foreground_terminal_run_started_as_a_background_job(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """`run` with a terminal started in the background of a job-control shell stops on
    SIGTTOU when it makes its tty raw; `fg` continues it (SIGCONT, a signal galley forwards):
    tcsetattr was interrupted and not made again, a traceback and status 1 (runc carries on)."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "echo from-the-container"]
    cid = runtime.new_id()
    runtime.created.append(cid)
    command = [runtime.binary, "--root", str(runtime.root), "run", "--bundle", str(bundle.write())]
    job = tmp_path / "job.sh"
    job.write_text(
        f"{subprocess.list2cmdline([*command, cid])} &\n"
        "sleep 1\n"  # time to reach tcsetattr and stop there
        "jobs\n"
        "fg\n"
        'echo "fg-status=$?"\n'
    )
    seen = under_a_tty(["bash", "-m", str(job)], tmp_path)
    assert b"Stopped" in seen  # it did stop on the tty
    assert b"Traceback" not in seen
    assert b"from-the-container\r\n" in seen
    assert b"fg-status=0" in seen
