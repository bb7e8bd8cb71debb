"""galley-runc's entry point, after bin/galley-runc has found the checkout and installed the
code cache: served from the cache like the rest of galley.oci, where the script's own
Python is compiled afresh by every command (~0.4 ms on the 2-core test VM)."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # `signal` costs ~4 ms
import posix  # not os: galley.kernel.pathnames says why
import sys


def run() -> None:
    """Run the command line galley-runc was given and exit with its status (never returns)."""
    # SIGINT ends galley-runc as it ends runc, without a KeyboardInterrupt traceback; the
    # commands that must outlive it (create's cleanup, run's and exec's forwarding) set their
    # own handlers.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    restore_lc_ctype(sys._xoptions.get("galley.lc_ctype"))
    from galley.oci import cgroupwarm  # noqa: PLC0415

    if cgroupwarm.moves_a_process(sys.argv[1:]):  # create, run, exec: keep the window open
        cgroupwarm.start()
    from galley.oci.cli import main  # noqa: PLC0415

    status = main()
    # Skip the interpreter's teardown (~6-10 ms): everything the runtime writes is closed or
    # flushed by now, except the standard streams.
    sys.stdout.flush()
    sys.stderr.flush()
    code = status if isinstance(status, int) else 1
    if "galley.kernel.ffi" in sys.modules:  # create, run, exec: ctypes is loaded anyway
        from galley.kernel import quickexit  # noqa: PLC0415

        quickexit.exit_now(code)  # the caller's wait does not include freeing our memory
    posix._exit(code)


def restore_lc_ctype(value: str | bool | None) -> None:
    """Put back the caller's LC_CTYPE, which bin/galley-runc's shell part passed as `-X
    galley.lc_ctype[=value]` (True: it had none): in a C locale Python's start sets
    LC_CTYPE=C.UTF-8 in its environment (PEP 538), which hooks would inherit."""
    if value is True:
        posix.unsetenv("LC_CTYPE")
        posix.environ.pop(b"LC_CTYPE", None)
    elif isinstance(value, str):
        posix.putenv("LC_CTYPE", value)
        posix.environ[b"LC_CTYPE"] = value.encode(errors="surrogateescape")
