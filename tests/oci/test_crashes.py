"""A galley-runc command SIGKILLed at any moment, or racing another command on the same
container, leaves a root that still works: the next command sees a consistent state and
`delete --force` removes everything the container had (its processes, cgroups and state).

The kill moments are spread over a command's whole run (a `create` takes ~50 ms here), so
that each trial stops it somewhere else: before the state is reserved, while the stage
builds the root, while the init waits, before state.json is written. runc 1.1.5 leaves the
container's cgroups behind in about half of such trials, so these tests run galley-runc only.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from galley.oci.spec import Resources
from tests.oci.cgroup_fixtures import controller_file
from tests.oci.conftest import Bundle, Runtime, create_in_files, wait_status

KILL_AFTER_MS = (0, 4, 8, 12, 16, 20, 25, 30, 40, 55)


def _marked(bundle: Bundle) -> str:
    """Make the bundle run a shell whose command line carries a fresh marker, to find its
    processes by; the marker."""
    marker = f"crash-{uuid.uuid4().hex[:10]}"
    bundle.config["process"]["args"] = ["sh", "-c", f"sleep 1000; echo {marker}"]
    bundle.write()
    return marker


def _command_lines() -> dict[int, str]:
    """pid -> command line (NULs as spaces) of every live process (zombies have none)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            found[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return found


def _stages() -> set[int]:
    """The pids of galley-runc stages (their title, galley.oci.init.run_stage)."""
    return {pid for pid, line in _command_lines().items() if line.startswith("galley-runc init")}


def _naming(*words: str) -> list[str]:
    """Command lines of live processes that contain one of words."""
    return [
        f"{pid}: {line}" for pid, line in _command_lines().items() if any(w in line for w in words)
    ]


def _cgroups(cid: str) -> list[str]:
    """The container's cgroup in every hierarchy (no cgroupsPath: /<id>, as runc's)."""
    return sorted(set(glob.glob(f"/sys/fs/cgroup/*/{cid}") + glob.glob(f"/sys/fs/cgroup/{cid}")))


def _assert_nothing_left(runtime: Runtime, cid: str, marker: str, stages: set[int]) -> None:
    """Once the container was deleted: none of its processes, stages, cgroups or state.
    Orphaned stages and processes get two seconds to notice and go."""
    deadline = time.monotonic() + 2
    while True:
        left = {
            "processes": _naming(cid, marker),
            "stages": sorted(_stages() - stages),
            "cgroups": _cgroups(cid),
            "state": [str(runtime.root / cid)] if (runtime.root / cid).exists() else [],
        }
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not any(left.values()), left


def _killed_after(runtime: Runtime, delay_ms: int, *args: str) -> None:
    """Start the command and SIGKILL it delay_ms later (or after it ended)."""
    proc = runtime.popen(*args)
    time.sleep(delay_ms / 1000)
    proc.kill()
    proc.wait()


def _usable(runtime: Runtime) -> None:
    """The root still lists (a half-made container is no reason to fail `list`)."""
    listed = runtime("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    json.loads(listed.stdout or "null")


@pytest.mark.parametrize("command", ["create", "run -d", "run"])
def test_a_create_killed_at_any_moment_is_undone_by_delete(
    runtime: Runtime, bundle: Bundle, command: str
) -> None:
    marker = _marked(bundle)
    stages = _stages()
    for delay in KILL_AFTER_MS:
        cid = runtime.new_id()
        _killed_after(runtime, delay, *command.split(), "--bundle", str(bundle.path), cid)
        _usable(runtime)
        state = runtime("state", cid)
        if state.returncode == 0:  # state.json was written: the container is whole
            assert json.loads(state.stdout)["status"] in {"created", "running"}
        deleted = runtime("delete", "--force", cid)
        assert deleted.returncode == 0 or "does not exist" in deleted.stderr, deleted.stderr
        _assert_nothing_left(runtime, cid, marker, stages)


def test_a_delete_killed_at_any_moment_is_finished_by_the_next(
    runtime: Runtime, bundle: Bundle
) -> None:
    marker = _marked(bundle)
    stages = _stages()
    for delay in KILL_AFTER_MS[:6]:
        cid = runtime.detached(bundle)
        _killed_after(runtime, delay, "delete", "--force", cid)
        _usable(runtime)
        again = runtime("delete", "--force", cid)
        assert again.returncode == 0 or "does not exist" in again.stderr, again.stderr
        _assert_nothing_left(runtime, cid, marker, stages)


def test_an_exec_killed_at_any_moment_leaves_no_stage(runtime: Runtime, bundle: Bundle) -> None:
    """The container keeps running and takes further execs; what the killed exec left is
    at most its own process, started in the container."""
    marker = _marked(bundle)
    stages = _stages()
    cid = runtime.detached(bundle)
    for delay in KILL_AFTER_MS:
        _killed_after(runtime, delay, "exec", cid, "sleep", "999")
        assert runtime("exec", cid, "true").returncode == 0
        deadline = time.monotonic() + 2
        while (new := _stages() - stages) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not new
        state = runtime("state", cid)
        assert json.loads(state.stdout)["status"] == "running", state.stderr
    assert runtime("delete", "--force", cid).returncode == 0
    _assert_nothing_left(runtime, cid, marker, stages)


def test_an_update_killed_at_any_moment_leaves_a_container_the_next_update_sets(
    runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    """A killed update may leave some of its values written (its record of the old ones
    dies with it, as runc's would), but no lock, and state.json readable: the container runs
    on, and the next update lands whole."""
    bundle.config["linux"]["cgroupsPath"] = parent
    pids_max = Path(controller_file(parent, "pids", "pids.max"))
    marker = _marked(bundle)
    stages = _stages()
    cid = runtime.detached(bundle)
    resources: Resources = {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 200 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 100},
    }
    for number, delay in enumerate(KILL_AFTER_MS[:8]):
        resources["pids"]["limit"] = 100 + number
        path = bundle.path / "resources.json"
        path.write_text(json.dumps(resources))
        _killed_after(runtime, delay, "update", "-r", str(path), cid)
        state = runtime("state", cid)
        assert json.loads(state.stdout)["status"] == "running", state.stderr
        again = runtime("update", "--pids-limit", str(500 + number), cid)
        assert again.returncode == 0, again.stderr
        assert pids_max.read_text().strip() == str(500 + number)
    assert runtime("exec", cid, "true").returncode == 0
    assert runtime("delete", "--force", cid).returncode == 0
    _assert_nothing_left(runtime, cid, marker, stages)


def test_creates_of_one_id_at_once_make_one_container(runtime: Runtime, bundle: Bundle) -> None:
    """runc 1.1.5 fails this now and then: all four creates refused, or the winner's state
    unreadable (2 runs of 9 here)."""
    marker = _marked(bundle)
    cid = runtime.new_id()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: create_in_files(runtime, bundle, cid), range(4)))
    assert sorted(r.returncode for r in results) == [0, 1, 1, 1]
    for result in results:
        assert result.returncode == 0 or "already exists" in result.stderr, result.stderr
    assert json.loads(runtime("state", cid).stdout)["status"] == "created"
    assert runtime("delete", "--force", cid).returncode == 0
    assert not (runtime.root / cid).exists()
    assert not _naming(marker)


def test_a_delete_during_execs_leaves_nothing(runtime: Runtime, bundle: Bundle) -> None:
    """Execs still starting when `delete --force` comes are killed with the container, or
    refused; none of their stages or processes outlives it."""
    marker = _marked(bundle)
    stages = _stages()
    for delay in KILL_AFTER_MS[::3]:
        cid = runtime.detached(bundle)
        argv = ("exec", cid, "sh", "-c", f"sleep 999; echo {marker}")
        execs = [runtime.popen(*argv) for _ in range(3)]
        try:
            time.sleep(delay / 1000)
            deleted = runtime("delete", "--force", cid)
            assert deleted.returncode == 0, deleted.stderr
            for proc in execs:
                assert proc.wait(timeout=10) != 0  # killed (137) or refused (1)
        finally:
            for proc in execs:
                proc.kill()
                proc.wait()
        _assert_nothing_left(runtime, cid, marker, stages)


def _foreground_run(rt: Runtime, bundle: Bundle, cid: str) -> subprocess.Popen[bytes]:
    """`run` in the foreground, its stderr piped; returns once the container runs."""
    rt.created.append(cid)
    proc = subprocess.Popen(
        [rt.binary, "--root", str(rt.root), "run", "--bundle", str(bundle.write()), cid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while rt("state", cid).returncode != 0:  # not made yet
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.02)
    wait_status(rt, cid, "running")
    return proc


def test_a_foreground_run_whose_container_another_command_deleted_exits_quietly(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """`delete --force` from elsewhere while `run` waits: run ends with the container's status
    (137, killed) and says nothing, as runc (galley's cleanup once failed on the lock file
    the delete had removed)."""
    bundle.config["process"]["args"] = ["sleep", "1000"]
    cid = any_runtime.new_id()
    run = _foreground_run(any_runtime, bundle, cid)
    try:
        deleted = any_runtime("delete", "--force", cid)
        assert deleted.returncode == 0, deleted.stderr
        _, err = run.communicate(timeout=10)
    finally:
        run.kill()
        run.wait()
    assert (run.returncode, err.decode()) == (137, "")
    assert not (any_runtime.root / cid).exists()


def test_a_foreground_run_leaves_alone_a_container_made_under_its_id_meanwhile(
    runtime: Runtime, bundle: Bundle
) -> None:
    """While `run` is held (SIGSTOP) another command deletes its container and creates a new
    one of the same id. Once run goes on, it finds its container gone and leaves the new
    one as it is. runc 1.1.5 removes the new container's state there, and its init and
    cgroups are left with nothing to find them by: so galley-runc only."""
    marker = _marked(bundle)
    cid = runtime.new_id()
    run = _foreground_run(runtime, bundle, cid)
    try:
        run.send_signal(signal.SIGSTOP)
        deleted = runtime("delete", "--force", cid)
        assert deleted.returncode == 0, deleted.stderr
        made = create_in_files(runtime, bundle, cid)
        assert made.returncode == 0, made.stderr
        new_pid = json.loads(runtime("state", cid, check=True).stdout)["pid"]
        run.send_signal(signal.SIGCONT)
        _, err = run.communicate(timeout=10)
    finally:
        run.kill()
        run.wait()
    assert (run.returncode, err.decode()) == (137, "")
    now = json.loads(runtime("state", cid, check=True).stdout)
    assert (now["status"], now["pid"]) == ("created", new_pid)
    assert runtime("delete", "--force", cid).returncode == 0
    _assert_nothing_left(runtime, cid, marker, _stages())


def _waiting_for_lock(path: Path) -> int:
    """How many processes wait for a lock on path's file (/proc/locks' "->" lines)."""
    st = path.stat()
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if " -> " in line and inode in line)


def test_updates_at_once_keep_both_records(runtime: Runtime, bundle: Bundle) -> None:
    """Two updates that read state.json before either held the container's lock: the one
    that gets the lock second reads state.json again, so its record keeps the first one's
    change (it used to save what it read before the lock, and the first record was lost)."""
    marker = _marked(bundle)
    cid = runtime.detached(bundle)
    lock = runtime.root / cid / "lock"
    with lock.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        updates = [
            runtime.popen("update", "--memory", str(300 << 20), cid),
            runtime.popen("update", "--pids-limit", "77", cid),
        ]
        deadline = time.monotonic() + 10
        while _waiting_for_lock(lock) < 2:
            assert time.monotonic() < deadline, "the updates never waited for the lock"
            time.sleep(0.01)
    for proc in updates:
        assert proc.wait(timeout=10) == 0
    state = json.loads((runtime.root / cid / "state.json").read_text())
    recorded = state["config"]["linux"]["resources"]
    assert (recorded["memory"]["limit"], recorded["pids"]["limit"]) == (300 << 20, 77)
    assert runtime("delete", "--force", cid).returncode == 0
    _assert_nothing_left(runtime, cid, marker, _stages())
