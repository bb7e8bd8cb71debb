"""`galley du`: where the bytes of a store root go, and what a prune would free."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from galley.cli.output import FORMATS, document, human_size, table
from galley.metadata.gc import collect

if TYPE_CHECKING:
    from galley.cli.context import Context


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `du` to the parser."""
    p = verbs.add_parser("du", help="show the disk used by blobs, ingests, snapshots, metadata")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.set_defaults(run=du)


def usage(ctx: Context) -> list[dict[str, Any]]:
    """One entry per kind of thing stored: kind, count, bytes."""
    store = ctx.store
    blobs = list(store.content.walk())
    ingests = store.content.ingests()
    rows = [
        {"kind": "content blobs", "count": len(blobs), "bytes": sum(b.size for b in blobs)},
        {"kind": "ingests", "count": len(ingests), "bytes": sum(i.offset for i in ingests)},
    ]
    for name in store.snapshotter_names():
        sn = store.snapshotter(name)
        infos = list(sn.walk())
        size = sum(sn.usage(info.name).size for info in infos)
        rows.append({"kind": f"snapshots ({name})", "count": len(infos), "bytes": size})
    meta = [store.meta.path + suffix for suffix in ("", "-wal", "-shm")]
    size = sum(os.path.getsize(p) for p in meta if os.path.exists(p))
    rows.append({"kind": "metadata", "count": 1, "bytes": size})
    return rows


def reclaimable(ctx: Context) -> dict[str, Any]:
    """What `rmi --prune` would free now: unreferenced blobs and committed snapshots."""
    result = collect(ctx.store, dry_run=True)
    size = result.freed_bytes + sum(
        ctx.store.snapshotter(name).usage(key).size for name, key in result.removed_snapshots
    )
    count = len(result.removed_blobs) + len(result.removed_snapshots)
    return {"kind": "reclaimable", "count": count, "bytes": size}


def du(ctx: Context, args: argparse.Namespace) -> int:
    """Print the usage table (or document)."""
    rows = usage(ctx)
    total = sum(r["bytes"] for r in rows)
    spare = reclaimable(ctx)
    if args.output != "table":
        ctx.print(document([*rows, spare], args.output))
        return 0
    cells = [(r["kind"], str(r["count"]), human_size(r["bytes"])) for r in [*rows, spare]]
    ctx.print(table(("KIND", "COUNT", "SIZE"), [*cells, ("total", "", human_size(total))]))
    return 0
