"""exec: a second process in a running container's namespaces, cgroup and security settings.

Driven through galley.oci.execution.exec_process in a `python3 -IS` subprocess (the way
galley-runc runs it), so the tests do not depend on the command line's parsing.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.oci.cgroups.layout import detect
from tests.conftest import REPO
from tests.oci.conftest import Bundle, Runtime, status_after_term, trap
from tests.oci.test_lifecycle import FORWARDED, FORWARDED_IDS

pytestmark = pytest.mark.root

DRIVER = """
import json, sys
sys.path.insert(0, {src!r})
from galley.oci.state import ContainerState
from galley.oci.execution import exec_process
from galley.oci.stage import Stage
state = ContainerState.load(sys.argv[1], sys.argv[2])
options = json.loads(sys.argv[4])
stage = Stage(options.pop("preserve_fds", 0), creates=False)
sys.exit(exec_process(state, json.loads(sys.argv[3]), stage, **options))
"""


@pytest.fixture
def running(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> Iterator[tuple[Runtime, str, int]]:
    """A detached container running `sleep 60`: (runtime, id, init pid)."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    pid_file = tmp_path / "init.pid"
    cid = runtime.detached(bundle, pid_file=pid_file)
    yield runtime, cid, int(pid_file.read_text())


def exec_in(
    running: tuple[Runtime, str, int], args: list[str], **process: Any
) -> subprocess.CompletedProcess[str]:
    runtime, cid, _ = running
    options = {
        "console_socket": process.pop("console_socket", None),
        "pid_file": process.pop("pid_file", None),
        "detach": process.pop("detach", False),
        "preserve_fds": 0,
    }
    spec = {"args": args, "env": ["PATH=/bin"], "cwd": "/", **process}
    # a detached process keeps its stdio: pipes would never reach EOF
    stdio = subprocess.DEVNULL if options["detach"] else subprocess.PIPE
    return subprocess.run(
        [
            "/usr/bin/python3",
            "-IS",
            "-c",
            DRIVER.format(src=str(REPO / "src")),
            str(runtime.root),
            cid,
            json.dumps(spec),
            json.dumps(options),
        ],
        stdout=stdio,
        stderr=stdio,
        text=True,
        timeout=30,
        check=False,
    )


def test_exec_joins_the_namespaces(running: tuple[Runtime, str, int]) -> None:
    _, _, init = running
    res = exec_in(
        running,
        ["sh", "-c", "for n in pid net mnt uts ipc; do readlink /proc/self/ns/$n; done; echo $$"],
    )
    assert res.returncode == 0, res.stderr
    *links, own_pid = res.stdout.split()
    wanted = [os.readlink(f"/proc/{init}/ns/{n}") for n in ("pid", "net", "mnt", "uts", "ipc")]
    assert links == wanted
    assert own_pid != "1"


def test_exec_exit_status_and_stdio(running: tuple[Runtime, str, int]) -> None:
    res = exec_in(running, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (res.returncode, res.stdout) == (7, "out\n")
    assert "err" in res.stderr


def test_exec_joins_the_cgroup(running: tuple[Runtime, str, int]) -> None:
    _, _, init = running
    res = exec_in(running, ["sh", "-c", "cat /proc/$$/cgroup"])
    assert res.returncode == 0, res.stderr
    # the memory controller's line: ":memory:" on v1 and hybrid hosts, "0::" on pure v2
    key = ":memory:" if "memory" in detect().v1 else "0::"
    with open(f"/proc/{init}/cgroup") as f:
        init_cgroups = [line for line in f.read().splitlines() if key in line]
    exec_memory = [line for line in res.stdout.splitlines() if key in line]
    # "/": the exec'd shell sits at the root of the init's cgroup namespace, i.e. in its cgroup
    assert exec_memory and exec_memory[0].endswith(":/"), f"exec's {key} line: {res.stdout!r}"
    assert init_cgroups and init_cgroups[0] != exec_memory[0], init_cgroups  # host sees a path


def test_exec_user_cwd_env_and_nnp(running: tuple[Runtime, str, int]) -> None:
    script = "id -u; id -g; pwd; echo $FOO; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status"
    res = exec_in(
        running,
        ["sh", "-c", script],
        user={"uid": 65534, "gid": 65534},
        cwd="/tmp",
        env=["PATH=/bin", "FOO=bar"],
        noNewPrivileges=True,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split("\n")
    assert lines[:4] == ["65534", "65534", "/tmp", "bar"]
    assert "NoNewPrivs:\t1" in res.stdout
    assert "CapEff:\t0000000000000000" in res.stdout


def test_exec_errors_are_one_line(running: tuple[Runtime, str, int]) -> None:
    res = exec_in(running, ["nosuch"])
    assert res.returncode == 1
    assert 'exec: "nosuch": executable file not found in $PATH' in res.stderr
    res = exec_in(running, ["true"], cwd="/nope")
    assert res.returncode == 1
    assert "/nope" in res.stderr


def test_exec_detached_writes_pid_file(running: tuple[Runtime, str, int], tmp_path: Path) -> None:
    pid_file = tmp_path / "exec.pid"
    res = exec_in(running, ["sleep", "30"], detach=True, pid_file=str(pid_file))
    assert res.returncode == 0, res.stderr
    pid = int(pid_file.read_text())
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"sleep"
    finally:
        os.kill(pid, 9)


@pytest.mark.parametrize("sig", FORWARDED, ids=FORWARDED_IDS)
def test_exec_forwards_signals(running: tuple[Runtime, str, int], tmp_path: Path, sig: int) -> None:
    """A signal to a foreground `galley-runc exec` reaches the process, even at once."""
    runtime, cid, _ = running
    argv = [runtime.binary, "--root", str(runtime.root), "exec", cid, "sh", "-c", trap(sig)]
    assert status_after_term(argv, tmp_path / "out", sig) == 7


def test_exec_into_a_container_at_its_pids_limit_works(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The exec'd process is created outside the container's cgroup and moved in, as runc's
    is, and a move is not bound by pids.max: an operator can still exec into a container a
    fork bomb holds at its limit (galley forked inside the cgroup, and failed, until session
    7). What the process forks in there stays bound. (runc 1.1 gets this far only where its
    own Go threads fit under the limit: at pids.max 1 it aborts.)"""
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"].setdefault("resources", {})["pids"] = {"limit": 1}
    cid = runtime.detached(bundle)
    err = tmp_path / "exec.err"
    with err.open("w") as sink:
        result = subprocess.run(
            [runtime.binary, "--root", str(runtime.root), "exec", "-d", cid, "sleep", "60"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            timeout=30,
            check=False,
        )
    assert result.returncode == 0, err.read_text()
    pids = json.loads(runtime("ps", "--format", "json", cid).stdout)
    assert len(pids) == 2, pids
    forks = runtime("exec", cid, "sh", "-c", "sleep 1 & wait")
    assert forks.returncode != 0, "a fork inside the cgroup went past pids.max"


def test_the_stage_joins_only_the_init_p_checked(running: tuple[Runtime, str, int]) -> None:
    """P checks the init (pid and start time) before the stage opens /proc/<pid>/ns/*; the
    stage checks again once they are open: a pid reused meanwhile is never joined. Shown with
    a state whose start time is not the init's (exec_process runs no status check itself)."""
    runtime, cid, _ = running
    state_file = runtime.root / cid / "state.json"
    saved = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**saved, "start_time": saved["start_time"] + 1}))
    try:
        result = exec_in(running, ["true"])
    finally:
        state_file.write_text(json.dumps(saved))
    assert result.returncode != 0
    assert "init exited" in result.stderr
    assert exec_in(running, ["true"]).returncode == 0


def test_tty_flag_is_ignored_with_a_process_file(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """As runc: with --process, the file's process.terminal decides, and -t counts for
    nothing (galley-runc relayed a pty the process never asked for, and refused the pair)."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = any_runtime.detached(bundle)
    document = json.dumps({"args": ["/bin/echo", "hi"], "cwd": "/"})
    process = tmp_path / "process.json"
    process.write_text(document)
    result = any_runtime("exec", "-t", "-p", str(process), cid)
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    # a pipe, as runc's tests pass it (-p <(...)): read once (galley read it twice)
    result = any_runtime("exec", "-t", "-p", "/dev/stdin", cid, input=document)
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr


KILL_ONLY = {key: ["CAP_KILL"] for key in ("bounding", "effective", "permitted")}


@pytest.mark.parametrize(
    ("capabilities", "effective"),
    [(None, 0x20000420), ({}, 0), (KILL_ONLY, 0x20)],  # the bundle's: the default three
)
def test_a_process_file_without_capabilities_takes_the_containers(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, capabilities: object, effective: int
) -> None:
    """No capabilities object: the container's; an empty one: none, as runc reads a pointer
    that is not nil (galley-runc gave the container's for both; execfuzz --mutate seed 2)."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = any_runtime.detached(bundle)
    process: dict[str, Any] = {"args": ["/bin/grep", "CapEff", "/proc/self/status"], "cwd": "/"}
    if capabilities is not None:
        process["capabilities"] = capabilities
    (tmp_path / "process.json").write_text(json.dumps(process))
    result = any_runtime("exec", "-p", str(tmp_path / "process.json"), cid)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[1], 16) == effective


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("capabilities", 0, "process.capabilities: must be an object, not number"),
        ("capabilities", False, "process.capabilities: must be an object, not boolean"),
        ("apparmorProfile", 5, "process.apparmorProfile: must be a string, not number"),
    ],
)
def test_a_process_file_field_of_another_type_is_refused(
    runtime: Runtime, bundle: Bundle, tmp_path: Path, field: str, value: object, message: str
) -> None:
    """A false or zero capabilities passed as none given, and the exec ran with the
    container's (runc: "cannot unmarshal number into Go struct field"; execfuzz --mutate)."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = runtime.detached(bundle)
    process = {"args": ["/bin/true"], "cwd": "/", field: value}
    (tmp_path / "process.json").write_text(json.dumps(process))
    result = runtime("exec", "-p", str(tmp_path / "process.json"), cid)
    assert result.returncode == 255 and message in result.stderr, result.stderr


def test_debug_exec_logs_at_level_debug(any_runtime: Runtime, bundle: Bundle) -> None:
    """runc's exec.bats: `--debug exec` writes debug lines to stderr (galley's wrote none)."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = any_runtime.detached(bundle)
    result = any_runtime("--debug", "exec", cid, "true")
    assert result.returncode == 0 and "level=debug" in result.stderr, result.stderr


def _cpus_allowed(text: str) -> list[str]:
    return [line.split("\t")[1] for line in text.splitlines() if "Cpus_allowed_list" in line]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_exec_cpu_affinity_is_the_exec_s_not_the_init_s(runtime: Runtime, bundle: Bundle) -> None:
    """runtime-spec: execCPUAffinity "is not applicable to the container's init process"; an
    exec takes it from config.json's process (runc's cpu_affinity.bats), the initial CPUs as
    the mask runc's --debug logs."""
    every = Path("/sys/devices/system/cpu/online").read_text().strip()  # "0-1", as /proc shows
    bundle.config["process"]["args"] = ["sleep", "100"]
    bundle.config["process"]["execCPUAffinity"] = {"initial": "0", "final": "1"}
    cid = runtime.detached(bundle)
    result = runtime("--debug", "exec", cid, "grep", "Cpus_allowed_list", "/proc/1/status",
                     "/proc/self/status")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _cpus_allowed(result.stdout) == [every, "1"]
    assert "affinity: 0x1" in result.stderr


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
@pytest.mark.parametrize("sysfs", [True, False])
def test_the_caller_s_cpu_affinity_is_not_the_container_s(
    runtime: Runtime, bundle: Bundle, sysfs: bool
) -> None:
    """galley-runc under `taskset -c 0` (a pinned shim): the container's init and an exec
    without execCPUAffinity run on every CPU, as runc's since 1.2 (runc 1.1 kept CPU 0); in
    a container without /sys and /proc/stat too, where glibc would count only the CPUs this
    process may use (the CPUs are counted in the host's /sys, before pivot_root)."""
    every = Path("/sys/devices/system/cpu/online").read_text().strip()  # "0-1", as /proc shows
    if not sysfs:
        mounts = bundle.config["mounts"]
        mounts[:] = [m for m in mounts if not m["destination"].startswith("/sys")]
        bundle.config["linux"].setdefault("maskedPaths", []).append("/proc/stat")
    bundle.config["process"]["args"] = ["sleep", "100"]

    def pinned() -> None:
        os.sched_setaffinity(0, {0})

    cid = runtime.new_id()
    runtime.created.append(cid)
    subprocess.run(
        [runtime.binary, "--root", str(runtime.root), "run", "-d", "-b", str(bundle.write()), cid],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, preexec_fn=pinned,
    )  # fmt: skip
    result = runtime("exec", cid, "grep", "Cpus_allowed_list", "/proc/1/status",
                     "/proc/self/status", preexec_fn=pinned)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _cpus_allowed(result.stdout) == [every, every]
