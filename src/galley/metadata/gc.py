"""Garbage collection: mark from images, leases and gc.root labels; sweep blobs and snapshots.

    roots ─────────────────────────────▶ content digests ──▶ snapshots ──▶ parent snapshots
      image targets (every namespace)      labels containerd.io/gc.ref.content.<x> = digest
      lease resources (unexpired leases)   labels containerd.io/gc.ref.snapshot.<sn> = key
      content/snapshot refs labelled       or, without such labels, the blob itself parsed:
        containerd.io/gc.root                index → manifests, manifest → config + layers,
                                             config → ChainID of rootfs.diff_ids

Sweep: every blob not marked, its content rows, every *committed* snapshot not marked (leaves
first, so a parent goes after its children) and its snapshot refs, expired leases, and partial
ingests not written for a day (not locked by a writer, not in a lease's "ingests"). Active
and view snapshots (containers' root filesystems, unpacks in progress) are never swept, and
they keep their parents. The whole run holds the metadata write lock, so no image or lease
appears half-way; a writer must add a blob to its lease *before* writing it (see leases.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from galley.content.digest import Digest
from galley.errors import FailedPrecondition, GalleyError, InvalidArgument, NotFound
from galley.metadata.content import GC_REF_CONTENT, GC_REF_SNAPSHOT, GC_ROOT
from galley.metadata.leases import CONTENT, INGESTS, SNAPSHOTS_PREFIX
from galley.metadata.transaction import load_labels, now
from galley.snapshots.api import Kind

if TYPE_CHECKING:
    import sqlite3

    from galley.images.store import Store
    from galley.snapshots.api import Info

_MAX_PARSE = 4 << 20
INGEST_MAX_AGE = timedelta(days=1)


@dataclass(frozen=True)
class GCResult:
    """What one collection removed."""

    removed_blobs: tuple[Digest, ...] = ()
    removed_snapshots: tuple[tuple[str, str], ...] = ()
    removed_leases: int = 0
    removed_ingests: tuple[str, ...] = ()
    freed_bytes: int = 0
    duration_s: float = 0.0


@dataclass
class _Marks:
    content: set[Digest] = field(default_factory=set)
    snapshots: dict[str, set[str]] = field(default_factory=dict)
    ingests: set[str] = field(default_factory=set)

    def snapshot(self, snapshotter: str, key: str) -> None:
        self.snapshots.setdefault(snapshotter, set()).add(key)


def collect(
    store: Store, *, dry_run: bool = False, ingest_max_age: timedelta = INGEST_MAX_AGE
) -> GCResult:
    """Remove every blob and committed snapshot that nothing holds; see the module docstring.

    Partial ingests that no writer holds and no lease names are kept for ingest_max_age, for
    a later pull to resume, then removed. With dry_run, remove nothing and report what would go.
    """
    start = time.monotonic()
    with store.meta.snapshot() if dry_run else store.meta.tx() as conn:
        expired = "FROM leases WHERE expire_at <= ?"
        if dry_run:
            leases = conn.execute(f"SELECT COUNT(*) {expired}", (now(),)).fetchone()[0]
        else:
            leases = conn.execute(f"DELETE {expired}", (now(),)).rowcount
        marks = _mark(store, conn)
        snapshots = _sweep_snapshots(store, conn, marks, dry_run)
        blobs, freed = _sweep_content(store, conn, marks, dry_run)
        ingests = _sweep_ingests(store, marks, ingest_max_age, dry_run)
        if not dry_run:
            store.content.remove_leftovers()
    return GCResult(
        tuple(blobs), tuple(snapshots), leases, tuple(ingests), freed, time.monotonic() - start
    )


def _mark(store: Store, conn: sqlite3.Connection) -> _Marks:
    marks = _Marks()
    labels: dict[Digest, dict[str, str]] = {}
    for digest, text in conn.execute("SELECT digest, labels_json FROM content"):
        labels.setdefault(Digest.parse(digest), {}).update(load_labels(text))
    queue: deque[Digest] = deque()
    for (target,) in conn.execute("SELECT target_json FROM images"):
        queue.append(Digest.parse(json.loads(target)["digest"]))
    held = conn.execute(
        "SELECT r.kind, r.id FROM lease_resources r JOIN leases l "
        "ON l.namespace = r.namespace AND l.id = r.lease "
        "WHERE l.expire_at IS NULL OR l.expire_at > ?",
        (now(),),
    )
    for kind, rid in held.fetchall():
        if kind == CONTENT:
            with contextlib.suppress(InvalidArgument):
                queue.append(Digest.parse(rid))
        elif kind == INGESTS:
            marks.ingests.add(rid)
        elif kind.startswith(SNAPSHOTS_PREFIX):
            marks.snapshot(kind[len(SNAPSHOTS_PREFIX) :], rid)
    queue.extend(d for d, lab in labels.items() if GC_ROOT in lab)
    for sn, key, text in conn.execute("SELECT snapshotter, key, labels_json FROM snapshots"):
        if GC_ROOT in load_labels(text):
            marks.snapshot(sn, key)
    while queue:
        digest = queue.popleft()
        if digest in marks.content:
            continue
        marks.content.add(digest)
        queue.extend(_children(store, digest, labels.get(digest, {}), marks))
    return marks


def _children(store: Store, digest: Digest, labels: dict[str, str], marks: _Marks) -> list[Digest]:
    """The digests a blob refers to (marking its snapshots on the way)."""
    found = []
    for key, value in labels.items():
        if key.startswith(GC_REF_CONTENT):
            with contextlib.suppress(InvalidArgument):
                found.append(Digest.parse(value))
        elif key.startswith(GC_REF_SNAPSHOT):
            marks.snapshot(key[len(GC_REF_SNAPSHOT) :], value)
    if any(k.startswith((GC_REF_CONTENT, GC_REF_SNAPSHOT)) for k in labels):
        return found
    return _parsed_children(store, digest, marks)


def _parsed_children(store: Store, digest: Digest, marks: _Marks) -> list[Digest]:
    """Children found by reading the blob as an index, manifest or image config."""
    doc = _json_blob(store, digest)
    if doc is None:
        return []
    found: list[Digest] = []
    refs = list(doc.get("manifests") or []) + list(doc.get("layers") or [])
    if isinstance(doc.get("config"), dict) and "digest" in doc["config"]:
        refs.append(doc["config"])
    for ref in refs:
        if isinstance(ref, dict) and isinstance(ref.get("digest"), str):
            with contextlib.suppress(InvalidArgument):
                found.append(Digest.parse(ref["digest"]))
    rootfs = doc.get("rootfs")
    if isinstance(rootfs, dict) and isinstance(rootfs.get("diff_ids"), list):
        chain = chain_id(rootfs["diff_ids"])
        if chain:
            for name in store.snapshotter_names():
                marks.snapshot(name, chain)
    return found


def chain_id(diff_ids: list[Any]) -> str:
    """The ChainID of the top layer of a list of diffIDs ("" for none)."""
    chain = ""
    for diff in diff_ids:
        chain = str(diff) if not chain else str(Digest.of_bytes(f"{chain} {diff}".encode()))
    return chain


def _json_blob(store: Store, digest: Digest) -> dict[str, Any] | None:
    try:
        with store.content.open(digest) as f:
            if f.read(1) != b"{":
                return None
            f.seek(0)
            data = f.read(_MAX_PARSE + 1)
    except NotFound:
        return None
    if len(data) > _MAX_PARSE:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _sweep_snapshots(
    store: Store, conn: sqlite3.Connection, marks: _Marks, dry_run: bool
) -> list[tuple[str, str]]:
    removed = []
    for name in store.snapshotter_names():
        sn = store.snapshotter(name)
        infos = {info.name: info for info in sn.walk()}
        keep = _keep_snapshots(infos, marks.snapshots.get(name, set()))
        for key in _leaves_first(infos, set(infos) - keep):
            if not dry_run:
                try:
                    sn.remove(key)
                except GalleyError:
                    continue
                conn.execute("DELETE FROM snapshots WHERE snapshotter = ? AND key = ?", (name, key))
            removed.append((name, key))
    return removed


def _keep_snapshots(infos: dict[str, Info], marked: set[str]) -> set[str]:
    """Marked and active/view snapshots, with all their ancestors."""
    keep: set[str] = set()
    pending = [k for k, i in infos.items() if k in marked or i.kind != Kind.COMMITTED]
    while pending:
        key = pending.pop()
        if key in keep or key not in infos:
            continue
        keep.add(key)
        if infos[key].parent:
            pending.append(infos[key].parent)
    return keep


def _leaves_first(infos: dict[str, Info], doomed: set[str]) -> list[str]:
    """doomed ordered so that every snapshot comes before its parent."""
    order: list[str] = []
    children: dict[str, int] = dict.fromkeys(doomed, 0)
    for key in doomed:
        parent = infos[key].parent
        if parent in children:
            children[parent] += 1
    ready = [k for k, n in children.items() if n == 0]
    while ready:
        key = ready.pop()
        order.append(key)
        parent = infos[key].parent
        if parent in children:
            children[parent] -= 1
            if children[parent] == 0:
                ready.append(parent)
    return order


def _sweep_content(
    store: Store, conn: sqlite3.Connection, marks: _Marks, dry_run: bool
) -> tuple[list[Digest], int]:
    removed, freed = [], 0
    for info in list(store.content.walk()):
        if info.digest in marks.content:
            continue
        try:
            if not dry_run:
                store.content.delete(info.digest)
        except NotFound:
            continue
        removed.append(info.digest)
        freed += info.size
    if not dry_run:
        for (digest,) in conn.execute("SELECT DISTINCT digest FROM content").fetchall():
            if Digest.parse(digest) not in marks.content:
                conn.execute("DELETE FROM content WHERE digest = ?", (digest,))
    return removed, freed


def _sweep_ingests(store: Store, marks: _Marks, max_age: timedelta, dry_run: bool) -> list[str]:
    """Abandoned partial ingests older than max_age (never a locked or leased one)."""
    removed = []
    cutoff = datetime.now(UTC) - max_age
    for ingest in store.content.ingests():
        if ingest.ref in marks.ingests or ingest.updated_at > cutoff:
            continue
        try:
            if not dry_run:
                store.content.abort(ingest.ref)
        except (FailedPrecondition, NotFound):
            continue
        removed.append(ingest.ref)
    return removed
