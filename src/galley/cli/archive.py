"""Verbs that move images through files: `import` and `export` (OCI layout or docker save)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from galley.cli.context import Context

FORMATS = ("oci", "docker")


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `import` and `export` to the parser."""
    p = verbs.add_parser("import", help="import images from an OCI layout or docker save tar")
    p.add_argument("path", metavar="FILE")
    p.set_defaults(run=import_)
    p = verbs.add_parser("export", help="export images to a tar")
    p.add_argument("path", metavar="FILE")
    p.add_argument("names", nargs="+", metavar="IMAGE")
    p.add_argument("--format", choices=FORMATS, default="oci", help="oci layout or docker save")
    p.set_defaults(run=export)


def import_(ctx: Context, args: argparse.Namespace) -> int:
    """Import every image of the archive and print their names."""
    from galley.images.archive import import_archive  # noqa: PLC0415 - verbs import what they use

    for image in import_archive(ctx.store, args.path, ctx.namespace):
        ctx.print(image.name)
    return 0


def export(ctx: Context, args: argparse.Namespace) -> int:
    """Write the named images to one archive."""
    from galley.images.archive import export_archive  # noqa: PLC0415 - verbs import what they use

    names = [ctx.image(name).name for name in args.names]
    export_archive(ctx.store, names, args.path, ctx.namespace, format=args.format)
    ctx.print(f"exported {len(names)} image(s) to {args.path}")
    return 0
