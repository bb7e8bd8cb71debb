"""galley-runc's command line: runc 1.1's global options, commands, exit codes and log lines.

This module only declares arguments and dispatches; each command lives in `galley.oci.commands`
and is imported when it runs, so `galley-runc state` imports neither launch nor validation code.
Errors are logged as runc does: with no --log, a logrus-style line on stderr; with --log, the
line goes to the file (text or json) and the bare message to stderr. Exit status 1 on error.
"""

from __future__ import annotations

import posix
import sys
import time

from galley.errors import (
    GalleyError,
    InvalidArgument,
    go_error_text,
    go_quote,
    os_error_text,
    reason_text,
)
from galley.kernel import pathnames
from galley.kernel.userns import in_user_namespace
from galley.oci.commands.options import (
    PROG,
    STR,
    Args,
    ArgumentCount,
    Option,
    Syntax,
    UsageError,
    option_lines,
    parse,
    usage,
)
from galley.oci.jsonfast import dumps_go
from galley.oci.state import RUNTIME_OCI_VERSION

TYPE_CHECKING = False  # mypy knows this name; collections.abc costs ~1 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

VERSION = "0.1.0"
DEFAULT_ROOT = "/run/galley-runc"
LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}
MAX_ERROR = 4096  # characters of an error line's message

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


_LOG_FLAGS = posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC

# What logrus's text format leaves unquoted; any other character makes it quote the value.
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+")


# Where Go looks for a zone that $TZ names (time's initLocal on Unix).
_ZONE_SOURCES = ("/usr/share/zoneinfo/", "/usr/share/lib/zoneinfo/", "/usr/lib/locale/TZ/")


def _go_local_zone() -> bool:
    """Whether Go would print local time (else UTC). Both read /etc/localtime without $TZ,
    and take an empty $TZ for UTC; but Go takes $TZ only for a zone file ("Europe/Berlin",
    ":/path"), where the C library also reads a POSIX rule ("IST-5:30"): Go falls back to
    UTC then, and to UTC for a name it cannot load."""
    tz = pathnames.environ("TZ")
    if tz is None:
        return True
    name = tz.removeprefix(":")
    if not name or name == "UTC":
        return False
    sources = ("",) if name.startswith("/") else _ZONE_SOURCES
    return any(pathnames.isfile(source + name) for source in sources)


def log_time(now: float | None = None) -> str:
    """A log line's time as runc's logrus writes it: Go's RFC 3339 in the local zone,
    "Z" for a zero offset, else +hh:mm."""
    if not _go_local_zone():
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    local = time.localtime(now)
    offset = local.tm_gmtoff
    if offset == 0:
        zone = "Z"
    else:
        sign, offset = ("-", -offset) if offset < 0 else ("+", offset)
        zone = f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + zone


def logfmt_value(text: str) -> str:
    """A value in a text log line as runc's logrus writes it: bare when it has only the
    characters above, else quoted as Go's %q quotes it."""
    return text if all(char in _BARE for char in text) else go_quote(text)


_held: list[Log] = []  # logs held open by this process (Log.check), once per command


def to_stderr(data: bytes) -> None:
    """Write data to stderr, if it can be written: a log line that cannot be said (stderr a
    full disk, a pipe nobody reads) must not fail a command that did its work, as logrus's
    failed writes fail nothing in runc (galley's debug line after `create` made `run` leave
    the container created, never started)."""
    try:
        posix.write(2, data)
    except OSError:
        pass


def _let_go() -> None:
    """In a forked child (the stage): let every held log go, or a FIFO's reader would wait
    for its end until the container's process starts."""
    while _held:
        _held[-1].release()


posix.register_at_fork(after_in_child=_let_go)


class Log:
    """runc-style log lines: text (logrus key=value) or json, to a file or stderr."""

    def __init__(self, path: str | None = None, fmt: str = "text", level: int = 2) -> None:
        self.path = path
        self.fmt = fmt
        self.level = level
        self.fd = -1  # the log file, held open by P (check)

    def line(self, level: str, msg: str) -> str:
        """One formatted log line (with its newline)."""
        stamp = log_time()
        if self.fmt == "json":  # containerd's shim asks for this: errors must stay cheap
            return dumps_go({"level": level, "msg": msg, "time": stamp}) + "\n"
        return f"time={logfmt_value(stamp)} level={level} msg={logfmt_value(msg)}\n"

    def enabled(self, level: str) -> bool:
        """Whether lines at level are written (at or above the configured level)."""
        return LEVELS[level] >= self.level

    def write(self, level: str, msg: str) -> None:
        """Log msg at level (if at or above the configured level)."""
        if not self.enabled(level):
            return
        data = self.line(level, msg).encode()
        if self.path is None:
            to_stderr(data)
            return
        try:
            if self.fd >= 0:
                posix.write(self.fd, data)
                return
            fd = posix.open(self.path, _LOG_FLAGS | posix.O_NONBLOCK, 0o644)  # a forked child's
            try:
                posix.set_blocking(fd, True)  # a FIFO's slow reader is waited for, as by runc
                posix.write(fd, data)
            finally:
                posix.close(fd)
        except OSError as err:  # a full disk, /dev/full: said on stderr as runc's logrus says it
            text = go_error_text(err.errno or 0)
            line = f"Failed to write to log, write {self.path}: {text}\n"
            to_stderr(line.encode(errors="surrogateescape"))  # a path's raw bytes, as runc's

    def check(self) -> None:
        """Open (and create) the log file once before any command runs, as runc does: a path
        that cannot be opened fails the command before it does anything (galley found out at
        its first line, after a `run` had created the container). It stays open, as runc's:
        opened again for each line, a FIFO's reader saw its end at once, and an open once the
        reader had gone blocked the command forever (a `run` hung, its container created)."""
        if self.path is not None and self.fd < 0:
            self.fd = posix.open(self.path, _LOG_FLAGS, 0o644)
            _held.append(self)

    def release(self) -> None:
        """Close the log file held open (the command is done, or this is a forked child)."""
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1
        if self in _held:
            _held.remove(self)

    def failure(self, msg: str) -> None:
        """Log an error; with --log, the bare message also goes to stderr, as runc does. A
        message that quotes a huge value (a 1 MB hostname) keeps its start and its end."""
        if len(msg) > MAX_ERROR:
            cut = len(msg) - MAX_ERROR
            msg = f"{msg[: MAX_ERROR // 2]} [{cut} characters left out] {msg[-MAX_ERROR // 2 :]}"
        self.write("error", msg)
        if self.path is not None:  # a path's or argument's raw bytes as they came, as runc's
            to_stderr((msg + "\n").encode(errors="surrogateescape"))

    def error(self, msg: str) -> None:
        """Log an error that does not fail the command (a poststop hook's, as runc logs it)."""
        self.write("error", msg)

    def warning(self, msg: str) -> None:
        """Log a warning."""
        self.write("warning", msg)

    def debug(self, msg: str) -> None:
        """Log a debug line (only with --debug)."""
        self.write("debug", msg)


def default_root() -> str:
    """Where containers' state goes without --root, by runc's rule: under $XDG_RUNTIME_DIR
    (where set) for a user who is not root, or for the root of a user namespace who is not
    $USER root (podman's rootless mode runs the runtime so: /run is the host root's);
    under /run otherwise."""
    runtime_dir = pathnames.environ("XDG_RUNTIME_DIR")
    if runtime_dir and (
        posix.geteuid() != 0 or (in_user_namespace() and pathnames.environ("USER") != "root")
    ):
        return f"{runtime_dir}/galley-runc"
    return DEFAULT_ROOT


class Context:
    """What every command gets: the state root and the log."""

    def __init__(
        self, root: str, log: Log, systemd_cgroup: bool = False, rootless: str = "auto"
    ) -> None:
        self.root = root
        self.log = log
        self.systemd_cgroup = systemd_cgroup
        self._rootless = rootless

    @property
    def rootless_cgroup(self) -> bool:
        """--rootless as runc reads it: true, false (Go's ParseBool words) or auto, which is
        true for a caller that is not root or is root in a user namespace. True: a cgroup
        that may not be made is done without (galley.oci.cgroups.rootless)."""
        word = self._rootless
        if word.lower() in {"", "auto"}:
            return posix.geteuid() != 0 or in_user_namespace()
        from galley.oci.commands.gosyntax import FALSE, TRUE  # noqa: PLC0415 - seldom

        if word in TRUE or word in FALSE:
            return word in TRUE
        raise InvalidArgument(f'--rootless: parsing "{word}": invalid syntax (true, false or auto)')

    def warn_rootless(self, command: str) -> None:
        """What runc's ps, pause and resume do first: read --rootless (a bad value fails
        them before the container is looked up) and, for a rootless cgroup manager, warn."""
        if self.rootless_cgroup:
            access = "the full access to cgroups"
            self.log.warning(f"{PROG} {command} may fail if you don't have {access}")


GLOBAL = Syntax(
    [
        Option("--root", "root directory for storage of container state", STR, default_root()),
        Option("--log", "log file (default: stderr)", STR),
        Option("--log-format", "log format: text or json", STR, "text"),
        Option("--debug", "enable debug logging"),
        Option("--systemd-cgroup", "cgroupsPath is slice:prefix:name"),
        Option("--criu", "(accepted for compatibility; unused)", STR, "criu"),
        Option("--rootless", "ignore cgroup permission errors: true, false or auto", STR, "auto"),
        Option("-v,--version", "print the version"),
    ],
    positionals=("command",),
    rest="command_args",
    required=0,
)


def _commands(module: str) -> CommandModule:
    name = f"galley.oci.commands.{module}"
    __import__(name)  # importlib costs ~1 ms to import
    return sys.modules[name]  # type: ignore[return-value]


class CommandModule:
    """The shape of a module in galley.oci.commands (for type checking only)."""

    syntax: Callable[[str], Syntax]
    run: Callable[[str, Context, Args], int]


def overview() -> str:
    """`galley-runc --help`, laid out as runc's (urfave/cli's NAME, USAGE, VERSION, COMMANDS
    and GLOBAL OPTIONS)."""
    commands = [*((name, text) for name, (_, text) in COMMANDS.items()), _HELP_COMMAND]
    width = max(len(name) for name, _ in commands) + 2
    lines = ["NAME:", f"   {PROG} - Open Container Initiative runtime, with runc's command line"]
    lines += ["", "USAGE:"]
    lines += [f"   {PROG} [global options] command [command options] [arguments...]", ""]
    lines += ["VERSION:", f"   {VERSION}", "", "COMMANDS:"]
    lines += [f"   {name:<{width}}{text}" for name, text in commands]
    help_option = Option("-h,--help", "show help")  # urfave/cli adds it to runc's help
    lines += ["", "GLOBAL OPTIONS:", *option_lines([*GLOBAL.options, help_option])]
    return "\n".join(lines) + "\n"


# What urfave/cli adds to runc's list of commands.
_HELP_COMMAND = ("help, h", "shows a list of commands or help for one command")


class UnknownCommand(UsageError):
    """A command galley-runc does not have: runc (urfave/cli) exits 3 for it, not 1."""


HELP = ("help", "h")  # urfave/cli's: `help [COMMAND]`

# runc's commands galley-runc does not have: said plainly, exit status 1 (as runc's own
# checkpoint fails where CRIU cannot run), not urfave/cli's "No help topic" and 3.
UNSUPPORTED = {
    "checkpoint": "galley-runc does not checkpoint containers (runc does it through CRIU)",
    "restore": "galley-runc does not restore containers (runc does it through CRIU)",
}


def parse_args(argv: list[str]) -> Args:
    """Global options, then the command's own (UsageError on a usage error)."""
    return parse_command(parse_global(argv))


def parse_global(argv: list[str]) -> Args:
    """The global options; the command and its arguments are left in args.command_args."""
    return parse(PROG, GLOBAL, argv, Args(help=False))


def parse_command(args: Args) -> Args:
    """The command's own options and arguments, into args (from parse_global); `help` read."""
    if args.command in HELP:
        topic = next(iter(args.command_args), None)
        if topic is not None and topic not in COMMANDS:
            raise UnknownCommand(f"No help topic for '{topic}'")
        args.command, args.help = topic, True
    if args.version or args.help or args.command is None:
        return args
    if args.command not in COMMANDS:
        raise UnknownCommand(f"No help topic for '{args.command}'")
    module, _ = COMMANDS[args.command]
    return parse(args.command, _commands(module).syntax(args.command), args.command_args, args)


# How runc begins the error of these commands.
_FAILED = {
    "create": f"{PROG} create failed: ",
    "run": f"{PROG} run failed: ",
    "exec": "exec failed: ",
}

# The command that runs until stopped: the garbage collector, which bin/galley-runc turns off
# to start quickly, runs again for it (run and exec in the foreground turn it on when they
# start waiting: galley.oci.commands.lifecycle.wait_foreground, execution).
LONG_RUNNING = frozenset({"events"})


def collect_garbage() -> None:
    """Turn the cyclic garbage collector back on (a no-op where it was never off).

    What the command allocated so far is frozen first: with the collector off, every object
    since the start stayed in the youngest generation, and the first allocation after
    enable() would traverse them all (~1.7 ms on the test VM, while a foreground `run` or
    exec of a short process waits for it to exit). They live until the command ends anyway.
    A caller that never turned the collector off (an in-process user of the library) keeps
    its objects collectable."""
    import gc  # noqa: PLC0415

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv, run the command, map errors to runc's exit status and messages."""
    try:
        args = parse_global(list(sys.argv[1:] if argv is None else argv))
    except InvalidArgument as e:  # runc: the help on stdout, the error logged
        sys.stdout.write(f"Incorrect Usage. {e}\n\n{overview()}")
        Log().failure(str(e))
        return 1
    if args.version:
        return _version()
    if args.log_format not in {"text", "json", ""}:  # checked where runc checks it: no usage
        Log().failure(f"invalid log-format: {args.log_format}")
        return 1
    level = LEVELS["debug" if args.debug else "warning"]
    log = Log(args.log or None, args.log_format or "text", level)  # "": runc's defaults
    try:
        log.check()
    except OSError as e:  # runc's words: "open <path>: no such file or directory"
        Log(None, args.log_format).failure(f"open {args.log}: {reason_text(e)}")
        return 1
    try:
        return _parse_and_run(args, log)
    finally:
        log.release()  # in-process callers (bench/library_worker.py) run many commands


def no_reader(fd: int) -> bool:
    """Whether fd is a pipe or socket whose other end is closed (a write fails with EPIPE)."""
    import select  # noqa: PLC0415

    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))


def _version() -> int:
    python = ".".join(map(str, sys.version_info[:3]))
    sys.stdout.write(  # runc's layout, which tools like go-runc parse line by line
        f"{PROG} version {VERSION}\ncommit: none\nspec: {RUNTIME_OCI_VERSION}\npython: {python}\n"
    )
    return 0


def _parse_and_run(args: Args, log: Log) -> int:
    """The command's own arguments, then the command; a usage error as runc reports it: the
    command's help on stdout after "Incorrect Usage", the error in the log (with --log, the
    file: containerd's shim reads runc's errors there). An unknown command exits 3."""
    if args.command in UNSUPPORTED and not args.help:
        log.failure(f"{args.command}: {UNSUPPORTED[args.command]}")
        return 1
    try:
        args = parse_command(args)
    except UnknownCommand as e:
        log.failure(f"{e}\n")  # urfave/cli's message ends with a newline
        return 3
    except InvalidArgument as e:  # a UsageError, or a value no option takes
        head = "Incorrect Usage." if isinstance(e, ArgumentCount) else f"Incorrect Usage: {e}"
        module, help_text = COMMANDS[args.command]
        syntax = _commands(module).syntax(args.command)
        sys.stdout.write(f"{head}\n\n{usage(args.command, syntax, help_text)}")
        sys.stdout.flush()  # before the error, as runc's reach a terminal (or one pipe for both)
        log.failure(str(e))
        return 1
    if args.command is None or args.help:
        if args.command in COMMANDS:
            module, help_text = COMMANDS[args.command]
            syntax = _commands(module).syntax(args.command)
            sys.stdout.write(usage(args.command, syntax, help_text))
        else:
            sys.stdout.write(overview())
        return 0
    if args.command in LONG_RUNNING:
        collect_garbage()
    return _run(args, log)


def _run(args: Args, log: Log) -> int:
    """The command, its failures logged in runc's words; its exit status."""
    ctx = Context(pathnames.abspath(args.root), log, args.systemd_cgroup, args.rootless)
    try:
        return _commands(COMMANDS[args.command][0]).run(args.command, ctx, args)
    except UsageError as e:  # found by the command (a missing container id)
        log.failure(str(e))
        return 1
    except GalleyError as e:
        log.failure(_FAILED.get(args.command, "") + str(e))
    except NotImplementedError as e:
        log.failure(f"{args.command}: not implemented yet ({e})")
    except OSError as e:  # "open /x: no such file or directory" as runc words it, or "/x: ..."
        if isinstance(e, BrokenPipeError) and no_reader(1):
            raise  # what we print has no reader: galley.oci.entry ends us as runc ends
        log.failure(_FAILED.get(args.command, f"{args.command}: ") + os_error_text(e))
    except KeyboardInterrupt:
        return 130
    return 255 if args.command == "exec" else 1  # runc's exit status for a failed exec
