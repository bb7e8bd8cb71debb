"""The snapshotter interface: copy-on-write filesystem trees, keyed, layered, mountable.

A snapshotter hands out directories that a container or an unpacker writes into, and freezes
them into read-only layers that other snapshots stack on. It never mounts anything itself:
it returns `Mount` descriptions, and the caller performs them (`Mount.mount(target)`), so the
same answer serves a container runtime, an unpacker and a test.

Kinds and the lifecycle
-----------------------

    prepare(key, parent) ──▶ ACTIVE ──commit(name, key)──▶ COMMITTED ──▶ (parent of others)
                               │                               │
    view(key, parent)    ──▶ VIEW (read-only, never commits)   │
                               │                               │
                               └──────── remove(key) ◀─────────┘  (committed: only without children)

- An ACTIVE snapshot is writable. It is addressed by its *key*, which the caller chooses.
  `mounts(key)` gives its mounts again at any time.
- A VIEW is a read-only active snapshot of a committed parent (what a `docker export` or an
  image inspector mounts). It cannot be committed; remove it when done.
- A COMMITTED snapshot is immutable and addressed by its *name*, chosen at commit time. Only a
  committed snapshot can be a *parent*. Committing consumes the key: the active snapshot
  becomes the committed one (no copy), and the key is free again.
- Keys and names share one namespace per snapshotter: a key in use as an active snapshot
  cannot be a committed name, and the other way round (AlreadyExists).
- remove(key) deletes an active or view snapshot, or a committed one that no snapshot uses as
  its parent (FailedPrecondition otherwise). Removing the last reference is the caller's
  decision: the metadata store's garbage collector calls it.

Worked walkthrough: unpacking a two-layer image and running a container
-----------------------------------------------------------------------

    chain1 = diffid1                         # ChainID of the first layer
    mounts = sn.prepare("extract-1 " + chain1)   # parentless: a single rw bind mount
    # apply layer 1 into the upperdir/bind source (or mount `mounts` and apply there)
    sn.commit(chain1, "extract-1 " + chain1)     # now a committed layer named chain1

    chain2 = sha256(chain1 + " " + diffid2)
    sn.prepare("extract-2 " + chain2, parent=chain1)   # overlay: lowerdir=chain1, upper, work
    # apply layer 2; whiteouts become 0/0 character devices in the upperdir
    sn.commit(chain2, "extract-2 " + chain2)

    mounts = sn.prepare("container-abc", parent=chain2)  # the container's writable rootfs
    for m in mounts: m.mount("/run/galley/abc/rootfs")   # one overlay mount here
    ...                                                  # the container runs, writes
    Mount.unmount("/run/galley/abc/rootfs"); sn.remove("container-abc")

Unpacking the same image again finds `stat(chain2)` present and does nothing; a second image
sharing layer 1 prepares only its own layers on top of chain1: layers are stored once.

Mount shapes (the overlay snapshotter; native always answers a bind mount)
---------------------------------------------------------------------------

    active, no parent      bind     <id>/fs     rw,rbind
    active, with parents   overlay  lowerdir=<p1>/fs:<p2>/fs,upperdir=<id>/fs,
                                    workdir=<id>/work,index=off
    view, one parent       bind     <p1>/fs     ro,rbind
    view, several parents  overlay  lowerdir=<p1>/fs:<p2>/fs,index=off  (read-only by nature)

lowerdir lists the nearest parent first, as overlayfs wants. mount(2) takes one page of
options; when a deep stack's paths pass that, Mount.mount names each directory by an O_PATH
descriptor (/proc/self/fd/<n>) for the duration of the call, so 128+ layers still mount.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from galley.errors import InvalidArgument
from galley.kernel import mount as kmount


class Kind(enum.Enum):
    """What a snapshot is: writable (ACTIVE), read-only active (VIEW), or frozen (COMMITTED)."""

    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Info:
    """A snapshot's description: its key or name, kind, parent name, labels and times."""

    name: str
    kind: Kind
    parent: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Usage:
    """Disk used by one snapshot's own layer (not its parents): bytes and inodes."""

    size: int = 0
    inodes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.size + other.size, self.inodes + other.inodes)


# Mount options that are flags to mount(2); every other option goes to the filesystem as data.
_FLAG_OPTIONS: dict[str, tuple[int, bool]] = {
    "ro": (kmount.MS_RDONLY, True),
    "rw": (kmount.MS_RDONLY, False),
    "nosuid": (kmount.MS_NOSUID, True),
    "suid": (kmount.MS_NOSUID, False),
    "nodev": (kmount.MS_NODEV, True),
    "dev": (kmount.MS_NODEV, False),
    "noexec": (kmount.MS_NOEXEC, True),
    "exec": (kmount.MS_NOEXEC, False),
    "noatime": (kmount.MS_NOATIME, True),
    "relatime": (kmount.MS_RELATIME, True),
    "bind": (kmount.MS_BIND, True),
    "rbind": (kmount.MS_BIND | kmount.MS_REC, True),
}

# Flags a bind mount ignores on its first mount(2) and that need a remount to take effect.
_REMOUNT_FLAGS = (
    kmount.MS_RDONLY | kmount.MS_NOSUID | kmount.MS_NODEV | kmount.MS_NOEXEC | kmount.MS_NOATIME
)


@dataclass(frozen=True)
class Mount:
    """A mount described as data (type, source, options), performed only by mount()."""

    type: str
    source: str
    options: tuple[str, ...] = ()

    def flags_and_data(self) -> tuple[int, str]:
        """The mount(2) flags and the comma-joined filesystem data these options mean."""
        flags, data = 0, []
        for option in self.options:
            if option in _FLAG_OPTIONS:
                bit, on = _FLAG_OPTIONS[option]
                flags = flags | bit if on else flags & ~bit
            else:
                data.append(option)
        return flags, ",".join(data)

    @property
    def is_bind(self) -> bool:
        """True for a bind mount (type "bind", or a "bind"/"rbind" option)."""
        return self.type == "bind" or any(o in ("bind", "rbind") for o in self.options)

    def mount(self, target: str) -> None:
        """Perform this mount on target (a bind that asks for ro/nosuid/... is remounted)."""
        flags, data = self.flags_and_data()
        if self.is_bind:
            self._bind(target, flags)
        elif len(data) < os.sysconf("SC_PAGESIZE"):
            kmount.mount(self.source, target, self.type, flags, data or None)
        else:
            self._mount_long(target, flags, data)

    def _bind(self, target: str, flags: int) -> None:
        flags |= kmount.MS_BIND
        kmount.mount(self.source, target, None, flags & ~_REMOUNT_FLAGS, None)
        if flags & _REMOUNT_FLAGS:
            remount = kmount.MS_BIND | kmount.MS_REMOUNT | (flags & _REMOUNT_FLAGS)
            try:
                kmount.mount(None, target, None, remount, None)
            except OSError:
                kmount.umount(target, kmount.MNT_DETACH)
                raise

    def _mount_long(self, target: str, flags: int, data: str) -> None:
        """An overlay whose options pass the page mount(2) copies: name its dirs by fd.

        Every lowerdir/upperdir/workdir is opened (O_PATH) and named /proc/self/fd/<n>
        (about 16 bytes) for the duration of the call; overlayfs resolves the paths once,
        at mount time. 128 layers then fit easily in one page.
        """
        fds: list[int] = []
        try:
            options = []
            for option in data.split(","):
                key, sep, value = option.partition("=")
                if sep and key in ("lowerdir", "upperdir", "workdir"):
                    paths = value.split(":")
                    fds.extend(os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in paths)
                    short = [f"/proc/self/fd/{fd}" for fd in fds[len(fds) - len(paths) :]]
                    option = f"{key}={':'.join(short)}"
                options.append(option)
            short_data = ",".join(options)
            if len(short_data) >= os.sysconf("SC_PAGESIZE"):
                raise InvalidArgument(
                    f"{self.type} mount on {target!r} has {len(short_data)} bytes of options "
                    "even with short names, more than mount(2) accepts"
                )
            kmount.mount(self.source, target, self.type, flags, short_data)
        finally:
            for fd in fds:
                os.close(fd)

    @staticmethod
    def unmount(target: str, *, detach: bool = False) -> None:
        """Unmount target (lazily when detach is true)."""
        kmount.umount(target, kmount.MNT_DETACH if detach else 0)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Perform mounts in order on target; on failure undo the ones already done."""
    done = 0
    try:
        for m in mounts:
            m.mount(target)
            done += 1
    except BaseException:
        for _ in range(done):
            Mount.unmount(target, detach=True)
        raise


@runtime_checkable
class Snapshotter(Protocol):
    """containerd's snapshotter interface; see the module docstring for the lifecycle."""

    name: str
    root: str

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create an active snapshot key on top of committed parent ("" for none)."""
        ...

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create a read-only view key of committed parent."""
        ...

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Freeze active snapshot key into committed snapshot name (key is consumed)."""
        ...

    def remove(self, key: str) -> None:
        """Remove an active/view snapshot, or a committed one without children."""
        ...

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot."""
        ...

    def stat(self, key: str) -> Info:
        """The snapshot's Info; NotFound when there is none."""
        ...

    def update(self, info: Info) -> Info:
        """Replace the labels of snapshot info.name with info.labels; the rest is immutable."""
        ...

    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own layer (computed at commit for committed ones)."""
        ...

    def walk(self) -> Iterator[Info]:
        """Every snapshot, in creation order."""
        ...

    def close(self) -> None:
        """Release the snapshotter's database connection."""
        ...
