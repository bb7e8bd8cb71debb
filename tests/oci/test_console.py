"""--console-socket: the pty master arrives by SCM_RIGHTS; the slave is the process's terminal."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from galley.oci.console import set_size
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


def _with_console(
    rt: Runtime,
    command: list[str],
    sock_path: str,
    on_master: Callable[[int], None] | None = None,
) -> int:
    """rt's command (create, exec -d) with --console-socket sock_path; the pty master it sent
    (on_master(master) runs before the connection is closed, as conmon sets the pty up)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(sock_path)
        server.listen(1)
        server.settimeout(30)
        first, *rest = command
        proc = subprocess.Popen(
            [rt.binary, "--root", str(rt.root), first, "--console-socket", sock_path, *rest],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        conn, _ = server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
            if on_master is not None and fds:
                on_master(fds[0])
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(fds) == 1
    return fds[0]


def _create_with_console(rt: Runtime, bundle: Bundle, sock_path: str) -> tuple[str, int]:
    """`create --console-socket` with rt; (container id, the pty master it sent)."""
    cid = rt.new_id()
    rt.created.append(cid)
    return cid, _with_console(rt, ["create", "-b", str(bundle.write()), cid], sock_path)


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


def test_a_console_size_needs_both_sides(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """As runc: a consoleSize with a zero height or width is not applied (the pty stays 0x0,
    which busybox's stty cannot show); one with both is."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "stty -a | head -n 1"]
    seen = []
    for number, size in enumerate([{"height": 1, "width": 0}, {"height": 7, "width": 9}]):
        bundle.config["process"]["consoleSize"] = size
        seen.append(console_output(any_runtime, bundle, str(tmp_path / f"c{number}.sock")))
    assert b"rows" not in seen[0], seen
    assert b"rows 7; columns 9;" in seen[1], seen


def test_a_read_only_devpts_still_gives_a_terminal(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """devpts mounted "ro": the pty opens, and the user it cannot be given to (EROFS) keeps
    root's, as runc leaves it (it used to fail the create with "Read-only file system")."""
    devpts = next(m for m in bundle.config["mounts"] if m["type"] == "devpts")
    devpts["options"] = [*devpts["options"], "ro"]
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["args"] = ["sh", "-c", "stat -c '%n %u' $(tty); id -u"]
    out = console_output(any_runtime, bundle, str(tmp_path / "console.sock"))
    assert out == b"/dev/pts/0 0\r\n1000\r\n", out


def test_exec_takes_the_containers_console_size(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """`exec -t` without --process starts from the container's process, consoleSize included
    (runc's exec reads the whole process from the config); --process brings its own."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["process"]["consoleSize"] = {"height": 30, "width": 100}
    cid = any_runtime.detached(bundle)
    command = ["exec", "-t", "-d", cid, "stty", "size"]
    master = _with_console(any_runtime, command, str(tmp_path / "flags.sock"))
    try:
        assert _read_until_eof(master, time.monotonic() + 10) == b"30 100\r\n"
    finally:
        os.close(master)
    process = {"args": ["stty", "size"], "cwd": "/", "env": ["PATH=/bin"], "terminal": True}
    process["consoleSize"] = {"height": 12, "width": 34}
    (tmp_path / "process.json").write_text(json.dumps(process))
    command = ["exec", "-d", "-p", str(tmp_path / "process.json"), cid]
    master = _with_console(any_runtime, command, str(tmp_path / "file.sock"))
    try:
        assert _read_until_eof(master, time.monotonic() + 10) == b"12 34\r\n"
    finally:
        os.close(master)


def test_exec_hands_the_master_over_before_the_process_runs(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A console socket's reader that sizes the pty when the master comes, then closes the
    connection (conmon, with the size `podman exec -t` sent it): the exec'd process sees
    that size. galley-runc sent the master once the process ran (it saw 0 0), and now waits
    a moment for the reader to close its end. runc sends it first but does not wait, so
    whether its process sees the size is a race it mostly wins; galley-runc only."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    for attempt in range(3):
        command = ["exec", "-t", "-d", cid, "stty", "size"]
        sized = functools.partial(set_size, height=40, width=120)
        master = _with_console(runtime, command, str(tmp_path / f"{attempt}.sock"), sized)
        try:
            assert _read_until_eof(master, time.monotonic() + 10) == b"40 120\r\n"
        finally:
            os.close(master)


# What a relayed process prints about its terminal, after runc's relay has had time to size
# it (runc does so once the process runs; galley-runc before), then a line it reads.
RELAY_PROBE = "sleep 0.3; stty size; stty -a | grep -o -- '-*onlcr '; read line; echo got-$line"


@pytest.mark.parametrize("command", ["run", "exec"])
def test_a_foreground_terminal_is_relayed_as_runc_relays_it(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, command: str
) -> None:
    """`run` or `exec -t` in the foreground, on a terminal of its own (40x100, with a line
    typed before the container reads it), as runc's relay: the container's pty has ONLCR off
    and the terminal's size (over consoleSize); the line typed ahead reaches it (no flush on
    going raw); the terminal still shows "\r\n", its own output processing kept in raw mode."""
    bundle.config["process"]["terminal"] = command == "run"
    bundle.config["process"]["consoleSize"] = {"height": 24, "width": 80}
    bundle.config["process"]["args"] = ["sh", "-c", RELAY_PROBE]
    argv = [any_runtime.binary, "--root", str(any_runtime.root)]
    if command == "run":
        cid = any_runtime.new_id()
        any_runtime.created.append(cid)
        argv += ["run", "--bundle", str(bundle.write()), cid]
    else:
        bundle.config["process"]["args"] = ["sleep", "60"]
        argv += ["exec", "-t", any_runtime.detached(bundle), "sh", "-c", RELAY_PROBE]
    sized = ["sh", "-c", 'stty rows 40 cols 100 && exec "$@"', "sh", *argv]
    seen = under_a_tty(sized, tmp_path, typed=b"typed-ahead\n")
    assert b"40 100\r\n" in seen, seen
    assert b"-onlcr \r\n" in seen, seen
    assert b"got-typed-ahead\r\n" in seen, seen


def test_terminal_without_console_socket_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["terminal"] = True
    cid = runtime.new_id()
    res = runtime("create", "-b", str(bundle.write()), cid)
    assert res.returncode == 1
    assert "console socket" in res.stderr
    assert not (runtime.root / cid).exists()


def test_an_exec_whose_console_socket_is_gone_runs_nothing(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The master goes to the console socket before the process runs: when nothing listens
    there, the exec fails (255, runc's status for exec) and no process was started. The
    process ignores SIGHUP: one started before the hand-over would outlive the runtime's
    close of the master (galley-runc's order until session 20 left it running)."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    gone = str(tmp_path / "gone.sock")
    survivor = ["sh", "-c", "trap '' HUP; exec sleep 77"]
    result = any_runtime("exec", "-t", "-d", "--console-socket", gone, cid, *survivor)
    assert result.returncode == 255
    assert "gone.sock" in result.stderr
    assert "sleep 77" not in any_runtime("ps", cid, check=True).stdout


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
