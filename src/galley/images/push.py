"""Push: send a stored image's blobs and manifests to a registry, then tag it.

    push(store, "app:1", "127.0.0.1:5000/team/app:1")
      1. walk the image from its target (index → present manifests → config + layers)
      2. each blob, in parallel (bounded): HEAD (already there) → cross-repo mount from the
         repository it was pulled from on the same registry → upload (monolithic, or chunked
         PATCHes when chunk_size is given)
      3. manifests children first (by digest), then the target under the remote tag

An index whose manifests were not all pulled is pushed as the manifests present: the one
present platform manifest goes under the tag (as `ctr push --platform` would).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO

from galley.content.digest import Digest
from galley.errors import NotFound
from galley.images import mediatypes as mt
from galley.images import tree
from galley.images.auth import Credentials
from galley.images.hosts import load_hosts
from galley.images.mediatypes import Descriptor
from galley.images.pull import SOURCE, Progress, transport_for
from galley.images.reference import Reference
from galley.images.registry import Repository

if TYPE_CHECKING:
    from galley.images.store import Store

MAX_PARALLEL = 4


def push(
    store: Store,
    ref: str,
    remote_ref: str,
    *,
    namespace: str,
    hosts_dir: str,
    credentials: Credentials | None = None,
    progress: Callable[[Progress], None] | None = None,
    chunk_size: int | None = None,
) -> Descriptor:
    """Push the stored image ref to remote_ref; returns the descriptor pushed under the tag."""
    image = store.find_image(namespace, ref)
    remote = Reference.parse(remote_ref)
    report = progress or (lambda _p: None)
    transport = transport_for(credentials)
    repo = Repository(remote, load_hosts(hosts_dir, remote.domain), transport)
    try:
        top = _pushed_target(store, image.target)
        descs = list(tree.walk(store.content, top))
        blobs = [
            d for d in descs if not (mt.is_index(d.media_type) or mt.is_manifest(d.media_type))
        ]
        sender = _BlobSender(store, repo, report, chunk_size)
        sources = [_source(store, namespace, remote.domain, d.digest) for d in blobs]
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
            for future in [
                pool.submit(sender.send, *job) for job in zip(blobs, sources, strict=True)
            ]:
                future.result()
        manifests = [d for d in descs if d not in blobs]
        for desc in reversed(manifests[1:]):
            data = store.content.read(desc.digest, tree.MAX_MANIFEST)
            repo.put_manifest(str(desc.digest), desc.media_type, data)
        data = store.content.read(top.digest, tree.MAX_MANIFEST)
        repo.put_manifest(remote.tag or str(top.digest), top.media_type, data)
        report(Progress("manifest", str(top.digest), "done", top.size, top.size))
        return top
    finally:
        transport.close()


def _pushed_target(store: Store, target: Descriptor) -> Descriptor:
    """target, or for an index with absent manifests the single present one."""
    if not mt.is_index(target.media_type):
        return target
    entries = [child for _s, child in tree.children(store.content, target)]
    present = [d for d in entries if store.content.exists(d.digest)]
    if len(present) == len(entries):
        return target
    if len(present) == 1:
        return present[0]
    raise NotFound(
        f"index {target.digest} has {len(present)} of {len(entries)} manifests in the store; "
        "pull all platforms before pushing it"
    )


def _source(store: Store, namespace: str, domain: str, digest: Digest) -> str:
    """The repository on registry domain this blob was pulled from, if any (for a mount)."""
    try:
        labels = store.meta.content_labels(namespace, digest)
    except NotFound:
        return ""
    return labels.get(f"{SOURCE}{domain}", "").split(",")[0]


class _BlobSender:
    """Sends one blob the cheapest way the registry allows."""

    def __init__(
        self,
        store: Store,
        repo: Repository,
        report: Callable[[Progress], None],
        chunk_size: int | None,
    ) -> None:
        self.store = store
        self.repo = repo
        self.report = report
        self.chunk_size = chunk_size

    def send(self, desc: Descriptor, source: str) -> None:
        """HEAD, else mount from source (a repository on the same registry), else upload."""
        key = str(desc.digest)
        if self.repo.blob_exists(desc.digest):
            self.report(Progress("blob", key, "exists", desc.size, desc.size))
            return
        if source and source != self.repo.ref.path and self.repo.mount_blob(desc.digest, source):
            self.report(Progress("blob", key, "mounted", desc.size, desc.size))
            return
        with self.store.content.open(desc.digest) as fh:
            self.repo.upload_blob(desc, _Reporting(fh, desc, self.report), self.chunk_size)
        self.report(Progress("blob", key, "done", desc.size, desc.size))


class _Reporting:
    """A blob file that reports upload progress as it is read."""

    def __init__(self, fh: BinaryIO, desc: Descriptor, report: Callable[[Progress], None]) -> None:
        self._fh = fh
        self._desc = desc
        self._report = report

    def read(self, n: int = -1, /) -> bytes:
        data = self._fh.read(n)
        if data:
            size = self._desc.size
            self._report(
                Progress("blob", str(self._desc.digest), "uploading", self._fh.tell(), size)
            )
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self._fh.seek(offset, whence)
