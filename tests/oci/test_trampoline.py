"""galley.oci.trampoline: the sealed static program that execs every container process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from galley.kernel import ns
from galley.oci import trampoline
from galley.oci.seccomp import compile_filter

pytestmark = pytest.mark.skipif(not trampoline.supported(), reason="no trampoline here")
SOURCE = Path(trampoline.__file__).with_name("trampoline_x86_64.s")


def _spawn(
    path: str,
    args: list[str],
    *,
    argv0: str = trampoline.ARGV0,
    before: Callable[[], None] | None = None,
    **params: object,
) -> tuple[int, int]:
    """Fork a child that execs the trampoline with stdout/stderr on a pipe; (pid, read end)."""
    image = trampoline.load(**params)  # type: ignore[arg-type]
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(wfd, 1)
            os.dup2(wfd, 2)
            if before is not None:
                before()
            os.execve(image, [argv0, path, *args], {"GALLEY": "yes"})
        finally:
            os._exit(99)
    os.close(wfd)
    os.close(image)
    return pid, rfd


def _finish(pid: int, rfd: int) -> tuple[int, str]:
    with os.fdopen(rfd) as out:
        text = out.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


def _run(path: str, args: list[str], **kw: object) -> tuple[int, str]:
    kw.setdefault("fifo", None)
    kw.setdefault("no_new_privs", False)
    return _finish(*_spawn(path, args, **kw))  # type: ignore[arg-type]


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("objcopy")), reason="no binutils")
def test_bytes_are_the_assembled_source(tmp_path: Path) -> None:
    obj, binary = tmp_path / "t.o", tmp_path / "t.bin"
    subprocess.run(["as", "-o", str(obj), str(SOURCE)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(binary)], check=True)
    assert binary.read_bytes() == trampoline.X86_64


def test_execs_the_path_with_the_process_argv_and_env() -> None:
    code, out = _run("/bin/cat", ["my-cat", "/proc/self/cmdline"])
    assert (code, out) == (0, "my-cat\0/proc/self/cmdline\0")
    assert _run("/bin/sh", ["sh", "-c", 'echo "$GALLEY"']) == (0, "yes\n")


def test_refuses_any_other_argv0() -> None:
    """What a `#!/proc/self/exe` script would make of it: argv[0] is the shebang's path."""
    code, out = _run("/bin/echo", ["echo", "ran"], argv0="/proc/self/exe")
    assert code == 127
    assert out == "galley-runc init: not a program to run by hand\n"


def test_failed_exec_says_why_in_runcs_words(tmp_path: Path) -> None:
    """runc's init writes "exec <path>: <Go's error text>" and exits 1."""
    assert _run("/nonexistent", ["x"]) == (1, "exec /nonexistent: no such file or directory\n")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x7fELF\x02\x01\x01not really")
    garbage.chmod(0o755)
    assert _run(str(garbage), ["g"]) == (1, f"exec {garbage}: exec format error\n")


def test_error_texts_are_the_c_librarys_as_go_words_them() -> None:
    for number, text in enumerate(trampoline.ERROR_TEXTS[1:], 1):
        expected = os.strerror(number)
        assert text == expected[:1].lower() + expected[1:], number


@pytest.mark.parametrize(
    ("errno_ret", "text"),
    [
        (38, "function not implemented"),
        (40, "too many levels of symbolic links"),
        (41, "errno 41"),
        (1000, "errno 1000"),
    ],
)
def test_an_errno_from_a_filter_is_reported(errno_ret: int, text: str) -> None:
    """A seccomp errnoRet past the texts is written as Go writes it: "errno N"."""
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret}],
    }
    program, flags = compile_filter(profile).raw()  # type: ignore[arg-type]
    code, out = _run("/bin/true", ["true"], no_new_privs=True, program=program, flags=flags)
    assert (code, out) == (1, f"exec /bin/true: {text}\n")


def test_no_new_privs() -> None:
    code, out = _run("/bin/grep", ["grep", "NoNewPrivs", "/proc/self/status"], no_new_privs=True)
    assert (code, out.split()) == (0, ["NoNewPrivs:", "1"])
    code, out = _run("/bin/grep", ["grep", "NoNewPrivs", "/proc/self/status"])
    assert (code, out.split()) == (0, ["NoNewPrivs:", "0"])


def test_loads_the_seccomp_program(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    program, flags = compile_filter(profile).raw()  # type: ignore[arg-type]
    target = tmp_path / "made"
    code, out = _run(
        "/bin/mkdir", ["mkdir", str(target)], no_new_privs=True, program=program, flags=flags
    )
    assert code == 1 and "Operation not permitted" in out
    assert not target.exists()
    assert _run("/bin/mkdir", ["mkdir", str(target)], no_new_privs=True) == (0, "")


def test_a_refused_program_says_so() -> None:
    """seccomp(2) without no_new_privs or CAP_SYS_ADMIN fails: the trampoline reports it."""
    program, flags = compile_filter({"defaultAction": "SCMP_ACT_ALLOW"}).raw()
    code, out = _run(
        "/bin/true", ["true"], program=program, flags=flags, before=lambda: os.setuid(65534)
    )
    assert (code, out) == (127, "galley-runc init: loading the seccomp filter failed\n")


def test_waits_for_start_on_the_fifo_and_closes_it(tmp_path: Path) -> None:
    fifo_path = tmp_path / "exec.fifo"
    os.mkfifo(fifo_path)
    fifo = os.open(fifo_path, os.O_RDWR)
    try:
        os.set_inheritable(fifo, True)
        script = f"test -e /proc/self/fd/{fifo} && echo leaked; echo started"
        pid, rfd = _spawn(
            "/bin/sh",
            ["sh", "-c", script],
            fifo=fifo,
            no_new_privs=False,
            before=lambda: os.setuid(65534),
        )
        time.sleep(0.2)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still waiting for start
        assert Path(f"/proc/{pid}/comm").read_text() == "galley-init\n"
        assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:galley-init")
        assert os.stat(f"/proc/{pid}/fd").st_uid == 0  # not dumpable, though uid 65534
        os.write(fifo, b"0")
        assert _finish(pid, rfd) == (0, "started\n")
    finally:
        os.close(fifo)


def test_the_image_is_sealed() -> None:
    fd = trampoline.load(fifo=None, no_new_privs=False)
    try:
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"\x90", 0x200)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[int]:
    """An exec fifo the trampoline inherits and waits on."""
    os.mkfifo(tmp_path / "exec.fifo")
    fd = os.open(tmp_path / "exec.fifo", os.O_RDWR)
    os.set_inheritable(fd, True)
    yield fd
    os.close(fd)


def test_a_fatal_signal_ends_the_wait_by_that_signal(fifo: int) -> None:
    """While it waits for start it dies of SIGTERM and the others runc's init dies of."""
    pid, rfd = _spawn("/bin/true", ["true"], fifo=fifo, no_new_privs=False)
    time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    assert _finish(pid, rfd) == (-signal.SIGTERM, "")


def test_as_pid_1_of_a_pid_namespace_a_fatal_signal_ends_the_wait_as_an_exit(fifo: int) -> None:
    """Pid 1 of a new pid namespace cannot die of a signal it sends itself (the kernel drops
    it): it exits 128 + the signal, as a shell reports one."""
    middle = os.fork()
    if middle == 0:  # unshare in a child: the test process's own later forks stay in our ns
        try:
            ns.unshare(ns.CLONE_NEWPID)
            pid, rfd = _spawn("/bin/true", ["true"], fifo=fifo, no_new_privs=False)
            time.sleep(0.2)
            os.kill(pid, signal.SIGHUP)
            code, out = _finish(pid, rfd)
            os._exit(code if code >= 0 and out == "" else 1)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(middle, 0)[1]) == 128 + signal.SIGHUP


def test_an_ignored_signal_leaves_it_waiting_and_the_program_gets_the_default(fifo: int) -> None:
    """SIGUSR1 and the others runc's init ignores do not end the wait (the read goes on); the
    program starts with their default actions (execve resets a caught signal)."""
    pid, rfd = _spawn(
        "/bin/sh", ["sh", "-c", "kill -USR1 $$; echo survived"], fifo=fifo, no_new_privs=False
    )
    time.sleep(0.2)
    for sig in trampoline.IGNORED_SIGNALS:
        os.kill(pid, sig)
    time.sleep(0.1)
    assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    os.write(fifo, b"0")
    assert _finish(pid, rfd) == (-signal.SIGUSR1, "")


def test_the_image_is_execute_only() -> None:
    """Whoever may not read it is not dumpable from its first instruction."""
    fd = trampoline.load(fifo=None, no_new_privs=False)
    try:
        assert os.fstat(fd).st_mode & 0o777 == 0o111
    finally:
        os.close(fd)


def test_the_python_stage_treats_signals_as_the_trampoline_does() -> None:
    """With startContainer hooks the stage itself waits for start as pid 1 (in Python): it dies
    of and ignores the same signals as the assembly's `signals` (0x80 + n: ignore n)."""
    table = SOURCE.read_text().split("\nsignals:", 1)[1].split("\nmsg_usage:", 1)[0]
    lines = [line.split("#")[0] for line in table.splitlines()]
    listed = [n for line in lines if ".byte" in line for n in line.split(".byte")[1].split(",")]
    numbers = [int(n, 0) for n in listed if int(n, 0)]
    assert tuple(n for n in numbers if n < 0x80) == trampoline.FATAL_SIGNALS
    assert tuple(n - 0x80 for n in numbers if n >= 0x80) == trampoline.IGNORED_SIGNALS
