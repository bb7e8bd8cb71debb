"""The native snapshotter: every snapshot is a full copy of its parent, mounted by bind.

It works on any filesystem (no overlayfs needed) at the price of disk and time: `cp -a`
keeps hard links, xattrs, devices, ownership, modes and times (and reflinks where the
filesystem can share blocks).
"""

from __future__ import annotations

import os
import subprocess

from galley.errors import Internal
from galley.snapshots.api import Kind, Mount
from galley.snapshots.directory import DirectorySnapshotter
from galley.snapshots.storage import Record


def copy_tree(src: str, dest: str) -> None:
    """Copy the contents of directory src into existing directory dest, preserving everything."""
    result = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--", f"{src}/.", dest],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise Internal(f"copying snapshot {src!r} to {dest!r} failed: {result.stderr.strip()}")


class NativeSnapshotter(DirectorySnapshotter):
    """Snapshots as plain directories, each a copy of its parent."""

    name = "native"

    def _populate(self, tmp: str, kind: Kind, parents: list[int]) -> None:
        if parents:
            copy_tree(self.fs_dir(parents[0]), os.path.join(tmp, "fs"))

    def _mounts(self, record: Record, parents: list[int]) -> list[Mount]:
        mode = "ro" if record.info.kind is Kind.VIEW else "rw"
        return [Mount("bind", self.fs_dir(record.id), (mode, "rbind"))]
