"""Applying layer tars to directories (apply_layer), and images to snapshots (unpack_image).

One layer is one pass over its stream:

    blob ─▶ decompress (pigz/zstd, or Python) ─▶ LayerStream ─▶ tarfile "r:" ─▶ TarApplier ─▶ dest
                                                 sha256 (the diffID),
                                                 size bound

Then unpack_image stacks the layers into snapshots named by ChainID (LayerUnpacker), writing
each layer straight into its snapshot's directory (the overlay upperdir) with no mount.

Whiteouts and hostile entries: see galley.images.tarapply and galley.images.tarsafe; the
bound on a layer's uncompressed size (decompression bombs): galley.images.layerstream.
"""

from __future__ import annotations

import fcntl
import os
import tarfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from galley.content.digest import Digest
from galley.content.store import ContentStore
from galley.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from galley.images import mediatypes as mt
from galley.images.decompress import decompressed
from galley.images.layerstream import MAX_LAYER_SIZE, LayerStream, size_limit
from galley.images.tarapply import TarApplier, WhiteoutMode
from galley.images.tarsafe import Root
from galley.snapshots.api import Kind, Mount, Snapshotter
from galley.snapshots.directory import pid_alive

SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"
EXTRACT_PREFIX = "extract-"  # active snapshot keys: extract-<pid>-<random> <chainID>


@dataclass(frozen=True)
class AppliedLayer:
    """What applying a layer produced: the uncompressed tar's digest (diffID) and its size."""

    diff_id: Digest
    size: int


def apply_layer(
    stream: BinaryIO,
    media_type: str,
    dest: str,
    *,
    whiteouts: WhiteoutMode = "overlay",
    lower_dirs: Sequence[str] = (),
    allow_devices: bool = True,
    max_size: int = MAX_LAYER_SIZE,
) -> AppliedLayer:
    """Decompress and apply one layer tar into dest, refusing hostile entries.

    lower_dirs (overlay) are the layers below dest, nearest first: hard links to files that
    live only there are copied up, and implicit directories take their attributes. A layer
    whose tar is larger than max_size, or than the free space under dest, is refused
    (InvalidArgument) as soon as it passes the bound: a decompression bomb stops there.
    """
    mt.compression(media_type)  # refuses what is not a layer media type
    limit = size_limit(dest, max_size)
    with decompressed(stream) as plain, Root(dest, lower_dirs) as root:
        layer = LayerStream(plain, limit)
        applier = TarApplier(root, whiteouts, allow_devices, layer.chunks)
        try:
            with tarfile.open(fileobj=layer, mode="r:") as tar:  # type: ignore[call-overload]
                for member in tar:
                    applier.entry(member, tar)
                    tar.members.clear()  # a layer can hold millions of entries
        except tarfile.TarError as exc:
            raise InvalidArgument(f"layer of type {media_type} is not a valid tar: {exc}") from exc
        applier.finish()
        layer.drain()
    return AppliedLayer(layer.digest(), layer.position)


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """OCI ChainIDs: ChainID(0) = DiffID(0); ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else Digest.of_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


def layer_dirs(mounts: Sequence[Mount]) -> tuple[str, list[str], WhiteoutMode]:
    """Where to apply a layer in a prepared snapshot: (dest, lower dirs, whiteout style).

    Layers are written straight into the overlay upperdir (no mount needed); a bind mount's
    source is the whole tree (native, or a parentless overlay layer).
    """
    if len(mounts) == 1 and mounts[0].is_bind:
        return mounts[0].source, [], "native"
    if len(mounts) == 1 and mounts[0].type == "overlay":
        options = dict(o.split("=", 1) for o in mounts[0].options if "=" in o)
        if "upperdir" in options:
            return options["upperdir"], options["lowerdir"].split(":"), "overlay"
    raise InvalidArgument(f"cannot apply a layer to snapshot mounts {list(mounts)!r}")


class LayerUnpacker:
    """Applies one image's layers, bottom first, into snapshots named by ChainID.

    Made for pulls that overlap download and unpack: call apply(i, stream, media_type) for each
    layer in order as soon as its blob (or its download stream) is ready; skipped(i) tells
    whether layer i (and so every layer below) is unpacked already. No layer may decompress
    to more than max_size bytes (see galley.images.layerstream).
    """

    def __init__(
        self, snapshotter: Snapshotter, diff_ids: Sequence[Digest], max_size: int = MAX_LAYER_SIZE
    ) -> None:
        self.snapshotter = snapshotter
        self.max_size = max_size
        self.diff_ids = list(diff_ids)
        self.chain = chain_ids(self.diff_ids)
        self.applied = 0

    def skipped(self, index: int) -> bool:
        """True when the snapshot of layer index exists already (nothing to fetch or apply)."""
        try:
            return self.snapshotter.stat(str(self.chain[index])).kind is Kind.COMMITTED
        except NotFound:
            return False

    def apply(self, index: int, stream: BinaryIO, media_type: str) -> Digest:
        """Apply layer index (its parents must be done) and return its ChainID."""
        if index != self.applied and not self.skipped(index - 1):
            raise FailedPrecondition(f"layer {index} cannot be unpacked before layer {index - 1}")
        chain = self.chain[index]
        if not self.skipped(index):
            with _layer_lock(self.snapshotter.root, chain):  # one unpacker per layer at a time
                if not self.skipped(index):  # the one before us may have just done it
                    self._apply(index, stream, media_type)
        self.applied = index + 1
        return chain

    def _apply(self, index: int, stream: BinaryIO, media_type: str) -> None:
        chain, parent = str(self.chain[index]), str(self.chain[index - 1]) if index else ""
        key = f"{EXTRACT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]} {chain}"
        mounts = self.snapshotter.prepare(key, parent)
        try:
            dest, lowers, whiteouts = layer_dirs(mounts)
            applied = apply_layer(
                stream,
                media_type,
                dest,
                whiteouts=whiteouts,
                lower_dirs=lowers,
                max_size=self.max_size,
            )
            _check_diff_id(index, applied.diff_id, self.diff_ids[index])
            self.snapshotter.commit(chain, key, labels={SNAPSHOT_REF_LABEL: chain})
        except AlreadyExists:
            self.snapshotter.remove(key)  # another unpack of the same layer won the race
        except BaseException:
            self.snapshotter.remove(key)
            raise


@contextmanager
def _layer_lock(root: str, chain: Digest) -> Iterator[None]:
    """An exclusive flock shared by every thread and process unpacking layers with this ChainID.

    256 lock files (by the ChainID's first byte) under <snapshotter root>/locks: bounded, and
    two different layers rarely wait on each other. A dead holder's lock goes with its process.
    """
    locks = os.path.join(root, "locks")
    os.makedirs(locks, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(locks, chain.hex[:2]), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_abandoned_extractions(snapshotter: Snapshotter) -> list[str]:
    """Remove the active snapshots of unpacks whose process died; returns their keys."""
    removed = []
    for info in snapshotter.walk():
        pid = info.name[len(EXTRACT_PREFIX) :].split("-", 1)[0]
        if info.kind is not Kind.ACTIVE or not info.name.startswith(EXTRACT_PREFIX):
            continue
        if pid.isascii() and pid.isdigit() and not pid_alive(int(pid)):
            try:
                snapshotter.remove(info.name)
            except NotFound:
                continue  # another process cleaned it first
            removed.append(info.name)
    return removed


def _check_diff_id(index: int, got: Digest, want: Digest) -> None:
    if got != want:
        raise InvalidArgument(
            f"layer {index} unpacks to diffID {got}, but the image config says {want}"
        )


class _UnpackStore(Protocol):
    """What unpack_image needs of galley.images.store.Store."""

    @property
    def content(self) -> ContentStore: ...

    def snapshotter(self, name: str = ...) -> Snapshotter: ...


def unpack_image(
    store: _UnpackStore,
    manifest: Mapping[str, Any],
    config: Mapping[str, Any],
    snapshotter_name: str = "overlayfs",
    *,
    max_layer_size: int = MAX_LAYER_SIZE,
) -> str:
    """Unpack an image's layers from the content store into snapshots; returns the top ChainID.

    Layers whose ChainID is already a committed snapshot are skipped, so images sharing base
    layers store them once and a second unpack of the same image does nothing.
    """
    layers = mt.descriptors(dict(manifest), "layers", "image manifest")
    diff_ids = mt.diff_ids(dict(config), "image config")
    if not layers or len(diff_ids) != len(layers):
        raise InvalidArgument(
            f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff_ids"
        )
    snapshotter = store.snapshotter(snapshotter_name)
    remove_abandoned_extractions(snapshotter)
    unpacker = LayerUnpacker(snapshotter, diff_ids, max_layer_size)
    for index in reversed(range(len(layers))):  # find the highest layer already unpacked
        if unpacker.skipped(index):
            unpacker.applied = index + 1
            break
    for index in range(unpacker.applied, len(layers)):
        with store.content.open(layers[index].digest) as blob:
            unpacker.apply(index, blob, layers[index].media_type)
    return str(unpacker.chain[-1])
