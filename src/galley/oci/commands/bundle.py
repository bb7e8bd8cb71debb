"""spec and features: commands that need no container."""

from __future__ import annotations

import json
import posix
import sys

from galley.errors import AlreadyExists
from galley.kernel import pathnames
from galley.oci.commands.args import check_bundle
from galley.oci.commands.options import STR, Args, Option, Syntax

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from galley.oci.cli import Context


SYNTAX = {
    "spec": Syntax(
        [
            Option("-b,--bundle", "path to the root of the bundle directory", STR, ""),
            Option("--rootless", "a spec for a rootless container"),
        ]
    ),
    "features": Syntax([]),
}


def syntax(command: str) -> Syntax:
    """The options of spec / features."""
    return SYNTAX[command]


def write_spec(bundle: str, rootless: bool) -> str:
    """Write a default config.json into bundle (refusing to overwrite); its path. As runc's,
    it has a cgroup namespace on a pure cgroup v2 host only."""
    from galley.oci.cgroups.layout import detect  # noqa: PLC0415 - lazy
    from galley.oci.defaults import default_spec  # noqa: PLC0415 - lazy

    path = pathnames.join(bundle, "config.json")
    if pathnames.exists(path):
        raise AlreadyExists("File config.json exists. Remove it first")
    spec = default_spec(rootless=rootless, cgroup_namespace=detect().mode == "v2")
    try:
        f = open(path, "x")  # noqa: SIM115 - closed below; the open's own failure is checked
    except (FileNotFoundError, NotADirectoryError):
        check_bundle(bundle)
        raise
    with f:
        json.dump(spec, f, indent="\t")
    return path


def run(command: str, ctx: Context, args: Args) -> int:
    """Run spec or features."""
    if command == "spec":
        write_spec(args.bundle or posix.getcwd(), args.rootless)
    else:
        from galley.oci.features import features  # noqa: PLC0415 - lazy

        sys.stdout.write(json.dumps(features(), indent=4) + "\n")
    return 0
