"""containerd drives galley-runc through its own runc shim, as it drives runc.

Debian's containerd and containerd-shim-runc-v2 are a real tool written for runc: `ctr run
--runc-binary` makes the shim call galley-runc instead. The shim's calls (create with --log
json, --pid-file and a console socket; start; exec --process --detach --pid-file; ps
--format json; pause; resume; kill; delete) and its reading of their output, exit statuses
and pid files are what a kubelet's containers go through. Each test runs on galley-runc and
on runc, and expects the same.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.fixtures.containerd import TOOLS, Containerd
from galley.fixtures.images import busybox_image, write_oci_layout
from galley.oci.cgroups.layout import detect
from tests.oci.cgroup_fixtures import remove_everywhere
from tests.oci.conftest import RUNTIMES, under_a_tty

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in TOOLS), reason="containerd is not installed"
    ),
]
IMAGE = "localhost/galley/busybox:shim"


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A private containerd with a busybox image built here (no registry, no download)."""
    workdir = tmp_path_factory.mktemp("containerd")
    layout = write_oci_layout(workdir / "layout", busybox_image(extra_layers=0), IMAGE)
    archive = workdir / "busybox.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(layout.iterdir()):
            tar.add(entry, arcname=entry.name)
    (workdir / "daemon").mkdir()
    daemon = Containerd(workdir / "daemon", "galley-test")
    try:
        daemon.ctr("images", "import", str(archive))
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(params=sorted(RUNTIMES))
def binary(request: pytest.FixtureRequest) -> str:
    """The runtime the shim calls: galley-runc, and runc where it is installed."""
    return RUNTIMES[request.param]


@pytest.fixture
def task_id(containerd: Containerd) -> Iterator[str]:
    """A fresh container id; its task and container are removed afterwards."""
    cid = f"shim-{uuid.uuid4().hex[:10]}"
    yield cid
    containerd.ctr("task", "kill", "--signal", "SIGKILL", cid, check=False)
    _wait_status(containerd, cid, "STOPPED", allow_gone=True)
    containerd.ctr("task", "delete", cid, check=False)
    containerd.ctr("container", "delete", cid, check=False)


def _status(containerd: Containerd, cid: str) -> str | None:
    for line in containerd.ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return fields[-1]
    return None


def _wait_status(containerd: Containerd, cid: str, want: str, *, allow_gone: bool = False) -> None:
    deadline = time.monotonic() + 10
    while (status := _status(containerd, cid)) != want:
        if status is None and allow_gone:
            return
        assert time.monotonic() < deadline, f"task {cid} is {status}, not {want}"
        time.sleep(0.05)


def test_run_relays_output_and_exit_status(
    containerd: Containerd, binary: str, task_id: str
) -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; cat /proc/self/cgroup; exit 3"]
    result = containerd.ctr(
        "run", "--rm", "--runc-binary", binary, IMAGE, task_id, *argv, check=False
    )
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "out" and "err" in result.stderr
    assert any(line.endswith(f":/galley-test/{task_id}") for line in lines[1:]), lines


def test_a_failing_create_reads_as_runcs(containerd: Containerd, binary: str, task_id: str) -> None:
    result = containerd.ctr(
        "run", "--rm", "--runc-binary", binary, IMAGE, task_id, "/nosuch", check=False
    )
    assert result.returncode == 1
    assert 'create failed: unable to start container process: exec: "/nosuch": ' in result.stderr


def test_a_detached_task_takes_exec_ps_pause_and_kill(
    containerd: Containerd, binary: str, task_id: str
) -> None:
    containerd.ctr("run", "-d", "--runc-binary", binary, IMAGE, task_id, "sleep", "600")
    _wait_status(containerd, task_id, "RUNNING")
    exec_ok = containerd.ctr(
        "task", "exec", "--exec-id", "e1", task_id, "sh", "-c", "echo in; id -u"
    )
    assert exec_ok.stdout.split() == ["in", "0"]
    status = containerd.ctr(
        "task", "exec", "--exec-id", "e2", task_id, "sh", "-c", "exit 7", check=False
    )
    assert status.returncode == 7
    missing = containerd.ctr("task", "exec", "--exec-id", "e3", task_id, "/nosuch", check=False)
    assert missing.returncode == 1
    assert 'exec failed: unable to start container process: exec: "/nosuch": ' in missing.stderr
    pids = containerd.ctr("task", "ps", task_id).stdout.split()[2::2]
    assert len(pids) == 1 and os.path.exists(f"/proc/{pids[0]}")
    containerd.ctr("task", "pause", task_id)
    assert _status(containerd, task_id) == "PAUSED"
    containerd.ctr("task", "resume", task_id)
    assert _status(containerd, task_id) == "RUNNING"
    containerd.ctr("task", "kill", "--signal", "SIGKILL", task_id)
    _wait_status(containerd, task_id, "STOPPED")
    containerd.ctr("task", "delete", task_id)
    assert _status(containerd, task_id) is None


def test_a_terminal_task(containerd: Containerd, binary: str, task_id: str, tmp_path: Path) -> None:
    """`ctr run -t`: the shim hands galley-runc a console socket; script(1) gives ctr a pty."""
    ctr = ["ctr", "--address", containerd.socket, "-n", containerd.namespace]
    command = [*ctr, "run", "--rm", "-t", "--runc-binary", binary, IMAGE, task_id]
    command += ["sh", "-c", "tty; echo tty-ok"]
    seen = under_a_tty(command, tmp_path)
    assert b"/dev/pts/0\r\r\ntty-ok\r\r\n" in seen, seen  # the container's ONLCR, then ctr's


def test_containerds_spec_gives_the_container_runc_gives(
    containerd: Containerd, tmp_path: Path
) -> None:
    """ctr's spec options (its default seccomp profile, dropped capabilities, a read-only
    root, a read-only bind mount, env and cwd): the container looks the same from inside on
    galley-runc and on runc."""
    probe = (
        "id; pwd; echo A=$A; grep -E 'Seccomp:|CapEff|NoNewPrivs' /proc/self/status; ulimit -n;"
        " touch /x 2>&1; ls /host; touch /host/y 2>&1; mount | cut -d' ' -f1-5"
    )
    (tmp_path / "marker").write_text("")
    seen = {}
    for name, binary in sorted(RUNTIMES.items()):
        cid = f"spec-{name}-{uuid.uuid4().hex[:8]}"
        options = ["--rm", "--seccomp", "--runc-binary", binary, "--cwd", "/tmp", "--env", "A=B"]
        options += ["--cap-drop", "CAP_NET_RAW", "--read-only"]
        options += ["--mount", f"type=bind,src={tmp_path},dst=/host,options=rbind:ro"]
        result = containerd.ctr("run", *options, IMAGE, cid, "sh", "-c", probe, check=False)
        assert result.returncode == 0, result.stderr
        seen[name] = result.stdout
    galley = seen["galley"].splitlines()
    assert "A=B" in galley and "/tmp" in galley and "NoNewPrivs:\t1" in galley
    assert "Seccomp:\t2" in galley and "marker" in galley
    assert galley.count("touch: /x: Read-only file system") == 1
    assert galley.count("touch: /host/y: Read-only file system") == 1
    if "runc" in seen:
        assert seen["runc"] == seen["galley"]


def test_systemd_cgroups_as_the_cri_plugin_asks_for_them(
    containerd: Containerd, task_id: str
) -> None:
    """containerd with SystemdCgroup = true: its shim adds --systemd-cgroup to every call,
    and the CRI plugin's cgroupsPath is "kubepods-…-pod<uid>.slice:cri-containerd:<id>".
    The task runs in that scope and leaves none behind. galley-runc only: runc's systemd
    driver needs a running systemd, which this machine has not."""
    top = f"galleytest{uuid.uuid4().hex[:8]}"
    pod = f"{top}-pod1.slice"
    scope = f"/{top}.slice/{pod}/cri-containerd-{task_id}.scope"
    options = ["--rm", "--runc-binary", RUNTIMES["galley"], "--runc-systemd-cgroup"]
    options += ["--cgroup", f"{pod}:cri-containerd:{task_id}"]
    layout = detect()
    pids = layout.v1.get("pids") or layout.unified
    assert pids is not None
    try:
        result = containerd.ctr(
            "run", *options, IMAGE, task_id, "cat", "/proc/self/cgroup", check=False
        )
        assert result.returncode == 0, result.stderr
        assert any(line.endswith(f":{scope}") for line in result.stdout.splitlines()), result
        assert not os.path.exists(pids.directory(scope))
    finally:
        remove_everywhere(f"/{top}.slice")
