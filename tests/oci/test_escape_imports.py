"""A container must never make galley-runc import its code: once the stage sees the container's
files where the host's were (exec joins its mount namespace; create pivots into its root), a
Python import would look in the image's /usr/lib/python3.11, and whatever it found there would
run as the host's root with every capability. The stage seals its imports first
(galley.oci.init.seal_imports)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.oci.conftest import Bundle, Runtime, exec_with_console

pytestmark = pytest.mark.root

INTERPRETER = "/usr/bin/python3"  # galley-runc's, from its shebang

# Modules the stage or the code it calls could be tempted to import late.
TRAPPED = ("struct", "json", "signal", "socket", "selectors", "threading", "copy", "enum", "re")

# What each planted module does when imported: leave a mark in the container's root.
HOSTILE = """
with open("/imported-by-the-runtime-" + __name__, "w") as f:
    with open("/proc/self/status") as status:
        f.write("".join(l for l in status if l.startswith(("Uid:", "CapEff:"))))

def pack(fmt, *values):  # enough for a pty's size, should the runtime use it
    return b"".join(int(v).to_bytes(2, "little") for v in values)
"""


def _import_dirs() -> list[str]:
    """The interpreter's import path, and our own source tree, as seen inside the root."""
    out = subprocess.run(
        [INTERPRETER, "-IS", "-c", "import sys; print('\\n'.join(sys.path))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dirs = [line for line in out.splitlines() if line.startswith("/") and not line.endswith(".zip")]
    return [*dirs, str(REPO / "src")]


def _booby_trap(bundle: Bundle) -> None:
    for directory in _import_dirs():
        target = bundle.rootfs / directory.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for name in TRAPPED:
            (target / f"{name}.py").write_text(HOSTILE)


def _marks(bundle: Bundle) -> list[str]:
    return [f"{p.name}: {p.read_text()}" for p in bundle.rootfs.glob("imported-by-the-runtime-*")]


def test_exec_imports_nothing_from_the_image(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A pty with a size (its ioctl took `struct`, imported late: the image's struct.py ran
    as the host's root), a user, rlimits, no_new_privs."""
    _booby_trap(bundle)
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    process = {
        "terminal": True,
        "consoleSize": {"height": 24, "width": 80},
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
        "noNewPrivileges": True,
        "args": ["/bin/true"],
        "env": ["PATH=/bin"],
        "cwd": "/",
    }
    errors = exec_with_console(runtime, cid, process, tmp_path)
    assert not _marks(bundle), f"the image's code ran in galley-runc: {_marks(bundle)} {errors}"
    plain = runtime("exec", cid, "true")
    assert plain.returncode == 0, plain.stderr
    assert not _marks(bundle)


def test_create_imports_nothing_from_the_image(runtime: Runtime, bundle: Bundle) -> None:
    """Everything after pivot_root, startContainer hooks (run from inside) included. Create
    imports nothing late today; sealed, a late import added one day fails this run instead
    of running the image's module."""
    _booby_trap(bundle)
    bundle.config["process"]["args"] = ["true"]
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]
    bundle.config["hooks"] = {"startContainer": [{"path": "/bin/true"}]}
    result = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert result.returncode == 0, result.stderr
    assert not _marks(bundle), f"the image's code ran in galley-runc: {_marks(bundle)}"


def test_a_sealed_stage_imports_only_what_the_interpreter_has_built_in() -> None:
    probe = (
        f"import sys; sys.path.insert(0, {str(REPO / 'src')!r})\n"
        "from galley.oci import init\n"
        "init.seal_imports()\n"
        "import _signal, marshal, galley.oci.init  # built in, or loaded already\n"
        "try:\n"
        "    import json\n"
        "except ImportError:\n"
        "    print('refused')\n"
    )
    out = subprocess.run(
        [sys.executable, "-IS", "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["refused"], out.stderr


def test_create_in_a_joined_mount_namespace_imports_everything_first(
    runtime: Runtime, bundle: Bundle
) -> None:
    """Joining a mount namespace by path: the stage seals its imports before it joins, having
    imported what building the root there needs (createContainer hooks included)."""
    _booby_trap(bundle)
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "60"])
    try:
        deadline = 50
        while os.readlink(f"/proc/{holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            deadline -= 1
            assert deadline, "unshare did not make its mount namespace"
            threading.Event().wait(0.02)
        linux = bundle.config["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "mount"]
        linux["namespaces"].append({"type": "mount", "path": f"/proc/{holder.pid}/ns/mnt"})
        bundle.config["hooks"] = {"createContainer": [{"path": "/bin/true"}]}
        bundle.config["process"]["args"] = ["true"]
        result = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0, result.stderr
    assert not _marks(bundle), f"the image's code ran in galley-runc: {_marks(bundle)}"
