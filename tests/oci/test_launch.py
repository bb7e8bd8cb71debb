"""Launch: run/create/start through galley-runc, stdio, exit status, pid file, fds, cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import GALLEY_RUNC
from tests.oci.conftest import Bundle, Runtime, create_in_files, run_bundle

pytestmark = pytest.mark.root


def test_run_passes_stdio_and_exit_status(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sh", "-c", "echo out $$ $(hostname); echo err >&2; exit 3"]
    bundle.config["hostname"] = "launchy"
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 3, res.stderr
    assert res.stdout == "out 1 launchy\n"
    assert "err\n" in res.stderr


def test_run_reports_signal_as_128_plus(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sh", "-c", "kill -9 $$"]
    namespaces = bundle.config["linux"]["namespaces"]  # pid 1 could not SIGKILL itself
    bundle.config["linux"]["namespaces"] = [n for n in namespaces if n["type"] != "pid"]
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 128 + 9, res.stderr


def test_create_waits_for_start(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    # written whole, then renamed: the test polls for the name and reads it at once
    script = "echo started > /tmp/.mark && mv /tmp/.mark /tmp/mark"
    bundle.config["process"]["args"] = ["sh", "-c", script]
    cid = runtime.new_id()
    pid_file = tmp_path / "pid"
    code, out = create(runtime, bundle, cid, "--pid-file", str(pid_file))
    assert code == 0, out
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}").exists()
    time.sleep(0.2)
    assert not (bundle.rootfs / "tmp" / "mark").exists()
    assert json.loads(runtime("state", cid).stdout)["status"] == "created"
    assert runtime("start", cid).returncode == 0
    for _ in range(100):
        if (bundle.rootfs / "tmp" / "mark").exists():
            break
        time.sleep(0.05)
    assert (bundle.rootfs / "tmp" / "mark").read_text() == "started\n"


def test_start_twice_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sleep", "10"]
    cid = runtime.new_id()
    assert create(runtime, bundle, cid) == (0, "")
    assert runtime("start", cid).returncode == 0
    assert runtime("start", cid).returncode == 1


def create(runtime: Runtime, bundle: Bundle, cid: str, *extra: str) -> tuple[int, str]:
    """`create`'s status and its stdout and stderr together."""
    result = create_in_files(runtime, bundle, cid, *extra)
    return result.returncode, result.stdout + result.stderr


def _children_running(binary_marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if binary_marker in line]


def test_failed_create_leaves_nothing(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["/no/such/binary"]
    cid = runtime.new_id()
    code, out = create(runtime, bundle, cid)
    assert code == 1
    assert "/no/such/binary" in out
    assert len(out.strip().splitlines()) == 1
    assert not (runtime.root / cid).exists()
    assert not _children_running(str(bundle.path))
    cgroups = subprocess.run(
        ["find", "/sys/fs/cgroup", "-maxdepth", "3", "-name", cid],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cgroups.stdout == ""


def test_unusable_cwd_fails_create(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["cwd"] = "/etc/passwd"  # a missing one is created, as runc does
    cid = runtime.new_id()
    code, out = create(runtime, bundle, cid)
    assert code == 1
    assert "cwd" in out
    assert not (runtime.root / cid).exists()


def test_a_cwd_only_the_runtime_can_open_is_entered_before_the_user_is_taken(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """runc enters process.cwd before it takes the user's ids, and again after only if that
    failed: a non-root process may start in root's 0700 home (galley failed the create)."""
    os.chmod(bundle.rootfs / "root", 0o700)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["cwd"] = "/root"
    bundle.config["process"]["args"] = ["sh", "-c", "pwd; ls . 2>/dev/null || echo closed"]
    res = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["/root", "closed"]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("PATH=", "executable file not found in $PATH"),
        (None, "executable file not found in $PATH"),
        ("PATH=.", "cannot run executable found relative to current directory"),
        ("PATH=/nonexistent::/bin", "cannot run executable found relative to current directory"),
    ],
)
def test_path_lookup_is_runcs(
    any_runtime: Runtime, bundle: Bundle, path: str | None, why: str
) -> None:
    """args[0] looked up as runc (Go's exec.LookPath) looks it up: an empty or unset PATH
    searches nowhere, and a relative entry that finds it is refused. galley searched the cwd
    for both and ran /bin/sh from cwd /bin."""
    process = bundle.config["process"]
    process["env"] = [e for e in process["env"] if not e.startswith("PATH=")]
    process["env"] += [path] if path else []
    process["cwd"] = "/bin"
    process["args"] = ["sh", "-c", "echo ran"]
    res = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    assert res.returncode == 1, res.stdout
    assert f'exec: \\"sh\\": {why}' in res.stderr


def test_cwd_through_leaked_fd_is_refused(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    """CVE-2024-21626: a host directory fd the runtime inherited must not become the cwd."""
    host_dir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        bundle.config["process"]["cwd"] = f"/proc/self/fd/{host_dir}"
        bundle.config["process"]["args"] = ["sh", "-c", "ls ../../..; echo escaped"]
        cid = runtime.new_id()
        res = runtime("run", "-b", str(bundle.write()), cid, pass_fds=(host_dir,))
    finally:
        os.close(host_dir)
    assert "escaped" not in res.stdout
    assert res.returncode != 0


def test_only_preserved_fds_reach_the_process(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "echo kept >&3; echo leaked >&4; ls -l /proc/self/fd/",
    ]
    out3, out4 = tmp_path / "fd3", tmp_path / "fd4"
    script = (
        f'exec 3>"{out3}" 4>"{out4}"; exec "{GALLEY_RUNC}" --root "{runtime.root}" run '
        f'--preserve-fds 1 -b "{bundle.write()}" {runtime.new_id()}'
    )
    res = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert res.returncode == 0, res.stderr
    assert out3.read_text() == "kept\n"
    assert out4.read_text() == ""
    assert "fd3" in res.stdout
    assert "fd4" not in res.stdout


def test_preserved_but_closed_fds_are_refused(runtime: Runtime, bundle: Bundle) -> None:
    """--preserve-fds 2 with fds 3 and 4 closed: the fds asked for were not passed, and the
    runtime's own fds (stage pipes, the state lock, the code cache) that may land on those
    numbers must not pass for them (runc 1.1 hands its own fd 3 on here, and refuses past
    its own fds: "unable to stat preserved-fd"). Nothing is made."""
    bundle.config["process"]["args"] = ["ls", "/proc/self/fd"]
    cid = runtime.new_id()
    script = (
        f'exec 3>&- 4>&-; exec "{runtime.binary}" --root "{runtime.root}" run '
        f'--preserve-fds 2 -b "{bundle.write()}" {cid}'
    )
    res = subprocess.run(
        ["sh", "-c", script],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 1, res.stderr
    assert res.stdout == ""
    assert "unable to stat preserved-fd 0 (of 2): stat /proc/self/fd/3" in res.stderr
    assert runtime("state", cid).returncode == 1


def test_hooks_run_at_their_points(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "hooks"
    out.mkdir()

    def recorder(name: str) -> dict[str, object]:
        script = (
            f"cat > {out}/{name}.json; readlink /proc/self/ns/mnt > {out}/{name}.mnt; "
            f"readlink /proc/self/ns/pid > {out}/{name}.pidns"
        )
        return {"path": "/bin/sh", "args": ["sh", "-c", script]}

    bundle.config["hooks"] = {
        "prestart": [recorder("prestart")],
        "createRuntime": [recorder("createRuntime")],
        "createContainer": [recorder("createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start.json"]}],
    }
    bundle.config["process"]["args"] = ["sh", "-c", "readlink /proc/self/ns/mnt"]
    cid = runtime.new_id()
    res = runtime("run", "-b", str(bundle.write()), cid)
    assert res.returncode == 0, res.stderr
    container_mnt = res.stdout.strip()
    host_mnt = os.readlink("/proc/self/ns/mnt")
    pids = set()
    for name in ("prestart", "createRuntime", "createContainer"):
        state = json.loads((out / f"{name}.json").read_text())
        assert (state["id"], state["status"]) == (cid, "creating")
        assert state["pid"] > 0
        pids.add(state["pid"])
    host_pidns = os.readlink("/proc/self/ns/pid")
    for name in ("prestart", "createRuntime"):
        assert (out / f"{name}.mnt").read_text().strip() == host_mnt
        # P forked the stage into the container's pid namespace, and its own children (the
        # hooks) are back in the runtime's
        assert (out / f"{name}.pidns").read_text().strip() == host_pidns
    assert (out / "createContainer.pidns").read_text().strip() != host_pidns
    assert (out / "createContainer.mnt").read_text().strip() == container_mnt
    start_state = json.loads((bundle.rootfs / "tmp" / "start.json").read_text())
    assert (start_state["id"], start_state["status"]) == (
        cid,
        "created",
    )  # as runc: the process has not run yet
    assert pids == {start_state["pid"]}  # every hook saw the container's pid, as the host sees it


def test_failing_create_runtime_hook_fails_create(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    cid = runtime.new_id()
    code, out = create(runtime, bundle, cid)
    assert code == 1
    assert "error during container init: error running hook #0: error running hook: exit" in out
    assert not (runtime.root / cid).exists()


def test_listen_fds_pass_through(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    """systemd socket activation: LISTEN_FDS fds are kept and announced, as runc does."""
    bundle.config["process"]["args"] = ["sh", "-c", "echo $LISTEN_FDS $LISTEN_PID >&3"]
    out3 = tmp_path / "fd3"
    script = (
        f'exec 3>"{out3}"; LISTEN_FDS=1 LISTEN_PID=$$ exec "{GALLEY_RUNC}" '
        f'--root "{runtime.root}" run -b "{bundle.write()}" {runtime.new_id()}'
    )
    res = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert res.returncode == 0, res.stderr
    assert out3.read_text() == "1 1\n"


def test_listen_fds_that_is_no_number_passes_nothing(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """LISTEN_FDS=² ("²" is a digit to str.isdigit(), no number to int()): a ValueError once;
    now no fds, as go-systemd's activation reads it for runc."""
    bundle.config["process"]["args"] = ["sh", "-c", 'echo "[$LISTEN_FDS]" >&2']
    script = (
        f'LISTEN_FDS=² LISTEN_PID=$$ exec "{GALLEY_RUNC}" '
        f'--root "{runtime.root}" run -b "{bundle.write()}" {runtime.new_id()}'
    )
    res = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert (res.returncode, res.stderr) == (0, "[]\n")


def test_run_forwards_signals(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    ready = bundle.rootfs / "tmp" / "ready"
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "trap 'exit 42' TERM; touch /tmp/ready; while :; do sleep 0.1; done",
    ]
    cid = runtime.new_id()
    runtime.created.append(cid)
    proc = subprocess.Popen(
        [
            GALLEY_RUNC,
            "--root",
            str(runtime.root),
            "run",
            "-b",
            str(bundle.write()),
            cid,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if ready.exists():
                break
            time.sleep(0.05)
        assert ready.exists()
        proc.send_signal(15)
        assert proc.wait(timeout=20) == 42
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_personality_scheduler_io_priority(runtime: Runtime, bundle: Bundle) -> None:
    """(execCPUAffinity does not apply to the init: test_exec.)"""
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    process = bundle.config["process"]
    process["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    process["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
    process["args"] = [
        "sh",
        "-c",
        "uname -m; grep -E '^(policy|Cpus_allowed_list)' /proc/self/sched /proc/self/status",
    ]
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "i686"
    assert any("policy" in line and line.split()[-1] == "3" for line in lines), lines  # BATCH


def test_a_realtime_policy_runs_with_a_realtime_budget_and_says_what_it_needs_without(
    runtime: Runtime, bundle: Bundle
) -> None:
    """SCHED_FIFO in a container of its own cpu cgroup: with RT group scheduling (this host's
    v1 cpu hierarchy) the kernel refuses it until the cgroup has realtime runtime. The
    refusal names the field that gives it; with the budget the program runs under FIFO."""
    if not os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"):
        pytest.skip("no RT group scheduling in a v1 cpu hierarchy here")
    process = bundle.config["process"]
    process["scheduler"] = {"policy": "SCHED_FIFO", "priority": 10}
    process["args"] = ["sh", "-c", "grep ^policy /proc/self/sched"]
    refused = run_bundle(runtime, bundle, status=1)
    assert "operation not permitted (a realtime policy needs a realtime budget" in refused.stderr
    assert "linux.resources.cpu.realtimeRuntime" in refused.stderr
    bundle.config["linux"]["resources"] = {
        "cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}
    }
    assert run_bundle(runtime, bundle).stdout.split()[-1] == "1"  # SCHED_FIFO


@pytest.mark.parametrize("nnp", [False, True])
def test_a_32_bit_personality_with_a_seccomp_profile_and_a_memory_policy(
    runtime: Runtime, bundle: Bundle, nnp: bool
) -> None:
    """Under PER_LINUX32 uname(2) says "i686": syscall numbers chosen by it after the stage
    set the personality were not found (a filter loaded without noNewPrivileges failed create
    with "'i686'"; set_mempolicy with "unsupported machine i686")."""
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    if os.path.exists("/proc/self/numa_maps"):
        bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "0"}
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.config["process"]["args"] = ["sh", "-c", "uname -m; mkdir /tmp/d || echo refused"]
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "i686"
    assert res.stdout.splitlines()[-1] == "refused"


def test_failed_create_always_reports_the_stages_error(runtime: Runtime, bundle: Bundle) -> None:
    """The stage goes on after "pid" and may fail before P answers it: P's answer must not
    hide the stage's error behind a broken pipe."""
    config = bundle.config
    config["process"]["args"] = ["true"]
    # Few namespaces, so that the stage reaches "pid" (and its failure) quickly.
    config["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}]
    config.pop("hostname", None)
    config["mounts"] = [
        {
            "destination": "/mnt",
            "type": "bind",
            "source": "/nonexistent-galley-review",
            "options": ["rbind"],
        },
        *(m for m in config["mounts"] if m["type"] not in {"cgroup", "mqueue", "sysfs"}),
    ]
    path = str(bundle.write())
    messages = []
    for _ in range(30):
        result = runtime("create", "-b", path, runtime.new_id(), stdin=subprocess.DEVNULL)
        assert result.returncode != 0
        messages.append(result.stderr.strip())
    hidden = [m for m in messages if "does not exist" not in m]
    assert not hidden, f"{len(hidden)} of {len(messages)} creates hid the error: {hidden[0]}"
