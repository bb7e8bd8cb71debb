"""Helpers for the cgroup tests: a unique parent cgroup in every hierarchy, and live children."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from galley.fixtures.processes import remove_cgroup_everywhere
from galley.oci.cgroups.layout import CgroupLayout, detect


def controller_file(path: str, controller: str, name: str) -> str:
    """Where the cgroup path's file name is in the hierarchy of controller: its v1 hierarchy
    where there is one, else the cgroup2 mount (a pure v2 host)."""
    layout = detect()
    hierarchy = layout.v1.get(controller) or layout.unified
    assert hierarchy is not None, f"no hierarchy has {controller}"
    return os.path.join(hierarchy.directory(path), name)


def remove_everywhere(path: str, layout: CgroupLayout | None = None) -> None:
    """rmdir the cgroup path and its sub-cgroups in every hierarchy, killing (and thawing)
    what is left: only the tests' descendants live there. One still there after 2 s fails
    the test."""
    mounts = (layout or detect()).mount_points()
    remove_cgroup_everywhere(path, time.monotonic() + 2, mounts)
    left = [m for m in mounts if os.path.isdir(os.path.join(m, path.lstrip("/")))]
    assert not left, f"cgroup {path} is left in {left}"


@dataclass
class Children:
    """Processes a test starts; each is killed by pid and reaped at the end."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *argv: str, **kw: object) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(list(argv), **kw)  # type: ignore[call-overload]
        self.started.append(child)
        return child  # type: ignore[no-any-return]

    def close(self) -> None:
        for child in self.started:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.wait()


def unique_parent() -> str:
    """A cgroup path nobody else uses."""
    return f"/galley-test-{uuid.uuid4().hex[:10]}"


def children() -> Iterator[Children]:
    """Generator body for a fixture that yields Children and cleans them up."""
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()


def proc_state(pid: int) -> str:
    """The one-letter state of a process from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def run_detached(binary: str, root: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the runtime with files as stdio: a created container keeps its stdio open."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            [binary, "--root", root, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=30,
            check=False,
        )
        out.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), out.read())
