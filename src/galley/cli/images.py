"""Verbs on local images: `images`, `inspecti`, `rmi`, `prune`, `tag`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from galley.cli.output import FORMATS, document, human_size, table
from galley.errors import GalleyError, InvalidArgument, NotFound
from galley.images.mediatypes import CONFIG_TYPES, Descriptor, is_index, is_manifest
from galley.images.reference import Reference
from galley.images.store import read_document, walk_image
from galley.metadata.gc import collect

if TYPE_CHECKING:
    from galley.cli.context import Context
    from galley.metadata.images import Image


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the image verbs to the parser."""
    p = verbs.add_parser("images", help="list images")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.set_defaults(run=images)
    p = verbs.add_parser("inspecti", help="show an image's record, manifest and config")
    p.add_argument("names", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    p.set_defaults(run=inspecti)
    p = verbs.add_parser("rmi", help="remove images")
    p.add_argument("names", nargs="+", metavar="IMAGE")
    p.add_argument("--prune", action="store_true", help="then free unreferenced blobs/snapshots")
    p.set_defaults(run=rmi)
    p = verbs.add_parser("prune", help="free blobs and snapshots that no image holds")
    p.set_defaults(run=prune)
    p = verbs.add_parser("tag", help="give an image more names")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.set_defaults(run=tag)


def summary(ctx: Context, image: Image) -> dict[str, Any]:
    """An image as `images -o json` shows it: name, digest, size, platforms, labels, times."""
    content = ctx.store.content
    present = {d.digest: d for d in walk_image(content, image.target)}
    return {
        "name": image.name,
        "digest": str(image.target.digest),
        "mediaType": image.target.media_type,
        "size": sum(d.size for d in present.values()),
        "platforms": platforms(ctx, image.target, list(present.values())),
        "labels": dict(image.labels),
        "createdAt": image.created_at.isoformat(),
        "updatedAt": image.updated_at.isoformat(),
    }


def platforms(ctx: Context, target: Descriptor, present: list[Descriptor]) -> list[str]:
    """The platforms present locally: from an index's entries, or a manifest's config."""
    if is_index(target.media_type):
        found = {str(d.platform) for d in present if is_manifest(d.media_type) and d.platform}
        return sorted(found)
    for desc in present:
        if desc.media_type in CONFIG_TYPES:
            try:
                config = read_document(ctx.store.content, desc)
            except GalleyError:
                return []
            parts = [config.get("os"), config.get("architecture"), config.get("variant")]
            return ["/".join(str(p) for p in parts if p)]
    return []


def _short_name(name: str) -> str:
    try:
        return Reference.parse(name).familiar()
    except InvalidArgument:
        return name


def images(ctx: Context, args: argparse.Namespace) -> int:
    """List the namespace's images."""
    found = ctx.store.meta.list_images(ctx.namespace)
    if args.quiet:
        for image in found:
            ctx.print(image.name)
        return 0
    rows = [summary(ctx, image) for image in found]
    if args.output != "table":
        ctx.print(document(rows, args.output))
        return 0
    ctx.print(
        table(
            ("REF", "DIGEST", "SIZE", "PLATFORM"),
            [
                (
                    _short_name(r["name"]),
                    r["digest"].partition(":")[2][:12],
                    human_size(r["size"]),
                    ",".join(r["platforms"]) or "-",
                )
                for r in rows
            ],
        )
    )
    return 0


def inspecti(ctx: Context, args: argparse.Namespace) -> int:
    """Show each image's record, its manifest (or index) and config as one document."""
    out = []
    for name in args.names:
        image = ctx.image(name)
        info = summary(ctx, image)
        info["target"] = image.target.to_json()
        info["documents"] = {
            str(d.digest): _readable(ctx, d)
            for d in walk_image(ctx.store.content, image.target)
            if is_index(d.media_type) or is_manifest(d.media_type) or d.media_type in CONFIG_TYPES
        }
        out.append(info)
    ctx.print(document(out if len(out) > 1 else out[0], args.output))
    return 0


def _readable(ctx: Context, desc: Descriptor) -> dict[str, Any]:
    try:
        return read_document(ctx.store.content, desc)
    except GalleyError as exc:
        return {"error": str(exc)}


def rmi(ctx: Context, args: argparse.Namespace) -> int:
    """Remove images by name (or every name of a digest); with --prune, collect garbage."""
    status = 0
    for name in args.names:
        try:
            found = _named_or_by_digest(ctx, name)
        except (NotFound, InvalidArgument) as exc:
            print(f"galley: {exc}", file=ctx.err)
            status = 1
            continue
        for image in found:
            ctx.store.meta.delete_image(ctx.namespace, image.name)
            ctx.print(f"deleted {image.name}")
    if args.prune:
        prune(ctx, args)
    return status


def prune(ctx: Context, args: argparse.Namespace) -> int:
    """Collect garbage: free every blob and snapshot that no image or lease holds."""
    result = collect(ctx.store)
    ctx.print(
        f"freed {human_size(result.freed_bytes)}: {len(result.removed_blobs)} blobs, "
        f"{len(result.removed_snapshots)} snapshots"
    )
    return 0


def _named_or_by_digest(ctx: Context, text: str) -> list[Image]:
    """The image named text, or all images of the digest text starts (crictl rmi IMAGE-ID)."""
    try:
        return [ctx.store.find_image(ctx.namespace, text)]
    except (NotFound, InvalidArgument):
        found = ctx.images_by_digest(text)
        if not found:
            raise
        return found


def tag(ctx: Context, args: argparse.Namespace) -> int:
    """Point each target name at the source image's content."""
    source = ctx.image(args.source)
    for target in args.targets:
        name = str(Reference.parse(target))
        ctx.store.meta.tag_image(ctx.namespace, source.name, name)
        ctx.print(name)
    return 0
