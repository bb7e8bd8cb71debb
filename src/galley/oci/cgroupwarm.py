"""Keep the kernel's window for cheap cgroup migrations open until create or exec needs it.

Writing a pid to cgroup.procs takes the cgroup threadgroup rwsem for writing. The first writer
waits for an RCU grace period (rcu_sync_enter: 6-20 ms on the 2-core test VM, longer while
both cores are busy), holding cgroup_mutex meanwhile; a writer that comes within one to two
grace periods of the last writer's exit does not wait. runc pays that wait on its critical
path. galley-runc pays it in the background: a thread started here, first thing in
galley.oci.entry, before anything else is imported, makes a no-op migration at once and one
every few milliseconds after it, which keeps the window open until P has moved the
container's process (stop()), or for at most ~0.1 s. P's own migration comes ~25 ms after
the thread's first, which has waited out the grace period by then. (Until session 15 a
/bin/sh part of bin/galley-runc made the first migration before the interpreter started,
~14 ms earlier: beside the thread it gained nothing after a quiet spell, and it cost every
command ~1 ms.)

The GIL decides when the thread runs. Left to take it when P gave it up, at Python's 5 ms
switch interval, the thread made its first write 0.3-10 ms after start(), and its later ones
5-9 ms apart while P imported: a grace period that began late, or began again once the
window had closed between two writes, held cgroup_mutex when P came to make the container's
cgroup, and P's mkdir waited behind it, up to 17 ms (more than 2 ms in 22 of 60 runs;
session 30, with marks in a copy). So start() returns only once the thread is at its first
write, and the switch interval is short until stop(): more than 2 ms in 4 of 60 runs, and a
`run` 1-2 ms faster (docs/history.md, session 30).

The thread moves only itself: it writes its own thread id to `tasks` (v1) or `cgroup.threads`
(v2) of the cgroup /proc/self/cgroup names, which takes the same rwsem (a pid of 0 would
not). Where that name does not lead back to our own cgroup (a cgroup namespace with the
host's cgroupfs mounted, say), the thread lands elsewhere, never the process, whose
children (the stage, hooks) are born where it is. It starts with every signal blocked, so
that the kernel never hands it a signal the main thread has blocked (the stage's fork
blocks them all).

Which commands start it is a guess at the command (galley.oci.entry.moves_a_process): a
wrong guess costs a few no-op migrations; the other commands do not import this module.
Best effort: any failure (an unusual mount layout, a read-only cgroupfs) just leaves the
later write to wait as before. Only `_thread`, `_signal`, `time`, `sys` and
posix, all loaded by the interpreter's start: this runs before anything else is imported.
The thread imports nothing and takes no lock another thread could need (start() waits on one
the thread only releases): create and exec fork their stage while it may be in a write, and
the child has only the forking thread.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # `signal` costs ~4 ms
import _thread
import posix
import sys
import time

from galley.kernel import pathnames

ROOT = "/sys/fs/cgroup"


def own_threads_file() -> str | None:
    """The file that moves one thread into the cgroup this process is in, on one mounted
    hierarchy: `tasks` (v1) or `cgroup.threads` (v2)."""
    try:
        lines = pathnames.read_text("/proc/self/cgroup", "surrogateescape").splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:  # the unified hierarchy
            directories, name = [f"{ROOT}{path}", f"{ROOT}/unified{path}"], "cgroup.threads"
        else:
            directories, name = [f"{ROOT}/{controllers.removeprefix('name=')}{path}"], "tasks"
        for directory in directories:
            threads = pathnames.join(directory, name)
            if pathnames.exists(threads):
                return threads
    return None


INTERVAL = 0.003  # seconds between writes: well under the shortest window (~6 ms)
MAX_WRITES = 30
# How long start() waits for the thread to begin (it is the thread's first GIL).
BEGIN_WITHIN = 0.002
# While the thread runs: how long it waits for the GIL after each sleep, at the most. At
# Python's default (5 ms) its writes came 5-9 ms apart while P imported, and the window
# closed between them: the next write waited a grace period again, holding cgroup_mutex,
# and P's mkdir of the container's cgroup behind it.
SWITCH_INTERVAL = 0.0005
_stopped: list[bool] = []
_switch_interval: list[float] = []  # the interval before start(), while the thread runs


def _keep_window_open(begun: _thread.LockType) -> None:
    """The thread: no-op migrations until stop() (the first may wait a grace period); begun
    is released once the first is about to be made (or none will be)."""
    try:
        _migrate(begun)
    finally:
        _give_interval_back()  # ended by itself, or never began: a command keeps no short one


def _migrate(begun: _thread.LockType) -> None:
    try:
        threads = own_threads_file()
        if threads is None:
            return
        fd = posix.open(threads, posix.O_WRONLY | posix.O_CLOEXEC)
    except OSError:
        return
    finally:
        begun.release()  # the first write follows at once: it gives the GIL up in the call
    try:
        tid = str(_thread.get_native_id()).encode()
        for _ in range(MAX_WRITES):
            if _stopped:
                break
            try:
                posix.write(fd, tid)
            except OSError:
                pass  # refused (another domain on v2, say): it took the rwsem all the same
            time.sleep(INTERVAL)
    finally:
        posix.close(fd)


def start() -> None:
    """Begin in a daemon thread (it ends by itself; nothing waits for it), with every signal
    blocked: a new thread inherits its creator's mask. Returns once the thread is about to
    make its first write (or BEGIN_WITHIN has passed), with the switch interval short until
    stop()."""
    _switch_interval.append(sys.getswitchinterval())  # before the thread can give it back
    sys.setswitchinterval(SWITCH_INTERVAL)
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    begun = _thread.allocate_lock()
    begun.acquire()
    try:
        _thread.start_new_thread(_keep_window_open, (begun,))
    except BaseException:
        _give_interval_back()
        raise
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    begun.acquire(True, BEGIN_WITHIN)  # the GIL is the thread's meanwhile


def stop() -> None:
    """P has made its migration: the thread ends before its next write."""
    if not _stopped:
        _stopped.append(True)
    _give_interval_back()


def _give_interval_back() -> None:
    """The switch interval as it was before start(), once (stop() and the thread's end may
    both come)."""
    try:
        interval = _switch_interval.pop()
    except IndexError:  # given back already, or never taken
        return
    sys.setswitchinterval(interval)
