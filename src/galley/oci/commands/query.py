"""state, list, ps and events: read-only views of containers, in runc's output formats."""

from __future__ import annotations

import posix
import sys
import time

from galley.errors import FailedPrecondition, InvalidArgument
from galley.kernel import pathnames
from galley.oci.commands.args import container_id
from galley.oci.commands.options import DURATION, STR, Args, Option, Syntax
from galley.oci.jsonfast import dumps_go, dumps_indented
from galley.oci.state import STATE_FILE, ContainerState, CorruptState, list_states
from galley.oci.status import Status

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from galley.oci.cli import Context

LIST_COLUMNS = ("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")


_FORMAT = Option("-f,--format", "table or json", STR, "table")  # checked where runc checks it
SYNTAX = {
    "state": Syntax([], ("container_id",)),
    "list": Syntax([_FORMAT, Option("-q,--quiet", "display only container IDs")]),
    "ps": Syntax([_FORMAT], ("container_id",), rest="ps_args"),
    "events": Syntax(
        [
            Option("--stats", "display the container's stats once, then exit"),
            Option("--interval", "stats collection interval (e.g. 1s, 500ms)", DURATION, 5.0),
        ],
        ("container_id",),
    ),
}


def syntax(command: str) -> Syntax:
    """The options and arguments of one query command."""
    return SYNTAX[command]


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _owner(state: ContainerState) -> str:
    """The user owning the state directory, by name (as runc's list shows it)."""
    import pwd  # noqa: PLC0415 - lazy: only list needs it

    try:
        uid = posix.stat(state.dir).st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def table(rows: list[tuple[str, ...]], minwidth: int = 12, padding: int = 3) -> str:
    """Columns as Go's tabwriter (minwidth 12, padding 3) lays out runc's tables."""
    widths = [max(minwidth, *(len(r[i]) + padding for r in rows)) for i in range(len(rows[0]))]
    lines = [
        "".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + r[-1] for r in rows
    ]
    return "\n".join(lines) + "\n"


def list_containers(ctx: Context, fmt: str, quiet: bool) -> str:
    """`list` output: a table, ids only, or a JSON array (null when empty, as runc)."""
    states = [s.to_runc_json(owner=_owner(s)) for s in list_states(ctx.root, _damaged)]
    if quiet:
        return "".join(f"{s['id']}\n" for s in states)
    if fmt == "json":
        return dumps_go(states or None) + "\n"
    keys = ("id", "pid", "status", "bundle", "created", "owner")
    rows = [LIST_COLUMNS, *(tuple(str(s[k]) for k in keys) for s in states)]
    return table(rows)


def _damaged(cid: str, error: CorruptState) -> None:
    """A container whose state.json cannot be read is said on stderr, as runc's list says
    it, and left out of the list."""
    sys.stderr.write(f"load container {cid}: {error}\n")


def ps(state: ContainerState, fmt: str, ps_args: list[str]) -> str:
    """`ps`: the container's pids as JSON, or `ps -ef` lines for those pids."""
    pids = state.processes()
    if fmt == "json":  # none: null, as runc's (Go's) empty list
        return (dumps_go(pids) if pids else "null") + "\n"
    import subprocess  # noqa: PLC0415 - lazy: only the ps table needs it

    args = ps_args or ["-ef"]  # as given, a "--" too (runc's)
    done = subprocess.run(["ps", *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:  # bad ps options: one line, as runc's
        reason = done.stderr.strip().splitlines()[:1] or [f"exit status {done.returncode}"]
        raise InvalidArgument(f"ps {' '.join(args)}: {reason[0]}")
    lines = done.stdout.splitlines()
    if not lines:
        return ""
    end = _pid_column_end(lines[0])
    if end < 0:
        raise InvalidArgument("couldn't find PID field in ps output")
    wanted = {str(p) for p in pids}
    kept = [line for line in lines[1:] if " ".join(line[:end].split()[-1:]) in wanted]
    return "\n".join([lines[0], *kept]) + "\n"


def _pid_column_end(header: str) -> int:
    """Where the PID column ends in ps's header (-1: none). ps right-aligns a pid under its
    header, so a row's pid is the word ending there, wherever a column of words with spaces
    (args, before it in `-o args,pid`) puts the others; runc counts fields and fails there."""
    at = 0
    for word in header.split():
        at = header.index(word, at) + len(word)
        if word == "PID":
            return at
    return -1


def _interval(seconds: float) -> float:
    """--interval, read by the option parser as Go's durations are, checked as runc checks
    it once it has the container."""
    if not seconds > 0:  # 0 or negative: a stats line as fast as the CPU goes
        raise InvalidArgument("duration interval must be greater than 0")
    return seconds


OOM_POLL = 0.1  # seconds between looks at the OOM-kill counter while streaming


def _emit(event: dict[str, object]) -> None:
    _out(dumps_go(event) + "\n")


def events(state: ContainerState, *, once: bool, interval: float) -> None:
    """`events`: with --stats one stats event; else a stats event every interval and an
    `{"type":"oom"}` event when the kernel OOM-kills in the container, until the container
    is deleted, as runc's: a container that stopped still has its cgroup and its stats."""
    if state.status() is Status.STOPPED:
        raise FailedPrecondition(f"container with id {state.id} is not running")
    from galley.oci.cgroups.stats import oom_kills  # noqa: PLC0415 - only events needs it

    manager = state.cgroup_manager()
    rdt = state.spec.get("linux", {}).get("intelRdt")
    if rdt is not None:
        from galley.oci.resctrl import stats as resctrl_stats  # noqa: PLC0415 - intelRdt only
    kills = oom_kills(manager.paths)
    state_file = pathnames.join(state.dir, STATE_FILE)
    next_stats = 0.0 if once else time.monotonic() + interval  # runc's first tick: one interval
    while True:
        if time.monotonic() >= next_stats:
            try:
                stats = manager.stats()
            except OSError:  # the cgroup went with a delete
                return
            if rdt is not None:
                try:
                    stats["intel_rdt"] = resctrl_stats(rdt, state.id)
                except FailedPrecondition:
                    if not pathnames.exists(state_file):  # its group went with a delete
                        return
                    raise
            _emit({"type": "stats", "id": state.id, "data": stats})
            if once:
                return
            next_stats = time.monotonic() + interval
        time.sleep(max(0.0, min(OOM_POLL, next_stats - time.monotonic())))
        if not pathnames.exists(state_file):  # deleted: runc's events ends there too
            return
        seen = oom_kills(manager.paths)
        if seen > kills:
            _emit({"type": "oom", "id": state.id})
            kills = seen


def _check_format(fmt: str) -> None:
    """list's and ps's --format, refused as runc refuses it: once the containers are read (list
    -q never looks at it), in its words, without the usage text."""
    if fmt not in ("table", "json"):
        raise InvalidArgument("invalid format option")


def run(command: str, ctx: Context, args: Args) -> int:
    """Run one query command."""
    if command == "list":
        if not args.quiet:
            _check_format(args.format)
        _out(list_containers(ctx, args.format, args.quiet))
        return 0
    if command == "ps":
        ctx.warn_rootless(command)
    state = ContainerState.load(ctx.root, container_id(command, args))
    if command == "state":
        _out(dumps_indented(state.to_runc_json()) + "\n")
    elif command == "ps":
        if state.status() is Status.STOPPED and not state.cgroup:
            raise FailedPrecondition("container not running")
        _check_format(args.format)
        _out(ps(state, args.format, args.ps_args))
    elif command == "events":
        events(state, once=args.stats, interval=_interval(args.interval))
    return 0
