"""Fixtures for the OCI runtime tests: busybox bundles and a runtime caller with its own --root.

`runtime` runs galley-runc; tests that compare behaviour are parametrised over RUNTIMES and
run the same bundle under runc where runc is installed.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from galley.fixtures.busybox import default_config, make_rootfs
from tests.conftest import GALLEY_RUNC
from tests.oci.cgroup_fixtures import Children, children, remove_everywhere, unique_parent

RUNC = shutil.which("runc")
RUNTIMES = {"galley": GALLEY_RUNC, **({"runc": RUNC} if RUNC else {})}
# runc 1.1.5 leaves the tmpfs it mounts at /sys/fs/cgroup on a v1 host read-write where a
# config asks for "ro" (docker's, umoci's); galley-runc mounts it as asked (docs/status.md).
# To compare mountinfo lines: runc's text .replace(*RUNC_CGROUP_TMPFS).
RUNC_CGROUP_TMPFS = ("/sys/fs/cgroup rw,", "/sys/fs/cgroup ro,")
# A shell command printing the container's memory limit, on a v1 host (this one) or a v2 one.
MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pristine busybox root filesystem per session; bundles copy it."""
    return make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@dataclass
class Bundle:
    """An OCI bundle in a temporary directory; edit .config, then .write()."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def write(self) -> Path:
        """config.json, replaced whole (a create reading it meanwhile sees one or the other)."""
        tmp = self.path / f".config.json.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(self.config, indent=2))
        tmp.rename(self.path / "config.json")
        return self.path


@pytest.fixture
def bundle(tmp_path: Path, busybox_rootfs: Path) -> Bundle:
    """A busybox bundle running `true`, without a terminal; the rootfs is a fresh copy."""
    path = tmp_path / "bundle"
    path.mkdir()
    # cp -a keeps busybox's applets as hard links (copytree would copy the binary 270 times).
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(path / "rootfs")], check=True)
    config = copy.deepcopy(default_config(["true"]))
    return Bundle(path=path, config=config)


@dataclass
class Runtime:
    """Calls an OCI runtime binary with its own --root, and deletes what it created."""

    binary: str
    root: Path
    created: list[str] = field(default_factory=list)

    def __call__(
        self, *args: str, check: bool = False, timeout: float = 30, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        if len(args) > 1 and args[0] in {"create", "run"}:
            self.created.append(args[-1])
        return subprocess.run(
            [self.binary, "--root", str(self.root), *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a command of the runtime without waiting, its stdio on /dev/null."""
        if len(args) > 1 and args[0] in {"create", "run"}:
            self.created.append(args[-1])
        return subprocess.Popen(
            [self.binary, "--root", str(self.root), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def detached(self, bundle: Bundle, command: str = "run", pid_file: Path | None = None) -> str:
        """`create`, or `run -d`, the bundle with stdio on /dev/null; the new container's id."""
        cid = self.new_id()
        self.created.append(cid)
        args = [command, *(["-d"] if command == "run" else [])]
        args += [*(["--pid-file", str(pid_file)] if pid_file else []), "-b", str(bundle.write())]
        self.quiet(*args, cid)
        return cid

    def quiet(self, *args: str) -> None:
        """A command that leaves a process running (run -d, exec -d), with its stdio on
        /dev/null, which that process keeps (a pipe would hold the caller's read open)."""
        subprocess.run(
            [self.binary, "--root", str(self.root), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=30,
        )

    def new_id(self) -> str:
        return f"t-{uuid.uuid4().hex[:12]}"

    def cleanup(self) -> None:
        for cid in self.created:
            subprocess.run(
                [self.binary, "--root", str(self.root), "delete", "--force", cid],
                capture_output=True,
                timeout=30,
                check=False,
            )


def status(rt: Runtime, cid: str) -> str:
    """The container's status as `state` prints it."""
    return str(json.loads(rt("state", cid, check=True).stdout)["status"])


def wait_status(rt: Runtime, cid: str, want: str, timeout: float = 10) -> None:
    """Poll `state` until the container's status is want; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while (got := status(rt, cid)) != want:
        assert time.monotonic() < deadline, f"{cid} stayed {got}, wanted {want}"
        time.sleep(0.02)


@pytest.fixture(params=sorted(RUNTIMES))
def any_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """galley-runc and, where installed, runc: the same test runs against both."""
    rt = Runtime(RUNTIMES[request.param], tmp_path / f"state-{request.param}")
    yield rt
    rt.cleanup()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """galley-runc with a private --root."""
    rt = Runtime(GALLEY_RUNC, tmp_path / "state")
    yield rt
    rt.cleanup()


@pytest.fixture
def parent() -> Iterator[str]:
    """A fresh cgroup path (e.g. /galley-test-…), removed from every hierarchy afterwards."""
    path = unique_parent()
    try:
        yield path
    finally:
        remove_everywhere(path)


@pytest.fixture
def kids() -> Iterator[Children]:
    """Sleeping child processes to put into cgroups; killed and reaped afterwards."""
    yield from children()


# A shell that prints "ready" and exits 7 on SIGTERM: what signal forwarding is tested with.
TRAP_TERM = "trap 'exit 7' TERM; echo ready; sleep 30 & wait"


def run_bundle(
    runtime: Runtime, bundle: Bundle, *, status: int = 0
) -> subprocess.CompletedProcess[str]:
    """`run` of the bundle under a new id, which must end with status (its stderr shown when
    it does not); what it printed."""
    result = runtime("run", "--bundle", str(bundle.write()), runtime.new_id())
    assert result.returncode == status, result.stderr
    return result


def trap(sig: int) -> str:
    """TRAP_TERM for another signal (by number: busybox's trap takes one)."""
    return f"trap 'exit 7' {sig}; echo ready; sleep 30 & wait"


def status_after_term(argv: list[str], out: Path, sig: int = signal.SIGTERM) -> int:
    """Run argv (a runtime running TRAP_TERM, or trap(sig), in the foreground) with its output
    in out; once "ready" shows, send it sig; its exit status (7 when the signal reached the
    shell)."""
    with out.open("w") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
        try:
            deadline = time.monotonic() + 10
            while "ready" not in out.read_text():
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.01)
            proc.send_signal(sig)
            return proc.wait(timeout=10)
        finally:
            proc.kill()
            proc.wait()


def create_in_files(
    rt: Runtime, bundle: Bundle, cid: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`create` as the suite runs it: stdio into fresh files in the bundle, stdin /dev/null.

    Files, not pipes: the container keeps the stdio it inherits, and a pipe would stay open
    until it exits. The files are left for the caller to read (stdout-<n>, stderr-<n>)."""
    bundle.write()
    rt.created.append(cid)
    tag = uuid.uuid4().hex[:8]
    out_path, err_path = bundle.path / f"stdout-{tag}", bundle.path / f"stderr-{tag}"
    with out_path.open("w+") as out, err_path.open("w+") as err:
        proc = subprocess.run(
            [
                rt.binary,
                "--root",
                str(rt.root),
                "create",
                *extra,
                "--bundle",
                str(bundle.path),
                cid,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            timeout=30,
            check=False,
            env=env,
        )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, out_path.read_text(), err_path.read_text()
    )


def exec_with_console(runtime: Runtime, cid: str, process: dict[str, object], tmp: Path) -> str:
    """exec -d with a terminal, the pty master received on a console socket; its stderr."""
    process_json = tmp / "process.json"
    process_json.write_text(json.dumps(process))
    sock_path = str(tmp / "console.sock")
    received: list[int] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(sock_path)
        server.listen(1)
        server.settimeout(20)

        def accept() -> None:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
                received.extend(fds)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        result = runtime("exec", "-d", "--console-socket", sock_path, "-p", str(process_json), cid)
        server.close()
        thread.join(5)
    for fd in received:
        os.close(fd)
    return result.stderr


@contextmanager
def mount_namespace(setup: str = ":") -> Iterator[int]:
    """The pid of a process sleeping in a new private mount namespace, once the shell
    commands setup have run there; killed (and the namespace with it) on exit."""
    proc = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"{setup} && echo ready && exec sleep 600",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", f"mount namespace setup failed: {setup}"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def in_namespace(rt: Runtime, holder: int, directory: Path) -> Iterator[Runtime]:
    """rt, every command of it run in holder's mount namespace: through a wrapper in
    directory that has rt's file name (tests tell galley from runc by it); what it created
    is deleted on exit."""
    wrapper = directory / os.path.basename(rt.binary)
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nexec nsenter -t {holder} -m -- {rt.binary} "$@"\n')
    wrapper.chmod(0o755)
    inside = Runtime(str(wrapper), rt.root)
    try:
        yield inside
    finally:
        inside.cleanup()


@contextmanager
def create_held_before_its_state(
    rt: Runtime, bundle: Bundle, cid: str, directory: Path
) -> Iterator[int]:
    """`create` stopped after the container's init waits for start and before state.json is
    written: with a terminal, it hands the pty master to a console socket whose backlog is
    kept full here, so its connect waits. Yields the create's pid once it waits there, and
    SIGKILLs it on exit (what a crash midway looks like)."""
    bundle.config["process"]["terminal"] = True
    path = str(directory / "console.sock")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as filler:
        listener.bind(path)
        listener.listen(0)
        filler.connect(path)  # the one connection a backlog of 0 takes: the next one waits
        create = rt.popen("create", "--console-socket", path, "--bundle", str(bundle.write()), cid)
        try:
            deadline = time.monotonic() + 10
            while not _waiting_in(create.pid, "unix_wait_for_peer"):
                assert create.poll() is None, "create ended before its console socket"
                assert time.monotonic() < deadline, "create never reached its console socket"
                time.sleep(0.01)
            yield create.pid
        finally:
            create.kill()
            create.wait()


def _waiting_in(pid: int, wchan: str) -> bool:
    """Whether pid, or the process its wrapper became (nsenter forks), sleeps in wchan."""
    for task in [pid, *_children(pid)]:
        try:
            if Path(f"/proc/{task}/wchan").read_text() == wchan:
                return True
        except OSError:
            continue
    return False


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def under_a_tty(
    command: list[str],
    tmp_path: Path,
    typed: bytes = b"",
    *,
    held: bool = False,
    env: dict[str, str] | None = None,
) -> bytes:
    """Run command on a pty of its own (script(1)), with typed already typed at its terminal;
    the bytes its terminal received. At the end of its input script types EOF at the
    terminal: held keeps that input open until command ends (podman takes the EOF for the
    user leaving, maybe before the container's output came)."""
    typescript = tmp_path / "typescript"
    argv = ["script", "-qec", shlex.join(command), str(typescript)]
    if not held:
        subprocess.run(
            argv, input=typed, stdout=subprocess.DEVNULL, timeout=60, check=True, env=env
        )
        return typescript.read_bytes()
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env) as proc:
        assert proc.stdin is not None
        proc.stdin.write(typed)
        proc.stdin.flush()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return typescript.read_bytes()


@pytest.fixture
def open_bundle(bundle: Bundle) -> Iterator[Bundle]:
    """The bundle moved where a mapped (unprivileged on the host) root can reach it."""
    top = tempfile.mkdtemp(prefix="galley-userns-")
    os.chmod(top, 0o755)
    moved = Bundle(path=Path(shutil.move(str(bundle.path), top)), config=bundle.config)
    try:
        yield moved
    finally:
        shutil.rmtree(top, ignore_errors=True)


def in_user_namespace(bundle: Bundle) -> None:
    """Its own user namespace (root is host 100000, group 200000), the mounts a mapped root
    may make, and no resources."""
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    linux.pop("resources", None)
    bundle.config["mounts"] = [
        m for m in bundle.config["mounts"] if m["type"] in ("proc", "tmpfs", "devpts")
    ]
