"""The overlayfs snapshotter: each layer is an upperdir; mounts stack parents as lowerdirs.

    <home>/snapshots/<id>/fs     the layer's files (overlayfs upperdir; whiteouts are 0/0
                                 character devices, opaque dirs carry trusted.overlay.opaque=y)
    <home>/snapshots/<id>/work   overlayfs workdir of an active snapshot

index=off keeps overlayfs from tying an upperdir to the exact lower directories it was first
mounted with, so committed layers can be shared by any number of children. Root in the initial
user namespace uses trusted.overlay.* xattrs; inside a user namespace (rootless, or galley in a
container) trusted.* is out of reach, so mounts add `userxattr` and layers carry
user.overlay.opaque instead (overlayfs reads one or the other, never both).
"""

from __future__ import annotations

import functools
import os

from galley.kernel import userns
from galley.snapshots.api import Kind, Mount
from galley.snapshots.directory import DirectorySnapshotter
from galley.snapshots.storage import Record


@functools.cache
def in_user_namespace() -> bool:
    """True when this process is not in the initial user namespace (its uid_map is partial);
    asked once (False where /proc cannot say)."""
    try:
        return userns.in_user_namespace()
    except OSError:
        return False


def overlay_xattr(name: str) -> str:
    """The full name of overlayfs xattr name ("opaque", ...) for this user namespace."""
    return f"{'user' if in_user_namespace() else 'trusted'}.overlay.{name}"


class OverlaySnapshotter(DirectorySnapshotter):
    """Snapshots as overlayfs layers: storage shared by ChainID, no copying."""

    name = "overlayfs"

    @property
    def _common(self) -> tuple[str, ...]:
        """Options every overlay mount here carries."""
        return ("index=off", "userxattr") if in_user_namespace() else ("index=off",)

    def _populate(self, tmp: str, kind: Kind, parents: list[int]) -> None:
        if kind is Kind.ACTIVE:
            os.mkdir(os.path.join(tmp, "work"), 0o700)

    def _mounts(self, record: Record, parents: list[int]) -> list[Mount]:
        lowers = ":".join(self.fs_dir(pid) for pid in parents)
        if record.info.kind is Kind.VIEW:
            if not parents:
                return [Mount("bind", self.fs_dir(record.id), ("ro", "rbind"))]
            if len(parents) == 1:
                return [Mount("bind", self.fs_dir(parents[0]), ("ro", "rbind"))]
            return [Mount("overlay", "overlay", (f"lowerdir={lowers}", *self._common))]
        if not parents:
            return [Mount("bind", self.fs_dir(record.id), ("rw", "rbind"))]
        work = os.path.join(self.snapshot_dir(record.id), "work")
        options = (
            f"lowerdir={lowers}",
            f"upperdir={self.fs_dir(record.id)}",
            f"workdir={work}",
            *self._common,
        )
        return [Mount("overlay", "overlay", options)]
