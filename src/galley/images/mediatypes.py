"""Media types of OCI and Docker images, and the Descriptor and Platform value types.

A descriptor points at a blob by digest and size, tagged with what the blob is:

    index / manifest list ──manifests[]──▶ manifest ──config──▶ config (JSON)
                                                   └─layers[]─▶ layers (tar, +gzip, +zstd)

Docker schema 1 manifests are recognised only so that they can be refused clearly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from galley.content.digest import Digest
from galley.errors import InvalidArgument

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_LAYOUT_VERSION = "1.0.0"

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_NONDIST,
        OCI_LAYER_NONDIST_GZIP,
        OCI_LAYER_NONDIST_ZSTD,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_FOREIGN_GZIP,
    }
)

# What a client sends in Accept when it fetches a manifest by tag or digest.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])


def compression(media_type: str) -> str:
    """The compression of a layer media type: "gzip", "zstd" or "" (plain tar)."""
    if media_type not in LAYER_TYPES:
        raise InvalidArgument(f"media type {media_type!r} is not a layer type")
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    return ""


def is_index(media_type: str) -> bool:
    """True for an OCI index or a Docker manifest list."""
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    """True for an OCI image manifest or a Docker schema 2 manifest."""
    return media_type in MANIFEST_TYPES


@dataclass(frozen=True)
class Platform:
    """An OCI platform: os, architecture, optional variant and os.version/features."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Any) -> Platform:
        """Read a platform object of an index or an image config."""
        if not isinstance(obj, dict):
            raise InvalidArgument(f"platform must be an object, got {type(obj).__name__}")
        os_name, arch = obj.get("os"), obj.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise InvalidArgument(f"platform {obj!r} lacks os or architecture")
        return cls(
            os=os_name,
            architecture=arch,
            variant=str(obj.get("variant", "")),
            os_version=str(obj.get("os.version", "")),
            os_features=_strings(obj.get("os.features"), f"platform {obj!r}: os.features"),
        )

    def to_json(self) -> dict[str, Any]:
        """The platform as an OCI JSON object (empty fields left out)."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to a blob: media type, digest, size, annotations, optional platform."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0:
            raise InvalidArgument(f"descriptor {self.digest} has a negative size {self.size}")

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """Read a descriptor object (OCI field names), raising InvalidArgument when malformed."""
        if not isinstance(obj, dict):
            raise InvalidArgument(f"descriptor must be an object, got {type(obj).__name__}")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise InvalidArgument(f"descriptor {obj!r} lacks mediaType or digest")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidArgument(f"descriptor {digest!r} has no integer size")
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise InvalidArgument(f"descriptor {digest!r} has malformed annotations")
        platform = obj.get("platform")
        return cls(
            media_type=media_type,
            digest=Digest.parse(digest),
            size=size,
            annotations={str(k): str(v) for k, v in annotations.items()},
            platform=Platform.from_json(platform) if platform is not None else None,
            urls=_strings(obj.get("urls"), f"descriptor {digest!r}: urls"),
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor as an OCI JSON object (empty fields left out)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.urls:
            out["urls"] = list(self.urls)
        return out


def _strings(value: object, what: str) -> tuple[str, ...]:
    """An optional list of strings (absent or null: none); InvalidArgument naming what."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidArgument(f"{what} must be a list of strings")
    return tuple(value)


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON document that must be an object; what names it in errors."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return obj


def descriptors(obj: dict[str, Any], key: str, what: str) -> list[Descriptor]:
    """The descriptors listed under key ("manifests", "layers"); InvalidArgument if malformed."""
    items = obj.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidArgument(f"{what}: {key!r} must be a list")
    return [Descriptor.from_json(item) for item in items]


def diff_ids(config: dict[str, Any], what: str) -> list[Digest]:
    """The rootfs.diff_ids of an image config; InvalidArgument if malformed."""
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
        raise InvalidArgument(f"{what}: rootfs.diff_ids must be a list of digests")
    return [Digest.parse(d) for d in ids]


def detect_media_type(data: bytes, declared: str, what: str) -> tuple[str, dict[str, Any]]:
    """The media type of a manifest document (declared, else its mediaType, else its shape)."""
    obj = parse_json_object(data, what)
    inner = obj.get("mediaType")
    media_type = declared if declared and declared != "application/json" else ""
    if not media_type and isinstance(inner, str):
        media_type = inner
    if not media_type:
        if obj.get("schemaVersion") == 1 or "fsLayers" in obj:
            media_type = DOCKER_SCHEMA1
        elif "manifests" in obj:
            media_type = OCI_INDEX
        elif "config" in obj:
            media_type = OCI_MANIFEST
    if media_type in SCHEMA1_TYPES or obj.get("schemaVersion") == 1:
        raise InvalidArgument(
            f"{what} is a Docker schema 1 manifest, which galley does not support; "
            "push the image again with a current client"
        )
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:
        raise InvalidArgument(f"{what} has unsupported media type {media_type or '(none)'!r}")
    return media_type, obj
