"""The overlayfs snapshotter: each layer is an upperdir; mounts stack parents as lowerdirs.

    <home>/snapshots/<id>/fs     the layer's files (overlayfs upperdir; whiteouts are 0/0
                                 character devices, opaque dirs carry trusted.overlay.opaque=y)
    <home>/snapshots/<id>/work   overlayfs workdir of an active snapshot

index=off keeps overlayfs from tying an upperdir to the exact lower directories it was first
mounted with, so committed layers can be shared by any number of children. Without a user
namespace we are root in the initial namespace and use trusted.* xattrs (no userxattr).
"""

from __future__ import annotations

import os

from galley.snapshots.api import Kind, Mount
from galley.snapshots.directory import DirectorySnapshotter
from galley.snapshots.storage import Record


class OverlaySnapshotter(DirectorySnapshotter):
    """Snapshots as overlayfs layers: storage shared by ChainID, no copying."""

    name = "overlayfs"

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
            return [Mount("overlay", "overlay", (f"lowerdir={lowers}", "index=off"))]
        if not parents:
            return [Mount("bind", self.fs_dir(record.id), ("rw", "rbind"))]
        work = os.path.join(self.snapshot_dir(record.id), "work")
        options = (
            f"lowerdir={lowers}",
            f"upperdir={self.fs_dir(record.id)}",
            f"workdir={work}",
            "index=off",
        )
        return [Mount("overlay", "overlay", options)]
