"""docker drives galley-runc through its containerd and the runc v2 shim, as it drives runc.

Debian's docker.io (20.10) is the tool most written for runc: a runtime named in daemon.json
is called by containerd's shim with docker's own config.json (its default seccomp profile,
masked paths, device list, capabilities and resources from `docker run`'s options), and by
`docker exec`, pause, top, update, stop, kill and restart. Each test runs on galley-runc and
on runc, and expects the same; the ones that compare what a container sees run both and
compare the two.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from galley.fixtures.docker import TOOLS, Docker
from tests.oci.conftest import MEMORY_LIMIT, RUNC_CGROUP_TMPFS, RUNTIMES, under_a_tty

IMAGE = "galley/busybox:docker"
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in TOOLS), reason="docker.io is not installed"
    ),
]


@pytest.fixture(scope="module")
def docker(busybox_rootfs: Path) -> Iterator[Docker]:
    """One dockerd for the module, with the busybox image imported."""
    top = Path(tempfile.mkdtemp(prefix="galley-docker-"))
    daemon = Docker(top, RUNTIMES)
    try:
        daemon.import_rootfs(busybox_rootfs, IMAGE)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(top)


@pytest.fixture(params=sorted(RUNTIMES))
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtime docker's shim calls, by its name in RUNTIMES."""
    name: str = request.param
    return name


def _run(
    docker: Docker, runtime: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`docker run` on runtime, with no network; args are run's options, image and command."""
    return docker("run", *docker.run_options(runtime), *args, check=check)


def _detached(docker: Docker, runtime: str, *options: str) -> str:
    return _run(docker, runtime, "-d", *options, IMAGE, "sleep", "600").stdout.strip()


def _inspect(docker: Docker, what: str, container: str) -> str:
    return docker("inspect", "--format", what, container).stdout.strip()


def test_run_relays_output_exit_status_and_cgroup(docker: Docker, runtime: str) -> None:
    script = "echo out; echo err >&2; cat /proc/self/cgroup; exit 3"
    result = _run(docker, runtime, "--rm", "--cgroupns", "host", IMAGE, "sh", "-c", script,
                  check=False)  # fmt: skip
    assert result.returncode == 3, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "out" and result.stderr == "err\n"
    assert all(f":{docker.cgroup_parent}/" in line for line in out[1:]), out


def test_a_failing_create_reads_as_runcs(docker: Docker, runtime: str) -> None:
    result = _run(docker, runtime, "--rm", IMAGE, "/nosuch", check=False)
    assert result.returncode == 127, result.stderr
    assert "OCI runtime create failed: " in result.stderr
    assert 'exec: "/nosuch": stat /nosuch: no such file or directory' in result.stderr


def test_a_detached_container_takes_exec_pause_top_update_stop_and_restart(
    docker: Docker, runtime: str
) -> None:
    name = _detached(docker, runtime)
    probe = docker("exec", "-u", "1000:100", "-w", "/tmp", "-e", "A=1", name, "sh", "-c",
                   "id -u; id -g; pwd; echo $A")  # fmt: skip
    assert probe.stdout.split() == ["1000", "100", "/tmp", "1"]
    assert docker("exec", name, "sh", "-c", "exit 7", check=False).returncode == 7
    missing = docker("exec", name, "/nosuch", check=False)
    assert missing.returncode == 126  # docker prints this error on stdout
    assert "OCI runtime exec failed" in missing.stdout + missing.stderr
    docker("exec", "-d", name, "sh", "-c", "echo later > /tmp/d")
    docker("pause", name)
    assert _inspect(docker, "{{.State.Status}}", name) == "paused"
    assert "sleep 600" in docker("top", name).stdout
    docker("unpause", name)
    assert docker("exec", name, "cat", "/tmp/d").stdout == "later\n"
    docker("update", "--memory", "64m", "--memory-swap", "64m", "--pids-limit", "20", name)
    limit = docker("exec", name, "sh", "-c", MEMORY_LIMIT)
    assert limit.stdout.strip() == str(64 << 20)
    docker("stop", "--time", "1", name)  # sleep as pid 1 ignores SIGTERM: then KILL
    assert _inspect(docker, "{{.State.Status}} {{.State.ExitCode}}", name) == "exited 137"
    docker("start", name)
    assert _inspect(docker, "{{.State.Status}}", name) == "running"
    docker("restart", "--time", "0", name)
    assert _inspect(docker, "{{.State.Status}} {{.RestartCount}}", name) == "running 0"
    docker("rm", "--force", name)


def test_kill_reaches_the_container_and_logs_show_it(docker: Docker, runtime: str) -> None:
    script = 'trap "echo got-usr1" USR1; echo started; while :; do sleep 0.1; done'
    name = _run(docker, runtime, "-d", IMAGE, "sh", "-c", script).stdout.strip()
    docker("kill", "--signal", "USR1", name)
    logs = ""
    for _ in range(50):
        logs = docker("logs", name).stdout
        if "got-usr1" in logs:
            break
        time.sleep(0.1)
    assert logs.split() == ["started", "got-usr1"]
    docker("kill", name)
    assert docker("wait", name).stdout.strip() == "137"
    docker("rm", name)


def test_stdin_reaches_run_and_exec_and_stop_sends_the_stop_signal(
    docker: Docker, runtime: str
) -> None:
    """-i: the shim's stdin pipe is the process's stdin, in `run` and in `exec`. `stop` sends
    --stop-signal (a trap exits 9), and docker-init (--init) passes SIGTERM on to its child,
    which a bare pid 1 would ignore."""

    def fed(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
        argv = [docker.client, *args]
        return subprocess.run(
            argv, input=data, capture_output=True, env=docker.env, timeout=60, check=False
        )

    run = ["run", "-i", "--rm", *docker.run_options(runtime), IMAGE, "wc", "-c"]
    assert fed(run, b"x" * 100000).stdout == b"100000\n"
    name = _detached(docker, runtime)
    exec_i = fed(["exec", "-i", name, "sh", "-c", "wc -c; exit 4"], b"y" * 5000)
    assert (exec_i.returncode, exec_i.stdout) == (4, b"5000\n")
    docker("rm", "--force", name)
    script = "trap 'exit 9' USR1; while :; do sleep 0.1; done"
    trapped = _run(docker, runtime, "-d", "--stop-signal", "USR1", IMAGE, "sh", "-c", script)
    with_init = _run(docker, runtime, "-d", "--init", IMAGE, "sleep", "600")
    for name, status in ((trapped.stdout.strip(), "9"), (with_init.stdout.strip(), "143")):
        docker("stop", "--time", "30", name)  # KILL after 30 s would say 137
        assert _inspect(docker, "{{.State.ExitCode}}", name) == status
        docker("rm", name)


def test_run_and_exec_with_a_terminal_get_the_callers_size(
    docker: Docker, runtime: str, tmp_path: Path
) -> None:
    """`docker run -it` and `docker exec -it`: the shim takes the pty master from the console
    socket and sizes it to the client's terminal. The client sends the size once the process
    has started (on either runtime a `stty size` at once may see 0 0), so the process waits
    a little first."""
    script = "sleep 0.3; tty; stty size"
    run = [*docker.run_options(runtime), "--rm", "-it", IMAGE, "sh", "-c", script]
    seen = _on_a_tty(docker, "33 77", ["run", *run], tmp_path)
    assert b"/dev/pts/0\r\n33 77\r\n" in seen, seen
    name = _detached(docker, runtime)
    seen = _on_a_tty(docker, "30 90", ["exec", "-it", name, "sh", "-c", script], tmp_path)
    assert b"/dev/pts/0\r\n30 90\r\n" in seen, seen
    docker("rm", "--force", name)


def _on_a_tty(docker: Docker, size: str, args: list[str], tmp_path: Path) -> bytes:
    """The client with args, on a pty of its own sized "rows cols": what it showed."""
    rows, cols = size.split()
    client = shlex.join([docker.client, *args])
    command = ["sh", "-c", f"stty rows {rows} cols {cols}; exec {client}"]
    return under_a_tty(command, tmp_path, held=True, env=docker.env)


def test_dockers_spec_gives_the_container_runc_gives(docker: Docker, tmp_path: Path) -> None:
    """docker's options for a container (its seccomp profile, capabilities added and dropped,
    no-new-privileges, a read-only root with a tmpfs, a read-only volume, a device, rlimits,
    resources, a sysctl, /dev/shm's size, oom_score_adj, user and groups, docker-init as pid
    1): the container looks the same from inside on both runtimes."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "f").write_text("v\n")
    options = ["--rm", "--read-only", "--tmpfs", "/scratch:size=1m", "-v", f"{volume}:/vol:ro"]
    options += ["--device", "/dev/zero:/dev/myzero", "--cap-add", "SYS_PTRACE"]
    options += ["--cap-drop", "NET_RAW", "--security-opt", "no-new-privileges"]
    options += ["--ulimit", "nofile=100:200", "--pids-limit", "50", "--cpus", "0.5"]
    options += ["--memory", "64m", "--sysctl", "kernel.shm_rmid_forced=1", "--shm-size", "8m"]
    options += ["--oom-score-adj", "300", "--hostname", "hh", "--init", "-u", "1000:1000"]
    options += ["--group-add", "10", "--env", "A=1", "--workdir", "/tmp"]
    probe = (
        "id; touch /x 2>&1; touch /scratch/y && echo scratch; cat /vol/f; ls -l /dev/myzero;"
        " grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; ulimit -n; ulimit -Hn;"
        f" {MEMORY_LIMIT}; cat /sys/fs/cgroup/pids/pids.max || cat /sys/fs/cgroup/pids.max;"
        " cat /proc/sys/kernel/shm_rmid_forced /proc/self/oom_score_adj; df -k /dev/shm | tail -1;"
        " hostname; echo $A; pwd; umask; tr '\\0' ' ' < /proc/1/cmdline; echo;"
        " ls -l /dev | cut -c1-10,35- | sort; awk '{print $5, $6, $9}' /proc/self/mountinfo | sort"
    )
    seen = {}
    for runtime in sorted(RUNTIMES):
        result = _run(docker, runtime, *options, IMAGE, "sh", "-c", probe, check=False)
        assert result.returncode == 0, result.stderr
        seen[runtime] = result.stdout
    galley = seen["galley"].splitlines()
    assert galley[:4] == [
        "uid=1000 gid=1000 groups=10,1000",
        "touch: /x: Read-only file system",
        "scratch",
        "v",
    ]
    assert {"NoNewPrivs:\t1", "Seccomp:\t2", "100", "200", str(64 << 20), "50", "300"} <= set(
        galley
    )
    assert "/sbin/docker-init -- sh -c " in seen["galley"]
    if "runc" in seen:
        assert seen["runc"].replace(*RUNC_CGROUP_TMPFS) == seen["galley"]


def test_containers_sharing_namespaces(docker: Docker, runtime: str) -> None:
    """--pid/--ipc/--network container:<id>: the runtime joins the first container's
    namespaces by path, as for a pod's containers."""
    first = _detached(docker, runtime, "--ipc", "shareable")
    joins = [f"--{kind}=container:{first}" for kind in ("pid", "ipc", "network")]
    script = "ps -o args | grep -c '^sleep 600'; ls -l /proc/1/ns /proc/self/ns | grep -E 'ipc|net'"
    run = ["run", "--runtime", docker.runtimes[runtime], "--rm", *joins, IMAGE, "sh", "-c", script]
    out = docker(*run).stdout.splitlines()
    assert out[0] == "1"
    links = [line.split("->")[1].strip() for line in out[1:]]
    assert len(links) == 4 and links[:2] == links[2:], out  # pid 1's are ours
    docker("rm", "--force", first)


def test_healthcheck_and_restart_policy(docker: Docker, runtime: str) -> None:
    """A healthcheck is an exec every interval; on-failure:2 starts the container again
    after each failing exit, twice."""
    healthy = _detached(docker, runtime, "--health-cmd", "test -e /tmp/ok",
                        "--health-interval", "200ms")  # fmt: skip
    docker("exec", healthy, "touch", "/tmp/ok")
    for _ in range(100):
        if _inspect(docker, "{{.State.Health.Status}}", healthy) == "healthy":
            break
        time.sleep(0.1)
    assert _inspect(docker, "{{.State.Health.Status}}", healthy) == "healthy"
    docker("rm", "--force", healthy)
    failing = _run(docker, runtime, "-d", "--restart", "on-failure:2", IMAGE, "sh", "-c",
                   "exit 5").stdout.strip()  # fmt: skip
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:
        seen = _inspect(docker, "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", failing)
        if seen == "2 exited 5":
            break
        time.sleep(0.2)
    assert seen == "2 exited 5"
    docker("rm", "--force", failing)


def test_containers_outlive_a_daemon_restart_with_live_restore(busybox_rootfs: Path) -> None:
    """live-restore: dockerd stops (its containerd with it) and the containers and their
    shims go on. The daemon started again finds them running, and exec, pause and stop
    reach them through each runtime, with the state it left under its --root."""
    top = Path(tempfile.mkdtemp(prefix="galley-docker-"))
    daemon = Docker(top, RUNTIMES, settings={"live-restore": True})
    try:
        daemon.import_rootfs(busybox_rootfs, IMAGE)
        script = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
        started = {
            runtime: _run(daemon, runtime, "-d", IMAGE, "sh", "-c", script).stdout.strip()
            for runtime in RUNTIMES
        }
        daemon.restart()
        for container in started.values():
            assert _inspect(daemon, "{{.State.Status}}", container) == "running"
            assert daemon("exec", container, "echo", "alive").stdout == "alive\n"
            daemon("pause", container)
            assert _inspect(daemon, "{{.State.Status}}", container) == "paused"
            daemon("unpause", container)
            daemon("stop", "--time", "30", container)
            assert _inspect(daemon, "{{.State.ExitCode}}", container) == "7"
    finally:
        daemon.stop()
        shutil.rmtree(top)


def _bounding_set() -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("CapBnd:"))
    return int(line.split()[1], 16)


def test_privileged(docker: Docker, runtime: str) -> None:
    """--privileged asks for every capability docker knows, every host device and no
    seccomp filter. runc 1.1.5 fails when the caller's bounding set lacks one of them (this
    machine has no CAP_SYS_RESOURCE); galley-runc grants what the bounding set holds."""
    script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; test -c /dev/kmsg && echo kmsg"
    result = _run(docker, runtime, "--rm", "--privileged", IMAGE, "sh", "-c", script, check=False)
    sys_resource = 1 << 24
    if runtime == "runc" and not _bounding_set() & sys_resource:
        assert result.returncode != 0 and "unable to apply caps" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    eff, seccomp, kmsg = result.stdout.splitlines()
    all_docker_knows = (1 << 38) - 1  # up to CAP_AUDIT_READ
    assert int(eff.split()[1], 16) == all_docker_knows & _bounding_set()
    assert (seccomp, kmsg) == ("Seccomp:\t0", "kmsg")


def test_runs_at_once(docker: Docker, runtime: str) -> None:
    """Eight `docker run --rm`s at once: each container runs, prints and is removed."""

    def one(n: int) -> str:
        return _run(docker, runtime, "--rm", IMAGE, "echo", f"c{n}").stdout.strip()

    before = docker("ps", "--all", "--quiet").stdout
    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(one, range(8))) == [f"c{n}" for n in range(8)]
    assert docker("ps", "--all", "--quiet").stdout == before


BUILD = """FROM {image}
RUN echo built > /x && id -u > /root-uid
USER 1000:100
RUN id > /tmp/id && (touch /y 2>/dev/null || echo not root > /tmp/denied)
"""


def test_a_build_runs_its_steps_on_the_default_runtime(
    busybox_rootfs: Path, runtime: str, tmp_path: Path
) -> None:
    """`docker build` (the classic builder) runs each RUN step as a container on the daemon's
    default runtime, as root and as the Dockerfile's USER; a failing step fails the build
    with its exit status. The runtime is called through a wrapper that logs its commands:
    the proof that the steps ran on it."""
    calls = tmp_path / "calls"
    wrapper = tmp_path / "runtime"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {RUNTIMES[runtime]} "$@"\n')
    wrapper.chmod(0o755)
    top = Path(tempfile.mkdtemp(prefix="galley-docker-"))
    daemon = Docker(top, {runtime: str(wrapper)}, default=runtime)
    try:
        daemon.import_rootfs(busybox_rootfs, IMAGE)
        context = tmp_path / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(BUILD.format(image=IMAGE))
        daemon("build", "--tag", "built", str(context), env={"DOCKER_BUILDKIT": "0"})
        creates = [line for line in calls.read_text().splitlines() if " create " in line]
        assert len(creates) == 2, creates  # the two RUN steps
        files = ["/x", "/root-uid", "/tmp/id", "/tmp/denied"]
        seen = daemon("run", "--rm", *daemon.run_options(runtime), "built", "cat", *files)
        assert seen.stdout.splitlines() == [
            "built",
            "0",
            "uid=1000 gid=100 groups=100",
            "not root",
        ]
        (context / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN exit 3\n")
        failed = daemon("build", str(context), env={"DOCKER_BUILDKIT": "0"}, check=False)
        assert failed.returncode != 0
        assert "returned a non-zero code: 3" in failed.stdout + failed.stderr
    finally:
        daemon.stop()
        shutil.rmtree(top)
