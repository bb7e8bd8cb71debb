"""pause, resume, update and exec: acting on a live container."""

from __future__ import annotations

import sys

from galley.errors import InvalidArgument
from galley.kernel import pathnames
from galley.oci import jsonfast
from galley.oci.commands.args import (
    check_console_socket,
    container_id,
    parse_size,
    preserved_fds,
)
from galley.oci.commands.options import INT, INTLIST, LIST, STR, Args, Option, Syntax
from galley.oci.state import ContainerState, Locked
from galley.oci.status import Operation, Status, require

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from typing import Any

    from galley.oci.cli import Context, Log
    from galley.oci.commands.terminal import ConsoleReceiver, Relay
    from galley.oci.spec import Process, Resources

# update's single flags: flag -> (resources section, key, parser). As in runc, two are integer
# flags its parser reads ("flag": Go's literals, a usage error), the others strings it reads
# once the command runs ("int", "uint": decimal digits, ParseUint without a sign).
UPDATE_FLAGS: dict[str, tuple[str, str, str]] = {
    "blkio-weight": ("blockIO", "weight", "flag"),
    "cpu-period": ("cpu", "period", "uint"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-share": ("cpu", "shares", "uint"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "kernel-memory": ("memory", "kernel", "size"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "size"),
    "memory": ("memory", "limit", "size"),
    "memory-reservation": ("memory", "reservation", "size"),
    "memory-swap": ("memory", "swap", "size"),
    "pids-limit": ("pids", "limit", "flag"),
}


_EXEC = [
    Option("-p,--process", "path to a process.json", STR),
    Option("-t,--tty", "allocate a pseudo-TTY"),
    Option("-d,--detach", "detach from the process"),
    Option("--pid-file", "file to write the process id to", STR),
    Option("--console-socket", "unix socket to receive the pty master", STR),
    Option("-e,--env", "set an environment variable (KEY=value)", LIST),
    Option("--cwd", "working directory in the container", STR),
    Option("-u,--user", "UID[:GID]", STR),
    Option("-g,--additional-gids", "additional gid", INTLIST),
    Option("-c,--cap", "add a capability", LIST),
    Option("--no-new-privs", "set no_new_privileges"),
    Option("--apparmor", "apparmor profile", STR),
    Option("--process-label", "selinux label", STR),
    Option("--preserve-fds", "extra fds to pass, from 3 on", INT, 0),
    Option("--ignore-paused", "exec even when the container is paused"),
    Option("--cgroup", "run in a sub-cgroup: [CONTROLLER[,CONTROLLER]:]PATH", LIST),
]
SYNTAX = {
    "pause": Syntax([], ("container_id",)),
    "resume": Syntax([], ("container_id",)),
    "update": Syntax(
        [
            Option("-r,--resources", "JSON file with linux.resources ('-' = stdin)", STR),
            *(
                Option(f"--{f}", f"linux.resources.{s}.{k}", INT if kind == "flag" else STR)
                for f, (s, k, kind) in UPDATE_FLAGS.items()
            ),
            Option("--l3-cache-schema", "intel RDT: the container's L3 cache schema", STR),
            Option("--mem-bw-schema", "intel RDT: the container's memory bandwidth schema", STR),
        ],
        ("container_id",),
    ),
    "exec": Syntax(_EXEC, ("container_id",), rest="exec_args"),
}


def syntax(command: str) -> Syntax:
    """The options and arguments of one control command."""
    return SYNTAX[command]


def pause(state: ContainerState) -> None:
    """Freeze the container's cgroup."""
    with Locked(state) as current:
        require(Operation.PAUSE, current.status(), current.id)
        current.cgroup_manager().freeze()


def resume(state: ContainerState) -> None:
    """Thaw the container's cgroup."""
    with Locked(state) as current:
        require(Operation.RESUME, current.status(), current.id)
        current.cgroup_manager().thaw()


def _flag_value(flag: str, kind: str, text: str | int) -> int | str:
    """An update flag's value; the error begins as runc's: "invalid value for <flag>: "."""
    if isinstance(text, int) or kind == "str":  # "flag": read by the option parser
        return text
    if kind == "size":
        try:
            return parse_size(text)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid value for {flag}: {e}") from None
    from galley.oci.commands import gosyntax  # noqa: PLC0415 - seldom

    try:
        return (gosyntax.parse_int if kind == "int" else gosyntax.parse_uint)(text, 10)
    except ValueError as e:
        words = gosyntax.strconv_words("ParseInt" if kind == "int" else "ParseUint", text, e)
        raise InvalidArgument(f"invalid value for {flag}: {words}") from None


def update_resources(args: Args) -> Resources:
    """The resources to apply: --resources JSON, or else the single flags (runc ignores the
    flags when --resources is given, as its help says)."""
    from galley.oci.validate_resources import check_resources  # noqa: PLC0415 - lazy

    doc: dict[str, Any] = {}
    if args.resources:
        try:
            if args.resources == "-":
                doc = jsonfast.load_stream(sys.stdin.buffer, "--resources")
            else:
                doc = jsonfast.load_file(args.resources, "--resources")
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    check_resources("resources", doc)
    if args.resources:
        return doc  # type: ignore[return-value]
    for flag, (section, key, kind) in UPDATE_FLAGS.items():
        text = getattr(args, flag.replace("-", "_"))
        if text is not None and text != "":  # runc: an empty value is no value
            doc.setdefault(section, {})[key] = _flag_value(flag, kind, text)
    return doc  # type: ignore[return-value]


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resctrl_schemas(args: Args) -> dict[str, str]:
    """update's --l3-cache-schema and --mem-bw-schema, as linux.intelRdt fields (an empty
    value is none, as runc reads them)."""
    given = (("l3CacheSchema", args.l3_cache_schema), ("memBwSchema", args.mem_bw_schema))
    schemas = {field: value for field, value in given if value}
    if "memBwSchema" in schemas:
        from galley.oci.resctrl import check_bandwidth  # noqa: PLC0415 - intelRdt only

        check_bandwidth("--mem-bw-schema", schemas["memBwSchema"])
    return schemas


def update(
    state: ContainerState, resources: Resources, schemas: dict[str, str] | None = None
) -> None:
    """Apply new limits and the Intel RDT schemas given (galley.oci.resctrl), all or
    nothing, and record them in state.json's config."""
    from galley.oci.cgroups.undo import set_all_or_nothing  # noqa: PLC0415 - update only

    with Locked(state) as current:
        require(Operation.UPDATE, current.status(check_frozen=False), current.id)
        config: dict[str, Any] = jsonfast.clone(dict(current.config))
        linux = config.setdefault("linux", {})
        undo_schemas = None
        if schemas:  # first: its undo is a write, the cgroups' a whole set of them
            from galley.oci import resctrl  # noqa: PLC0415 - intelRdt only

            rdt = linux.get("intelRdt")
            undo_schemas = resctrl.update(rdt, schemas, current.id, current.pid)
            linux["intelRdt"] = {**(rdt or {}), **schemas}
        try:
            set_all_or_nothing(current.cgroup_manager(), resources)
        except BaseException:
            if undo_schemas is not None:
                undo_schemas()
            raise
        linux["resources"] = _merge(linux.get("resources") or {}, dict(resources))
        current.replace(config=config).save()


def _parse_user(text: str) -> dict[str, int]:
    from galley.oci.commands.gosyntax import parse_int  # noqa: PLC0415 - lazy
    from galley.oci.validate import user_id  # noqa: PLC0415

    uid, colon, gid = text.partition(":")
    try:  # as runc's strconv.Atoi: no spaces, underscores or other digits; "1000:" refused
        ids = {"uid": parse_int(uid, 10), **({"gid": parse_int(gid, 10)} if colon else {})}
    except ValueError:
        raise InvalidArgument(f"--user: {text!r} is not UID[:GID]") from None
    for value in ids.values():
        user_id("--user", value)
    return ids


class ProcessFile:
    """exec --process: the file, read and parsed once (it may be a pipe: runc's tests pass
    -p /dev/fd/N); what is wrong with it is raised by load(), where runc reports it, after
    the container's checks."""

    def __init__(self, path: str) -> None:
        self.document: Any = None
        self.error: OSError | InvalidArgument | None = None
        try:
            self.document = jsonfast.load_file(path, "--process")
        except OSError as e:
            self.error = e
        except ValueError as e:
            self.error = InvalidArgument(str(e))

    def load(self) -> Any:
        """The document; the read's OSError, or InvalidArgument for what is not JSON."""
        if self.error is not None:
            raise self.error
        return self.document

    def terminal(self) -> bool:
        """process.terminal (false for a file that cannot be read: load() says why)."""
        return isinstance(self.document, dict) and self.document.get("terminal") is True


def exec_spec(state: ContainerState, args: Args, process_file: ProcessFile | None) -> Process:
    """The process to exec: --process, or the container's process with the flags applied."""
    from galley.oci.validate import check_host_security, check_process  # noqa: PLC0415 - lazy

    if process_file is not None:
        proc: dict[str, Any] = process_file.load()
        if isinstance(proc, dict):  # what it leaves out is the container's, as in runc
            container = state.spec.get("process") or {}
            for key in ("capabilities", "apparmorProfile", "selinuxLabel"):
                # An empty profile or label is none given; an empty capabilities object is
                # no capabilities (runc: a pointer that is not nil), and a value of another
                # type is validation's to refuse.
                left_out = key not in proc or (key != "capabilities" and proc[key] == "")
                if left_out and container.get(key) is not None:
                    proc[key] = jsonfast.clone(container[key])
        check_process("process", proc)
        check_host_security({"process": proc})
        return proc  # type: ignore[return-value]
    proc = jsonfast.clone(dict(state.spec.get("process") or {}))
    command = list(args.exec_args or [])  # a "--" after the id is the program's, as in runc
    if not command:
        raise InvalidArgument("exec: no command given (args or --process)")
    proc["args"] = command
    proc["terminal"] = bool(args.tty)
    proc["env"] = [*proc.get("env", []), *args.env]  # consoleSize too is the container's, as runc
    if args.cwd:
        proc["cwd"] = args.cwd
    if args.user:
        proc["user"] = {**proc.get("user", {}), **_parse_user(args.user)}
    if args.additional_gids:  # added to the container's, as runc's
        user = proc.setdefault("user", {})
        for gid in args.additional_gids:
            if gid < 0:  # runc's words
                raise InvalidArgument(f"additional-gids must be a positive number {gid}")
        user["additionalGids"] = [*user.get("additionalGids", []), *args.additional_gids]
    if args.cap:  # not inheritable (runc 1.1.2, CVE-2022-29162: a non-root user would keep
        # them through execve); ambient as runc, which takes only where the container's
        # inheritable set has the capability (galley.oci.capabilities skips the rest)
        caps = proc.setdefault("capabilities", {})
        for name in ("bounding", "effective", "permitted", "ambient"):
            caps[name] = [
                *caps.get(name, []),
                *(c for c in args.cap if c not in caps.get(name, [])),
            ]
    if args.no_new_privs:
        proc["noNewPrivileges"] = True
    if args.apparmor:
        proc["apparmorProfile"] = args.apparmor
    if args.process_label:
        proc["selinuxLabel"] = args.process_label
    check_process("process", proc)
    check_host_security({"process": proc})
    return proc  # type: ignore[return-value]


def sub_cgroups(values: list[str]) -> dict[str, str] | None:
    """exec --cgroup as runc reads it: one PATH for every controller, or any number of
    CONTROLLER[,CONTROLLER]:PATH, each controller once."""
    if not values:
        return None
    paths: dict[str, str] = {}
    for value in values:
        parts = value.split(":")
        if len(parts) > 2:
            raise InvalidArgument(f"invalid --cgroup argument: {value}")
        if len(parts) == 1:
            if len(values) != 1:
                raise InvalidArgument(
                    f"invalid --cgroup argument: {value} (missing <controller>: prefix)"
                )
            paths[""] = value
            continue
        controllers, path = parts
        for controller in controllers.split(","):
            if not controller:
                raise InvalidArgument(f"invalid --cgroup argument: {value} (empty <controller>)")
            if controller in paths:
                raise InvalidArgument(f"--cgroup: controller {controller} given twice")
            paths[controller] = path
    return paths


def exec_command(state: ContainerState, args: Args, log: Log) -> int:
    """`exec`: run a process in the container; its exit status (0 when detached). With -t in
    the foreground and no --console-socket, the pty is relayed to our stdio, as runc does."""
    from galley.oci.stage import Stage  # noqa: PLC0415 - lazy

    console_socket = args.console_socket  # as given: the relay sets its own
    process_file = ProcessFile(args.process) if args.process else None
    # the relay first: the stage must not hold its pipes
    relay, receiver = _start_relay(args, process_file)
    ran = False  # the relay ends once the process has exited, else at once
    try:
        # Forked first: the stage imports while we import the rest, check and read the process.
        stage = Stage(preserved_fds(args), creates=False)
        from galley.oci.execution import exec_process  # noqa: PLC0415 - lazy

        try:
            status = state.status()
            if not (status is Status.PAUSED and args.ignore_paused):
                require(Operation.EXEC, status, state.id)
            process = exec_spec(state, args, process_file)
            _log_affinity(log, process)
            sub = sub_cgroups(args.cgroup)
            check_console_socket(console_socket, detach=args.detach)  # last, as runc
        except BaseException:
            stage.abandon()
            raise
        code = exec_process(
            state,
            process,
            stage,
            console_socket=args.console_socket,
            pid_file=args.pid_file and pathnames.abspath(args.pid_file),  # as create's
            detach=args.detach,
            sub_cgroups=sub,
            warn=log.warning,
            prepare_console=_prepare_master if receiver is not None else None,
        )
        ran = True
        return code
    finally:
        if receiver is not None:
            receiver.close()
        if relay is not None:
            relay.end(ran=ran)


def _log_affinity(log: Log, process: Process) -> None:
    """With --debug, the CPUs the process starts on, as the mask runc's debug log shows
    ("affinity: 0x3"), which tools written for it look for."""
    initial = process.get("execCPUAffinity", {}).get("initial")
    if initial and log.enabled("debug"):
        from galley.oci.scheduling import parse_cpus  # noqa: PLC0415

        mask = sum(1 << cpu for cpu in parse_cpus(initial, "process.execCPUAffinity.initial"))
        log.debug(f"exec: affinity: {mask:#x}")


def _prepare_master(master: int) -> None:
    from galley.oci.commands.terminal import prepare_master  # noqa: PLC0415

    prepare_master(master)


def _start_relay(
    args: Args, process_file: ProcessFile | None
) -> tuple[Relay | None, ConsoleReceiver | None]:
    """-t, or with --process the file's process.terminal (runc ignores -t there)."""
    terminal = process_file.terminal() if process_file is not None else args.tty
    if not terminal or args.detach or args.console_socket:
        return None, None
    from galley.oci.commands.terminal import ConsoleReceiver, fork_relay  # noqa: PLC0415

    receiver = ConsoleReceiver()
    args.console_socket = receiver.path
    return fork_relay(receiver), receiver


def run(command: str, ctx: Context, args: Args) -> int:
    """Run one control command."""
    if command in {"pause", "resume"}:
        ctx.warn_rootless(command)
    state = ContainerState.load(ctx.root, container_id(command, args))
    if command == "pause":
        pause(state)
    elif command == "resume":
        resume(state)
    elif command == "update":
        resources = update_resources(args)
        memory = resources.get("memory") or {}
        if memory.get("kernel") is not None or memory.get("kernelTCP") is not None:
            ctx.log.warning("Kernel memory settings are ignored and will be removed")  # runc's
        update(state, resources, resctrl_schemas(args))
    elif command == "exec":
        code = exec_command(state, args, ctx.log)
        ctx.log.debug(f"exec'd container_id={state.id} exit_status={code} detach={args.detach}")
        return code
    return 0
