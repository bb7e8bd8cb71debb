"""Run a setup function in a forked child, then exec a program, and collect what it printed.

The process-security tests apply galley's functions (rlimits, seccomp, user, capabilities) in a
real child process and observe the result from a real program (busybox, cat) after execve.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.oci.conftest import Bundle

BUSYBOX = "/bin/busybox"
SETUP_FAILED = 126


@dataclass
class Probe:
    """The child's exit status (negative: killed by that signal) and its output."""

    status: int
    stdout: str
    stderr: str

    def field(self, name: str) -> str:
        """A `Name:\tvalue` line of /proc/self/status printed by the program."""
        for line in self.stdout.splitlines():
            if line.startswith(f"{name}:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"{name} not in output: {self.stdout!r} {self.stderr!r}")


def run_child(
    setup: Callable[[], object], argv: list[str], workdir: Path, *, stdout_fd: int | None = None
) -> Probe:
    """Fork; in the child run setup() then execv(argv[0], argv); wait and collect output."""
    out_path, err_path = workdir / "probe.out", workdir / "probe.err"
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            out = (
                stdout_fd
                if stdout_fd is not None
                else os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            )
            os.dup2(out, 1)
            os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), 2)
            setup()
            os.execv(argv[0], argv)
        except BaseException:
            try:
                os.write(2, traceback.format_exc().encode())
            finally:
                os._exit(SETUP_FAILED)
    _, wait_status = os.waitpid(pid, 0)

    def read(p: Path) -> str:
        return p.read_text() if p.exists() else ""

    return Probe(os.waitstatus_to_exitcode(wait_status), read(out_path), read(err_path))


def sh(script: str) -> list[str]:
    """argv running script with busybox sh."""
    return [BUSYBOX, "sh", "-c", script]


def shared_root_bundle(tmp_path: Path, rootfs: Path, args: list[str]) -> Bundle:
    """A bundle whose root is the session's pristine busybox rootfs, read-only, by absolute path
    (no 500 MB copy of hard-linked applets per test); edit .config, then .write()."""
    import copy  # noqa: PLC0415

    from galley.fixtures.busybox import default_config  # noqa: PLC0415
    from tests.oci.conftest import Bundle  # noqa: PLC0415

    path = tmp_path / "bundle"
    path.mkdir()
    config = copy.deepcopy(default_config(args))
    config["root"] = {"path": str(rootfs), "readonly": True}
    return Bundle(path=path, config=config)


def set_file_caps(path: str | Path, names: list[str], *, effective: bool) -> None:
    """Give a file capabilities as setcap(8) does: the security.capability xattr, format
    VFS_CAP_REVISION_2 (magic|effective flag, then permitted/inheritable low and high words)."""
    from galley.kernel.caps import mask_of  # noqa: PLC0415

    permitted = mask_of(names)
    magic = 0x02000000 | (1 if effective else 0)
    value = struct.pack("<5I", magic, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)
    os.setxattr(path, "security.capability", value)


def build_static(factory: pytest.TempPathFactory, name: str, source: str) -> Path:
    """A static binary compiled from C source with gcc (the test skips without gcc)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    build = factory.mktemp(name)
    (build / f"{name}.c").write_text(source)
    out = build / name
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(build / f"{name}.c")], check=True)
    return out
