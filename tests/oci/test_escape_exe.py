"""CVE-2019-5736: the container must never get write access to the host's interpreter.

Every stage of galley-runc runs a re-executed interpreter from a read-only bind mount in a
private mount namespace, so /proc/<pid>/exe of the init and exec stages is read-only.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime

pytestmark = pytest.mark.root

INTERPRETER = os.path.realpath("/usr/bin/python3")


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_created_init_exe_is_read_only(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.config["process"]["args"] = ["true"]
    pid_file = tmp_path / "pid"
    runtime.detached(bundle, "create", pid_file)
    pid = int(pid_file.read_text())
    exe = f"/proc/{pid}/exe"
    assert os.stat(exe).st_ino == os.stat(INTERPRETER).st_ino  # the init stage is python
    assert os.statvfs(exe).f_flag & os.ST_RDONLY  # ... on a read-only mount
    assert not os.access(exe, os.W_OK)
    with pytest.raises(OSError):
        os.close(os.open(exe, os.O_WRONLY))
    assert os.stat(f"/proc/{pid}/fd").st_uid == 0  # not dumpable


def _hostile_bundle(bundle: Bundle) -> None:
    """/probe: a `#!/proc/self/exe` script; /usr bound read-only so the interpreter can run."""
    rootfs = bundle.rootfs
    for name, target in (("lib", "usr/lib"), ("lib64", "usr/lib64")):
        if os.path.exists(f"/{target}"):
            os.symlink(target, rootfs / name)
    (rootfs / "usr").mkdir(exist_ok=True)
    probe = rootfs / "probe"
    probe.write_text(
        "#!/proc/self/exe\n"
        "import os\n"
        "print('read-only mount', bool(os.statvfs('/proc/self/exe').f_flag & os.ST_RDONLY))\n"
        "print('writable', os.access('/proc/self/exe', os.W_OK))\n"
        "for flags in (os.O_WRONLY, os.O_RDWR | os.O_APPEND):\n"
        "    try:\n"
        "        os.close(os.open('/proc/self/exe', flags))\n"
        "        print('opened for writing')\n"
        "    except OSError as e:\n"
        "        print('refused', e.errno)\n"
    )
    probe.chmod(0o755)
    bundle.config["mounts"].append(
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}
    )


def test_self_exe_entrypoint_cannot_write_interpreter(runtime: Runtime, bundle: Bundle) -> None:
    """The container execs `#!/proc/self/exe`: the kernel runs the init's interpreter, which
    then tries to open its own executable for writing."""
    _hostile_bundle(bundle)
    bundle.config["process"]["args"] = ["/probe"]
    before = _digest(INTERPRETER)
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert "read-only mount True\nwritable False\n" in res.stdout, res.stderr
    assert "opened for writing" not in res.stdout
    assert res.stdout.count("refused") == 2, res.stdout
    assert _digest(INTERPRETER) == before
    assert sys.executable  # the test itself still runs the same interpreter


def test_self_exe_exec_cannot_write_interpreter(runtime: Runtime, bundle: Bundle) -> None:
    """The same attack through `exec`: the exec stage's interpreter is read-only too."""
    from tests.oci.test_exec import exec_in  # noqa: PLC0415

    _hostile_bundle(bundle)
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    before = _digest(INTERPRETER)
    res = exec_in((runtime, cid, 0), ["/probe"])
    assert "read-only mount True\nwritable False\n" in res.stdout, res.stderr
    assert "opened for writing" not in res.stdout
    assert _digest(INTERPRETER) == before
