"""`galley`: parse the global options, run one verb, turn every error into one line.

    galley [--root DIR] [--hosts-dir DIR] [--namespace NS] VERB ...
      pull push                       transfer.py   registries
      images inspecti rmi prune tag   images.py     local images
      import export                   archive.py    OCI layout / docker save tars
      du                              du.py         disk usage of the store root
      check                           check.py      consistency of the store root

Exit status: 0 on success, 1 on an error (one line on stderr, never a traceback), 2 on a
usage error, 130 on Ctrl-C. GALLEY_DEBUG=1 shows tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from galley.cli import archive, check, du, images, transfer
from galley.cli.context import Context
from galley.errors import GalleyError, os_error_text
from galley.images.store import DEFAULT_ROOT

DEFAULT_HOSTS_DIR = "/etc/galley/certs.d"
DEFAULT_NAMESPACE = "default"
_VERB_MODULES = (transfer, images, archive, du, check)


def build_parser() -> argparse.ArgumentParser:
    """The full command line: global options and every verb."""
    parser = argparse.ArgumentParser(
        prog="galley", description="Pull, list, inspect and manage container images."
    )
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"store root (default {DEFAULT_ROOT})")
    parser.add_argument(
        "--hosts-dir",
        default=DEFAULT_HOSTS_DIR,
        help=f"registry hosts.toml directory (default {DEFAULT_HOSTS_DIR})",
    )
    parser.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help="namespace (default 'default')"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module in _VERB_MODULES:
        module.register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run galley with argv (default sys.argv[1:]) and return the exit status."""
    args = build_parser().parse_args(argv)
    ctx = Context(root=args.root, hosts_dir=args.hosts_dir, namespace=args.namespace)
    try:
        status: int = args.run(ctx, args)
        return status
    except GalleyError as exc:
        return _fail(ctx, str(exc))
    except BrokenPipeError:  # `galley images | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        return _fail(ctx, os_error_text(exc))  # "/var/lib/galley: not a directory"
    except KeyboardInterrupt:
        return _fail(ctx, "interrupted", 130)
    except Exception as exc:  # the one place that turns bugs into one line
        if os.environ.get("GALLEY_DEBUG"):
            traceback.print_exc()
        return _fail(ctx, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        ctx.close()


def _fail(ctx: Context, message: str, status: int = 1) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"galley: {first_line}", file=ctx.err)
    return status


if __name__ == "__main__":
    sys.exit(main())
