"""What the overlay and native snapshotters share: snapshot directories kept in step with storage.

    <home>/metadata.db                  storage.py
    <home>/snapshots/<id>/fs            the snapshot's tree
    <home>/snapshots/<id>/work          overlayfs workdir (overlay only)
    <home>/tmp/<pid>-<random>           a snapshot being made, or one being deleted

Crash safety: a new snapshot is built in tmp/ and renamed to snapshots/<id> inside the same
transaction that inserts its row; a removed one is renamed into tmp/ after its row is gone and
deleted there. Whatever a killed process leaves behind — a tmp/ entry whose pid is dead, a
snapshots/<id> without a row — is removed when the snapshotter is next opened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping

from galley.errors import FailedPrecondition
from galley.snapshots.api import Info, Kind, Mount, Usage
from galley.snapshots.storage import Record, Storage


def disk_usage(path: str) -> Usage:
    """Bytes (allocated blocks) and inodes under path, counting each hard-linked inode once."""
    seen: set[int] = set()
    size = inodes = 0
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                inodes += 1
                size += st.st_blocks * 512
    return Usage(size=size, inodes=inodes)


def pid_alive(pid: int) -> bool:
    """True while process pid exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DirectorySnapshotter:
    """A snapshotter whose snapshots are directories; subclasses say how to fill and mount them."""

    name = "directory"

    def __init__(self, root: str) -> None:
        self.root = root
        self._snapshots = os.path.join(root, "snapshots")
        self._tmp = os.path.join(root, "tmp")
        for path in (root, self._snapshots, self._tmp):
            os.makedirs(path, mode=0o700, exist_ok=True)
        self._storage = Storage(os.path.join(root, "metadata.db"))
        self._clean_orphans()

    # -- what subclasses provide ------------------------------------------------------------

    def _populate(self, tmp: str, kind: Kind, parents: list[int]) -> None:
        """Fill a new snapshot directory tmp (with fs/ inside) for kind on parents."""
        raise NotImplementedError

    def _mounts(self, record: Record, parents: list[int]) -> list[Mount]:
        """The mounts of an active or view snapshot."""
        raise NotImplementedError

    # -- paths ------------------------------------------------------------------------------

    def snapshot_dir(self, sid: int) -> str:
        """<home>/snapshots/<id>."""
        return os.path.join(self._snapshots, str(sid))

    def fs_dir(self, sid: int) -> str:
        """<home>/snapshots/<id>/fs: the snapshot's own tree."""
        return os.path.join(self._snapshots, str(sid), "fs")

    # -- the Snapshotter interface -------------------------------------------------------------

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create an active snapshot key on top of committed parent ("" for none)."""
        return self._create(key, Kind.ACTIVE, parent, labels)

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create a read-only view key of committed parent."""
        return self._create(key, Kind.VIEW, parent, labels)

    def _create(
        self, key: str, kind: Kind, parent: str, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        with self._storage.transaction(write=False) as tx:
            # Fail early (AlreadyExists, NotFound) before any copying; checked again below.
            parents = tx.check_new(key, parent)
        tmp = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self._tmp)
        try:
            os.mkdir(os.path.join(tmp, "fs"), 0o755)
            self._populate(tmp, kind, parents)
            with self._storage.transaction() as tx:
                record = tx.create(key, kind, parent, labels)
                chain = tx.chain(record)
                target = self.snapshot_dir(record.id)
                if os.path.lexists(target):  # left by a transaction that never committed
                    shutil.rmtree(target)
                os.rename(tmp, target)
                try:
                    return self._mounts(record, chain)
                except BaseException:
                    os.rename(target, tmp)
                    raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Freeze active snapshot key into committed snapshot name."""
        with self._storage.transaction(write=False) as tx:
            record = tx.get(key)
        if record.info.kind is not Kind.ACTIVE:
            raise FailedPrecondition(
                f"snapshot {key!r} is {record.info.kind.value}; only an active one can be committed"
            )
        usage = disk_usage(self.fs_dir(record.id))
        with self._storage.transaction() as tx:
            tx.commit(name, key, usage, labels)

    def remove(self, key: str) -> None:
        """Remove an active/view snapshot, or a committed one without children."""
        with self._storage.transaction() as tx:
            record = tx.remove(key)
        self._discard(self.snapshot_dir(record.id))

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot."""
        with self._storage.transaction(write=False) as tx:
            record = tx.get(key)
            chain = tx.chain(record)
        if record.info.kind is Kind.COMMITTED:
            raise FailedPrecondition(
                f"snapshot {key!r} is committed; prepare or view a snapshot on it to mount it"
            )
        return self._mounts(record, chain)

    def stat(self, key: str) -> Info:
        """The snapshot's Info."""
        with self._storage.transaction(write=False) as tx:
            return tx.get(key).info

    def update(self, info: Info) -> Info:
        """Replace the labels of snapshot info.name."""
        with self._storage.transaction() as tx:
            return tx.update_labels(info.name, info.labels).info

    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own layer."""
        with self._storage.transaction(write=False) as tx:
            record = tx.get(key)
        if record.info.kind is Kind.COMMITTED:
            return record.usage
        return disk_usage(self.fs_dir(record.id))

    def walk(self) -> Iterator[Info]:
        """Every snapshot, in creation order."""
        with self._storage.transaction(write=False) as tx:
            records = tx.walk()
        return iter([r.info for r in records])

    def close(self) -> None:
        """Release the database connection."""
        self._storage.close()

    # -- housekeeping ---------------------------------------------------------------------------

    def _discard(self, path: str) -> None:
        """Move path into tmp/ (atomic) and delete it there."""
        if not os.path.lexists(path):
            return
        doomed = os.path.join(self._tmp, f"{os.getpid()}-rm-{os.path.basename(path)}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def _clean_orphans(self) -> None:
        """Delete what killed processes left: dead tmp/ entries, directories without rows."""
        for entry in os.listdir(self._tmp):
            pid = entry.split("-", 1)[0]
            if not (pid.isascii() and pid.isdigit()) or not pid_alive(int(pid)):
                shutil.rmtree(os.path.join(self._tmp, entry), ignore_errors=True)
        with self._storage.transaction() as tx:
            known = tx.ids()
            orphans = [
                entry
                for entry in os.listdir(self._snapshots)
                if not (entry.isascii() and entry.isdigit()) or int(entry) not in known
            ]
            for entry in orphans:
                self._discard(os.path.join(self._snapshots, entry))
