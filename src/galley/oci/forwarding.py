"""The signals a foreground `run` or `exec` passes on to the container's process.

runc relays every signal it can catch but SIGCHLD and SIGURG (its Go runtime's). galley does
the same, less what concerns the runtime itself: the faults a signal reports (SEGV, BUS, FPE,
ILL, TRAP, ABRT, SYS), the job control of the caller's shell (TSTP, TTIN, TTOU: `run` in a
shell's background stops on its terminal as any program does), and SIGPIPE and SIGXFSZ, which
the interpreter ignores for its own writes. Forwarded so: HUP, INT, QUIT, USR1, USR2, ALRM,
TERM, STKFLT, CONT, XCPU, VTALRM, PROF, WINCH, IO, PWR and the real-time signals (SIGRTMIN+3
is systemd's stop signal). Until session 39 only eight were, and any other ended the runtime
and left the container running without it.
"""

from __future__ import annotations

_NAMES = (
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCONT",
    "SIGXCPU",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
)


def forwarded_signals() -> list[int]:
    """The numbers of the signals to pass on (those this platform has)."""
    import _signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` costs ~4 ms

    named = [getattr(_signal, name) for name in _NAMES if hasattr(_signal, name)]
    return named + list(range(_signal.SIGRTMIN, _signal.SIGRTMAX + 1))
