"""End-to-end lifecycle through the CLI, the same bundle under galley-runc and runc.

create → created → start → running → kill → stopped → delete; run (foreground and detached);
hooks with the state on stdin; failed creates leave nothing behind.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from galley.oci.cgroups.layout import detect
from tests.conftest import GALLEY_RUNC
from tests.oci.cgroup_fixtures import controller_file, proc_state
from tests.oci.conftest import (
    Bundle,
    Runtime,
    create_held_before_its_state,
    run_bundle,
    status,
    status_after_term,
    trap,
    wait_status,
)

pytestmark = pytest.mark.root


def detached(rt: Runtime, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """create / run --detach: the container keeps the stdio it inherits, so give it files,
    not pipes (a pipe would stay open until the container exits)."""
    rt.created.append(args[-1])
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(
            [rt.binary, "--root", str(rt.root), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            timeout=30,
            check=False,
        )
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_create_start_kill_delete(any_runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sleep", "30"]
    cid = any_runtime.new_id()
    detached(any_runtime, "create", "--bundle", str(bundle.write()), cid)
    state = json.loads(any_runtime("state", cid, check=True).stdout)
    assert state["status"] == "created"
    assert state["pid"] > 0
    assert state["bundle"] == str(bundle.path)
    assert state["rootfs"] == str(bundle.rootfs)
    assert set(state) >= {
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    }
    listed = json.loads(any_runtime("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == [cid]
    pids = json.loads(any_runtime("ps", "--format", "json", cid, check=True).stdout)
    assert state["pid"] in pids
    any_runtime("start", cid, check=True)
    assert status(any_runtime, cid) == "running"
    again = any_runtime("start", cid)
    assert again.returncode == 1
    assert "cannot start an already running container" in again.stderr
    busy = any_runtime("delete", cid)
    assert busy.returncode == 1
    assert "that is not stopped: running" in busy.stderr
    any_runtime("kill", cid, "KILL", check=True)
    wait_status(any_runtime, cid, "stopped")
    assert json.loads(any_runtime("state", cid, check=True).stdout)["pid"] == 0
    assert any_runtime("ps", "--format", "json", cid, check=True).stdout == "null\n"
    stopped = any_runtime("start", cid)
    assert stopped.returncode == 1
    assert "cannot start a container that has stopped" in stopped.stderr
    any_runtime("delete", cid, check=True)
    assert any_runtime("state", cid).returncode == 1
    assert any_runtime("list", "-q", check=True).stdout == ""


def test_delete_of_created_container(any_runtime: Runtime, bundle: Bundle) -> None:
    """As runc 1.1 (and containerd's shim expects): delete without --force kills a created
    container and removes it."""
    cid = any_runtime.new_id()
    detached(any_runtime, "create", "--bundle", str(bundle.write()), cid)
    pid = json.loads(any_runtime("state", cid, check=True).stdout)["pid"]
    any_runtime("delete", cid, check=True)
    assert any_runtime("state", cid).returncode == 1
    deadline = time.monotonic() + 2  # the kill has landed; reaping may lag a moment
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"pid {pid} survived delete"
        time.sleep(0.01)


@pytest.mark.parametrize("hooks", [False, True], ids=["", "startContainer-hook"])
@pytest.mark.parametrize("pid_namespace", [True, False], ids=["own-pidns", "host-pidns"])
def test_a_created_container_dies_of_term_and_ignores_usr1_as_runc_s(
    any_runtime: Runtime, bundle: Bundle, pid_namespace: bool, hooks: bool
) -> None:
    """Until start, runc's init (Go's runtime) ignores USR1, USR2, PIPE, ALRM and the like and
    dies of TERM, HUP, INT and the like: in a pid namespace of its own or not. A signal it
    ignored is not seen by the process start runs. (With a startContainer hook, galley's
    Python stage waits for start instead of the trampoline.)"""
    if hooks:
        bundle.config["hooks"] = {"startContainer": [{"path": "/bin/true"}]}
    if not pid_namespace:
        namespaces = bundle.config["linux"]["namespaces"]
        namespaces[:] = [ns for ns in namespaces if ns["type"] != "pid"]
    bundle.config["process"]["args"] = ["sh", "-c", "echo started > /tmp/started"]
    cid = any_runtime.new_id()
    detached(any_runtime, "create", "--bundle", str(bundle.write()), cid)
    for sig in ("USR1", "USR2", "PIPE", "ALRM", "VTALRM", "PROF", "IO", "PWR"):
        any_runtime("kill", cid, sig, check=True)
    time.sleep(0.1)
    assert status(any_runtime, cid) == "created"
    any_runtime("start", cid, check=True)
    wait_status(any_runtime, cid, "stopped")
    assert (bundle.rootfs / "tmp" / "started").read_text() == "started\n"
    any_runtime("delete", cid, check=True)

    (bundle.rootfs / "tmp" / "started").unlink()
    for sig in ("TERM", "HUP", "INT", "QUIT"):
        cid = any_runtime.new_id()
        detached(any_runtime, "create", "--bundle", str(bundle.write()), cid)
        any_runtime("kill", cid, sig, check=True)
        wait_status(any_runtime, cid, "stopped")
        any_runtime("delete", cid, check=True)
    assert not (bundle.rootfs / "tmp" / "started").exists()


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def test_delete_force_of_running_container(any_runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sleep", "30"]
    cid = any_runtime.new_id()
    detached(any_runtime, "run", "--detach", "--bundle", str(bundle.write()), cid)
    assert status(any_runtime, cid) == "running"
    any_runtime("delete", "--force", cid, check=True)
    assert any_runtime("state", cid).returncode == 1


@pytest.mark.parametrize(
    ("script", "code"), [("echo hi; exit 3", 3), ("echo hi", 0), ("echo hi; kill -9 $$", 137)]
)
def test_run_foreground_exit_status_and_stdout(
    any_runtime: Runtime, bundle: Bundle, script: str, code: int
) -> None:
    bundle.config["process"]["args"] = ["sh", "-c", script]
    if "kill" in script:  # pid 1 of a pid namespace cannot SIGKILL itself
        namespaces = bundle.config["linux"]["namespaces"]
        bundle.config["linux"]["namespaces"] = [n for n in namespaces if n["type"] != "pid"]
    cid = any_runtime.new_id()
    result = any_runtime("run", "--bundle", str(bundle.write()), cid)
    assert result.returncode == code, result.stderr
    assert result.stdout == "hi\n"
    assert any_runtime("state", cid).returncode == 1  # run removes the container after exit


def test_duplicate_id(any_runtime: Runtime, bundle: Bundle) -> None:
    cid = any_runtime.new_id()
    detached(any_runtime, "create", "--bundle", str(bundle.write()), cid)
    dup = detached(any_runtime, "create", "--bundle", str(bundle.path), cid, check=False)
    assert dup.returncode == 1
    assert "already exists" in dup.stderr
    assert status(any_runtime, cid) == "created"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("ociVersion", "9.9.9", "ociVersion: unsupported version"),
        ("namespaces", [{"type": "foo"}], 'linux.namespaces[0].type: unknown namespace type "foo"'),
        ("args", [], "process.args: must not be empty"),
    ],
)
def test_bad_config_leaves_nothing(
    runtime: Runtime, bundle: Bundle, path: str, value: object, message: str
) -> None:
    if path == "namespaces":
        bundle.config["linux"]["namespaces"] = value
    elif path == "args":
        bundle.config["process"]["args"] = value
    else:
        bundle.config[path] = value
    cid = runtime.new_id()
    result = detached(runtime, "create", "--bundle", str(bundle.write()), cid, check=False)
    assert result.returncode == 1
    assert message in result.stderr.replace('\\"', '"')
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (runtime.root / cid).exists()
    assert not _processes_naming(cid)  # the stage forked before validation is gone too


def _processes_naming(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if marker in line]


def test_missing_rootfs_and_config(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.config["root"]["path"] = "nowhere"
    cid = runtime.new_id()
    result = detached(runtime, "create", "--bundle", str(bundle.write()), cid, check=False)
    assert result.returncode == 1
    assert "root.path" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = detached(runtime, "create", "--bundle", str(empty), cid, check=False)
    assert result.returncode == 1
    assert "config.json" in result.stderr
    assert not (runtime.root / cid).exists()


@pytest.mark.parametrize("command", ["create", "run", "spec"])
def test_a_bundle_that_cannot_be_entered_is_named_as_runc_names_it(
    any_runtime: Runtime, tmp_path: Path, command: str
) -> None:
    """runc changes into the bundle first: a missing one, or a file, fails with chdir's error
    (galley once said that config.json was not found)."""
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = ((tmp_path / "missing", "no such file or directory"), (a_file, "not a directory"))
    for bundle, why in cases:
        args = ["--bundle", str(bundle)] + ([] if command == "spec" else [any_runtime.new_id()])
        result = any_runtime(command, *args)
        assert result.returncode == 1
        assert result.stderr.rstrip().endswith(f'chdir {bundle}: {why}"'), result.stderr
    assert not list(any_runtime.root.glob("*/state.json"))


def test_a_full_root_fails_create_saying_which_file_and_leaves_nothing(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """--root on a file system with no space left: the create fails naming the state file it
    could not write (runc 1.1.5 says "unable to store init state: %!w(<nil>)"), and leaves
    no state, cgroup or process; once there is space, the same id creates."""
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "small", str(root)], check=True)
    try:
        full = Runtime(runtime.binary, root / "state")
        cid = full.new_id()
        bundle.config["linux"]["cgroupsPath"] = f"/{cid}"
        filler = root / "filler"
        fill = ["dd", "if=/dev/zero", f"of={filler}", "bs=4k"]
        subprocess.run(fill, capture_output=True, check=False)  # ends with "No space left"
        result = detached(full, "create", "--bundle", str(bundle.write()), cid, check=False)
        assert result.returncode == 1
        assert f"{root}/state/{cid}/" in result.stderr
        assert "no space left on device" in result.stderr
        assert list((root / "state").iterdir()) == []
        assert _processes_naming(cid) == []
        assert not any(os.path.exists(f"{m}/{cid}") for m in detect().mount_points())
        filler.unlink()
        detached(full, "create", "--bundle", str(bundle.write()), cid)
        assert status(full, cid) == "created"
        full("delete", "--force", cid, check=True)
    finally:
        full.cleanup()
        subprocess.run(["umount", str(root)], check=True)


def test_missing_executable_leaves_nothing(any_runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["/no/such/binary"]
    cid = any_runtime.new_id()
    result = detached(any_runtime, "create", "--bundle", str(bundle.write()), cid, check=False)
    assert result.returncode == 1
    assert r"exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory" in (
        result.stderr  # the quotes escaped by the log's logfmt
    )
    assert any_runtime("state", cid).returncode == 1
    assert any_runtime("list", "-q", check=True).stdout == ""


def test_an_init_whose_execve_fails_after_ready_leaves_nothing(
    runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    """Arguments over the kernel's limit for one string (128 KiB): the init's execve (of the
    trampoline, which carries them) fails once it has told P it is ready, while P writes
    state.json. create fails naming the program in runc's words (not Python's "Argument
    list too long: 7"), and no state, cgroup or process is left. (runc fails there only at
    `start`: its init is its own binary until then.)"""
    bundle.config["process"]["args"] = ["true", "x" * (128 << 10)]
    bundle.config["linux"]["cgroupsPath"] = f"{parent}/c"
    layout = detect()
    hierarchies = [*layout.v1.values(), *([layout.unified] if layout.unified else [])]
    cid = runtime.new_id()
    result = detached(runtime, "create", "--bundle", str(bundle.write()), cid, check=False)
    assert result.returncode == 1
    assert "exec /bin/true: argument list too long" in result.stderr
    assert not (runtime.root / cid).exists()
    assert not [h for h in hierarchies if os.path.exists(h.directory(f"{parent}/c"))]
    assert not _processes_naming(cid)


def test_a_program_the_kernel_cannot_run_exits_1_saying_why(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """Found at create, refused by execve after start: the container's stderr says why in
    runc's words, and it exits 1 (what a kubelet shows for an image of another
    architecture)."""
    foreign = bundle.rootfs / "foreign"
    foreign.write_bytes(b"\x7fELF\x02\x01\x01 an executable of no known format")
    foreign.chmod(0o755)
    bundle.config["process"]["args"] = ["/foreign"]
    result = any_runtime("run", "--bundle", str(bundle.write()), any_runtime.new_id())
    assert (result.returncode, result.stderr) == (1, "exec /foreign: exec format error\n")


def hook_script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_hooks_see_the_state(any_runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "hooks"
    out.mkdir()
    hooks = {}
    for phase in ("prestart", "createRuntime", "poststart", "poststop"):
        hooks[phase] = [{"path": hook_script(tmp_path, phase, f"cat > {out}/{phase}.json\n")}]
    bundle.config["hooks"] = hooks
    bundle.config["process"]["args"] = ["sleep", "30"]
    cid = any_runtime.new_id()
    detached(any_runtime, "create", "--bundle", str(bundle.write()), cid)
    pid = json.loads(any_runtime("state", cid, check=True).stdout)["pid"]
    for phase in ("prestart", "createRuntime"):
        seen = json.loads((out / f"{phase}.json").read_text())
        assert seen["id"] == cid
        assert seen["pid"] == pid
        assert seen["status"] == "creating"
        assert seen["bundle"] == str(bundle.path)
    # runc 1.1 runs poststart hooks at create, with status "created" (fixed in runc 1.2)
    galley = any_runtime.binary.endswith("galley-runc")
    assert (out / "poststart.json").exists() != galley
    any_runtime("start", cid, check=True)
    poststart = json.loads((out / "poststart.json").read_text())
    assert poststart["status"] == ("running" if galley else "created")
    any_runtime("kill", cid, "KILL", check=True)
    wait_status(any_runtime, cid, "stopped")
    any_runtime("delete", cid, check=True)
    assert json.loads((out / "poststop.json").read_text())["status"] == "stopped"


def test_failing_prestart_hook_fails_create(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["hooks"] = {"prestart": [{"path": hook_script(tmp_path, "bad", "exit 7\n")}]}
    cid = any_runtime.new_id()
    result = detached(any_runtime, "create", "--bundle", str(bundle.write()), cid, check=False)
    assert result.returncode == 1
    assert any_runtime("state", cid).returncode == 1


def _failing_poststart(bundle: Bundle, tmp_path: Path) -> Path:
    """Two poststart hooks, the first failing; a poststop hook; a sleeping init."""
    marks = tmp_path / "marks"
    marks.mkdir()
    bundle.config["hooks"] = {
        "poststart": [
            {"path": hook_script(tmp_path, "bad", "exit 7\n")},
            {"path": hook_script(tmp_path, "next", f"touch {marks}/next\n")},
        ],
        "poststop": [{"path": hook_script(tmp_path, "stop", f"touch {marks}/poststop\n")}],
    }
    bundle.config["process"]["args"] = ["sleep", "30"]
    return marks


def test_failing_poststart_hook_fails_run_and_removes_the_container(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """runtime-spec lifecycle step 9: an error, the container stopped and destroyed (poststop
    hooks run), the remaining poststart hooks not. runc 1.1 runs them at create, and fails
    it; galley at start, as runc 1.2 and the spec."""
    marks = _failing_poststart(bundle, tmp_path)
    cid = any_runtime.new_id()
    result = detached(any_runtime, "run", "-d", "--bundle", str(bundle.write()), cid, check=False)
    assert result.returncode == 1
    assert "exit status 7" in result.stderr
    assert any_runtime("state", cid).returncode == 1
    assert (marks / "poststop").exists()
    assert not (marks / "next").exists()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_failing_poststart_hook_fails_start(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    marks = _failing_poststart(bundle, tmp_path)
    cid = runtime.new_id()
    detached(runtime, "create", "--bundle", str(bundle.write()), cid)
    pid = json.loads(runtime("state", cid, check=True).stdout)["pid"]
    result = runtime("start", cid)
    assert result.returncode == 1
    assert "error running hook #0: error running hook: exit status 7" in result.stderr
    assert runtime("state", cid).returncode == 1
    assert not (runtime.root / cid).exists()
    assert (marks / "poststop").exists()
    assert not (marks / "next").exists()
    assert _proc_state(pid) in {"gone", "Z"}  # killed (a zombie until its reaper looks)


def test_run_foreground_with_terminal_relays_stdio(runtime: Runtime, bundle: Bundle) -> None:
    """runc needs a tty of its own here; galley-runc relays a pty to plain pipes too."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "tty; read line; echo got-$line; exit 4"]
    cid = runtime.new_id()
    result = runtime("run", "--bundle", str(bundle.write()), cid, input="hello\n")
    assert result.returncode == 4, result.stderr
    assert "/dev/pts/0\n" in result.stdout  # the pty is also bound onto /dev/console, as runc
    assert "got-hello" in result.stdout
    assert runtime("state", cid).returncode == 1


@pytest.mark.parametrize("closed", ["<&-", ">&-", "2>&-", "<&- >&- 2>&-"])
def test_run_with_stdio_closed(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, closed: str
) -> None:
    """`run` by a caller that closed its stdin, stdout or stderr: the container runs, reads
    EOF from a closed stdin and writes to a closed stdout without harm, and `run` exits with
    its status. galley-runc gives it /dev/null there; it used to give it its own code cache's
    file or an internal pipe at the free number, and to end in a traceback (sys.stdout None)."""
    out = tmp_path / "out"
    out.mkdir()
    bundle.config["mounts"].append(
        {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]}
    )
    probe = (
        "exec 9>/out/log; read line; echo read=$? >&9; echo x; echo y >&2;"
        " for fd in 0 1 2; do echo fd$fd=$(readlink /proc/$$/fd/$fd) >&9; done; exit 3"
    )
    bundle.config["process"]["args"] = ["sh", "-c", probe]
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    argv = [any_runtime.binary, "--root", str(any_runtime.root), "run", "-b", str(bundle.write())]
    shell = f"{shlex.join([*argv, cid])} {closed}"
    result = subprocess.run(["sh", "-c", shell], capture_output=True, timeout=60, check=False)
    assert result.returncode == 3, result
    log = (out / "log").read_text()
    assert "read=1\n" in log, log  # EOF
    if any_runtime.binary == GALLEY_RUNC:  # runc: pipes it copies from and to
        streams = {"<&-": ["fd0"], ">&-": ["fd1"], "2>&-": ["fd2"]}
        for name in streams.get(closed, ["fd0", "fd1", "fd2"]):
            assert f"{name}=/dev/null\n" in log, log


@pytest.mark.parametrize("detach", [True, False])
def test_exec_with_stdio_closed(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, detach: bool
) -> None:
    """`exec` (detached or not) by a caller that closed stdin, stdout and stderr: the process
    runs and reads EOF; galley-runc gives it /dev/null on all three (they were opened
    close-on-exec at first, and an exec'd process went without any stdio at all)."""
    out = tmp_path / "out"
    out.mkdir()
    bundle.config["mounts"].append(
        {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]}
    )
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    probe = (
        "exec 9>/out/log.tmp; read line; echo read=$? >&9;"
        " for fd in 0 1 2; do echo fd$fd=$(readlink /proc/$$/fd/$fd) >&9; done;"
        " mv /out/log.tmp /out/log"
    )
    argv = [any_runtime.binary, "--root", str(any_runtime.root), "exec"]
    argv += [*(["-d"] if detach else []), cid, "sh", "-c", probe]
    shell = f"{shlex.join(argv)} <&- >&- 2>&-"
    result = subprocess.run(["sh", "-c", shell], capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result
    deadline = time.monotonic() + 10
    while not (out / "log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = (out / "log").read_text()
    assert "read=1\n" in log, log
    if any_runtime.binary == GALLEY_RUNC:  # runc: its own fds there (docs/status.md)
        assert log.count("=/dev/null\n") == 3, log


def _caller_with_odd_signals() -> None:
    """A caller's signal setup that execve keeps: SIGTERM and SIGUSR1 blocked, SIGCHLD
    ignored (its children reaped by the kernel)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


@pytest.mark.parametrize("command", ["run", "exec"])
def test_a_callers_signal_setup_does_not_reach_the_container(
    any_runtime: Runtime, bundle: Bundle, command: str
) -> None:
    """`run` or `exec` from a caller that blocks SIGTERM and ignores SIGCHLD: the exit status
    still comes back (galley-runc lost it: its waitpid found no child, and it said 0), and
    the process can be stopped by SIGTERM. galley-runc starts it with nothing blocked; runc
    with what Go's runtime leaves blocked (SIGUSR1 here)."""
    probe = ["sh", "-c", "grep ^SigBlk /proc/$$/status; exit 7"]
    if command == "run":
        bundle.config["process"]["args"] = probe
        cid = any_runtime.new_id()
        any_runtime.created.append(cid)
        args = ["run", "-b", str(bundle.write()), cid]
    else:
        bundle.config["process"]["args"] = ["sleep", "60"]
        args = ["exec", any_runtime.detached(bundle), *probe]
    result = subprocess.run(
        [any_runtime.binary, "--root", str(any_runtime.root), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_caller_with_odd_signals,
        check=False,
    )
    assert result.returncode == 7, result
    blocked = int(result.stdout.split()[-1], 16)
    assert not blocked & (1 << (signal.SIGTERM - 1)), result.stdout
    if any_runtime.binary == GALLEY_RUNC:
        assert blocked == 0, result.stdout


def test_the_library_starts_a_container_with_no_signal_blocked(
    runtime: Runtime, bundle: Bundle
) -> None:
    """galley.oci.cli.main in a process of a library user (galleyd) whose thread blocks
    signals: the container's process starts with none blocked all the same (the stage clears
    the mask before its execve; galley-runc's own entry is not in this path)."""
    bundle.config["process"]["args"] = ["sh", "-c", "grep ^SigBlk /proc/$$/status"]
    cid = runtime.new_id()
    runtime.created.append(cid)
    argv = ["--root", str(runtime.root), "run", "-b", str(bundle.write()), cid]
    code = (
        "import signal, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})\n"
        "from galley.oci.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result
    assert result.stdout.split() == ["SigBlk:", "0" * 16], result.stdout


def test_the_state_is_for_root_alone(any_runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    """As runc: a --root and its missing parents made 0700, the container's directory 0711,
    state.json 0600 (it holds the config, whose environment may carry secrets; galley wrote
    it 0644, and the parents 0755)."""
    bundle.config["process"]["args"] = ["sleep", "30"]
    rt = Runtime(any_runtime.binary, tmp_path / "made" / "for" / "state")
    cid = rt.detached(bundle)
    try:
        modes = {
            path: (tmp_path / path).stat().st_mode & 0o7777
            for path in ["made", "made/for", "made/for/state", f"made/for/state/{cid}"]
        }
        state_json = (rt.root / cid / "state.json").stat().st_mode & 0o7777
    finally:
        rt.cleanup()
    assert list(modes.values()) == [0o700, 0o700, 0o700, 0o711], modes
    assert state_json == 0o600


# beyond the classic few: systemd's stop signal (SIGRTMIN+3), ALRM and PWR ended galley's
# foreground run and exec, and left the container running without them (session 39)
FORWARDED = [signal.SIGTERM, signal.SIGALRM, signal.SIGPWR, signal.SIGRTMIN + 3]
FORWARDED_IDS = ["TERM", "ALRM", "PWR", "RTMIN+3"]


@pytest.mark.parametrize("sig", FORWARDED, ids=FORWARDED_IDS)
def test_run_forwards_signals(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, sig: int
) -> None:
    bundle.config["process"]["args"] = ["sh", "-c", trap(sig)]
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    argv = [any_runtime.binary, "--root", str(any_runtime.root), "run"]
    argv += ["--bundle", str(bundle.write()), cid]
    assert status_after_term(argv, tmp_path / "out", sig) == 7


def test_pid_file_matches_state(any_runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    cid = any_runtime.new_id()
    pid_file = tmp_path / "init.pid"
    detached(
        any_runtime, "create", "--pid-file", str(pid_file), "--bundle", str(bundle.write()), cid
    )
    state = json.loads(any_runtime("state", cid, check=True).stdout)
    assert int(pid_file.read_text()) == state["pid"]


def test_pid_file_never_writes_through_a_planted_link(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The pid file is written through a temporary file of a known name: a symlink or a hard
    link planted there is replaced, never written through."""
    victim, other = tmp_path / "victim", tmp_path / "other"
    victim.write_text("precious\n")
    other.write_text("precious too\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / ".a.pid.tmp").symlink_to(victim)
    os.link(other, pids / ".b.pid.tmp")
    for name in ("a.pid", "b.pid"):
        cid = runtime.new_id()
        made = detached(
            runtime, "create", "--pid-file", str(pids / name), "--bundle", str(bundle.write()), cid
        )
        assert int((pids / name).read_text()) == json.loads(runtime("state", cid).stdout)["pid"]
        assert not (pids / name).is_symlink(), made.stderr
        runtime("delete", "--force", cid, check=True)
    assert victim.read_text() == "precious\n"
    assert other.read_text() == "precious too\n"


def test_delete_force_leaves_a_directory_that_is_no_container_alone(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A directory under --root without state.json, holding anything galley does not put
    there, is not a killed create's: `delete --force` says it does not exist, as runc 1.1
    does for an unknown id, and removes or adds nothing."""
    foreign = runtime.root / "data"
    (foreign / "empty").mkdir(parents=True)
    (foreign / "important.txt").write_text("keep\n")
    result = runtime("delete", "--force", "data")
    assert result.returncode == 1
    assert 'container "data" does not exist' in result.stderr.replace('\\"', '"')
    assert sorted(p.name for p in foreign.iterdir()) == ["empty", "important.txt"]


def dead(pid: int) -> bool:
    """Whether pid has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def test_delete_force_clears_what_a_killed_create_left(
    runtime: Runtime, bundle: Bundle, parent: str, tmp_path: Path
) -> None:
    """galley-runc create SIGKILLed after the container's init is waiting for start, before
    state.json: `delete --force` kills the init and removes its cgroup (runc leaves both)."""
    bundle.config["linux"]["cgroupsPath"] = f"{parent}/c"
    procs = Path(controller_file(f"{parent}/c", "pids", "cgroup.procs"))
    cid = runtime.new_id()
    with create_held_before_its_state(runtime, bundle, cid, tmp_path):
        init = int(procs.read_text().split()[0])
        busy = runtime("delete", "--force", cid)  # the create still runs: left alone
        assert busy.returncode == 1
        assert f"container '{cid}' is busy" in busy.stderr
        assert not dead(init)
    assert not (runtime.root / cid / "state.json").exists()
    assert runtime("state", cid).returncode == 1
    runtime("delete", "--force", cid, check=True)
    assert not (runtime.root / cid).exists()
    assert dead(init)
    assert not procs.parent.exists()


def _bind_at_same_path(bundle: Bundle, directory: Path) -> None:
    """A host directory at its own path in the container: where hooks that run inside it
    (createContainer, startContainer) leave what the test reads."""
    bind = {"destination": str(directory), "type": "bind", "source": str(directory)}
    bundle.config["mounts"].append({**bind, "options": ["rbind"]})


@pytest.mark.parametrize("phase", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_create_hook_still_runs_poststop(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, phase: str
) -> None:
    """runtime-spec: a failing prestart, createRuntime or createContainer hook stops the
    container and the lifecycle goes on to the poststop hooks (runc runs them)."""
    marker = tmp_path / "poststop-ran"
    _bind_at_same_path(bundle, tmp_path)  # createContainer hooks see the container's mounts
    bundle.config["hooks"] = {
        phase: [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {marker}"]}],
    }
    cid = any_runtime.new_id()
    result = any_runtime("run", "--bundle", str(bundle.write()), cid)
    assert result.returncode == 1
    state = json.loads(marker.read_text())
    assert (state["id"], state["status"]) == (cid, "stopped")
    assert any_runtime("state", cid).returncode == 1


def test_start_container_hooks_see_created(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """startContainer hooks run before the process does: runc tells them "created"."""
    seen = tmp_path / "seen"
    _bind_at_same_path(bundle, tmp_path)  # startContainer hooks see the container's mounts
    bundle.config["hooks"] = {
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {seen}"]}]
    }
    run_bundle(any_runtime, bundle)
    assert json.loads(seen.read_text())["status"] == "created"


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_hooks_without_env_inherit_as_runc_s_do(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A hook without `env`: in the runtime's namespaces, the runtime's environment (and not
    the LC_CTYPE that Python's start adds in a C locale); in the container's, the process's
    env, with the HOME the process gets for startContainer (runc's init has made it its own)."""
    out = tmp_path / "env"
    out.mkdir()
    _bind_at_same_path(bundle, out)
    bundle.config["process"]["env"] = ["PATH=/bin:/sbin", "ONE=two"]
    bundle.config["hooks"] = {
        phase: [{"path": "/bin/sh", "args": ["sh", "-c", f"env > {out}/{phase}"]}]
        for phase in ("createRuntime", "createContainer", "startContainer")
    }
    cid = any_runtime.new_id()
    result = any_runtime(
        "run", "-b", str(bundle.write()), cid, env={"PATH": "/usr/bin:/bin", "FOO": "bar"}
    )
    assert result.returncode == 0, result.stderr
    runtime_side = _env_file(out / "createRuntime")
    assert runtime_side.pop("PWD") == str(bundle.path)  # sh's own, from its cwd
    assert runtime_side == {"PATH": "/usr/bin:/bin", "FOO": "bar"}
    container_side = _env_file(out / "createContainer")
    assert container_side.pop("PWD") == str(bundle.rootfs)
    assert container_side == {"PATH": "/bin:/sbin", "ONE": "two"}
    start = _env_file(out / "startContainer")
    assert {k: start[k] for k in ("PATH", "ONE", "HOME")} == {
        "PATH": "/bin:/sbin", "ONE": "two", "HOME": "/root"
    }  # fmt: skip
    assert "FOO" not in start


@pytest.mark.parametrize(
    "caller",
    [
        {"PATH": "/usr/bin:/bin", "odd-name.x": "1", "LC_CTYPE": "C"},
        {"PATH": "/usr/bin:/bin", "IFS": ":", "LANG": ""},
    ],
)
def test_a_runtime_hook_gets_the_callers_environment_as_it_was(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, caller: dict[str, str]
) -> None:
    """Every entry, names no shell takes and a C locale's LC_CTYPE (which Python's start
    changes) included, nothing added: cp copies the hook's own /proc/self/environ."""
    out = tmp_path / "environ"
    bundle.config["hooks"] = {
        "createRuntime": [{"path": "/bin/cp", "args": ["cp", "/proc/self/environ", str(out)]}]
    }
    result = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id(), env=caller)
    assert result.returncode == 0, result.stderr
    seen = sorted(out.read_bytes().split(b"\0")[:-1])
    assert seen == sorted(f"{k}={v}".encode() for k, v in caller.items())


def test_runtime_hooks_run_in_the_bundle_and_poststop_at_delete_in_ours(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """runc's create, run and start work in the bundle, where their hooks run; its delete
    runs the poststop hooks in the caller's directory."""
    out = tmp_path / "pwd"
    out.mkdir()
    bundle.config["process"]["args"] = ["sleep", "10"]
    bundle.config["hooks"] = {
        phase: [{"path": "/bin/sh", "args": ["sh", "-c", f"pwd -P > {out}/{phase}"]}]
        for phase in ("prestart", "createRuntime", "poststart", "poststop")
    }
    cid = any_runtime.new_id()
    bundle.write()
    any_runtime.created.append(cid)
    create = [any_runtime.binary, "--root", str(any_runtime.root), "create", "-b", str(bundle.path)]
    subprocess.run(
        [*create, cid], cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True
    )
    any_runtime("start", cid, cwd="/", check=True)
    any_runtime("delete", "--force", cid, cwd=str(out), check=True)
    seen = {phase: (out / phase).read_text().strip() for phase in bundle.config["hooks"]}
    real = str(bundle.path.resolve())
    assert seen == {"prestart": real, "createRuntime": real, "poststart": real,
                    "poststop": str(out.resolve())}  # fmt: skip


def test_poststop_does_not_run_when_nothing_was_made(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A create refused before the container is being made (a terminal without a console
    socket) runs no poststop hook: there is nothing to clean up after."""
    marker = tmp_path / "poststop-ran"
    bundle.config["process"]["terminal"] = True
    bundle.config["hooks"] = {
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {marker}"]}]
    }
    result = runtime("create", "--bundle", str(bundle.write()), runtime.new_id())
    assert result.returncode == 1 and "tty" in result.stderr
    assert not marker.exists()


_FAILING_HOOK = ["sh", "-c", "echo out; echo err >&2; exit 3"]
_HOOK_ERROR = (
    r"error running hook #1: error running hook: exit status 3, stdout: out\n, stderr: err\n"
)
_INIT_ERROR = f"unable to start container process: error during container init: {_HOOK_ERROR}"


@pytest.mark.parametrize(
    ("phase", "message"),
    [("prestart", _INIT_ERROR), ("createRuntime", _INIT_ERROR),
     ("createContainer", _INIT_ERROR), ("poststart", _HOOK_ERROR)],
)  # fmt: skip
def test_a_failing_hook_is_worded_as_runc_words_it(
    any_runtime: Runtime, bundle: Bundle, phase: str, message: str
) -> None:
    """Down to the hook's index in its phase and what it printed (the log line quotes its
    newlines): tools that match runc's hook errors need no change."""
    bundle.config["hooks"] = {
        phase: [{"path": "/bin/true"}, {"path": "/bin/sh", "args": _FAILING_HOOK}]
    }
    result = run_bundle(any_runtime, bundle, status=1)
    assert f'run failed: {message}"\n' in result.stderr, result.stderr


def test_create_container_hooks_start_in_the_root(any_runtime: Runtime, bundle: Bundle) -> None:
    """runc has changed directory to the rootfs by then: a hook that works on relative paths
    (runc's hooks.bats copies libraries into ./lib) works in the root (galley's started in
    the caller's directory)."""
    bundle.config["hooks"] = {
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "pwd >&2; exit 1"]}]
    }
    result = run_bundle(any_runtime, bundle, status=1)
    assert f"stderr: {os.path.realpath(bundle.rootfs)}\\n" in result.stderr, result.stderr


def test_a_failing_start_container_hook_is_printed_as_runc_prints_it(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """It fails in the container's init once start has returned: runc's init prints the
    error bare on the container's stderr (galley's said "galley-runc init: " first)."""
    bundle.config["hooks"] = {
        "startContainer": [{"path": "/bin/true"}, {"path": "/bin/sh", "args": _FAILING_HOOK}]
    }
    result = run_bundle(any_runtime, bundle, status=1)
    assert result.stderr == _HOOK_ERROR.replace(r"\n", "\n") + "\n"


def test_a_failing_poststop_hook_is_logged_as_an_error(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """runc logs it (--log, in the log's format) at level error; the run still succeeds."""
    bundle.config["hooks"] = {"poststop": [{"path": "/bin/sh", "args": _FAILING_HOOK}]}
    log = tmp_path / "log.json"
    cid = any_runtime.new_id()
    args = ["--log", str(log), "--log-format", "json", "run", "--bundle", str(bundle.write())]
    result = any_runtime(*args, cid)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    expected = _HOOK_ERROR.replace("#1", "#0").replace(r"\n", "\n")
    assert [(e["level"], e["msg"]) for e in lines] == [("error", expected)]


def _move_out_of_its_cgroups(pid: int) -> None:
    """Move pid into the root of each hierarchy it is in, as a hostile or confused manager on
    the host might: the container's cgroup no longer holds its init. (Not the parent: a v2
    parent with controllers on for its children takes no processes, EBUSY.)"""
    paths = {line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().split()}
    for mount in detect().mount_points():
        for path in paths:
            directory = os.path.join(mount, path.lstrip("/"))
            procs = os.path.join(directory, "cgroup.procs")
            if (
                path != "/"
                and os.path.exists(procs)
                and str(pid) in Path(procs).read_text().split()
            ):
                Path(mount, "cgroup.procs").write_text(str(pid))


def _alive(pid: int) -> bool:
    try:
        return proc_state(pid) != "Z"
    except FileNotFoundError:
        return False


def test_delete_force_kills_an_init_that_left_its_cgroup(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """runc's delete --force signals the init itself: an init moved out of its cgroup dies
    too, and delete does not wait for it (galley killed only the cgroup's members, waited
    10 s, removed the state and left the container's process running)."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = any_runtime.detached(bundle)
    pid = json.loads(any_runtime("state", cid, check=True).stdout)["pid"]
    try:
        _move_out_of_its_cgroups(pid)
        t0 = time.monotonic()
        res = any_runtime("delete", "--force", cid)
        assert res.returncode == 0, res.stderr
        assert time.monotonic() - t0 < 5
        deadline = time.monotonic() + 5
        while _alive(pid):
            assert time.monotonic() < deadline, "the container's init outlived delete --force"
            time.sleep(0.05)
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c["unified"].pop("paths"),
        lambda c: c.pop("paths"),
        lambda c: c.update(mode=7),
        lambda c: c["paths"].update(freezer=5),
        lambda c: c.update(paths=["x"]),
        lambda c: c["unified"].update(paths=""),
    ],
)
def test_a_damaged_cgroup_record_fails_exec_clearly_and_delete_goes_on(
    runtime: Runtime, bundle: Bundle, damage: Callable[[dict[str, Any]], object]
) -> None:
    """state.json edited by hand (or by something else): `state` and `list` go by the init
    (a wrongly typed path ended them in a traceback, and `list` listed no container); exec
    says what is wrong, without a traceback; delete --force still kills the init and removes
    the container, and says that the cgroup directories it could not name are left."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    state_file = runtime.root / cid / "state.json"
    saved = json.loads(state_file.read_text())
    record = saved["cgroup"]
    if record.get("mode") != "v1" or not record.get("unified"):
        pytest.skip("a hybrid v1 host's record")
    directories = [*record["paths"].values(), *record["unified"]["paths"].values()]
    pid = saved["pid"]
    damage(record)
    state_file.write_text(json.dumps(saved))
    try:
        result = runtime("state", cid)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "running"
        result = runtime("list", "-q")
        assert result.returncode == 0, result.stderr
        assert cid in result.stdout.split()
        result = runtime("exec", cid, "true")
        assert result.returncode == 255
        assert "the record of the container's cgroup is damaged" in result.stderr
        assert "Traceback" not in result.stderr
        result = runtime("delete", "--force", cid)
        assert result.returncode == 0, result.stderr
        assert "its cgroup directories are left where they are" in result.stderr
        assert _proc_state(pid) in {"gone", "Z"}
        assert runtime("state", cid).returncode == 1
    finally:
        for directory in directories:
            if os.path.isdir(directory):
                os.rmdir(directory)


def test_start_container_hooks_run_under_the_process_rlimits(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """runc's parent sets the rlimits on its init before `start`: the startContainer hooks
    the init runs inherit them (galley's ran with the runtime's own)."""
    seen = tmp_path / "limits"
    _bind_at_same_path(bundle, tmp_path)
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 64}]
    bundle.config["hooks"] = {
        "startContainer": [
            {
                "path": "/bin/sh",
                "args": ["sh", "-c", f"grep 'open files' /proc/self/limits > {seen}"],
            }
        ]
    }
    run_bundle(any_runtime, bundle)
    assert seen.read_text().split()[3:5] == ["64", "64"]


def test_a_hook_s_odd_output_is_quoted_as_logrus_quotes_it(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """The text log quotes a message as Go's %q: control bytes as \\x1b, non-ASCII letters as
    they are (JSON's escapes read \\u001b and \\u00e9)."""
    printed = r'printf "esc\033[1m é \t tab \\ bs \"q\"\n"; exit 2'
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", printed]}]}
    result = run_bundle(any_runtime, bundle, status=1)
    quoted = r'stdout: esc\x1b[1m é \t tab \\ bs \"q\"\n, stderr: "' + "\n"
    assert result.stderr.endswith(quoted), result.stderr


def test_an_exec_whose_pid_file_cannot_be_written_leaves_no_process(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """--pid-file naming a directory: the exec fails and its process is killed, as runc's
    (galley's kept running, so the caller had a failed exec and no pid for what ran)."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = any_runtime.detached(bundle)
    taken = tmp_path / "taken"
    taken.mkdir()
    result = any_runtime("exec", "-d", "--pid-file", str(taken), cid, "sleep", "4242")
    assert result.returncode != 0
    listed = any_runtime("ps", cid, "-o", "pid,args")
    assert listed.returncode == 0, listed.stderr
    deadline = time.monotonic() + 5
    while "4242" in listed.stdout and time.monotonic() < deadline:
        time.sleep(0.05)
        listed = any_runtime("ps", cid, "-o", "pid,args")
    assert "4242" not in listed.stdout, listed.stdout


def test_an_exec_pid_file_path_is_cleaned_as_creates(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """exec used its --pid-file as given: "missing/../x.pid" failed (ENOENT) after the
    process had started; Go's filepath.Abs cleans it first, as create's already was."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = any_runtime.detached(bundle)
    pid_file = f"{tmp_path}/missing/../x.pid"
    result = any_runtime("exec", "-d", "--pid-file", pid_file, cid, "true")
    assert result.returncode == 0, result.stderr
    assert int((tmp_path / "x.pid").read_text()) > 0


def test_the_bundle_is_the_directory_the_kernel_finds(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """--bundle through a symlink and "..": runc changes into it (the kernel takes the link,
    then ".." from where it leads) and records its working directory; galley cleaned the
    text, found another directory (or none) and recorded the link."""
    links = tmp_path / "links"
    links.mkdir()
    (links / "l").symlink_to(bundle.path)
    given = f"{links}/l/../{bundle.path.name}"  # lexically links/<name>, which is not there
    bundle.write()
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    errors = tmp_path / "errors"
    with errors.open("w") as err:  # the created init keeps it open: no pipe
        created = subprocess.run(
            [any_runtime.binary, "--root", str(any_runtime.root), "create", "-b", given, cid],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=30,
            check=False,
        )
    assert created.returncode == 0, errors.read_text()
    state = json.loads(any_runtime("state", cid, check=True).stdout)
    assert state["bundle"] == os.path.realpath(bundle.path)
