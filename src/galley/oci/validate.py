"""config.json validation: every runtime-spec field, one-line errors naming the field path.

`validate(doc)` checks a loaded config.json before anything acts on it and returns it typed as
a Spec. Errors are `InvalidArgument` whose message starts with the field path, e.g.

    linux.namespaces[2].type: unknown namespace type "foo"
    process.args: must not be empty

This module checks shapes and values (types, ranges, enums, duplicates) and the cross-field
rules runc enforces (hostname needs a UTS namespace, sysctls must be namespaced, ...). The Linux
section is checked by `galley.oci.validate_linux`. Nothing here touches the host, except the
checks on whether the host has what is asked for (user namespaces, SELinux, AppArmor).
"""

from __future__ import annotations

import posix

from galley.kernel import pathnames
from galley.oci.validate_fields import (
    MAX_CPUS,
    UINT32_MAX,
    abspath,
    array_of,
    boolean,
    cpuset,
    each,
    fail,
    fields,
    integer,
    is_semver,
    listed,
    obj,
    one_of,
    required,
    string,
    string_map,
    strings,
    struct,
    typed_entries,
)
from galley.oci.vocabulary import SUPPORTED_VERSIONS

# Sections for other platforms: runc reads them into Go types, so their shapes are checked.
OTHER_PLATFORMS = frozenset({"solaris", "windows", "vm", "zos"})

TYPE_CHECKING = False  # typing and the TypedDicts cost ~9 ms to import on every create
if TYPE_CHECKING:
    from typing import Any

    from galley.oci.spec import Spec

RLIMIT_TYPES = frozenset(
    "RLIMIT_" + n
    for n in [
        "AS",
        "CORE",
        "CPU",
        "DATA",
        "FSIZE",
        "LOCKS",
        "MEMLOCK",
        "MSGQUEUE",
        "NICE",
        "NOFILE",
        "NPROC",
        "RSS",
        "RTPRIO",
        "RTTIME",
        "SIGPENDING",
        "STACK",
    ]
)
SCHED_POLICIES = (
    "SCHED_OTHER",
    "SCHED_FIFO",
    "SCHED_RR",
    "SCHED_BATCH",
    "SCHED_ISO",
    "SCHED_IDLE",
    "SCHED_DEADLINE",
)
SCHED_FLAGS = frozenset(
    {"SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN"}
    | {"SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN"}
    | {"SCHED_FLAG_UTIL_CLAMP_MAX"}
)
IOPRIO_CLASSES = ("IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE")
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
HOOK_PHASES = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)


def check_version(path: str, value: object) -> str:
    """ociVersion must be a semver within 1.0.x-1.3.x."""
    v = string(path, value, empty=False)
    if not is_semver(v):
        raise fail(path, f'"{v}" is not a semantic version')
    if not v.startswith(SUPPORTED_VERSIONS):
        raise fail(path, f'unsupported version "{v}" (supported: 1.0.x to 1.3.x)')
    return v


def _root(path: str, value: object) -> None:
    d = obj(path, value)
    string(f"{path}.path", required(path, d, "path"), empty=False)
    fields(path, d, {"readonly": boolean})


ID_MAX = 2**31 - 1  # runc's bound; 2^32-1 is (uid_t)-1, "leave unchanged", to setresuid


def user_id(path: str, value: object) -> int:
    """A uid or gid a process may take."""
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= ID_MAX:
        raise fail(path, f"{value}: uids and gids must be in range 0-{ID_MAX}")
    return integer(path, value, 0, ID_MAX)


def _user(path: str, value: object) -> None:
    d = obj(path, value)

    def uint32(p: str, v: Any) -> object:
        return integer(p, v, 0, UINT32_MAX)

    fields(path, d, {"uid": user_id, "gid": user_id, "umask": uint32, "username": string})
    fields(path, d, {"additionalGids": _additional_gids})


def _uts_name(path: str, value: object) -> None:
    if len(string(path, value).encode()) > UTS_NAME_MAX:
        raise fail(path, f"longer than the kernel's {UTS_NAME_MAX} bytes")


UTS_NAME_MAX = 64  # HOST_NAME_MAX: sethostname and setdomainname take no more


def _additional_gids(path: str, value: object) -> None:
    if len(each(path, value, user_id)) > NGROUPS_MAX:
        raise fail(path, f"more than the kernel's {NGROUPS_MAX} supplementary groups")


NGROUPS_MAX = 65536


def _capabilities(path: str, value: object) -> None:
    """Lists of names. A name this kernel does not know, spelled as a capability or not, is
    warned about and dropped (create's warning, capabilities.resolve): the runtime-spec asks
    for a warning, not a failure, as runc gives."""
    d = obj(path, value)
    for name in CAP_SETS:
        if name in d and d[name] is not None:
            strings(f"{path}.{name}", d[name])


def _rlimits(path: str, value: object) -> None:
    for p, d, _kind in typed_entries(path, value, RLIMIT_TYPES, "rlimit type"):
        soft = integer(f"{p}.soft", required(p, d, "soft"), 0)
        hard = integer(f"{p}.hard", required(p, d, "hard"), 0)
        if soft > hard:
            raise fail(f"{p}.soft", f"{soft} is greater than hard limit {hard}")


def _env(path: str, value: object) -> None:
    for i, item in enumerate(strings(path, value)):
        if "=" not in item:
            raise fail(f"{path}[{i}]", f'"{item}" is not of the form KEY=value')


def _scheduler(path: str, value: object) -> None:
    d = obj(path, value)
    one_of(f"{path}.policy", required(path, d, "policy"), SCHED_POLICIES, "scheduler policy")
    fields(path, d, {"nice": lambda p, v: integer(p, v, -20, 19), "priority": integer})
    for i, flag in enumerate(strings(f"{path}.flags", listed(d, "flags"))):
        if flag not in SCHED_FLAGS:
            raise fail(f"{path}.flags[{i}]", f'unknown scheduler flag "{flag}"')
    for key in ("runtime", "deadline", "period"):
        if key in d:
            integer(f"{path}.{key}", d[key], 0)
    from galley.oci.scheduling import scheduler_args  # noqa: PLC0415 - only where set

    scheduler_args(d)  # the rules between the fields (a priority for FIFO and RR only ...)


def _io_priority(path: str, value: object) -> None:
    d = obj(path, value)
    one_of(f"{path}.class", required(path, d, "class"), IOPRIO_CLASSES, "I/O priority class")
    fields(path, d, {"priority": lambda p, v: integer(p, v, 0, 7)})


def check_process(path: str, value: object) -> None:
    """process (also used for `exec --process` files)."""
    d = obj(path, value)
    args = d.get("args")
    if args is None and "commandLine" not in d:
        raise fail(f"{path}.args", "is required")
    if args is not None and not strings(f"{path}.args", args):
        raise fail(f"{path}.args", "must not be empty")
    abspath(f"{path}.cwd", required(path, d, "cwd"))

    def size(p: str, v: Any) -> object:
        return integer(p, v, 0, UINT32_MAX)

    fields(
        path,
        d,
        {
            "terminal": boolean,
            "consoleSize": struct({"height": size, "width": size}),
            "user": _user,
            "env": _env,
            "commandLine": string,
            "capabilities": _capabilities,
            "rlimits": _rlimits,
            "noNewPrivileges": boolean,
            "apparmorProfile": string,
            "oomScoreAdj": lambda p, v: integer(p, v, -1000, 1000),
            "selinuxLabel": string,
            "scheduler": _scheduler,
            "ioPriority": _io_priority,
            "execCPUAffinity": _exec_cpu_affinity,
        },
    )


def _exec_cpu_affinity(path: str, value: object) -> None:
    cpus = cpuset(MAX_CPUS, "CPU")
    fields(path, obj(path, value), {"initial": cpus, "final": cpus})


def _mount(path: str, value: object) -> None:
    d = obj(path, value)
    string(f"{path}.destination", required(path, d, "destination"), empty=False)
    fields(path, d, {"type": string, "source": string, "options": strings})
    for key in ("uidMappings", "gidMappings"):
        if key in d:
            id_mappings(f"{path}.{key}", d[key])


MAX_ID_MAPPINGS = 340  # lines of a uid_map or gid_map (the kernel's UID_GID_MAP_MAX_EXTENTS)


def id_mappings(path: str, value: object) -> None:
    """uidMappings or gidMappings: each entry, and the rules the kernel's uid_map holds the set
    to (a write that breaks one fails with EINVAL, which names nothing): each range ends below
    2^32 - 1 on both sides, no two share an ID on either side, at most 340 of them, written in
    fewer bytes than a page."""
    items = each(path, value, id_mapping)
    if len(items) > MAX_ID_MAPPINGS:
        raise fail(path, f"{len(items)} mappings, more than the kernel's {MAX_ID_MAPPINGS}")
    if len(items) > 1:
        from galley.oci.usermaps import map_text  # noqa: PLC0415 - a long list only

        written, page = len(map_text(items)), posix.sysconf("SC_PAGESIZE")
        if written >= page:
            raise fail(path, f"the map is {written} bytes, more than the kernel's {page - 1}")
    for i, entry in enumerate(items):
        for key, what in (("containerID", "container"), ("hostID", "host")):
            first, size = entry[key], entry["size"]
            if first + size > UINT32_MAX:
                raise fail(f"{path}[{i}]", f"{what} IDs {first}+{size} run past {UINT32_MAX - 1}")
            for j, other in enumerate(items[:i]):
                if first < other[key] + other["size"] and other[key] < first + size:
                    last = first + size - 1
                    raise fail(f"{path}[{i}]", f"{what} IDs {first}-{last} overlap {path}[{j}]'s")


def id_mapping(path: str, value: object) -> None:
    """One uidMappings/gidMappings entry."""
    d = obj(path, value)
    for key in ("containerID", "hostID", "size"):
        integer(f"{path}.{key}", required(path, d, key), 0, UINT32_MAX)
    if d["size"] == 0:
        raise fail(f"{path}.size", "must be greater than zero")


def _hook(path: str, value: object) -> None:
    d = obj(path, value)
    abspath(f"{path}.path", required(path, d, "path"))
    fields(path, d, {"args": strings, "env": _env})
    if "timeout" in d and d["timeout"] is not None:
        integer(f"{path}.timeout", d["timeout"], 1, 2**31 - 1)


def _hooks(path: str, value: object) -> None:
    d = obj(path, value)
    for phase in HOOK_PHASES:
        if d.get(phase) is not None:
            each(f"{path}.{phase}", d[phase], _hook)


def check_host_security(spec: dict[str, Any]) -> None:
    """Labels the host cannot apply are refused, as runc does (create, and exec's process);
    so are additional groups from a caller that is not root (runc refuses them in a rootless
    container, whose user namespace may deny setgroups, rather than drop them unsaid)."""
    process = spec.get("process") or {}
    if (process.get("user") or {}).get("additionalGids") and posix.geteuid() != 0:
        raise fail(
            "process.user.additionalGids",
            "cannot set any additional groups in a rootless container",
        )
    linux = spec.get("linux") or {}
    selinux = pathnames.exists("/sys/fs/selinux/enforce")
    for path, label in (
        ("process.selinuxLabel", process.get("selinuxLabel")),
        ("linux.mountLabel", linux.get("mountLabel")),
    ):
        if label and not selinux:
            raise fail(path, "selinux label is specified, but selinux is disabled or unsupported")
    if process.get("apparmorProfile") and not pathnames.exists("/sys/kernel/security/apparmor"):
        raise fail("process.apparmorProfile", "apparmor is not enabled on this host")


def validate(doc: object, *, need_process: bool = True) -> Spec:
    """Check a loaded config.json; return it typed, or raise InvalidArgument naming the field."""
    from galley.oci.validate_linux import check_linux  # noqa: PLC0415 - keeps this module small

    d = obj("config", doc)
    check_version("ociVersion", required("", d, "ociVersion"))
    _root("root", required("", d, "root"))
    if d.get("process") is None:
        if need_process:
            raise fail("process", "is required")
    else:
        check_process("process", d["process"])
    fields(
        "",
        d,
        {
            "hostname": _uts_name,
            "domainname": _uts_name,
            "mounts": array_of(_mount),
            "hooks": _hooks,
            "annotations": string_map,
        },
    )
    check_linux(d)
    if not d.keys().isdisjoint(OTHER_PLATFORMS):
        from galley.oci.validate_platforms import check_other_platforms  # noqa: PLC0415 - rare

        check_other_platforms(d)
    check_host_security(d)
    spec: Spec = d  # type: ignore[assignment]  # checked above, field by field
    return spec
