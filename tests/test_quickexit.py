"""galley.kernel.quickexit: the exit status and the output arrive as with _exit, and the helper
that frees the memory afterwards holds no descriptor, runs no handler and is reaped."""

from __future__ import annotations

import json
import platform
import signal

import pytest

from tests.conftest import fresh_python

pytestmark = pytest.mark.root

# A subreaper forks a process that writes a line and calls exit_now(7) with a 1 s helper, reads
# its pipe to EOF, waits for it, then looks at the orphaned helper (now its child) and reaps it.
SCRIPT = """
import json, posix, time
from galley.kernel import proc

proc.set_child_subreaper()
r, w = posix.pipe()
pid = posix.fork()
if pid == 0:
    posix.close(r)
    from galley.kernel import quickexit
    quickexit.HELPER_SLEEP_US = 1_000_000
    if NO_CLOSE_RANGE:
        def denied(first):
            raise OSError(38, "close_range: Function not implemented")
        proc.close_from = denied
    posix.write(w, b"written before the exit")
    quickexit.exit_now(7)
posix.close(w)
data = b""
while chunk := posix.read(r, 100):
    data += chunk
_, status = posix.waitpid(pid, 0)
helpers = []
for entry in posix.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == posix.getpid():
            helpers.append(int(entry))
found = {}
for helper in helpers:
    with open(f"/proc/{helper}/status") as f:
        status_lines = dict(line.split(":", 1) for line in f)
    found = {
        "fds": posix.listdir(f"/proc/{helper}/fd"),
        "blocked": int(status_lines["SigBlk"], 16),
        "rss_kb": int(status_lines["VmRSS"].split()[0]),
    }
    began = time.monotonic()
    _, helper_status = posix.waitpid(helper, 0)
    found["helper_exit"] = posix.waitstatus_to_exitcode(helper_status)
    found["lived_on_s"] = time.monotonic() - began
print(json.dumps({
    "data": data.decode(),
    "exit": posix.waitstatus_to_exitcode(status),
    "helpers": len(helpers),
    **found,
}))
"""


def test_exit_now_passes_the_status_and_leaves_a_helper_that_holds_only_the_memory() -> None:
    seen = json.loads(fresh_python("NO_CLOSE_RANGE = False\n" + SCRIPT))
    assert seen["data"] == "written before the exit"
    assert seen["exit"] == 7
    # EOF came and the process was reaped while its helper still slept: the helper holds none
    # of the descriptors, and the caller did not wait for it.
    assert seen["helpers"] == 1
    assert seen["fds"] == []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
        assert seen["blocked"] & (1 << (sig - 1)), f"{sig!r} not blocked in the helper"
    assert seen["rss_kb"] > 4096  # the interpreter's whole address space, shared
    assert seen["helper_exit"] == 0
    assert seen["lived_on_s"] > 0.3  # it slept on, then exited by itself


# The helper of a process that lives on: the kernel's kcmp(KCMP_VM) says whether two processes
# share one address space (0) or not.
SHARED = """
import ctypes, posix
from galley.kernel import quickexit

SYS_KCMP, KCMP_VM = 312, 1
helper = quickexit.start_helper(200_000)
kcmp = ctypes.CDLL(None, use_errno=True).syscall
print(helper > 0, kcmp(SYS_KCMP, posix.getpid(), helper, KCMP_VM, 0, 0))
posix.waitpid(helper, 0x40000000)  # __WALL: it sends no exit signal
"""


def test_the_helper_shares_the_address_space() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the kcmp syscall number here is x86_64's")
    assert fresh_python(SHARED).split() == ["True", "0"]


def test_without_close_range_the_exit_is_a_plain_one() -> None:
    """Where close_range is missing or denied, no helper is started (it would hold the
    descriptors that could not be closed), and the exit is as before."""
    seen = json.loads(fresh_python("NO_CLOSE_RANGE = True\n" + SCRIPT))
    assert (seen["data"], seen["exit"], seen["helpers"]) == ("written before the exit", 7, 0)
