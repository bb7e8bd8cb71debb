"""galley-runc's entry point, after bin/galley-runc has found the checkout and installed the
code cache: served from the cache like the rest of galley.oci, where the script's own
Python is compiled afresh by every command (~0.4 ms on the 2-core test VM)."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # `signal` costs ~4 ms
import posix  # not os: galley.kernel.pathnames says why
import sys

from galley.kernel import pathnames

TYPE_CHECKING = False  # typing costs milliseconds; mypy knows this name
if TYPE_CHECKING:
    from typing import NoReturn


def run() -> None:
    """Run the command line galley-runc was given and exit with its status (never returns)."""
    standard_streams()
    # SIGINT ends galley-runc as it ends runc, without a KeyboardInterrupt traceback; the
    # commands that must outlive it (create's cleanup, run's and exec's forwarding) set their
    # own handlers. What a caller set up that would break us, as Go's runtime undoes it for
    # runc: SIGCHLD ignored (children reaped by the kernel: `run` and `exec` would lose the
    # process's exit status) and blocked signals (they could not be forwarded).
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    if moves_a_process(sys.argv[1:]):  # create, run, exec: keep the cgroup window open
        from galley.oci import cgroupwarm  # noqa: PLC0415 - its 6 KB only where it runs

        cgroupwarm.start()
    restore_lc_ctype()
    from galley.oci.cli import main  # noqa: PLC0415

    try:
        status = main()
        # Skip the interpreter's teardown (~6-10 ms): everything the runtime writes is closed
        # or flushed by now, except the standard streams.
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # what we wrote to stdout or stderr has no reader any more
        die_of_sigpipe()
    code = status if isinstance(status, int) else 1
    if "galley.kernel.ffi" in sys.modules:  # create, run, exec: ctypes is loaded anyway
        from galley.kernel import quickexit  # noqa: PLC0415

        quickexit.exit_now(code)  # the caller's wait does not include freeing our memory
    posix._exit(code)


# runc's global options that take a value (the command is the first other word)
_GLOBAL_VALUES = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})


def moves_a_process(argv: list[str]) -> bool:
    """Whether the command line is (very likely) a create, run or exec: one that moves a
    process into a cgroup, whose wait galley.oci.cgroupwarm takes off its path."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, _ = argv[i].partition("=")
        i += 2 if name in _GLOBAL_VALUES and not eq else 1
    return i < len(argv) and argv[i] in {"create", "run", "exec"}


def die_of_sigpipe() -> NoReturn:
    """End as runc (a Go program) ends when its stdout or stderr has no reader: killed by
    SIGPIPE, status 141 in a shell (`galley-runc events | head -1`). Python ignores SIGPIPE
    and raises BrokenPipeError instead, which ended in a traceback and status 1."""
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    posix.kill(posix.getpid(), _signal.SIGPIPE)
    posix._exit(128 + _signal.SIGPIPE)  # not reached


def standard_streams() -> None:
    """sys.stdout and sys.stderr for fds the caller left closed (None at the interpreter's
    start; bin/galley-runc has put /dev/null there since)."""
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115


def restore_lc_ctype(environ: str = "/proc/self/environ") -> None:
    """Put back the caller's LC_CTYPE: in a C locale Python's start sets LC_CTYPE=C.UTF-8 in
    its environment (PEP 538), which hooks would inherit. What the caller passed is still in
    the environment block execve gave this process (environ, the file that shows it): Python
    changes the process's environment, not that block. Without /proc it stays as it is."""
    try:
        original = caller_lc_ctype(pathnames.read_bytes(environ))
    except OSError:
        return
    if posix.environ.get(b"LC_CTYPE") == original:
        return
    if original is None:
        posix.unsetenv(b"LC_CTYPE")
        posix.environ.pop(b"LC_CTYPE", None)
    else:
        posix.putenv(b"LC_CTYPE", original)
        posix.environ[b"LC_CTYPE"] = original


def caller_lc_ctype(block: bytes) -> bytes | None:
    """LC_CTYPE's value in an environment block (NUL-separated NAME=value entries) as getenv
    finds it, the first entry of that name; None without one."""
    for entry in block.split(b"\0"):
        if entry.startswith(b"LC_CTYPE="):
            return entry[len(b"LC_CTYPE=") :]
    return None
