"""Hostile review of the forked init stage and the trampoline (galley.oci.stage, init,
trampoline): fds that reach the container, the created init seen from outside and from a
container sharing its pid namespace, the exec stage raced from inside the container, and what
a signal during create leaves behind.
"""

from __future__ import annotations

import copy
import errno
import glob
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.oci.conftest import Bundle, Runtime

pytestmark = pytest.mark.root

# the interpreter galley-runc's first line names (python3.11 here, 3.12 on the device machine)
INTERPRETER = os.path.realpath((REPO / "bin" / "galley-runc").read_text().split()[0][2:])
NOBODY = 65534


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _fd_table(listing: str) -> dict[int, str]:
    """`ls -l /proc/self/fd` as {fd: target}, without ls's own directory fd."""
    table = {}
    for line in listing.splitlines():
        m = re.search(r" (\d+) -> (.*)$", line)
        if m and not re.fullmatch(r"/proc/\d+/fd", m.group(2)):
            table[int(m.group(1))] = m.group(2)
    return table


@pytest.mark.parametrize("mode", ["run", "create", "exec"])
def test_only_stdio_and_preserved_fds_reach_the_process(
    runtime: Runtime, bundle: Bundle, tmp_path: Path, mode: str
) -> None:
    """Only fd 3 passed: fd 4 is a free number in P, where its lock, log, pipes, memfd, fifo
    or cgroup.procs fd could land; none of them may reach the process. With --preserve-fds 1
    the process gets fd 3 alone; with --preserve-fds 2, fd 4 is one the caller did not pass,
    and the command is refused as runc's is (it cannot stat it), before any container."""
    out, passed = tmp_path / "out", tmp_path / "passed-fd"
    passed.write_text("")
    common = ["--log", str(tmp_path / "log"), "--log-format", "json"]
    listing = ["ls", "-l", "/proc/self/fd"]
    cid = runtime.new_id()
    if mode == "exec":
        bundle.config["process"]["args"] = ["sleep", "60"]
        cid = runtime.detached(bundle)
    else:
        bundle.config["process"]["args"] = listing
    fd3 = os.open(passed, os.O_RDONLY)
    try:
        with out.open("w") as stdout:

            def call(preserve: int, *args: str) -> int:
                run = ["--preserve-fds", str(preserve), "--pid-file", str(tmp_path / "pid")]
                command = [args[0], *run, *args[1:]]
                return subprocess.run(
                    [runtime.binary, "--root", str(runtime.root), *common, *command],
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stdout,
                    pass_fds=(3,),
                    preexec_fn=None if fd3 == 3 else (lambda: os.dup2(fd3, 3)),
                    check=False,
                    timeout=20,
                ).returncode

            if mode == "exec":
                assert call(2, "exec", cid, *listing) == 255
                assert "unable to stat preserved-fd 1 (of 2)" in (tmp_path / "log").read_text()
                assert call(1, "exec", cid, *listing) == 0
            else:
                runtime.created.append(cid)
                assert call(2, mode, "-b", str(bundle.write()), cid) == 1
                assert "unable to stat preserved-fd 1 (of 2)" in (tmp_path / "log").read_text()
                assert runtime("state", cid).returncode == 1  # nothing was made
                assert call(1, mode, "-b", str(bundle.write()), cid) == 0
                if mode == "create":
                    subprocess.run(
                        [runtime.binary, "--root", str(runtime.root), "start", cid], check=True
                    )
                    deadline = time.monotonic() + 5
                    while "->" not in out.read_text() and time.monotonic() < deadline:
                        time.sleep(0.02)
    finally:
        os.close(fd3)
    table = _fd_table(out.read_text())
    assert set(table) == {0, 1, 2, 3}, out.read_text()
    assert table[3].endswith("passed-fd"), table
    for target in table.values():
        assert not re.search(r"memfd|fifo|galley|cgroup|pipe:|socket:|/log$", target), table


@pytest.mark.parametrize("command", ["run -d", "create", "exec -d"])
def test_a_callers_closed_stdio_gives_the_container_no_way_out(
    runtime: Runtime, bundle: Bundle, tmp_path: Path, command: str
) -> None:
    """The caller closed stdin, stdout and stderr: whatever fd galley-runc opened there first
    would be the container's stdio. runc 1.1.5 hands its container an O_PATH fd of the host's
    /sys/fs/cgroup that way, and /proc/self/fd/0/../../.. is then the host's / (seen by hand,
    docs/history.md, session 19). galley-runc's are /dev/null: no host path through them."""
    secret = tmp_path / "host-secret"
    secret.write_text("the host's\n")
    out = tmp_path / "out"
    out.mkdir()
    bundle.config["mounts"].append(
        {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]}
    )
    up = "/".join([".."] * len(secret.parts))
    probe = (
        "exec 9>/out/log.tmp; for fd in 0 1 2; do"
        f" cat /proc/$$/fd/$fd/{up}{secret} >&9 2>/dev/null; ls /proc/$$/fd/$fd/{up} >&9 2>&1;"
        " done; mv /out/log.tmp /out/log"
    )
    argv = [runtime.binary, "--root", str(runtime.root)]
    if command == "exec -d":
        bundle.config["process"]["args"] = ["sleep", "60"]
        argv += ["exec", "-d", runtime.detached(bundle), "sh", "-c", probe]
    else:
        bundle.config["process"]["args"] = ["sh", "-c", probe]
        cid = runtime.new_id()
        runtime.created.append(cid)
        argv += [*command.split(), "-b", str(bundle.write()), cid]
    closed = subprocess.run(
        ["sh", "-c", f"{shlex.join(argv)} <&- >&- 2>&-"], timeout=60, check=False
    )
    assert closed.returncode == 0
    if command == "create":
        assert runtime("start", argv[-1]).returncode == 0
    deadline = time.monotonic() + 10
    while not (out / "log").exists():
        assert time.monotonic() < deadline, "the probe never finished"
        time.sleep(0.05)
    log = (out / "log").read_text()
    assert "the host's" not in log, log
    assert log.count("Not a directory") == 3, log  # /dev/null has no parent to walk to


@pytest.mark.parametrize("mode", ["run", "exec"])
def test_cwd_cannot_be_a_leaked_fd(runtime: Runtime, bundle: Bundle, mode: str) -> None:
    """CVE-2024-21626: process.cwd /proc/self/fd/N must never land outside the root (runc 1.1.5
    here is vulnerable: not compared)."""
    cid = ""
    if mode == "exec":
        bundle.config["process"]["args"] = ["sleep", "60"]
        cid = runtime.detached(bundle)
    for n in range(3, 10):
        cwd = f"/proc/self/fd/{n}"
        if mode == "run":
            bundle.config["process"]["args"] = ["pwd"]
            bundle.config["process"]["cwd"] = cwd
            res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
        else:
            res = runtime("exec", "--cwd", cwd, cid, "pwd")
        assert res.returncode != 0, (n, res.stdout, res.stderr)
        assert res.stdout == "", (n, res.stdout)


_CWD_CHECK = """
import posix, sys
sys.path.insert(0, sys.argv[1])
import galley.kernel.mount  # the stage has it loaded (run_stage)
from galley.oci.channel import StageError
from galley.oci.starter import enter_cwd
outside = posix.open(sys.argv[3], posix.O_RDONLY | posix.O_DIRECTORY)
posix.chroot(sys.argv[2])
posix.chdir("/")
def denied():
    raise PermissionError(1, "Operation not permitted")
posix.getcwd = denied  # a seccomp profile that denies getcwd (runtime-tools' linux_seccomp)
real_chdir = posix.chdir
for name, chdir in (("inside", lambda path: real_chdir("/sub")),
                    ("leaked", lambda path: posix.fchdir(outside))):
    posix.chdir = chdir  # /proc/self/fd/N: the leaked fd's directory, outside the root
    try:
        print(name, enter_cwd("/proc/self/fd/N"))
    except StageError as err:
        print(name, "refused:", err)
"""


def test_a_leaked_cwd_is_refused_when_getcwd_is_denied(tmp_path: Path) -> None:
    """CVE-2024-21626 with a seccomp profile that makes getcwd fail (loaded before the cwd is
    entered when noNewPrivileges is false): getcwd cannot say "unreachable", so the cwd is
    checked by climbing "..". galley let such a cwd through unchecked."""
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "host" / "deep").mkdir(parents=True)
    res = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _CWD_CHECK,
            str(REPO / "src"),
            str(tmp_path / "root"),
            str(tmp_path / "host" / "deep"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = res.stdout.splitlines()
    assert lines[0] == "inside True"
    assert lines[1].startswith("leaked refused: "), lines
    assert "outside the container's root" in lines[1]


_ALIASED_CWD_CHECK = """
import os, posix, sys
sys.path.insert(0, sys.argv[1])
import galley.kernel.mount  # the stage has it loaded (run_stage)
from galley.oci.channel import StageError
from galley.oci.starter import enter_cwd
top = sys.argv[2]
os.chdir(top + "/root")
for _ in range(1500):  # 3,000 characters: a cwd chdir takes, but "./.." * 1500 is too long
    os.mkdir("a")
    os.chdir("a")
outside = os.open(top + "/root/sub", os.O_RDONLY | os.O_DIRECTORY)  # the host's mount
os.chroot(top + "/alias")  # a bind of root: the same directory through another mount
os.chdir("/")
def denied():
    raise PermissionError(1, "Operation not permitted")
posix.getcwd = denied
real_chdir = posix.chdir
for name, chdir in (("inside", lambda path: real_chdir("/sub")),
                    ("deep", lambda path: real_chdir("/" + "a/" * 1500)),
                    ("aliased", lambda path: posix.fchdir(outside))):
    posix.chdir = chdir
    try:
        print(name, enter_cwd("/proc/self/fd/N"))
    except StageError as err:
        print(name, "refused:", err)
"""


def test_a_cwd_climbed_to_is_the_root_itself_not_its_directory(tmp_path: Path) -> None:
    """Where getcwd is denied, the climb by ".." stopped at the first directory with the
    root's device and inode: a leaked fd's directory in the rootfs as the host's mount holds
    it passed, though its ".." leads out of the root. And the climb by ever longer paths
    ("./../..") refused a legitimate cwd deeper than PATH_MAX / 3 (ENAMETOOLONG)."""
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "alias").mkdir()
    script = 'mount --bind "$2/root" "$2/alias" && exec "$3" -I -S -c "$4" "$1" "$2"'
    try:
        res = subprocess.run(
            [
                *("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"),
                *(str(REPO / "src"), str(tmp_path), sys.executable, _ALIASED_CWD_CHECK),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:  # rm: too deep for pytest's recursive clean-up
        subprocess.run(["rm", "-rf", str(tmp_path / "root")], check=True)
    lines = res.stdout.splitlines()
    assert lines[:2] == ["inside True", "deep True"], lines
    assert lines[2].startswith("aliased refused: "), lines
    assert "outside the container's root" in lines[2]


_DETACHED_CWD_CHECK = """
import posix, sys
sys.path.insert(0, sys.argv[1])
from galley.kernel import mount as k  # the stage has it loaded (run_stage)
from galley.oci.channel import StageError
from galley.oci.starter import enter_cwd
root = sys.argv[2]
clone = k.open_tree(k.AT_FDCWD, root, k.OPEN_TREE_CLONE | k.OPEN_TREE_CLOEXEC)
posix.chroot(root)
posix.chdir("/")
def denied():
    raise PermissionError(1, "Operation not permitted")
posix.getcwd = denied
real_chdir = posix.chdir
def into_clone(path):
    posix.fchdir(clone)
    real_chdir("sub")
for name, chdir in (("inside", lambda path: real_chdir("/sub")),
                    ("clone", lambda path: posix.fchdir(clone)),
                    ("clone/sub", into_clone)):
    posix.chdir = chdir
    try:
        print(name, enter_cwd("/proc/self/fd/N"))
    except StageError as err:
        print(name, "refused:", err)
"""


def test_a_cwd_in_a_detached_copy_of_the_root_is_refused_when_getcwd_is_denied(
    tmp_path: Path,
) -> None:
    """A leaked fd on a detached clone of the rootfs (open_tree, as galley's own clone for a
    container without a mount namespace is until attached): its root has the root's device
    and inode, and its ".." stays put as the root's does. Only the mount id tells them
    apart; the climb passed it before."""
    (tmp_path / "root" / "sub").mkdir(parents=True)
    res = subprocess.run(
        [
            *("unshare", "-m", "--propagation", "private"),
            *(sys.executable, "-I", "-S", "-c", _DETACHED_CWD_CHECK),
            *(str(REPO / "src"), str(tmp_path / "root")),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = res.stdout.splitlines()
    assert lines[0] == "inside True", lines
    for line, name in zip(lines[1:], ("clone", "clone/sub"), strict=True):
        assert line.startswith(f"{name} refused: "), lines
        assert "outside the container's root" in line


def _as_nobody(path: str) -> list[str]:
    """What a non-root host process can read of path (a /proc entry): the successes."""
    got = []
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            for name in ("environ", "mem", "fd", "exe", "cmdline"):
                try:
                    if name == "fd":
                        os.listdir(f"{path}/fd")
                    elif name == "exe":
                        os.readlink(f"{path}/exe")
                    else:
                        with open(f"{path}/{name}", "rb") as f:
                            f.read(1)
                    os.write(w, f"{name}\n".encode())
                except OSError:
                    pass
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        got = f.read().split()
    os.waitpid(pid, 0)
    return got


def test_created_init_is_sealed_and_opaque(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A created init running as uid 1000 holds a secret in its environment: neither a non-root
    host process nor a second container in its pid namespace (same uid, default caps) may read
    its environ, mem, fds or exe. Its /proc files belong to root: it is not dumpable."""
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["env"].append("SECRET=hunter2-trampoline")
    pid_file = tmp_path / "pid"
    any_runtime.detached(bundle, "create", pid_file)
    pid = int(pid_file.read_text())
    assert os.stat(f"/proc/{pid}/fd").st_uid == 0  # non-dumpable: root owns its /proc files
    assert _as_nobody(f"/proc/{pid}") == ["cmdline"]
    if "galley" in any_runtime.binary:
        exe = f"/proc/{pid}/exe"
        assert os.readlink(exe).startswith("/memfd:galley-init")
        try:
            fd = os.open(exe, os.O_RDWR)
        except OSError as err:  # executing: ETXTBSY
            assert err.errno == errno.ETXTBSY
        else:
            try:
                with pytest.raises(PermissionError):  # sealed
                    os.write(fd, b"x")
            finally:
                os.close(fd)
    peek = (
        "for f in environ mem; do cat /proc/1/$f >/dev/null 2>&1 && echo read $f; done;"
        "ls /proc/1/fd >/dev/null 2>&1 && echo read fd;"
        "readlink /proc/1/exe >/dev/null 2>&1 && echo read exe;"
        "grep -c hunter2 /proc/1/environ 2>/dev/null; echo done"
    )
    peer = copy.deepcopy(bundle.config)
    peer["process"]["args"] = ["sh", "-c", peek]
    peer["process"]["env"] = ["PATH=/bin"]
    peer["linux"]["namespaces"] = [
        n if n["type"] != "pid" else {"type": "pid", "path": f"/proc/{pid}/ns/pid"}
        for n in peer["linux"]["namespaces"]
    ]
    peer_bundle = tmp_path / "peer"
    peer_bundle.mkdir()
    (peer_bundle / "rootfs").symlink_to(bundle.rootfs)
    peer["root"] = {"path": str(bundle.rootfs), "readonly": True}
    (peer_bundle / "config.json").write_text(json.dumps(peer))
    res = any_runtime("run", "-b", str(peer_bundle), any_runtime.new_id())
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["done"], res.stdout


PROBE = (
    "while [ ! -e /stop ]; do"
    "  ls -l /proc/[0-9]*/exe 2>&1 | grep -v busybox >> /seen;"
    "  for e in /proc/[0-9]*/exe; do"
    '    if true 2>/dev/null >> "$e"; then echo "$e $(readlink "$e")" >> /opened; fi;'
    "  done;"
    "done"
)


def _race_execs(
    runtime: Runtime, bundle: Bundle, *, ptrace: bool, execs: int, path: str = "/bin"
) -> str:
    """A container racing `ls -l /proc/*/exe` and opens for writing against `exec`s; what it
    saw (and opened) of other processes' exe links."""
    bundle.config["process"]["args"] = ["sh", "-c", PROBE]
    if ptrace:
        for kind in ("bounding", "effective", "permitted"):
            bundle.config["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")
    before = _digest(INTERPRETER)
    cid = runtime.detached(bundle)
    process = tmp = Path(bundle.path) / "process.json"
    tmp.write_text(
        json.dumps(
            {"args": ["true"], "cwd": "/", "env": [f"PATH={path}"], "user": {"uid": 0, "gid": 0}}
        )
    )
    try:
        for _ in range(execs):
            res = runtime("exec", "-p", str(process), cid)
            assert res.returncode == 0, res.stderr
    finally:
        (bundle.rootfs / "stop").touch()
    time.sleep(0.1)
    assert _digest(INTERPRETER) == before
    opened = bundle.rootfs / "opened"
    assert not opened.exists() or "python" not in opened.read_text(), opened.read_text()
    return (bundle.rootfs / "seen").read_text() if (bundle.rootfs / "seen").exists() else ""


def test_exec_stage_hidden_from_container_with_default_caps(
    runtime: Runtime, bundle: Bundle
) -> None:
    """Root in the container without CAP_SYS_PTRACE never reads /proc/<stage>/exe (the host
    interpreter) nor opens it for writing, while exec runs again and again."""
    seen = _race_execs(runtime, bundle, ptrace=False, execs=12)
    assert "python" not in seen, seen


# A PATH of many missing directories keeps the exec stage in find_executable (Python, inside
# the container's pid namespace) for tens of milliseconds: the race is then won every time.
SLOW_PATH = ":".join(["/x"] * 25000) + ":/bin"


def _stages_seen_read_only(container_ns: str, run_execs: Callable[[], None]) -> list[bool]:
    """Watched from the host while run_execs() runs: for each python process seen in the
    container's pid namespace, whether its exe is on a read-only mount (a re-executed stage's
    is on a detached one: readlink fails, stat works)."""
    stop = threading.Event()
    read_only: list[bool] = []
    interpreter = os.stat(INTERPRETER)

    def watch() -> None:
        while not stop.is_set():
            for link in glob.glob("/proc/[0-9]*/exe"):
                try:
                    if os.readlink(link.replace("exe", "ns/pid")) != container_ns:
                        continue
                    # one open file for both questions: the process may exec meanwhile,
                    # and a second look at /proc/<pid>/exe would see its next program
                    exe = os.open(link, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    st = os.fstat(exe)
                    if (st.st_dev, st.st_ino) == (interpreter.st_dev, interpreter.st_ino):
                        read_only.append(bool(os.fstatvfs(exe).f_flag & os.ST_RDONLY))
                except OSError:
                    pass
                finally:
                    os.close(exe)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run_execs()
    finally:
        stop.set()
        watcher.join()
    return read_only


def test_exec_stage_seen_by_a_tracer_is_read_only(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """With CAP_SYS_PTRACE in the container's bounding set, its processes could open
    /proc/<stage>/exe while an exec stage sets up in their pid namespace: such a stage is the
    interpreter re-executed from a read-only mount, never the writable host file. Watched from
    the host: every python process in the container's pid namespace is on a read-only mount."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    for kind in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")
    pid_file = tmp_path / "init.pid"
    cid = runtime.detached(bundle, pid_file=pid_file)
    container_ns = os.readlink(f"/proc/{int(pid_file.read_text())}/ns/pid")
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["true"], "cwd": "/", "env": [f"PATH={SLOW_PATH}"]}))

    def execs() -> None:
        for _ in range(3):
            res = runtime("exec", "-p", str(process), cid)
            assert res.returncode == 0, res.stderr

    read_only = _stages_seen_read_only(container_ns, execs)
    assert read_only, "no exec stage was seen in the container's pid namespace"
    assert all(read_only)


def test_exec_stage_seen_by_a_tracer_an_earlier_exec_cap_left_is_read_only(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """`exec --cap CAP_SYS_PTRACE` (strace or gdb run in the container) leaves a tracer in the
    container's pid namespace though the config's bounding set has no CAP_SYS_PTRACE: later
    exec stages must be the read-only re-executed interpreter too (they were the forked host
    interpreter, whose /proc/<pid>/exe such a tracer may open)."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    pid_file = tmp_path / "init.pid"
    cid = runtime.detached(bundle, pid_file=pid_file)
    container_ns = os.readlink(f"/proc/{int(pid_file.read_text())}/ns/pid")
    runtime.quiet("exec", "-d", "--cap", "CAP_SYS_PTRACE", cid, "sleep", "60")

    def execs() -> None:
        for _ in range(3):
            res = runtime("exec", "--env", f"PATH={SLOW_PATH}", cid, "true")
            assert res.returncode == 0, res.stderr

    read_only = _stages_seen_read_only(container_ns, execs)
    assert read_only, "no exec stage was seen in the container's pid namespace"
    assert all(read_only)


def test_an_exec_that_brings_a_tracer_is_noted_for_later_execs(tmp_path: Path) -> None:
    """brings_tracer: a process whose bounding set holds CAP_SYS_PTRACE where the config's
    does not, without a user namespace of the container's own; note_tracer marks the
    container for tracers_in."""
    from galley.oci.stage import brings_tracer, note_tracer, tracers_in  # noqa: PLC0415

    def spec(namespaces: list[str], bounding: list[str]) -> Any:
        return {
            "process": {"capabilities": {"bounding": bounding}},
            "linux": {"namespaces": [{"type": kind} for kind in namespaces]},
        }

    tracer = spec(["pid"], ["CAP_SYS_PTRACE"])["process"]
    plain = spec(["pid"], ["CAP_KILL"])
    assert not brings_tracer(plain, plain["process"])
    assert not brings_tracer(spec(["pid", "user"], []), tracer)
    assert not brings_tracer(spec(["pid"], ["CAP_SYS_PTRACE"]), tracer)  # the config's own
    assert brings_tracer(plain, tracer)
    assert not tracers_in(str(tmp_path), plain)
    note_tracer(str(tmp_path))
    assert tracers_in(str(tmp_path), plain)


def test_an_exec_that_brings_a_tracer_waits_for_the_stages_in_flight(
    runtime: Runtime, bundle: Bundle
) -> None:
    """Execs hold execs.lock shared while their stage may be seen; one that brings a tracer
    takes it exclusively before it records the tracer and lets its process run, so no stage
    that read "no tracers" is still in the container when the tracer starts. Here the test
    holds the lock shared, as an exec in flight would."""
    import fcntl  # noqa: PLC0415

    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    state_dir = runtime.root / cid
    holder = os.open(state_dir / "execs.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(holder, fcntl.LOCK_SH)
    argv = [runtime.binary, "--root", str(runtime.root), "exec", "-d", "--cap", "CAP_SYS_PTRACE"]
    tracer = subprocess.Popen([*argv, cid, "sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert tracer.poll() is None, "the tracer's exec did not wait"
        assert not (state_dir / "tracers").exists()
        plain = runtime("exec", cid, "true")  # a shared holder too: not kept waiting
        assert plain.returncode == 0, plain.stderr
    finally:
        os.close(holder)
    assert tracer.wait(timeout=30) == 0
    assert (state_dir / "tracers").exists()


def _leftovers(runtime: Runtime, cid: str) -> list[str]:
    found = glob.glob(f"/sys/fs/cgroup/*/{cid}") + glob.glob(f"/sys/fs/cgroup/*/*/{cid}")
    if (runtime.root / cid).exists():
        found.append(str(runtime.root / cid))
    for link in glob.glob("/proc/[0-9]*/exe"):
        try:
            if os.readlink(link).startswith("/memfd:galley-init"):
                with open(link.replace("exe", "environ"), "rb") as f:
                    if cid.encode() in f.read():
                        found.append(link)
        except OSError:
            pass
    return found


def test_sigkill_to_created_init_then_delete_leaves_nothing(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["process"]["env"].append(f"MARK={bundle.path.name}")
    pid_file = tmp_path / "pid"
    cid = runtime.detached(bundle, "create", pid_file)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while runtime("state", cid).stdout.count('"stopped"') == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert '"stopped"' in runtime("state", cid).stdout
    assert runtime("delete", cid).returncode == 0
    assert _leftovers(runtime, cid) == []


@pytest.mark.parametrize("start_hooks", [False, True])
def test_sigterm_to_created_init_stops_it(
    runtime: Runtime, bundle: Bundle, tmp_path: Path, start_hooks: bool
) -> None:
    """Pid 1 of a new pid namespace drops signals it has no handler for, the host's SIGTERM
    too: the created init catches them (the trampoline, or with startContainer hooks the
    stage itself)."""
    if start_hooks:
        bundle.config["hooks"] = {"startContainer": [{"path": "/bin/true"}]}
    cid = runtime.detached(bundle, "create", tmp_path / "pid")
    assert runtime("kill", cid, "TERM").returncode == 0
    deadline = time.monotonic() + 5
    while '"stopped"' not in runtime("state", cid).stdout and time.monotonic() < deadline:
        time.sleep(0.02)
    assert '"stopped"' in runtime("state", cid).stdout
    assert runtime("delete", cid).returncode == 0
    assert _leftovers(runtime, cid) == []


def test_sigterm_to_create_midway_leaves_nothing(runtime: Runtime, bundle: Bundle) -> None:
    """A createRuntime hook (run by P) sends SIGTERM to P: create must undo everything."""
    bundle.config["hooks"] = {
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -TERM $PPID; sleep 1"]}]
    }
    cid = runtime.new_id()
    res = runtime("create", "-b", str(bundle.write()), cid)
    assert res.returncode != 0
    time.sleep(0.3)
    assert _leftovers(runtime, cid) == []


SIGNAL_AFTER_RECORD = """
import os, signal, sys
sys.path.insert(0, {src!r})
from galley.oci.commands import lifecycle
record = lifecycle._record
def record_then_signal(*args, **kwargs):
    state = record(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode
    return state
lifecycle._record = record_then_signal
from galley.oci.cli import main
sys.exit(main({argv!r}))
"""


def test_sigterm_after_the_launch_leaves_nothing(runtime: Runtime, bundle: Bundle) -> None:
    """A signal once the container was launched but before create had finished its state
    (a crash-test harness hit it twice in 150 tries): create removed the state directory and
    left the container running, beyond `delete`'s reach."""
    cid = runtime.new_id()
    bundle.config["process"]["env"].append(f"MARK={cid}")
    argv = ["--root", str(runtime.root), "create", "-b", str(bundle.write()), cid]
    script = SIGNAL_AFTER_RECORD.format(src=str(REPO / "src"), argv=argv)
    res = subprocess.run(
        ["/usr/bin/python3", "-IS", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=30,
        check=False,
    )
    assert res.returncode == -signal.SIGTERM, res.stderr
    time.sleep(0.3)
    assert _leftovers(runtime, cid) == []


def test_hooks_of_a_signalled_create_can_be_signalled(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The poststop hooks create runs while it undoes its work after SIGTERM: they once
    inherited SIGTERM, SIGINT and SIGHUP ignored, and could not be stopped."""
    seen = tmp_path / "sigign"
    bundle.config["hooks"] = {
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -TERM $PPID; sleep 1"]}],
        "poststop": [
            {"path": "/bin/sh", "args": ["sh", "-c", f"grep SigIgn /proc/self/status > {seen}"]}
        ],
    }
    res = runtime("create", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode != 0
    ignored = int(seen.read_text().split()[1], 16)
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        assert not ignored & 1 << (signum - 1), f"{signum} ignored: {ignored:#x}"


def test_which_stages_are_re_executed_for_tracers() -> None:
    """seen_by_tracers: exec with CAP_SYS_PTRACE in the bounding set, or a create joining a
    pid namespace by path, unless the container has its own user namespace."""
    from galley.oci.stage import seen_by_tracers  # noqa: PLC0415

    def spec(namespaces: list[dict[str, str]], bounding: list[str]) -> Any:
        return {
            "process": {"capabilities": {"bounding": bounding}},
            "linux": {"namespaces": namespaces},
        }

    own = [{"type": "pid"}, {"type": "mount"}]
    joined = [{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}]
    assert seen_by_tracers(spec(own, ["CAP_SYS_PTRACE"]), execs=True)
    assert not seen_by_tracers(spec(own, ["CAP_KILL"]), execs=True)
    assert not seen_by_tracers(spec(own, ["CAP_SYS_PTRACE"]), execs=False)
    assert seen_by_tracers(spec(joined, []), execs=False)
    with_user = [*own, {"type": "user"}]
    assert not seen_by_tracers(spec(with_user, ["CAP_SYS_PTRACE"]), execs=True)
    assert not seen_by_tracers(spec([*joined, {"type": "user"}], []), execs=False)


def test_abandoning_a_reaped_stage_signals_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the stage is reaped its pid may belong to another process: abandon kills only a
    stage that is still our child."""
    from galley.oci import stage as stage_module  # noqa: PLC0415

    killed: list[int] = []
    monkeypatch.setattr(stage_module, "kill_started", killed.append)
    alive = stage_module.Stage(0, creates=False)
    alive.abandon()
    assert killed == [alive.pid]
    os.waitpid(alive.pid, 0)  # what kill_started would have done
    gone = stage_module.Stage(0, creates=False)
    gone.channel.close()  # the stage reads EOF and exits
    os.waitpid(gone.pid, 0)
    gone.abandon()
    assert killed == [alive.pid]


def test_exec_stage_shows_no_host_mounts_to_the_container(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """/proc/<pid>/mountinfo (and mountstats, net/*) take no ptrace check: any process reads
    them for every pid it sees. An exec stage must never be seen in the container's pid
    namespace before it has joined the mount namespace (a stage forked straight into the pid
    namespace showed the host's whole mount table to the container's root; runc's init, too,
    enters the pid namespace after the others)."""
    host_only = tmp_path / "host-only-mount"
    host_only.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "galley-test", str(host_only)], check=True)
    try:
        probe = (
            f"x={host_only.parent}; x=$x/host-only-mount;"  # not in the probe's own cmdline
            " while [ ! -e /stop ]; do grep -l $x /proc/[0-9]*/mountinfo >> /seen 2>/dev/null;"
            " done"
        )
        seen = _probe_during_execs(runtime, bundle, probe, 6)
        assert not seen, seen
    finally:
        runtime.cleanup()
        subprocess.run(["umount", str(host_only)], check=True)


def test_exec_stage_shows_not_our_command_line_to_the_container(
    runtime: Runtime, bundle: Bundle
) -> None:
    """/proc/<pid>/cmdline takes no ptrace check either: while an exec's process is still the
    stage (Python, in the container's pid namespace), it showed galley-runc's whole command
    line, --env values included. The stage reads "galley-runc init" (runc's: "runc init")."""
    probe = (  # the patterns go to a file through the shell's own echo: no process's
        # command line (the probe's, grep's) ever holds the secret's name
        'g=galley-runc s=SECRET; echo "$g init" > /patterns; echo "${s}_VALUE" >> /patterns;'
        " while [ ! -e /stop ]; do cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' |"
        " grep -o -f /patterns >> /seen; done"
    )
    seen = set(_probe_during_execs(runtime, bundle, probe, 4, "SECRET_" + "VALUE=x").split())
    assert "init" in seen, "no exec stage was seen"
    assert "SECRET_VALUE" not in seen, seen


def _probe_during_execs(runtime: Runtime, bundle: Bundle, probe: str, execs: int, *env: str) -> str:
    """What a container running probe (until /stop exists) wrote to /seen while execs ran
    into it, kept in Python for a while by a slow PATH (plus env)."""
    bundle.config["process"]["args"] = ["sh", "-c", probe]
    cid = runtime.detached(bundle)
    options = [arg for value in (*env, f"PATH={SLOW_PATH}") for arg in ("--env", value)]
    try:
        for _ in range(execs):
            res = runtime("exec", *options, cid, "true")
            assert res.returncode == 0, res.stderr
    finally:
        (bundle.rootfs / "stop").touch()
    seen = bundle.rootfs / "seen"
    return seen.read_text() if seen.exists() else ""
