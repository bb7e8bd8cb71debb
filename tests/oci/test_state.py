"""state.py and status.py: state.json round trip, derived status, pid reuse, ids, locking."""

from __future__ import annotations

import json
import os
import posix
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from galley.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from galley.oci import state as st
from galley.oci.cgroups.record import remove_idle, saved_frozen
from galley.oci.status import ALLOWED, OPERATIONS, STATUSES, Operation, Status, can, require


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def make_state(root: Path, cid: str, pid: int) -> st.ContainerState:
    state_dir = st.reserve(str(root), cid)
    start = st.process_start_time(pid)
    assert start is not None
    state = st.ContainerState(
        root=str(root),
        id=cid,
        bundle="/b",
        rootfs="/b/rootfs",
        pid=pid,
        start_time=start,
        created=st.now_rfc3339(),
        annotations={"a": "b"},
        config={"ociVersion": "1.0.2"},
    )
    assert state.dir == state_dir
    state.save()
    return state


def test_round_trip_and_runc_json(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    saved = make_state(tmp_path, "c1", sleeper.pid)
    loaded = st.ContainerState.load(str(tmp_path), "c1")
    assert loaded == saved
    out = loaded.to_runc_json()
    assert list(out) == [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "annotations",
        "owner",
    ]
    assert out["status"] == "running"
    assert out["pid"] == sleeper.pid
    assert cast(str, out["created"]).endswith("Z")  # to_runc_json: dict[str, object]


def test_status_is_derived(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    state = make_state(tmp_path, "c2", sleeper.pid)
    fifo = st.fifo_path(state.dir)
    os.mkfifo(fifo)
    assert state.status() is Status.CREATED
    os.unlink(fifo)
    assert state.status() is Status.RUNNING
    sleeper.kill()
    sleeper.wait()
    assert state.status() is Status.STOPPED
    assert state.to_runc_json()["pid"] == 0
    assert state.oci_state()["status"] == "stopped"


def test_zombie_counts_as_stopped(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    state = make_state(tmp_path, "z", sleeper.pid)
    sleeper.kill()
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    assert st.process_start_time(sleeper.pid) is None
    assert state.status() is Status.STOPPED


def test_recycled_pid_is_not_our_init(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    state = make_state(tmp_path, "c3", sleeper.pid).replace(start_time=1)
    assert not state.alive()
    assert state.status() is Status.STOPPED


def test_missing_and_duplicate(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    with pytest.raises(NotFound, match='container "nope" does not exist'):
        st.ContainerState.load(str(tmp_path), "nope")
    make_state(tmp_path, "dup", sleeper.pid)
    with pytest.raises(AlreadyExists, match="already exists"):
        st.reserve(str(tmp_path), "dup")
    assert st.list_ids(str(tmp_path)) == ["dup"]
    assert st.list_ids(str(tmp_path / "absent")) == []


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../x", "a b", "x\n", "é", "a:b", "a*"])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid container ID format"):
        st.validate_id(bad)


@pytest.mark.parametrize("good", ["a", "A-b_c.d+e", "a,b", "0123", "x" * 200])
def test_valid_ids(good: str) -> None:
    assert st.validate_id(good) == good


GOOD_STATE = {
    "id": "bad", "bundle": "/b", "rootfs": "/b/rootfs", "pid": 7, "start_time": 1,
    "created": "2026-01-01T00:00:00Z",
}  # fmt: skip


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "Expecting property name"),
        ("[]", "not an object but list"),
        ("{}", "no id, bundle, rootfs, pid, start_time, created"),
        (json.dumps({**GOOD_STATE, "pid": "7"}), "pid is not an int"),
        (json.dumps({**GOOD_STATE, "pid": True}), "pid is not an int"),
        (json.dumps({**GOOD_STATE, "pid": 0}), "pid 0"),
        (json.dumps({**GOOD_STATE, "pid": -1}), "pid -1"),
        (json.dumps({**GOOD_STATE, "id": "other"}), "it names container 'other'"),
        (json.dumps({**GOOD_STATE, "config": []}), "config is not a dict"),
        (json.dumps({**GOOD_STATE, "config": {"hooks": [1]}}), "config.hooks is not an object"),
        (json.dumps({**GOOD_STATE, "config": {"linux": []}}), "config.linux is not an object"),
        (json.dumps({**GOOD_STATE, "config": {"mounts": {}}}), "config.mounts is not an array"),
        (
            json.dumps({**GOOD_STATE, "config": {"hooks": {"poststop": [1]}}}),
            "config.hooks.poststop is not an array of objects",
        ),
        (
            json.dumps({**GOOD_STATE, "config": {"linux": {"namespaces": [5]}}}),
            "config.linux.namespaces is not an array of objects",
        ),
    ],
)
def test_corrupt_state_is_reported(tmp_path: Path, content: str, reason: str) -> None:
    """Never a wrong pid to signal (-1 is every process) or another container's directory
    to remove: a damaged state.json is CorruptState, which delete --force does not clear."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / st.STATE_FILE).write_text(content)
    with pytest.raises(st.CorruptState, match=r"corrupt state\.json") as caught:
        st.ContainerState.load(str(tmp_path), "bad")
    assert reason in str(caught.value)
    assert not isinstance(caught.value, NotFound)
    damaged: list[str] = []
    assert list(st.list_states(str(tmp_path), lambda cid, _e: damaged.append(cid))) == []
    assert damaged == ["bad"]


def test_a_well_formed_state_loads(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / st.STATE_FILE).write_text(json.dumps(GOOD_STATE))
    assert st.ContainerState.load(str(tmp_path), "bad").pid == 7


def test_remove_and_lock(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    state = make_state(tmp_path, "rm", sleeper.pid)
    with st.Lock(state.dir):
        assert (Path(state.dir) / st.LOCK_FILE).exists()
    st.remove(state.dir)
    assert not Path(state.dir).exists()


@pytest.mark.parametrize("name", [st.LOCK_FILE, st.EXECS_LOCK_FILE])
def test_remove_outlasts_a_lock_file_made_again(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A command that opens its Lock while delete removes the directory makes the lock's file
    again after delete listed it (an exec's execs.lock, which it takes without the main
    lock): the directory still goes."""
    state = make_state(tmp_path, "rm", sleeper.pid)
    rmdir = os.rmdir
    made: list[str] = []

    def late_lock(path: str) -> None:
        if path == state.dir and not made:  # the first try finds the file made again
            made.append(name)
            with st.Lock(state.dir, name=name, shared=True):
                pass
        rmdir(path)

    monkeypatch.setattr(posix, "rmdir", late_lock)  # what state.remove calls
    st.remove(state.dir)
    assert made == [name]
    assert not Path(state.dir).exists()


def test_state_machine() -> None:
    assert can(Operation.START, Status.CREATED)
    assert not can(Operation.START, Status.RUNNING)
    assert can(Operation.RESUME, Status.PAUSED)
    with pytest.raises(FailedPrecondition, match="cannot start a container that has stopped"):
        require(Operation.START, Status.STOPPED, "x")
    with pytest.raises(FailedPrecondition, match="cannot start an already running container"):
        require(Operation.START, Status.RUNNING, "x")
    with pytest.raises(FailedPrecondition, match="cannot delete container x that is not stopped"):
        require(Operation.DELETE, Status.RUNNING, "x")
    assert can(Operation.DELETE, Status.CREATED)  # runc 1.1 kills it
    with pytest.raises(FailedPrecondition, match="container not running"):
        require(Operation.KILL, Status.STOPPED, "x")
    with pytest.raises(FailedPrecondition, match="container not paused"):
        require(Operation.RESUME, Status.RUNNING, "x")
    for op in OPERATIONS:
        require(op, next(iter(sorted(_allowed(op), key=lambda s: s.value))), "x")


def _allowed(op: Operation) -> set[Status]:
    return {s for s in STATUSES if can(op, s)}


def test_status_constants() -> None:
    assert [s.value for s in STATUSES] == ["creating", "created", "running", "paused", "stopped"]
    assert all(getattr(Status, s.name) is s and s.name.lower() == s.value for s in STATUSES)
    assert all(getattr(Operation, o.name) is o for o in OPERATIONS)
    assert repr(Status.PAUSED) == "Status.PAUSED"
    assert set(OPERATIONS) == set(ALLOWED)


@pytest.mark.parametrize(
    ("mode", "file", "text", "frozen"),
    [
        ("v1", "freezer.state", "FROZEN\n", True),
        ("v1", "freezer.state", "FREEZING\n", True),
        ("v1", "freezer.state", "THAWED\n", False),
        ("v2", "cgroup.freeze", "1\n", True),
        ("v2", "cgroup.freeze", "0\n", False),
    ],
)
def test_the_freezer_is_read_from_the_saved_paths(
    tmp_path: Path, mode: str, file: str, text: str, frozen: bool
) -> None:
    """`state` and `list` read the freezer without loading a cgroup manager."""
    (tmp_path / file).write_text(text)
    key = "" if mode == "v2" else "freezer"
    assert saved_frozen({"mode": mode, "paths": {key: str(tmp_path)}}) is frozen
    assert saved_frozen({"mode": mode, "paths": {key: str(tmp_path / "gone")}}) is False
    assert saved_frozen({"mode": "v1", "paths": {"memory": str(tmp_path)}}) is False


@pytest.mark.parametrize(
    "record",
    [
        {"mode": "v1", "paths": {"pids": "{d}", "cpu": 5}},
        {"mode": "v1", "paths": {"pids": "{d}"}, "unified": {"paths": ["{d}"]}},
        {"mode": "v1", "paths": {"pids": "{d}"}, "unified": {"paths": {}}},
        {"mode": "v1", "paths": {}},
        {"mode": "v1", "paths": ["{d}"]},
        {"mode": "v2", "paths": {"pids": "{d}"}},
        {"mode": "v3", "paths": {"": "{d}"}},
        {"paths": {"": "{d}"}},
    ],
)
def test_a_record_of_an_unknown_shape_is_left_to_the_manager(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    """delete's removal without the manager removes nothing of a record it does not know
    (the manager then names what is damaged)."""
    directory = tmp_path / "cgroup"
    directory.mkdir()
    text = json.dumps(record).replace("{d}", str(directory))
    assert remove_idle(json.loads(text)) is False
    assert directory.is_dir()


@pytest.mark.root
def test_a_write_without_space_keeps_the_old_file(tmp_path: Path) -> None:
    """write_private on a full file system: the error names the file, the old content stays
    and no temporary file is left."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "small", str(tmp_path)], check=True)
    try:
        path = str(tmp_path / "state.json")
        st.write_private(path, "old")
        (tmp_path / "filler").write_bytes(b"x" * 12288)
        with pytest.raises(OSError, match="No space left on device") as raised:
            st.write_private(path, "new" * 4096)
        assert raised.value.filename == path
        assert sorted(os.listdir(tmp_path)) == ["filler", "state.json"]
        assert (tmp_path / "state.json").read_text() == "old"
    finally:
        subprocess.run(["umount", str(tmp_path)], check=True)
