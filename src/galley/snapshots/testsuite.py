"""Conformance behaviours every snapshotter must show, reusable against each implementation.

Each behaviour is a function of a `Harness` (a fresh snapshotter in a scratch directory plus
the mount points it made) and raises AssertionError when the snapshotter misbehaves. Tests
run every entry of BEHAVIOURS against every snapshotter, with real mounts:

    for name, behaviour in BEHAVIOURS.items():
        with Harness.open(factory, scratch) as h:
            behaviour(h)
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from galley.errors import AlreadyExists, FailedPrecondition, GalleyError, NotFound
from galley.snapshots.api import Info, Kind, Mount, Snapshotter, mount_all

Factory = Callable[[str], Snapshotter]


@dataclass
class Harness:
    """A snapshotter under test, its home, and the mount points to clean up."""

    factory: Factory
    home: str
    scratch: str
    sn: Snapshotter
    mounted: list[str] = field(default_factory=list)

    @classmethod
    @contextmanager
    def open(cls, factory: Factory, scratch: str) -> Iterator[Harness]:
        """A fresh snapshotter in scratch; every mount it made is undone afterwards."""
        home = os.path.join(scratch, "home")
        harness = cls(factory, home, scratch, factory(home))
        try:
            yield harness
        finally:
            for target in reversed(harness.mounted):
                Mount.unmount(target, detach=True)
            harness.sn.close()

    def mount(self, mounts: list[Mount]) -> str:
        """Mount mounts on a new directory and return it."""
        target = tempfile.mkdtemp(prefix="mnt-", dir=self.scratch)
        mount_all(mounts, target)
        self.mounted.append(target)
        return target

    def unmount(self, target: str) -> None:
        """Unmount a target made by mount()."""
        Mount.unmount(target)
        self.mounted.remove(target)

    def reopen(self) -> None:
        """Close the snapshotter and open it again from its home (as a new process would)."""
        self.sn.close()
        self.sn = self.factory(self.home)

    def layer(self, name: str, parent: str, files: dict[str, bytes | None]) -> None:
        """Commit a layer name on parent in which files are written (None: deleted)."""
        key = f"prepare-{name}"
        target = self.mount(self.sn.prepare(key, parent))
        for path, data in files.items():
            full = os.path.join(target, path)
            if data is None:
                os.unlink(full)
                continue
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        self.unmount(target)
        self.sn.commit(name, key)

    def read_view(self, parent: str) -> dict[str, bytes]:
        """Every regular file a view of parent shows, by relative path."""
        key = f"view-{parent}-{len(self.mounted)}"
        target = self.mount(self.sn.view(key, parent))
        try:
            return _read_tree(target)
        finally:
            self.unmount(target)
            self.sn.remove(key)


def _read_tree(root: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _raises(kind: type[GalleyError], call: Callable[[], object], *, naming: str = "") -> None:
    try:
        call()
    except kind as exc:
        assert naming in str(exc), f"{kind.__name__} message {str(exc)!r} lacks {naming!r}"
        return
    raise AssertionError(f"expected {kind.__name__}")


def commit_and_view(h: Harness) -> None:
    """A committed layer is visible, read-only, through a view."""
    h.layer("base", "", {"etc/hostname": b"galley\n", "bin/tool": b"x" * 5000})
    info = h.sn.stat("base")
    assert info.kind is Kind.COMMITTED and info.parent == "", info
    _raises(NotFound, lambda: h.sn.stat("prepare-base"), naming="prepare-base")
    target = h.mount(h.sn.view("v", "base"))
    with open(os.path.join(target, "etc/hostname"), "rb") as f:
        assert f.read() == b"galley\n"
    try:
        open(os.path.join(target, "new"), "wb").close()
    except OSError as exc:
        assert exc.errno == errno.EROFS, exc
    else:
        raise AssertionError("a view was writable")
    assert h.sn.stat("v").kind is Kind.VIEW
    _raises(FailedPrecondition, lambda: h.sn.commit("v2", "v"), naming="'v'")


def layers_stack_and_isolate(h: Harness) -> None:
    """A child sees its parent, its deletions hide parent files, and the parent is unchanged."""
    h.layer("l1", "", {"a": b"1", "b": b"1", "d/c": b"1"})
    h.layer("l2", "l1", {"a": None, "b": b"2", "d/e": b"2"})
    h.layer("l3", "l2", {"f": b"3"})
    assert h.read_view("l1") == {"a": b"1", "b": b"1", "d/c": b"1"}
    assert h.read_view("l2") == {"b": b"2", "d/c": b"1", "d/e": b"2"}
    assert h.read_view("l3") == {"b": b"2", "d/c": b"1", "d/e": b"2", "f": b"3"}
    assert h.sn.stat("l3").parent == "l2"


def keys_and_names_are_one_namespace(h: Harness) -> None:
    """Duplicate keys, names and bad parents are refused with the right error."""
    h.layer("base", "", {"x": b"x"})
    h.sn.prepare("active", "base")
    _raises(AlreadyExists, lambda: h.sn.prepare("active"), naming="active")
    _raises(AlreadyExists, lambda: h.sn.prepare("base"), naming="base")
    _raises(AlreadyExists, lambda: h.sn.commit("base", "active"), naming="base")
    _raises(FailedPrecondition, lambda: h.sn.prepare("child", "active"), naming="active")
    _raises(NotFound, lambda: h.sn.prepare("orphan", "missing"), naming="missing")
    _raises(NotFound, lambda: h.sn.commit("x", "missing"), naming="missing")
    _raises(NotFound, lambda: h.sn.remove("missing"), naming="missing")
    _raises(FailedPrecondition, lambda: h.sn.mounts("base"), naming="base")
    assert h.sn.mounts("active") == h.sn.mounts("active")
    h.sn.commit("next", "active")
    h.sn.prepare("active", "next")  # the key is free again after commit


def remove_respects_children(h: Harness) -> None:
    """A parent cannot be removed before its children; removal frees the disk."""
    h.layer("p", "", {"x": b"x"})
    h.layer("c", "p", {"y": b"y"})
    _raises(FailedPrecondition, lambda: h.sn.remove("p"), naming="'p'")
    h.sn.remove("c")
    h.sn.remove("p")
    assert list(h.sn.walk()) == []
    assert os.listdir(os.path.join(h.home, "snapshots")) == []


def labels_update_and_walk(h: Harness) -> None:
    """Labels set at prepare, commit and update are kept; walk lists every snapshot."""
    h.sn.prepare("k", "", labels={"a": "1"})
    assert dict(h.sn.stat("k").labels) == {"a": "1"}
    h.sn.commit("n", "k", labels={"b": "2"})
    assert dict(h.sn.stat("n").labels) == {"b": "2"}
    updated = h.sn.update(Info(name="n", kind=Kind.COMMITTED, labels={"c": "3"}))
    assert dict(updated.labels) == {"c": "3"} and updated.updated_at >= updated.created_at
    h.sn.view("v", "n")
    assert [(i.name, i.kind, i.parent) for i in h.sn.walk()] == [
        ("n", Kind.COMMITTED, ""),
        ("v", Kind.VIEW, "n"),
    ]
    _raises(NotFound, lambda: h.sn.update(Info(name="zz", kind=Kind.ACTIVE)), naming="zz")


def usage_counts_own_layer(h: Harness) -> None:
    """Usage counts the bytes and inodes of a snapshot's own layer."""
    h.layer("big", "", {"blob": os.urandom(1 << 20), "small": b"s"})
    usage = h.sn.usage("big")
    assert usage.size >= 1 << 20 and usage.inodes >= 2, usage
    target = h.mount(h.sn.prepare("act", "big"))
    with open(os.path.join(target, "more"), "wb") as f:
        f.write(os.urandom(1 << 19))
    assert h.sn.usage("act").size >= 1 << 19


def hard_links_survive_layers(h: Harness) -> None:
    """Hard links made in a layer are still one inode in a child's view."""
    target = h.mount(h.sn.prepare("k", ""))
    with open(os.path.join(target, "busybox"), "wb") as f:
        f.write(b"binary")
    os.link(os.path.join(target, "busybox"), os.path.join(target, "ls"))
    h.unmount(target)
    h.sn.commit("base", "k")
    h.layer("top", "base", {"other": b"o"})
    view = h.mount(h.sn.view("v", "top"))
    first, second = (os.stat(os.path.join(view, n)) for n in ("busybox", "ls"))
    assert first.st_ino == second.st_ino and first.st_nlink == 2


def state_survives_reopen_and_orphans_go(h: Harness) -> None:
    """A reopened snapshotter keeps its snapshots and deletes what a crash left behind."""
    h.layer("base", "", {"x": b"x"})
    h.sn.prepare("active", "base", labels={"l": "v"})
    leftovers = [
        os.path.join(h.home, "snapshots", "9999"),
        os.path.join(h.home, "tmp", "999999999-abc"),  # a pid that cannot be alive
    ]
    for path in leftovers:
        os.makedirs(os.path.join(path, "fs"))
    h.reopen()
    assert dict(h.sn.stat("active").labels) == {"l": "v"}
    assert h.read_view("base") == {"x": b"x"}
    for path in leftovers:
        assert not os.path.exists(path), f"{path} survived reopening"


def concurrent_commits_of_one_name(h: Harness) -> None:
    """Two unpackers committing the same name at once: one wins, the other gets AlreadyExists."""
    results: list[str] = []

    def unpack(key: str) -> None:
        h.sn.prepare(key)
        try:
            h.sn.commit("shared", key)
            results.append("won")
        except AlreadyExists:
            h.sn.remove(key)
            results.append("lost")

    threads = [threading.Thread(target=unpack, args=(f"k{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost", "won"], results
    assert [i.name for i in h.sn.walk()] == ["shared"]


def changes_to_lower_layers(h: Harness) -> None:
    """Renames, chmods and a deleted-then-recreated directory in a child hide the parent's."""
    h.layer("base", "", {"old/name": b"n", "dir/a": b"a", "dir/b": b"b", "locked/x": b"x"})
    target = h.mount(h.sn.prepare("k", "base"))
    os.rename(os.path.join(target, "old/name"), os.path.join(target, "new-name"))
    os.chmod(os.path.join(target, "locked"), 0o700)
    shutil.rmtree(os.path.join(target, "dir"))
    os.makedirs(os.path.join(target, "dir"))
    with open(os.path.join(target, "dir/c"), "wb") as f:
        f.write(b"c")
    h.unmount(target)
    h.sn.commit("top", "k")
    assert h.read_view("top") == {"new-name": b"n", "dir/c": b"c", "locked/x": b"x"}
    view = h.mount(h.sn.view("v", "top"))
    assert os.stat(os.path.join(view, "locked")).st_mode & 0o777 == 0o700
    assert h.read_view("base")["dir/a"] == b"a"


def empty_view_and_walk_kinds(h: Harness) -> None:
    """A parentless view is empty; walk reports every kind with its parent."""
    target = h.mount(h.sn.view("empty"))
    assert os.listdir(target) == []
    h.layer("base", "", {"f": b"f"})
    h.sn.prepare("active", "base")
    kinds = {i.name: (i.kind, i.parent) for i in h.sn.walk()}
    assert kinds == {
        "empty": (Kind.VIEW, ""),
        "base": (Kind.COMMITTED, ""),
        "active": (Kind.ACTIVE, "base"),
    }
    assert h.sn.usage("empty").inodes == 0


def many_layers_mount(h: Harness) -> None:
    """130 stacked layers mount (more lowerdir text than one page) and show every layer."""
    parent = ""
    for i in range(130):
        key = f"k{i}"
        mounts = h.sn.prepare(key, parent)
        if i % 43 == 0 or i == 129:
            target = h.mount(mounts)
            open(os.path.join(target, f"f{i}"), "wb").close()
            h.unmount(target)
        h.sn.commit(f"layer-{i}", key)
        parent = f"layer-{i}"
    assert set(h.read_view(parent)) == {"f0", "f43", "f86", "f129"}


BEHAVIOURS: dict[str, Callable[[Harness], None]] = {
    f.__name__: f
    for f in (
        commit_and_view,
        layers_stack_and_isolate,
        keys_and_names_are_one_namespace,
        remove_respects_children,
        labels_update_and_walk,
        usage_counts_own_layer,
        hard_links_survive_layers,
        state_survives_reopen_and_orphans_go,
        concurrent_commits_of_one_name,
        many_layers_mount,
        changes_to_lower_layers,
        empty_view_and_walk_kinds,
    )
}
