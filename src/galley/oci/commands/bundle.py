"""spec and features: commands that need no container."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from galley.errors import AlreadyExists

if TYPE_CHECKING:
    from galley.oci.cli import Context


def add_arguments(command: str, p: argparse.ArgumentParser) -> None:
    """Declare the arguments of spec/features."""
    if command == "spec":
        p.add_argument("-b", "--bundle", default="", help="path to the root of the bundle")
        p.add_argument("--rootless", action="store_true", help="a spec for a rootless container")


def write_spec(bundle: str, rootless: bool) -> str:
    """Write a default config.json into bundle (refusing to overwrite); its path."""
    from galley.oci.defaults import default_spec  # noqa: PLC0415 - lazy

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise AlreadyExists("File config.json exists. Remove it first")
    with open(path, "x") as f:
        json.dump(default_spec(rootless=rootless), f, indent="\t")
    return path


def run(command: str, ctx: Context, args: argparse.Namespace) -> int:
    """Run spec or features."""
    if command == "spec":
        write_spec(args.bundle or os.getcwd(), args.rootless)
    else:
        from galley.oci.features import features  # noqa: PLC0415 - lazy

        sys.stdout.write(json.dumps(features(), indent=4) + "\n")
    return 0
