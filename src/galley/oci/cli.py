"""galley-runc's command line: runc 1.1's global options, commands, exit codes and log lines.

This module only declares arguments and dispatches; each command lives in `galley.oci.commands`
and is imported when it runs, so `galley-runc state` imports neither launch nor validation code.
Errors are logged as runc does: with no --log, a logrus-style line on stderr; with --log, the
line goes to the file (text or json) and the bare message to stderr. Exit status 1 on error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from galley.errors import GalleyError

VERSION = "0.1.0"
SPEC_VERSION = "1.2.0"
PROG = "galley-runc"
LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}

# command name -> (module under galley.oci.commands, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "create": ("lifecycle", "create a container"),
    "start": ("lifecycle", "executes the user defined process in a created container"),
    "run": ("lifecycle", "create and run a container"),
    "delete": ("lifecycle", "delete any resources held by the container"),
    "kill": ("lifecycle", "send a signal (default: SIGTERM) to the container's init process"),
    "state": ("query", "output the state of a container"),
    "list": ("query", "lists containers started by galley-runc with the given root"),
    "ps": ("query", "displays the processes running inside a container"),
    "events": ("query", "display container events such as cpu, memory, and IO usage statistics"),
    "pause": ("control", "pause suspends all processes inside the container"),
    "resume": ("control", "resumes all processes that have been previously paused"),
    "update": ("control", "update container resource constraints"),
    "exec": ("control", "execute new process inside the container"),
    "spec": ("bundle", "create a new specification file"),
    "features": ("bundle", "show the enabled features"),
}


@dataclass
class Log:
    """runc-style log lines: text (logrus key=value) or json, to a file or stderr."""

    path: str | None = None
    fmt: str = "text"
    level: int = LEVELS["warning"]

    def line(self, level: str, msg: str) -> str:
        """One formatted log line (with its newline)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            return (
                json.dumps({"level": level, "msg": msg, "time": stamp}, separators=(",", ":"))
                + "\n"
            )
        return f"time={json.dumps(stamp)} level={level} msg={json.dumps(msg)}\n"

    def write(self, level: str, msg: str) -> None:
        """Log msg at level (if at or above the configured level)."""
        if LEVELS[level] < self.level:
            return
        data = self.line(level, msg).encode()
        if self.path is None:
            os.write(2, data)
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def failure(self, msg: str) -> None:
        """Log an error; with --log, the bare message also goes to stderr, as runc does."""
        self.write("error", msg)
        if self.path is not None:
            os.write(2, (msg + "\n").encode())

    def warning(self, msg: str) -> None:
        """Log a warning."""
        self.write("warning", msg)

    def debug(self, msg: str) -> None:
        """Log a debug line (only with --debug)."""
        self.write("debug", msg)


@dataclass
class Context:
    """What every command gets: the state root and the log."""

    root: str
    log: Log
    systemd_cgroup: bool = False


class Parser(argparse.ArgumentParser):
    """argparse with runc's exit status (1) for usage errors."""

    def error(self, message: str) -> typing.NoReturn:
        """Print usage and the message, exit 1."""
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: {message}\n")


def _global_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="An OCI runtime with runc's command line.")
    p.add_argument("--root", default="/run/galley-runc", help="root directory for state")
    p.add_argument("--log", default=None, help="log file (default: stderr)")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true", help="enable debug logging")
    p.add_argument("--systemd-cgroup", action="store_true", help="cgroupsPath is slice:prefix:name")
    p.add_argument("--criu", default="criu", help="(accepted for compatibility; unused)")
    p.add_argument("--rootless", default="auto", help="(accepted for compatibility)")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    return p


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser; only the named command's arguments are declared (imports stay small)."""
    parser = _global_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _commands(module).add_arguments(name, cmd)
    return parser


def _commands(module: str) -> CommandModule:
    return importlib.import_module(f"galley.oci.commands.{module}")  # type: ignore[return-value]


class CommandModule:
    """The shape of a module in galley.oci.commands (for type checking only)."""

    add_arguments: Callable[[str, argparse.ArgumentParser], None]
    run: Callable[[str, Context, argparse.Namespace], int]


def _find_command(argv: Sequence[str]) -> str | None:
    takes_value = {"--root", "--log", "--log-format", "--criu", "--rootless"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif arg in COMMANDS:
            return arg
        elif not arg.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv, run the command, map errors to runc's exit status and messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _find_command(argv)
    args = build_parser(command).parse_args(argv)
    if args.version:
        print(f"{PROG} version {VERSION}\nspec: {SPEC_VERSION}")
        return 0
    log = Log(args.log, args.log_format, LEVELS["debug" if args.debug else "warning"])
    if args.command is None:
        build_parser(None).print_help()
        return 0
    ctx = Context(os.path.abspath(args.root), log, args.systemd_cgroup)
    try:
        return _commands(COMMANDS[args.command][0]).run(args.command, ctx, args)
    except GalleyError as e:
        prefix = f"{PROG} {args.command} failed: " if args.command in {"create", "run"} else ""
        log.failure(prefix + str(e))
    except NotImplementedError as e:
        log.failure(f"{args.command}: not implemented yet ({e})")
    except OSError as e:
        log.failure(f"{args.command}: {e}")
    except KeyboardInterrupt:
        return 130
    return 255 if args.command == "exec" else 1  # runc's exit status for a failed exec
