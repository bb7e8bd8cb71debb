"""`galley check`: verify a store root (blob digests, image completeness, snapshots)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from galley.cli.context import Context


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `check` to the parser."""
    p = verbs.add_parser("check", help="verify every blob and image of the store")
    p.set_defaults(run=check)


def check(ctx: Context, args: argparse.Namespace) -> int:
    """Print each problem; exit 1 if there is any."""
    from galley.images.check import check as check_store  # noqa: PLC0415 - verbs import what they use

    problems = check_store(ctx.store)
    for problem in problems:
        ctx.print(problem)
    if problems:
        print(f"galley: {len(problems)} problems in {ctx.root}", file=ctx.err)
        return 1
    ctx.print("ok")
    return 0
