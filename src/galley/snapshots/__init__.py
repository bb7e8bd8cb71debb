"""Snapshotters: overlayfs (default) and native (copying), behind one interface (api.py).

On disk, under the galley store root:

    <root>/snapshots/<name>/metadata.db          the snapshotter's own SQLite (storage.py)
    <root>/snapshots/<name>/snapshots/<id>/fs    a snapshot's tree (overlay: its upperdir)
    <root>/snapshots/<name>/snapshots/<id>/work  overlayfs workdir (overlay only)
"""

from __future__ import annotations

import os

from galley.errors import InvalidArgument
from galley.snapshots.api import Info, Kind, Mount, Snapshotter, Usage

__all__ = ["NAMES", "Info", "Kind", "Mount", "Snapshotter", "Usage", "open_snapshotter"]

NAMES = ("overlayfs", "native")


def open_snapshotter(name: str, root: str) -> Snapshotter:
    """Open snapshotter name ("overlayfs" | "native") of the galley store at root.

    root is the store root (e.g. /var/lib/galley); the snapshotter lives in
    <root>/snapshots/<name>/.
    """
    home = os.path.join(root, "snapshots", name)
    if name == "overlayfs":
        from galley.snapshots.overlay import OverlaySnapshotter  # noqa: PLC0415 - on demand

        return OverlaySnapshotter(home)
    if name == "native":
        from galley.snapshots.native import NativeSnapshotter  # noqa: PLC0415 - on demand

        return NativeSnapshotter(home)
    raise InvalidArgument(f"snapshotter {name!r} is unknown; choose one of {', '.join(NAMES)}")
