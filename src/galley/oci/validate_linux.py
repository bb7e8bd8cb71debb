"""Validation of config.json's `linux` section and the cross-field rules that involve it.

Shapes and ranges of every field, plus runc's rules: namespace types are known and unique,
id mappings go with a user namespace, hostname/domainname need a UTS namespace, sysctls must
belong to a namespace the container has, maskedPaths/readonlyPaths need a mount namespace,
timeOffsets need a time namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from galley.oci.spec import NAMESPACE_TYPES
from galley.oci.validate import id_mapping
from galley.oci.validate_fields import (
    UINT32_MAX,
    abspath,
    arr,
    boolean,
    each,
    fail,
    fields,
    integer,
    obj,
    one_of,
    required,
    string,
    string_map,
    strings,
)

PROPAGATIONS = (
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
    "unbindable",
    "runbindable",
)
DEVICE_TYPES = ("c", "b", "u", "p")
_SECCOMP_ACTIONS = frozenset(
    "SCMP_ACT_" + a
    for a in [
        "KILL",
        "KILL_PROCESS",
        "KILL_THREAD",
        "TRAP",
        "ERRNO",
        "TRACE",
        "ALLOW",
        "LOG",
        "NOTIFY",
    ]
)
_SECCOMP_OPS = frozenset("SCMP_CMP_" + o for o in ["NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"])
_SECCOMP_FLAGS = frozenset(
    "SECCOMP_FILTER_FLAG_" + f
    for f in [
        "TSYNC",
        "LOG",
        "SPEC_ALLOW",
        "WAIT_KILLABLE_RECV",
        "NEW_LISTENER",
        "TSYNC_ESRCH",
    ]
)
_CPUSET_RE = re.compile(r"^\s*(\d+(-\d+)?)(\s*,\s*\d+(-\d+)?)*\s*$")
_IPC_SYSCTLS = frozenset(
    {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall"}
    | {"kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
)


def _int(lo: int, hi: int) -> Callable[[str, Any], object]:
    return lambda p, v: integer(p, v, lo, hi)


_U16 = _int(0, 65535)
_U32 = _int(0, UINT32_MAX)
_U64 = _int(0, 2**64 - 1)
_I64 = _int(-(2**63), 2**63 - 1)


def _namespaces(path: str, value: object) -> set[str]:
    seen: set[str] = set()
    for i, item in enumerate(arr(path, value)):
        p = f"{path}[{i}]"
        d = obj(p, item)
        kind = one_of(f"{p}.type", required(p, d, "type"), NAMESPACE_TYPES, "namespace type")
        if kind in seen:
            raise fail(f"{p}.type", f'duplicate namespace type "{kind}"')
        seen.add(kind)
        if d.get("path"):
            abspath(f"{p}.path", d["path"])
    return seen


def _device(path: str, value: object) -> None:
    d = obj(path, value)
    kind = one_of(f"{path}.type", required(path, d, "type"), DEVICE_TYPES, "device type")
    abspath(f"{path}.path", required(path, d, "path"))
    if kind != "p":
        _I64(f"{path}.major", required(path, d, "major"))
        _I64(f"{path}.minor", required(path, d, "minor"))
    fields(path, d, {"fileMode": _U32, "uid": _U32, "gid": _U32})


def _device_rule(path: str, value: object) -> None:
    d = obj(path, value)
    boolean(f"{path}.allow", required(path, d, "allow"))
    if d.get("type") is not None:
        one_of(f"{path}.type", d["type"], ("a", "c", "b"), "device type")
    for key in ("major", "minor"):
        if d.get(key) is not None:
            integer(f"{path}.{key}", d[key], -1)
    access = d.get("access")
    if access is not None and not set(string(f"{path}.access", access)) <= set("rwm"):
        raise fail(f"{path}.access", f'"{access}" must be a combination of r, w and m')


def _cpuset(path: str, value: object) -> None:
    s = string(path, value)
    if s and not _CPUSET_RE.match(s):
        raise fail(path, f'"{s}" is not a cpu/memory node list like "0-3,5"')


def _throttle(path: str, value: object) -> None:
    d = obj(path, value)
    for key in ("major", "minor", "rate"):
        integer(f"{path}.{key}", required(path, d, key), 0)


def _weight_device(path: str, value: object) -> None:
    d = obj(path, value)
    for key in ("major", "minor"):
        integer(f"{path}.{key}", required(path, d, key), 0)
    fields(path, d, {"weight": _U16, "leafWeight": _U16})


def _block_io(path: str, value: object) -> None:
    d = obj(path, value)
    fields(path, d, {"weight": _U16, "leafWeight": _U16})
    fields(path, d, {"weightDevice": lambda p, v: each(p, v, _weight_device)})
    for key in ("Read", "Write"):
        for unit in ("Bps", "IOPS"):
            name = f"throttle{key}{unit}Device"
            fields(path, d, {name: lambda p, v: each(p, v, _throttle)})


def _hugepage(path: str, value: object) -> None:
    d = obj(path, value)
    string(f"{path}.pageSize", required(path, d, "pageSize"), empty=False)
    integer(f"{path}.limit", required(path, d, "limit"), 0)


def _priority(path: str, value: object) -> None:
    d = obj(path, value)
    string(f"{path}.name", required(path, d, "name"), empty=False)
    _U32(f"{path}.priority", required(path, d, "priority"))


def _network(path: str, value: object) -> None:
    d = obj(path, value)
    fields(path, d, {"classID": _U32, "priorities": lambda p, v: each(p, v, _priority)})


def check_resources(path: str, value: object) -> None:
    """linux.resources (also what `update --resources` reads)."""
    d = obj(path, value)
    memory = dict.fromkeys(("limit", "reservation", "swap", "kernel", "kernelTCP"), _I64)
    memory.update(
        swappiness=_int(0, 100),
        disableOOMKiller=boolean,
        useHierarchy=boolean,
        checkBeforeUpdate=boolean,
    )
    cpu: dict[str, Callable[[str, Any], object]] = {
        "shares": _U64,
        "quota": _I64,
        "burst": _U64,
        "period": _U64,
        "realtimeRuntime": _I64,
        "realtimePeriod": _U64,
        "cpus": _cpuset,
        "mems": _cpuset,
        "idle": _I64,
    }
    fields(
        path,
        d,
        {
            "devices": lambda p, v: each(p, v, _device_rule),
            "memory": lambda p, v: fields(p, obj(p, v), memory),
            "cpu": lambda p, v: fields(p, obj(p, v), cpu),
            "pids": lambda p, v: fields(p, obj(p, v), {"limit": _I64}),
            "blockIO": _block_io,
            "hugepageLimits": lambda p, v: each(p, v, _hugepage),
            "network": _network,
            "rdma": obj,
            "unified": string_map,
        },
    )


def _seccomp_rule(path: str, value: object) -> None:
    d = obj(path, value)
    names = strings(f"{path}.names", required(path, d, "names"))
    if not names:
        raise fail(f"{path}.names", "must not be empty")
    one_of(f"{path}.action", required(path, d, "action"), _SECCOMP_ACTIONS, "seccomp action")
    fields(path, d, {"errnoRet": _U32})
    for i, arg in enumerate(arr(f"{path}.args", d.get("args") or [])):
        p = f"{path}.args[{i}]"
        a = obj(p, arg)
        integer(f"{p}.index", required(p, a, "index"), 0, 5)
        _U64(f"{p}.value", required(p, a, "value"))
        fields(p, a, {"valueTwo": _U64})
        one_of(f"{p}.op", required(p, a, "op"), _SECCOMP_OPS, "seccomp operator")


def _seccomp(path: str, value: object) -> None:
    d = obj(path, value)
    one_of(
        f"{path}.defaultAction",
        required(path, d, "defaultAction"),
        _SECCOMP_ACTIONS,
        "seccomp action",
    )
    fields(path, d, {"defaultErrnoRet": _U32, "listenerPath": abspath})
    fields(path, d, {"listenerMetadata": string, "architectures": strings})
    for i, flag in enumerate(strings(f"{path}.flags", d.get("flags") or [])):
        if flag not in _SECCOMP_FLAGS:
            raise fail(f"{path}.flags[{i}]", f'unknown seccomp flag "{flag}"')
    fields(path, d, {"syscalls": lambda p, v: each(p, v, _seccomp_rule)})


def _sysctl(path: str, value: object, namespaces: set[str]) -> None:
    for key in string_map(path, value):
        p = f"{path}.{key}"
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" not in namespaces:
                raise fail(p, "sysctl needs a new IPC namespace (linux.namespaces has none)")
        elif key.startswith("net."):
            if "network" not in namespaces:
                raise fail(p, "sysctl needs a new network namespace (linux.namespaces has none)")
        elif key in {"kernel.hostname", "kernel.domainname"}:
            if "uts" not in namespaces:
                raise fail(p, "sysctl needs a new UTS namespace (linux.namespaces has none)")
        else:
            raise fail(p, "sysctl is not in a separate kernel namespace")


def _cross_checks(spec: dict[str, Any], linux: dict[str, Any], namespaces: set[str]) -> None:
    if spec.get("hostname") and "uts" not in namespaces:
        raise fail("hostname", "unable to set hostname without a private UTS namespace")
    if spec.get("domainname") and "uts" not in namespaces:
        raise fail("domainname", "unable to set domainname without a private UTS namespace")
    has_maps = linux.get("uidMappings") or linux.get("gidMappings")
    if has_maps and "user" not in namespaces:
        raise fail("linux.uidMappings", "id mappings need a user namespace in linux.namespaces")
    if "user" in namespaces:
        joined = any(n.get("type") == "user" and n.get("path") for n in linux["namespaces"])
        if not joined and not (linux.get("uidMappings") and linux.get("gidMappings")):
            raise fail("linux.uidMappings", "a new user namespace needs uid and gid mappings")
    for key in ("maskedPaths", "readonlyPaths"):
        if linux.get(key) and "mount" not in namespaces:
            raise fail(f"linux.{key}", "needs a private mount namespace")
    if linux.get("timeOffsets") and "time" not in namespaces:
        raise fail("linux.timeOffsets", "needs a time namespace in linux.namespaces")


def _time_offsets(path: str, value: object) -> None:
    for clock, offset in obj(path, value).items():
        p = f"{path}.{clock}"
        if clock not in {"monotonic", "boottime"}:
            raise fail(p, f'unknown clock "{clock}"')
        fields(p, obj(p, offset), {"secs": _I64, "nanosecs": _U32})


def check_linux(spec: dict[str, Any]) -> None:
    """Check spec["linux"] and the rules that tie it to the rest of the config."""
    linux = obj("linux", spec["linux"] if spec.get("linux") is not None else {})
    namespaces = _namespaces("linux.namespaces", linux.get("namespaces") or [])
    fields(
        "linux",
        linux,
        {
            "uidMappings": lambda p, v: each(p, v, id_mapping),
            "gidMappings": lambda p, v: each(p, v, id_mapping),
            "timeOffsets": _time_offsets,
            "devices": lambda p, v: each(p, v, _device),
            "cgroupsPath": string,
            "resources": check_resources,
            "rootfsPropagation": lambda p, v: one_of(p, v, PROPAGATIONS, "propagation"),
            "seccomp": _seccomp,
            "sysctl": lambda p, v: _sysctl(p, v, namespaces),
            "maskedPaths": lambda p, v: each(p, v, abspath),
            "readonlyPaths": lambda p, v: each(p, v, abspath),
            "mountLabel": string,
            "intelRdt": obj,
            "personality": _personality,
        },
    )
    if linux.get("intelRdt"):
        raise fail("linux.intelRdt", "intel RDT is not supported on this host")
    _cross_checks(spec, linux, namespaces)


def _personality(path: str, value: object) -> None:
    d = obj(path, value)
    one_of(f"{path}.domain", required(path, d, "domain"), ("LINUX", "LINUX32"), "domain")
    fields(path, d, {"flags": strings})
