"""Pull: resolve a reference, fetch what the platform needs into the content store, unpack, record.

    pull(store, "127.0.0.1:5000/team/app:1")
      1. resolve the tag (or digest) to the top manifest or index        ──▶ content store
      2. an index: choose the platform's manifest, fetch it              ──▶ content store
      3. config and layers, in parallel (bounded), each resumed from its ──▶ content store
         partial ingest with HTTP Range and verified on commit
      4. meanwhile, layer by layer in order as each lands, unpack into a snapshot keyed by
         its ChainID (galley.images.unpack.LayerUnpacker; present snapshots are skipped)
      5. GC labels (containerd.io/gc.ref.*), then the image record
    All of it under a lease (blobs and ChainIDs join it before they are written), so a garbage
    collection during the pull frees nothing it fetched. Metadata is written only from the
    calling thread; worker threads only download into the content store.

Two pulls of the same blob (threads or processes) share the content store's ingest lock on
the ref `fetch-<digest>`: the second waits and then finds the blob committed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from galley.content.digest import Digest
from galley.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from galley.images import mediatypes as mt
from galley.images import platforms
from galley.images.auth import Credentials, docker_config_credentials, static_credentials
from galley.images.hosts import load_hosts
from galley.images.layerstream import MAX_LAYER_SIZE
from galley.images.mediatypes import Descriptor
from galley.images.reference import Reference
from galley.images.registry import MAX_MANIFEST, Repository
from galley.images.transport import Transport
from galley.images.tree import GC_CONTENT, GC_SNAPSHOT, UNCOMPRESSED
from galley.metadata.images import Image
from galley.metadata.leases import CONTENT, snapshots_kind

if TYPE_CHECKING:
    from galley.content.store import ContentStore
    from galley.images.store import Store

MAX_PARALLEL = 4
FETCH_ATTEMPTS = 3
SOURCE = "containerd.io/distribution.source."
MAX_CONFIG = 8 << 20


@dataclass(frozen=True)
class Progress:
    """One step of a pull for one blob: status is resolving, waiting, downloading, done,
    exists, unpacking or unpacked; offset/total in bytes."""

    kind: str
    digest: str
    status: str
    offset: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


def _silent(_p: Progress) -> None:
    return


class _Puller:
    """The state of one pull: where from, where to, what the lease holds."""

    def __init__(
        self, store: Store, ref: Reference, namespace: str, repo: Repository, report: ProgressFn
    ) -> None:
        self.store = store
        self.content: ContentStore = store.content
        self.ref = ref
        self.namespace = namespace
        self.repo = repo
        self.report = report
        self.lease = ""
        self.max_layer_size = MAX_LAYER_SIZE
        self._lock = threading.Lock()
        self.labels: dict[str, dict[str, str]] = {}
        self.sizes: dict[str, int] = {}

    def hold(self, desc: Descriptor, labels: Mapping[str, str] | None = None) -> None:
        """Record the blob for the namespace (with labels) and in the lease."""
        key = str(desc.digest)
        source = {f"{SOURCE}{self.ref.domain}": self.ref.path}
        with self._lock:
            self.labels.setdefault(key, {}).update({**source, **(labels or {})})
            known = key in self.sizes
            self.sizes[key] = desc.size
        if not known:  # in the lease before a byte is written, as GC requires
            self.store.meta.add_lease_resource(self.namespace, self.lease, CONTENT, key)

    def put_small(self, desc: Descriptor, data: bytes) -> None:
        """Store a manifest/index/config already in memory (verified by digest)."""
        self.hold(desc)
        self.content.put(data, desc.digest)

    def fetch(self, kind: str, desc: Descriptor) -> None:
        """Fetch one blob into the content store, resuming partial ingests.

        Runs on worker threads, so it touches no metadata: the caller holds desc in the lease
        first (per-thread SQLite connections would pile up in a long-lived daemon otherwise).
        """
        key = str(desc.digest)
        if self.content.exists(desc.digest):
            self._drop_stale_ingest(key)
            self.report(Progress(kind, key, "exists", desc.size, desc.size))
            return
        self.report(Progress(kind, key, "waiting", 0, desc.size))
        for attempt in range(FETCH_ATTEMPTS):
            try:
                self._fetch_once(kind, desc)
                return
            except Unavailable:
                if attempt == FETCH_ATTEMPTS - 1:
                    raise

    def _drop_stale_ingest(self, key: str) -> None:
        """A pull killed between publishing a blob and removing its ingest leaves the ingest."""
        with contextlib.suppress(NotFound, FailedPrecondition):
            self.content.abort(f"fetch-{key}")

    def _fetch_once(self, kind: str, desc: Descriptor) -> None:
        key = str(desc.digest)
        writer = self.content.writer(f"fetch-{key}", desc.digest, desc.size)
        try:
            if writer.done or writer.offset == desc.size:
                writer.commit()
                self.report(Progress(kind, key, "exists", desc.size, desc.size))
                return
            stream = self.repo.open_blob(desc, writer.offset)
            for chunk in stream.chunks():
                writer.write(chunk)
                self.report(Progress(kind, key, "downloading", writer.offset, desc.size))
            writer.commit()
        except Unavailable:
            writer.close()  # keep the partial data: the next attempt resumes from it
            raise
        except BaseException:
            writer.abort()
            raise
        self.report(Progress(kind, key, "done", desc.size, desc.size))

    def read_manifest(self, desc: Descriptor, data: bytes | None = None) -> dict[str, Any]:
        """A manifest or index by descriptor, from the store or the registry."""
        if data is None and self.content.exists(desc.digest):
            data = self.content.read(desc.digest, MAX_MANIFEST)
        if data is None:
            data = self.repo.fetch_manifest(desc)
        self.put_small(desc, data)
        _, obj = mt.detect_media_type(data, desc.media_type, f"manifest {desc.digest}")
        return obj


def transport_for(credentials: Credentials | None) -> Transport:
    """A transport with the given credentials, else those of the Docker config.json."""
    lookup = static_credentials(credentials) if credentials else docker_config_credentials()
    return Transport(lookup)


def pull(
    store: Store,
    ref: str,
    *,
    namespace: str,
    hosts_dir: str,
    platform: str | None = None,
    credentials: Credentials | None = None,
    progress: ProgressFn | None = None,
    snapshotter: str = "overlayfs",
    unpack: bool = True,
    max_layer_size: int = MAX_LAYER_SIZE,
) -> Image:
    """Pull ref into store for namespace and return the image record.

    A layer decompressing to more than max_layer_size bytes (or than the free space of the
    snapshotter) fails the pull with InvalidArgument.
    """
    reference = Reference.parse(ref)
    want = platforms.parse(platform) if platform else platforms.host()
    transport = transport_for(credentials)
    repo = Repository(reference, load_hosts(hosts_dir, reference.domain), transport)
    report = progress or _silent
    try:
        with store.meta.lease(namespace) as lease:
            puller = _Puller(store, reference, namespace, repo, report)
            puller.lease, puller.max_layer_size = lease.id, max_layer_size
            report(Progress("resolve", str(reference), "resolving"))
            top, data = repo.resolve()
            manifest_desc, manifest = _choose(puller, top, data, want)
            _fetch_image(puller, manifest_desc, manifest, snapshotter if unpack else None)
            _label(puller, namespace)
            return store.meta.put_image(namespace, Image(name=str(reference), target=top))
    finally:
        transport.close()


def _choose(
    puller: _Puller, top: Descriptor, data: bytes, want: mt.Platform
) -> tuple[Descriptor, dict[str, Any]]:
    """The manifest to pull: top itself, or the platform's entry of an index."""
    obj = puller.read_manifest(top, data)
    if not mt.is_index(top.media_type):
        return top, obj
    entries = mt.descriptors(obj, "manifests", f"index {top.digest}")
    puller.hold(top, {f"{GC_CONTENT}m.{i}": str(d.digest) for i, d in enumerate(entries)})
    chosen = platforms.select([d for d in entries if mt.is_manifest(d.media_type)], want)
    manifest = puller.read_manifest(chosen)
    if not mt.is_manifest(chosen.media_type):
        raise InvalidArgument(f"index entry {chosen.digest} is not an image manifest")
    return chosen, manifest


def _image_parts(desc: Descriptor, manifest: dict[str, Any]) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of a manifest, refusing unknown layer types."""
    config_desc = Descriptor.from_json(manifest.get("config"))
    if config_desc.size > MAX_CONFIG:
        raise InvalidArgument(f"image config {config_desc.digest} is {config_desc.size} bytes")
    layers = mt.descriptors(manifest, "layers", f"manifest {desc.digest}")
    for layer in layers:
        if layer.media_type not in mt.LAYER_TYPES:
            raise InvalidArgument(
                f"manifest {desc.digest}: layer {layer.digest} has unsupported media type "
                f"{layer.media_type!r}"
            )
    return config_desc, layers


def _read_config(puller: _Puller, config_desc: Descriptor, layers: int) -> list[Digest]:
    """The diffIDs of the fetched config, which must list one per layer."""
    config = mt.parse_json_object(
        puller.content.read(config_desc.digest, MAX_CONFIG), f"config {config_desc.digest}"
    )
    ids = mt.diff_ids(config, f"image config {config_desc.digest}")
    if len(ids) != layers:
        raise InvalidArgument(
            f"image config {config_desc.digest} lists {len(ids)} diff_ids for {layers} layers"
        )
    return ids


def _fetch_image(
    puller: _Puller, desc: Descriptor, manifest: dict[str, Any], snapshotter: str | None
) -> None:
    """Fetch config and layers in parallel, unpacking each layer in order as it lands."""
    config_desc, layers = _image_parts(desc, manifest)
    children = {f"{GC_CONTENT}config": str(config_desc.digest)}
    children |= {f"{GC_CONTENT}l.{i}": str(d.digest) for i, d in enumerate(layers)}
    puller.hold(desc, children)
    for blob in (config_desc, *layers):
        puller.hold(blob)
    pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(layers) + 1))
    try:
        config_job = pool.submit(puller.fetch, "config", config_desc)
        jobs = [pool.submit(puller.fetch, "layer", layer) for layer in layers]
        unpacker = _Unpacker(puller, snapshotter) if snapshotter else None  # while downloading
        config_job.result()
        diff_ids = _read_config(puller, config_desc, len(layers))
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            puller.hold(layer, {UNCOMPRESSED: str(diff_id)})
        if unpacker is not None:
            unpacker.start(diff_ids)
        for index, (job, layer) in enumerate(zip(jobs, layers, strict=True)):
            job.result()
            if unpacker is not None:
                unpacker.apply(index, layer)
        if unpacker is not None and snapshotter and unpacker.top:
            top = {f"{GC_SNAPSHOT}{snapshotter}": unpacker.top}
            puller.hold(config_desc, top)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Unpacker:
    """Applies layers into snapshots as their blobs arrive (engineer 8's LayerUnpacker)."""

    def __init__(self, puller: _Puller, snapshotter: str) -> None:
        from galley.images.unpack import remove_abandoned_extractions  # noqa: PLC0415

        self.puller = puller
        self.kind = snapshots_kind(snapshotter)
        self.snapshotter = puller.store.snapshotter(snapshotter)
        remove_abandoned_extractions(self.snapshotter)
        self.top = ""

    def start(self, diff_ids: list[Digest]) -> None:
        """Hold the image's ChainIDs in the lease before they exist: a GC must not take them."""
        from galley.images.unpack import LayerUnpacker  # noqa: PLC0415

        self.layers = LayerUnpacker(self.snapshotter, diff_ids, self.puller.max_layer_size)
        self.top = str(self.layers.chain[-1]) if diff_ids else ""
        meta, namespace, lease = self.puller.store.meta, self.puller.namespace, self.puller.lease
        for chain in self.layers.chain:
            meta.add_lease_resource(namespace, lease, self.kind, str(chain))

    def apply(self, index: int, layer: Descriptor) -> None:
        """Unpack layer index (all below it are done) unless its snapshot exists."""
        key = str(layer.digest)
        if self.layers.skipped(index):
            self.layers.applied = index + 1
            self.puller.report(Progress("layer", key, "unpacked", layer.size, layer.size))
            return
        self.puller.report(Progress("layer", key, "unpacking", layer.size, layer.size))
        with self.puller.content.open(layer.digest) as blob:
            self.layers.apply(index, blob, layer.media_type)
        self.puller.report(Progress("layer", key, "unpacked", layer.size, layer.size))


def _label(puller: _Puller, namespace: str) -> None:
    """Record every blob the image needs, with its labels, in the namespace."""
    for key, labels in puller.labels.items():
        puller.store.meta.add_content(namespace, Digest.parse(key), puller.sizes[key], labels)
