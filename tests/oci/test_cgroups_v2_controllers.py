"""cgroup v2 on a pure-v2 host: where a container's cgroup goes, why a controller is missing,
and stats without the pids controller (fake trees, plus the real cgroup2 mount of this host)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import galley.oci.cgroups as cgroups
from galley.errors import InvalidArgument
from galley.oci.cgroups import factory
from galley.oci.cgroups.layout import CgroupLayout, Hierarchy, detect
from galley.oci.cgroups.stats import v2_stats
from galley.oci.cgroups.v2 import V2Manager
from tests.oci.cgroup_fixtures import unique_parent

UNIFIED = detect().unified


def _tree(root: Path, layout: dict[str, dict[str, str]]) -> None:
    """Directories under root with the given cgroup files."""
    for relative, files in layout.items():
        directory = root / relative if relative else root
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)


def test_relative_path_goes_under_the_parent_of_our_cgroup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As runc: our own cgroup holds us, so it could not pass controllers to the container."""
    monkeypatch.setattr(factory, "own_cgroups", lambda: {"": "/user.slice/runtime"})
    layout = CgroupLayout("v2", {}, Hierarchy(str(tmp_path), "/", frozenset({"memory"})))
    assert cgroups.build(layout, "c1").paths == {"": f"{tmp_path}/user.slice/c1"}
    assert cgroups.build(layout, "/abs/c1").paths == {"": f"{tmp_path}/abs/c1"}
    monkeypatch.setattr(factory, "own_cgroups", lambda: {"": "/"})
    assert cgroups.build(layout, "c1").paths == {"": f"{tmp_path}/c1"}


def test_populated_ancestor_is_named_with_the_rule(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "": {"cgroup.controllers": "memory pids", "cgroup.subtree_control": "memory pids"},
            "a": {
                "cgroup.controllers": "memory pids",
                "cgroup.subtree_control": "",
                "cgroup.procs": "123\n",
            },
            "a/c": {"cgroup.controllers": "", "cgroup.procs": ""},
        },
    )
    manager = V2Manager(str(tmp_path / "a" / "c"), str(tmp_path))
    with pytest.raises(InvalidArgument) as err:
        manager.set({"memory": {"limit": 100}})
    message = str(err.value)
    assert f"memory controller is not enabled in {tmp_path}/a/cgroup.subtree_control" in message
    assert "no-internal-processes" in message
    assert f"cgroup {tmp_path}/a/c: cannot write memory.max" in message


def test_controller_missing_at_the_top_is_named(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "": {"cgroup.controllers": "memory", "cgroup.subtree_control": "memory"},
            "c": {"cgroup.controllers": "memory", "cgroup.procs": ""},
        },
    )
    with pytest.raises(InvalidArgument, match=rf"{tmp_path} does not have it"):
        V2Manager(str(tmp_path / "c"), str(tmp_path)).set({"pids": {"limit": 5}})


def test_pids_counted_without_the_pids_controller(tmp_path: Path) -> None:
    _tree(tmp_path, {"": {"cgroup.procs": "1\n2\n"}, "sub": {"cgroup.procs": "3\n"}})
    assert v2_stats(str(tmp_path))["pids"] == {"current": 3, "limit": 0}
    _tree(tmp_path, {"": {"pids.current": "7\n", "pids.max": "max\n"}})
    assert v2_stats(str(tmp_path))["pids"] == {"current": 7, "limit": 0}


@pytest.fixture
def parent() -> Iterator[str]:
    assert UNIFIED is not None
    path = unique_parent()
    yield path
    for top, _dirs, _files in sorted(os.walk(UNIFIED.mount + path), reverse=True):
        os.rmdir(top)


@pytest.mark.root
@pytest.mark.skipif(UNIFIED is None, reason="no cgroup2 mount")
def test_real_mount_enables_controllers_from_the_root_down(parent: str) -> None:
    """Every controller this host's cgroup2 offers reaches the container's cgroup."""
    assert UNIFIED is not None
    manager = V2Manager(f"{UNIFIED.mount}{parent}/a/c", UNIFIED.mount)
    manager.create()
    offered = set(Path(UNIFIED.mount, "cgroup.controllers").read_text().split())
    assert set(Path(manager.directory, "cgroup.controllers").read_text().split()) == offered
    if "pids" not in offered:  # this hybrid host: counted from cgroup.procs instead
        assert v2_stats(manager.directory)["pids"] == {"current": 0, "limit": 0}
