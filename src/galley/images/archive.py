"""Import and export of image archives: OCI image layout tars and `docker save` tars.

    OCI layout tar (format="oci")          docker save tar (format="docker")
    ├── oci-layout                         ├── oci-layout, index.json, blobs/…  (as OCI)
    ├── index.json  (ref names in          ├── manifest.json  [{Config, RepoTags, Layers}]
    │   annotations)                       └── repositories   {"name": {"tag": "<layer id>"}}
    └── blobs/sha256/<hex>

Export writes the blobs as stored (layers stay compressed; `docker load` accepts that).
Import reads either kind: an index.json names images by `io.containerd.image.name` or
`org.opencontainers.image.ref.name`; a manifest.json (old `docker save`: `<id>/layer.tar`,
`<id>.json`) becomes a Docker schema 2 manifest built here. Every blob is verified by digest.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from galley.content.digest import Digest
from galley.errors import InvalidArgument, NotFound, reason_text
from galley.images import mediatypes as mt
from galley.images import platforms, tree
from galley.images.mediatypes import Descriptor
from galley.images.reference import Reference
from galley.images.unpacked import unpack_stored
from galley.metadata.images import Image
from galley.metadata.leases import CONTENT

if TYPE_CHECKING:
    from galley.images.store import Store

IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"
MAX_JSON = 4 << 20
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def export_archive(
    store: Store, names: Iterable[str], path: str, namespace: str, format: str = "oci"
) -> None:
    """Write the named images to a tar at path ("oci" layout, or "docker" for docker load)."""
    if format not in ("oci", "docker"):
        raise InvalidArgument(f"archive format {format!r} is not oci or docker")
    images = [store.find_image(namespace, n) for n in names]
    if not images:
        raise InvalidArgument("export needs at least one image name")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _write_layout(store, tar, images)
            if format == "docker":
                _write_docker_manifest(store, tar, images)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _write_layout(store: Store, tar: tarfile.TarFile, images: list[Image]) -> None:
    written: set[Digest] = set()
    entries = []
    for image in images:
        for desc in tree.walk(store.content, image.target):
            if desc.digest in written:
                continue
            written.add(desc.digest)
            info = tarfile.TarInfo(f"blobs/sha256/{desc.digest.hex}")
            info.size, info.mode, info.mtime = desc.size, 0o444, 0
            with store.content.open(desc.digest) as fh:
                tar.addfile(info, fh)
        ref = Reference.parse(image.name)
        top = image.target.to_json()
        top["annotations"] = {IMAGE_NAME: image.name, REF_NAME: ref.tag or str(ref.digest)}
        entries.append(top)
    _add_bytes(
        tar, "oci-layout", json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode()
    )
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    _add_bytes(tar, "index.json", json.dumps(index).encode())


def _write_docker_manifest(store: Store, tar: tarfile.TarFile, images: list[Image]) -> None:
    out: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        manifest_desc = _single_manifest(store, image.target)
        manifest = tree.read_json(store.content, manifest_desc)
        config = Descriptor.from_json(manifest.get("config"))
        layers = mt.descriptors(manifest, "layers", f"manifest {manifest_desc.digest}")
        ref = Reference.parse(image.name)
        tags = [ref.familiar()] if ref.tag and ref.digest is None else []
        out.append(
            {
                "Config": f"blobs/sha256/{config.digest.hex}",
                "RepoTags": tags,
                "Layers": [f"blobs/sha256/{x.digest.hex}" for x in layers],
            }
        )
        if tags and layers:
            name = ref.familiar().rsplit(":", 1)[0]
            repositories.setdefault(name, {})[ref.tag] = layers[-1].digest.hex
    _add_bytes(tar, "manifest.json", json.dumps(out).encode())
    _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _single_manifest(store: Store, target: Descriptor) -> Descriptor:
    if mt.is_manifest(target.media_type):
        return target
    present = [
        c for _s, c in tree.children(store.content, target) if store.content.exists(c.digest)
    ]
    manifests = [c for c in present if mt.is_manifest(c.media_type)]
    if not manifests:
        raise NotFound(f"index {target.digest} has no image manifest in the store")
    return manifests[0]


class _Archive:
    """A tar opened for import: members by normalised name."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members = {os.path.normpath(m.name).lstrip("/"): m for m in tar.getmembers()}

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(os.path.normpath(name).lstrip("/"))
        if member is None or not member.isfile():
            raise InvalidArgument(f"archive has no file {name!r}")
        fh = self.tar.extractfile(member)
        assert fh is not None
        return fh

    def read_json(self, name: str) -> Any:
        with self.open(name) as fh:
            data = fh.read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise InvalidArgument(f"archive file {name!r} is larger than {MAX_JSON} bytes")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InvalidArgument(f"archive file {name!r} is not JSON: {exc}") from exc

    def has(self, name: str) -> bool:
        return os.path.normpath(name) in self.members

    def size(self, name: str) -> int:
        return self.members[os.path.normpath(name).lstrip("/")].size


def import_archive(
    store: Store,
    path: str,
    namespace: str,
    *,
    base_name: str = "",
    unpack: bool = True,
    snapshotter: str = "overlayfs",
    platform: str | None = None,
) -> list[Image]:
    """Import an OCI layout tar or a docker save tar; returns the images recorded.

    With unpack (as `ctr import`), each image's manifest for platform (default: this host's)
    is unpacked into snapshotter before the images are recorded; images without one are only
    stored. A layer that fails to unpack fails the import and records no image.
    """
    want = platforms.parse(platform) if platform else None
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InvalidArgument(f"archive {path!r} cannot be read: {reason_text(exc)}") from exc
    except tarfile.TarError as exc:  # its text lists every decompressor tried, on lines
        raise InvalidArgument(f"archive {path!r} is not a tar (plain, gzip, bzip2 or xz)") from exc
    with tar, store.meta.lease(namespace) as lease:
        archive = _Archive(tar)
        importer = _Importer(store, archive, namespace, lease.id)
        if archive.has("index.json"):
            named = importer.from_oci_index(base_name)
        elif archive.has("manifest.json"):
            named = importer.from_docker_manifest()
        else:
            raise InvalidArgument(f"archive {path!r} has neither index.json nor manifest.json")
        if not named:
            raise InvalidArgument(f"archive {path!r} names no image; give a base name to import it")
        for target in {d.digest: d for _n, d in named}.values() if unpack else ():
            unpack_stored(
                store, namespace, target, lease=lease.id, snapshotter=snapshotter, platform=want
            )
        return [store.meta.put_image(namespace, Image(name=n, target=d)) for n, d in named]


class _Importer:
    """Copies verified blobs from an archive into the store and labels them."""

    def __init__(self, store: Store, archive: _Archive, namespace: str, lease: str) -> None:
        self.store = store
        self.archive = archive
        self.namespace = namespace
        self.lease = lease

    def blob(self, name: str, expected: Digest | None, size: int | None) -> Digest:
        """Copy one archive member into the content store, verified; returns its digest."""
        ref = f"import-{expected or name}"
        with self.archive.open(name) as fh, self.store.content.writer(ref, expected, size) as w:
            if not w.done:
                w.reset()
                while chunk := fh.read(1 << 20):
                    w.write(chunk)
            info = w.commit()
        self.store.meta.add_lease_resource(self.namespace, self.lease, CONTENT, str(info.digest))
        return info.digest

    def record(self, desc: Descriptor, labels: dict[str, str] | None = None) -> None:
        self.store.meta.add_content(self.namespace, desc.digest, desc.size, labels or {})

    def tree_from_layout(self, desc: Descriptor) -> None:
        """Import desc and everything under it from blobs/sha256/, labelling parents."""
        self.blob(f"blobs/sha256/{desc.digest.hex}", desc.digest, desc.size)
        pairs = tree.children(self.store.content, desc)
        present = []
        for suffix, child in pairs:
            if mt.is_index(desc.media_type) and not self.archive.has(
                f"blobs/sha256/{child.digest.hex}"
            ):
                continue
            self.tree_from_layout(child)
            present.append((suffix, child))
        self.record(desc, tree.gc_labels(present))

    def from_oci_index(self, base_name: str) -> list[tuple[str, Descriptor]]:
        index = self.archive.read_json("index.json")
        named = []
        if not isinstance(index, dict):
            raise InvalidArgument("archive index.json is not a JSON object")
        for desc in mt.descriptors(index, "manifests", "archive index.json"):
            self.tree_from_layout(desc)
            name = _image_name(desc.annotations, base_name)
            if name:
                named.append((name, desc))
        return named

    def from_docker_manifest(self) -> list[tuple[str, Descriptor]]:
        entries = self.archive.read_json("manifest.json")
        if not isinstance(entries, list):
            raise InvalidArgument("archive manifest.json is not a list")
        named = []
        for i, entry in enumerate(entries):
            what = f"archive manifest.json[{i}]"
            if not isinstance(entry, dict):
                raise InvalidArgument(f"{what} is not a JSON object")
            desc = self._docker_image(entry, what)
            for tag in _names(entry.get("RepoTags"), f"{what}.RepoTags"):
                named.append((str(Reference.parse(tag)), desc))
        return named

    def _docker_image(self, entry: dict[str, Any], what: str) -> Descriptor:
        config_name = entry.get("Config")
        if not isinstance(config_name, str):
            raise InvalidArgument(f"{what}.Config must be the config file's name")
        config = self.blob(config_name, None, None)
        config_desc = Descriptor(mt.DOCKER_CONFIG, config, self.archive.size(config_name))
        layers = []
        for name in _names(entry.get("Layers"), f"{what}.Layers"):
            digest = self.blob(name, None, None)
            with self.archive.open(name) as fh:
                magic = fh.read(4)
            media = (
                mt.DOCKER_LAYER_GZIP
                if magic.startswith(_GZIP)
                else mt.OCI_LAYER_ZSTD
                if magic == _ZSTD
                else mt.DOCKER_LAYER
            )
            desc = Descriptor(media, digest, self.archive.size(name))
            self.record(desc)
            layers.append(desc)
        self.record(config_desc)
        data = tree.manifest_json(mt.DOCKER_MANIFEST, config_desc, layers)
        info = self.store.content.put(data)
        manifest = Descriptor(mt.DOCKER_MANIFEST, info.digest, len(data))
        self.store.meta.add_lease_resource(self.namespace, self.lease, CONTENT, str(info.digest))
        self.record(manifest, tree.gc_labels(tree.children(self.store.content, manifest)))
        return manifest


def _names(value: object, what: str) -> list[str]:
    """A docker manifest.json list of names (RepoTags, Layers; absent or null: none)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise InvalidArgument(f"{what} must be a list of strings")
    return value


def _image_name(annotations: dict[str, str], base_name: str) -> str:
    full = annotations.get(IMAGE_NAME, "")
    if full:
        return str(Reference.parse(full))
    ref_name = annotations.get(REF_NAME, "")
    if ref_name and ("/" in ref_name or ref_name.count(":") > 1):
        return str(Reference.parse(ref_name))
    if ref_name and base_name:
        return str(Reference.parse(f"{base_name}:{ref_name}"))
    return ""
