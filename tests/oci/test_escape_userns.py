"""Hostile containers with a user namespace of their own and CAP_SYS_PTRACE in it: the
process that execs theirs must stay out of their reach until their seccomp filter binds them.

With noNewPrivileges the filter is loaded last, by the trampoline (galley.oci.trampoline),
which the stage execs inside the container's user namespace. Had its memory been that
namespace's, a container process could write through /proc/<pid>/mem into a created init
waiting for `start`, or race an exec'd process, and zero the filter's length: the program
then ran unconfined (found in session 39's review; runc's init was never reachable). Also:
the capabilities an exec keeps follow the host's cap_last_cap, not one a container mounts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from galley.kernel.caps import mask_of
from galley.oci import trampoline
from tests.oci.conftest import Bundle, Runtime, in_user_namespace

pytestmark = pytest.mark.root

# where the trampoline keeps the late filter's length (its fourth parameter)
PROGRAM_LENGTH = trampoline.BASE + trampoline._HEADERS + trampoline.PARAMS + 12
ZERO_IT = (
    f"printf '\\0\\0\\0\\0' | dd of=/proc/1/mem bs=1 seek={PROGRAM_LENGTH} conv=notrunc"
    " 2>/dev/null && echo wrote mem; ls /proc/1/fd >/dev/null 2>&1 && echo listed fds; echo done"
)
SHOW = "uname -s; grep Seccomp: /proc/self/status"  # the filter makes busybox's uname print ""


def _launch(runtime: Runtime, bundle: Bundle, output: Path, *command: str) -> str:
    """`create` or `run -d` with the container's stdout and stderr on output; its id."""
    cid = runtime.new_id()
    runtime.created.append(cid)
    argv = [runtime.binary, "--root", str(runtime.root), *command, "-b", str(bundle.write()), cid]
    with output.open("w") as out:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, output.read_text()
    return cid


def tracer_under_filter(config: dict[str, Any], args: list[str]) -> None:
    """args with CAP_SYS_PTRACE in every set, noNewPrivileges, and a filter that refuses
    uname (test_rootless uses it too)."""
    config["process"]["args"] = args
    config["process"]["noNewPrivileges"] = True
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO"}],
    }


def _hostile(bundle: Bundle, args: list[str]) -> None:
    """A user namespace of its own (conftest.in_user_namespace), and tracer_under_filter."""
    in_user_namespace(bundle)
    tracer_under_filter(bundle.config, args)


def test_a_created_init_cannot_be_written_into(
    any_runtime: Runtime, open_bundle: Bundle, tmp_path: Path
) -> None:
    """A second process of the container tries to zero the filter's length in the created
    init and to list its fds (the exec fifo among them): both refused, and once started the
    init runs under its filter."""
    bundle = open_bundle
    _hostile(bundle, ["sh", "-c", SHOW])
    output = tmp_path / "init.out"
    cid = _launch(any_runtime, bundle, output, "create")
    attempt = any_runtime("exec", cid, "sh", "-c", ZERO_IT)
    assert attempt.stdout.split() == ["done"], attempt.stdout
    assert any_runtime("start", cid).returncode == 0
    for _ in range(100):
        if "Seccomp:" in output.read_text():
            break
        time.sleep(0.05)
    shown = output.read_text()
    assert "Linux" not in shown and "Seccomp:\t2" in shown, shown


RACER = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The next pids the container's pid namespace hands out: a child's, past the last one. */
static int next_pid(void) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, 0, 0);
    return child + 1;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int base = next_pid(), spins = 0;
    printf("racing\n");
    for (;;) {
        for (int pid = base; pid < base + 3; pid++) {
            char path[64], exe[256] = "";
            snprintf(path, sizeof path, "/proc/%d/mem", pid);
            int fd = open(path, O_RDWR);
            if (fd < 0) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            /* the container's own programs are busybox's links in /bin */
            if (readlink(path, exe, sizeof exe - 1) > 0 && strncmp(exe, "/bin/", 5) != 0)
                printf("reached %d %s\n", pid, exe);
            close(fd);
            base = next_pid();
        }
        if (++spins % 20000 == 0) base = next_pid();
    }
}
"""


def test_an_exec_cannot_be_written_into_by_a_racing_tracer(
    any_runtime: Runtime, open_bundle: Bundle, tmp_path: Path
) -> None:
    """The container's init opens /proc/<pid>/mem of every process about to appear, for
    writing, while exec runs again and again: it never reaches the process before that
    process's program is running, and every exec runs under its filter."""
    bundle = open_bundle
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc (scripts/setup.sh installs it)")
    source = tmp_path / "racer.c"
    source.write_text(RACER)
    racer = bundle.rootfs / "racer"
    subprocess.run([gcc, "-static", "-O2", "-o", str(racer), str(source)], check=True)
    _hostile(bundle, ["/racer"])
    log = tmp_path / "racer.out"
    cid = _launch(any_runtime, bundle, log, "run", "-d")
    process = tmp_path / "process.json"
    process.write_text(
        json.dumps({**bundle.config["process"], "args": ["sh", "-c", SHOW], "env": ["PATH=/bin"]})
    )
    shown = [any_runtime("exec", "-p", str(process), cid).stdout for _ in range(15)]
    assert "racing" in log.read_text()
    assert "reached" not in log.read_text(), log.read_text()
    assert all("Linux" not in s and "Seccomp:\t2" in s for s in shown), shown


def test_exec_keeps_no_capability_past_the_hosts_last(runtime: Runtime, bundle: Bundle) -> None:
    """A container with CAP_SYS_ADMIN mounts a /proc/sys/kernel whose cap_last_cap says 1:
    a later exec's bounding and effective sets still lack what the config leaves out (the
    stage reads the host's value before it joins the container; runc 1.1.5 reads the
    container's, and its exec keeps every capability)."""
    caps = bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind].append("CAP_SYS_ADMIN")
    bundle.config["process"]["noNewPrivileges"] = False
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "mount -t tmpfs t /proc/sys/kernel && echo 1 > /proc/sys/kernel/cap_last_cap"
        " && touch /tmp/ready; sleep 60",
    ]
    bundle.config["root"]["readonly"] = False
    cid = runtime.detached(bundle)
    for _ in range(100):
        if (bundle.rootfs / "tmp" / "ready").exists():
            break
        time.sleep(0.05)
    assert (bundle.rootfs / "tmp" / "ready").exists()
    status = runtime("exec", cid, "grep", "^Cap[BE]", "/proc/self/status")
    assert status.returncode == 0, status.stderr
    expected = mask_of(caps["bounding"])
    sets = dict(line.split(":") for line in status.stdout.splitlines())
    assert int(sets["CapBnd"], 16) == expected, status.stdout
    assert int(sets["CapEff"], 16) == expected, status.stdout
