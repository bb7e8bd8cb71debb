"""Ending a process without making its parent wait while the kernel frees its memory.

An exiting process frees its address space before its parent hears of the exit. For a
galley-runc create, run or exec, a Python process with ~10 MB resident, that takes 1-2 ms of
the caller's time: containerd's shim waits for `create`, a kubelet's probe for `exec`. The
kernel frees an address space when the last process using it lets go of it. So exit_now
first starts a helper that shares it (clone with CLONE_VM) and does nothing but sleep for a
few milliseconds: the parent's wait returns as soon as the rest of the exit is done, and the
helper frees the memory when its sleep ends, on its own time.

The helper runs no Python: glibc's clone() calls libc's usleep on a stack of its own, then
exits. It gets no file descriptors: all are closed first, so that a caller reading to EOF is
not kept waiting (where close_range fails, no helper is started). It has every signal
blocked, so no Python handler runs in it, and sends no exit signal. Once this process is
gone it is an orphan, which init or the caller's subreaper reaps as any other. Starting it
costs ~0.1 ms, so only a process that has loaded the ctypes layer for other reasons uses it
(see bin/galley-runc).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import posix

from galley.kernel import ffi, libc, proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

CLONE_VM = 0x00000100
HELPER_SLEEP_US = 10_000  # the exit that follows the clone takes microseconds
_STACK_SIZE = 64 * 1024
_stacks: list[object] = []  # never freed: a helper may still be sleeping on one


def exit_now(status: int) -> NoReturn:
    """_exit(status), leaving the freeing of the address space to a short-lived helper.
    Everything the process writes must be flushed by now: its descriptors are closed."""
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        proc.close_from(0)
    except OSError:  # no close_range (Linux < 5.9, a seccomp filter): no helper either
        posix._exit(status)
    start_helper(HELPER_SLEEP_US)
    posix._exit(status)


def start_helper(sleep_us: int) -> int:
    """A process that shares this one's address space, sleeps sleep_us and exits: its pid, or
    -1 when the clone failed (no memory, a pids limit; the exit then frees as usual). It
    inherits the signal mask and a copy of the descriptor table."""
    stack = ffi.create_string_buffer(_STACK_SIZE)
    _stacks.append(stack)
    clone = libc.function("clone", ffi.c_int, ffi.c_void_p, ffi.c_void_p, ffi.c_int, ffi.c_void_p)
    usleep = ffi.c_void_p.from_address(ffi.addressof(libc.libc().usleep)).value
    return int(clone(usleep, ffi.addressof(stack) + _STACK_SIZE, CLONE_VM, sleep_us))
