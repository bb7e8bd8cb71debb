"""CVE-2019-5736: the container must never get write access to the host's interpreter.

The stage execs every container process through the trampoline (galley.oci.trampoline), a
static program in a sealed memfd: a created container's init is that memfd, and a
`#!/proc/self/exe` entrypoint finds the trampoline, which refuses to run for it. With
startContainer hooks the stage is a re-executed interpreter on a read-only bind mount instead,
and waits for `start` itself.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime

pytestmark = pytest.mark.root

INTERPRETER = os.path.realpath("/usr/bin/python3")
REFUSAL = "galley-runc init: not a program to run by hand"


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _created_init(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> int:
    pid_file = tmp_path / "pid"
    runtime.detached(bundle, "create", pid_file)
    return int(pid_file.read_text())


def _refuses_writes(exe: str) -> None:
    assert not os.access(exe, os.W_OK) or os.readlink(exe).startswith("/memfd:")
    for flags in (os.O_WRONLY, os.O_RDWR | os.O_APPEND):
        try:
            fd = os.open(exe, flags)
        except OSError as err:
            assert err.errno in {errno.ETXTBSY, errno.EROFS, errno.EACCES, errno.EPERM}
            continue
        try:  # a sealed memfd opens, but refuses every write
            with pytest.raises(PermissionError):
                os.write(fd, b"x")
        finally:
            os.close(fd)


def test_created_init_is_the_sealed_trampoline(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    pid = _created_init(runtime, bundle, tmp_path)
    exe = f"/proc/{pid}/exe"
    assert os.readlink(exe).startswith("/memfd:galley-init")
    assert os.stat(exe).st_ino != os.stat(INTERPRETER).st_ino
    assert Path(f"/proc/{pid}/comm").read_text() == "galley-init\n"
    _refuses_writes(exe)
    assert os.stat(f"/proc/{pid}/fd").st_uid == 0  # not dumpable


def test_created_init_with_start_hooks_is_read_only(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """startContainer hooks run in the stage after `start`: it is the re-executed interpreter,
    from a read-only mount."""
    bundle.config["hooks"] = {"startContainer": [{"path": "/bin/true"}]}
    pid = _created_init(runtime, bundle, tmp_path)
    exe = f"/proc/{pid}/exe"
    assert os.stat(exe).st_ino == os.stat(INTERPRETER).st_ino  # the init stage is python
    assert os.statvfs(exe).f_flag & os.ST_RDONLY  # ... on a read-only mount
    _refuses_writes(exe)
    assert os.stat(f"/proc/{pid}/fd").st_uid == 0  # not dumpable


def _hostile_bundle(bundle: Bundle) -> None:
    """/probe: a `#!/proc/self/exe` script that would open its interpreter for writing."""
    probe = bundle.rootfs / "probe"
    probe.write_text(
        "#!/proc/self/exe\n"
        "import os\n"
        "os.close(os.open('/proc/self/exe', os.O_WRONLY))\n"
        "print('opened for writing')\n"
    )
    probe.chmod(0o755)


def test_self_exe_entrypoint_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    """The container execs `#!/proc/self/exe`: the kernel runs the trampoline, not Python."""
    _hostile_bundle(bundle)
    bundle.config["process"]["args"] = ["/probe"]
    before = _digest(INTERPRETER)
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 127, (res.stdout, res.stderr)
    assert REFUSAL in res.stderr
    assert "opened for writing" not in res.stdout
    assert _digest(INTERPRETER) == before


def test_self_exe_exec_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    """The same attack through `exec`."""
    from tests.oci.test_exec import exec_in  # noqa: PLC0415

    _hostile_bundle(bundle)
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    before = _digest(INTERPRETER)
    res = exec_in((runtime, cid, 0), ["/probe"])
    assert res.returncode == 127, (res.stdout, res.stderr)
    assert REFUSAL in res.stderr
    assert _digest(INTERPRETER) == before


def test_self_exe_with_start_hooks_cannot_write_interpreter(
    runtime: Runtime, bundle: Bundle
) -> None:
    """Through the re-executed stage too: the trampoline still runs the process."""
    _hostile_bundle(bundle)
    bundle.config["process"]["args"] = ["/probe"]
    bundle.config["hooks"] = {"startContainer": [{"path": "/bin/true"}]}
    before = _digest(INTERPRETER)
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 127, (res.stdout, res.stderr)
    assert REFUSAL in res.stderr
    assert _digest(INTERPRETER) == before
