"""Verbs that talk to registries: `pull` and `push`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from galley.cli.progress import progress_view
from galley.errors import InvalidArgument
from galley.images.store import DEFAULT_SNAPSHOTTER

if TYPE_CHECKING:
    from galley.cli.context import Context
    from galley.images.auth import Credentials


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `pull` and `push` to the parser."""
    p = verbs.add_parser("pull", help="pull an image from a registry and unpack it")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--platform", help="os/arch[/variant] to pull (default: this machine's)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    p.add_argument("-u", "--user", help="registry credentials, USER:PASSWORD")
    p.add_argument("--snapshotter", default=DEFAULT_SNAPSHOTTER, help="overlayfs or native")
    p.add_argument("--no-unpack", action="store_true", help="fetch the content only")
    p.set_defaults(run=pull)
    p = verbs.add_parser("push", help="push a local image to a registry")
    p.add_argument("name", metavar="IMAGE")
    p.add_argument("remote", nargs="?", metavar="REMOTE_REF", help="default: the image name")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("-u", "--user", help="registry credentials, USER:PASSWORD")
    p.set_defaults(run=push)


def credentials(user: str | None) -> Credentials | None:
    """Credentials from --user USER:PASSWORD (None: docker config.json / anonymous)."""
    if user is None:
        return None
    from galley.images.auth import Credentials  # noqa: PLC0415 - verbs import what they use

    name, sep, password = user.partition(":")
    if not sep or not name:
        raise InvalidArgument("--user wants USER:PASSWORD")
    return Credentials(username=name, password=password)


def pull(ctx: Context, args: argparse.Namespace) -> int:
    """Pull one image, showing progress."""
    from galley.images.pull import pull as pull_image  # noqa: PLC0415 - verbs import what they use

    view = progress_view(ctx.out, quiet=args.quiet)
    try:
        image = pull_image(
            ctx.store,
            args.ref,
            namespace=ctx.namespace,
            hosts_dir=ctx.hosts_dir,
            platform=args.platform,
            credentials=credentials(args.user),
            progress=view,
            snapshotter=args.snapshotter,
            unpack=not args.no_unpack,
        )
    finally:
        view.finish()
    if args.quiet:
        ctx.print(image.name)
    else:
        ctx.print(f"pulled {image.name} ({image.target.digest})")
    return 0


def push(ctx: Context, args: argparse.Namespace) -> int:
    """Push one local image to a registry."""
    from galley.images.push import push as push_image  # noqa: PLC0415 - verbs import what they use

    image = ctx.image(args.name)
    view = progress_view(ctx.out, quiet=args.quiet)
    try:
        push_image(
            ctx.store,
            image.name,
            args.remote or image.name,
            namespace=ctx.namespace,
            hosts_dir=ctx.hosts_dir,
            credentials=credentials(args.user),
            progress=view,
        )
    finally:
        view.finish()
    if not args.quiet:
        ctx.print(f"pushed {args.remote or image.name}")
    return 0
