"""The way machines without a trampoline go (GALLEY_RUNC_TRAMPOLINE=0 takes it on x86_64): the
stage re-executes the interpreter from a read-only mount, waits on the exec fifo itself and
execs the process directly, setting no_new_privs and the late seccomp filter first."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime

pytestmark = pytest.mark.root

INTERPRETER = os.path.realpath("/usr/bin/python3")
ENV = {**os.environ, "GALLEY_RUNC_TRAMPOLINE": "0"}


def _run(runtime: Runtime, bundle: Bundle, script: str) -> subprocess.CompletedProcess[str]:
    bundle.config["process"]["args"] = ["sh", "-c", script]
    return runtime("run", "-b", str(bundle.write()), runtime.new_id(), env=ENV)


def test_run_with_no_new_privs_and_a_late_filter(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["noNewPrivileges"] = True
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    res = _run(runtime, bundle, "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; mkdir /x")
    assert res.stdout.split() == ["NoNewPrivs:", "1", "Seccomp:", "2"], res.stderr
    assert res.returncode == 1  # mkdir refused


def test_created_init_is_the_read_only_interpreter(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    cid = runtime.new_id()
    runtime.created.append(cid)
    argv = [runtime.binary, "--root", str(runtime.root), "create", "--pid-file", str(pid_file)]
    subprocess.run(
        [*argv, "-b", str(bundle.write()), cid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
        check=True,
        timeout=30,
    )
    exe = f"/proc/{int(pid_file.read_text())}/exe"
    assert os.stat(exe).st_ino == os.stat(INTERPRETER).st_ino
    assert os.statvfs(exe).f_flag & os.ST_RDONLY
    runtime("start", cid, check=True)


def test_self_exe_entrypoint_meets_a_read_only_interpreter(
    runtime: Runtime, bundle: Bundle
) -> None:
    """Without the trampoline `#!/proc/self/exe` runs the stage's interpreter: a read-only
    file, which the script cannot open for writing."""
    for name, target in (("lib", "usr/lib"), ("lib64", "usr/lib64")):
        if os.path.exists(f"/{target}"):
            os.symlink(target, bundle.rootfs / name)
    (bundle.rootfs / "usr").mkdir(exist_ok=True)
    bundle.config["mounts"].append(
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}
    )
    probe = bundle.rootfs / "probe"
    probe.write_text(
        "#!/proc/self/exe\n"
        "import os\n"
        "print('read-only', bool(os.statvfs('/proc/self/exe').f_flag & os.ST_RDONLY))\n"
        "try:\n"
        "    os.close(os.open('/proc/self/exe', os.O_WRONLY))\n"
        "    print('opened for writing')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    probe.chmod(0o755)
    bundle.config["process"]["args"] = ["/probe"]
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id(), env=ENV)
    assert res.stdout.startswith("read-only True\nrefused"), (res.stdout, res.stderr)
