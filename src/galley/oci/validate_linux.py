"""Validation of config.json's `linux` section and the cross-field rules that involve it.

Shapes and ranges of every field, plus runc's rules: namespace types are known and unique,
id mappings go with a user namespace, hostname/domainname need a UTS namespace, sysctls must
belong to a namespace the container has, timeOffsets need a time namespace. Unlike runc, a mount
namespace (new or joined) is required: runc chroot()s without one, galley would pivot_root.
"""

from __future__ import annotations

import posix

from galley.oci.seccomp_rules import notify_misuse
from galley.oci.validate import id_mappings, user_id
from galley.oci.validate_fields import (
    I64,
    U32,
    U64,
    abspath,
    arr,
    array_of,
    boolean,
    fail,
    fields,
    int_range,
    integer,
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
from galley.oci.validate_resources import check_resources
from galley.oci.vocabulary import NAMESPACE_TYPES, SECCOMP_ARCHES

TYPE_CHECKING = False  # typing costs ~3 ms to import on every create
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


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
_IPC_SYSCTLS = frozenset(
    {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall"}
    | {"kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
)


def _namespaces(path: str, value: object) -> set[str]:
    seen: set[str] = set()
    for p, d, kind in typed_entries(path, value, NAMESPACE_TYPES, "namespace type"):
        seen.add(kind)
        if d.get("path") is not None and string(f"{p}.path", d["path"]):  # "": no path
            abspath(f"{p}.path", d["path"])
    return seen


def _device(path: str, value: object) -> None:
    d = obj(path, value)
    kind = one_of(f"{path}.type", required(path, d, "type"), DEVICE_TYPES, "device type")
    abspath(f"{path}.path", required(path, d, "path"))
    if kind != "p":  # what mknod(2)'s dev_t can say: a 12-bit major, a 20-bit minor
        integer(f"{path}.major", required(path, d, "major"), 0, (1 << 12) - 1)
        integer(f"{path}.minor", required(path, d, "minor"), 0, (1 << 20) - 1)
    fields(path, d, {"fileMode": U32, "uid": user_id, "gid": user_id})


def _seccomp_rule(path: str, value: object) -> None:
    d = obj(path, value)
    names = strings(f"{path}.names", required(path, d, "names"))
    if not names:
        raise fail(f"{path}.names", "must not be empty")
    one_of(f"{path}.action", required(path, d, "action"), _SECCOMP_ACTIONS, "seccomp action")
    fields(path, d, {"errnoRet": U32})
    for i, arg in enumerate(arr(f"{path}.args", listed(d, "args"))):
        p = f"{path}.args[{i}]"
        a = obj(p, arg)
        integer(f"{p}.index", required(p, a, "index"), 0, 5)
        U64(f"{p}.value", required(p, a, "value"))
        fields(p, a, {"valueTwo": U64})
        one_of(f"{p}.op", required(p, a, "op"), _SECCOMP_OPS, "seccomp operator")


def _seccomp(path: str, value: object) -> None:
    d = obj(path, value)
    one_of(
        f"{path}.defaultAction",
        required(path, d, "defaultAction"),
        _SECCOMP_ACTIONS,
        "seccomp action",
    )
    fields(path, d, {"defaultErrnoRet": U32, "listenerPath": abspath})
    fields(path, d, {"listenerMetadata": string})
    for i, arch in enumerate(strings(f"{path}.architectures", listed(d, "architectures"))):
        if arch not in SECCOMP_ARCHES:
            raise fail(f"{path}.architectures[{i}]", f"unknown architecture {arch!r}")
    for i, flag in enumerate(strings(f"{path}.flags", listed(d, "flags"))):
        if flag not in _SECCOMP_FLAGS:
            raise fail(f"{path}.flags[{i}]", f'unknown seccomp flag "{flag}"')
    fields(path, d, {"syscalls": array_of(_seccomp_rule)})
    misuse = notify_misuse(d)  # what the filter's compiler refuses, before any hook runs
    if misuse is not None:
        raise fail(path + misuse[0], misuse[1])


def _joined(linux: dict[str, Any], kind: str) -> str:
    """The path linux.namespaces joins a namespace of this kind by ("": none, or a new one)."""
    for ns in linux.get("namespaces") or []:
        if isinstance(ns, dict) and ns.get("type") == kind and isinstance(ns.get("path"), str):
            return str(ns["path"])
    return ""


def _joins_our_network(linux: dict[str, Any]) -> bool:
    """Whether the network namespace joined by path is the one we run in (runc's "host"
    network namespace: the current one, not the initial): a net.* sysctl would be the host's."""
    path = _joined(linux, "network")
    if not path:
        return False
    try:
        there, here = posix.stat(path), posix.stat("/proc/self/ns/net")
    except OSError:
        return False  # the join fails later, naming the path
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


def _sysctl(path: str, value: object, namespaces: set[str], ours: Callable[[], bool]) -> None:
    for key in string_map(path, value):
        p = f"{path}.{key}"
        if "/" in key:  # runc takes /proc/sys's own form too: net/ipv4/ip_forward
            if any(part in {"", ".", ".."} for part in key.split("/")):
                raise fail(p, "not a sysctl name")
            key = key.replace("/", ".")  # classified by its dotted name from here on
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" not in namespaces:
                raise fail(p, "sysctl needs a new IPC namespace (linux.namespaces has none)")
        elif key.startswith("net."):
            if "network" not in namespaces:
                raise fail(p, "sysctl needs a new network namespace (linux.namespaces has none)")
            if ours():  # runc's words
                raise fail(p, "sysctl not allowed in host network namespace")
        elif key in {"kernel.hostname", "kernel.domainname"}:
            if "uts" not in namespaces:
                raise fail(p, "sysctl needs a new UTS namespace (linux.namespaces has none)")
            if key == "kernel.hostname":  # runc 1.1 refuses it, hostname set or not
                raise fail(p, 'sysctl is not allowed as it conflicts with the OCI "hostname" field')
        else:
            raise fail(p, "sysctl is not in a separate kernel namespace")


def _one_domainname(domainname: object, sysctl: dict[str, Any]) -> None:
    """The domainname field and a kernel.domainname sysctl may both be set (Docker writes its
    --domainname as the sysctl), but not to two names: which one would the container get?
    (crun refuses the two together; runc 1.1 ignores the field.)"""
    if not domainname:
        return
    for key in ("kernel.domainname", "kernel/domainname"):
        value = sysctl.get(key)
        if isinstance(value, str) and value.strip() != domainname:
            raise fail(
                f"linux.sysctl.{key}",
                f'{value!r} conflicts with the OCI "domainname" field ({domainname!r})',
            )


def _cross_checks(spec: dict[str, Any], linux: dict[str, Any], namespaces: set[str]) -> None:
    if spec.get("hostname") and "uts" not in namespaces:
        raise fail("hostname", "unable to set hostname without a private UTS namespace")
    if spec.get("domainname") and "uts" not in namespaces:
        raise fail("domainname", "unable to set domainname without a private UTS namespace")
    _one_domainname(spec.get("domainname"), linux.get("sysctl") or {})
    for field in ("uidMappings", "gidMappings"):  # runc 1.1 drops them without a word
        if linux.get(field) and "user" not in namespaces:
            raise fail(f"linux.{field}", "id mappings need a user namespace in linux.namespaces")
    if "user" in namespaces:
        joined = any(n.get("type") == "user" and n.get("path") for n in linux["namespaces"])
        if not joined and not (linux.get("uidMappings") and linux.get("gidMappings")):
            raise fail("linux.uidMappings", "a new user namespace needs uid and gid mappings")
    for key in ("maskedPaths", "readonlyPaths"):
        if linux.get(key) and "mount" not in namespaces:
            raise fail(f"linux.{key}", "needs a private mount namespace")
    if linux.get("rootfsPropagation") and "mount" not in namespaces:
        # Without a mount namespace the container's rootfs is built in the host's (see
        # galley.oci.hostmounts), whose "/" keeps its propagation.
        raise fail("linux.rootfsPropagation", "needs a private mount namespace")
    if "user" in namespaces and "mount" not in namespaces:
        # Only the host's user namespace may mount in the host's mount namespace.
        raise fail("linux.namespaces", "a user namespace needs a mount namespace with it")
    if linux.get("timeOffsets") and "time" not in namespaces:
        raise fail("linux.timeOffsets", "needs a time namespace in linux.namespaces")
    if linux.get("timeOffsets") and _joined(linux, "time"):  # as runc 1.2: they went unused
        raise fail("linux.timeOffsets", "a time namespace joined by path keeps its own offsets")
    if linux.get("netDevices") and "network" not in namespaces:
        why = "needs a network namespace in linux.namespaces (new, or joined by path)"
        raise fail("linux.netDevices", why)


def _time_offsets(path: str, value: object) -> None:
    for clock, offset in obj(path, value).items():
        p = f"{path}.{clock}"
        if clock not in {"monotonic", "boottime"}:
            raise fail(p, f'unknown clock "{clock}"')
        fields(p, obj(p, offset), {"secs": I64, "nanosecs": int_range(0, 999_999_999)})


def check_linux(spec: dict[str, Any]) -> None:
    """Check spec["linux"] and the rules that tie it to the rest of the config."""
    linux = obj("linux", spec["linux"] if spec.get("linux") is not None else {})
    namespaces = _namespaces("linux.namespaces", listed(linux, "namespaces"))
    fields(
        "linux",
        linux,
        {
            "uidMappings": id_mappings,
            "gidMappings": id_mappings,
            "timeOffsets": _time_offsets,
            "devices": array_of(_device),
            "cgroupsPath": string,
            "resources": check_resources,
            "rootfsPropagation": lambda p, v: one_of(p, v, PROPAGATIONS, "propagation"),
            "seccomp": _seccomp,
            "sysctl": lambda p, v: _sysctl(p, v, namespaces, lambda: _joins_our_network(linux)),
            "maskedPaths": array_of(abspath),
            "readonlyPaths": array_of(abspath),
            "mountLabel": string,
            "intelRdt": _intel_rdt,
            "personality": _personality,
            "netDevices": _net_devices,
            "memoryPolicy": _memory_policy,
        },
    )
    _cross_checks(spec, linux, namespaces)
    if posix.geteuid() != 0:
        _rootless(spec, linux, namespaces)


_INTEL_RDT = struct(
    {
        "closID": string,
        "l3CacheSchema": string,
        "memBwSchema": string,
        "schemata": strings,
        "enableMonitoring": boolean,
        "enableCMT": boolean,
        "enableMBM": boolean,
    }
)


def _intel_rdt(path: str, value: object) -> None:
    """linux.intelRdt's shape, then its rules (galley.oci.resctrl; the host is asked at
    create)."""
    _INTEL_RDT(path, value)
    from galley.oci import resctrl  # noqa: PLC0415 - intelRdt only

    resctrl.check(obj(path, value))


def _rootless(spec: dict[str, Any], linux: dict[str, Any], namespaces: set[str]) -> None:
    """What a caller that is not root needs (runc's rootless checks): a user namespace, whose
    root the container's is (only there may it mount, or make namespaces), and mount options
    that name only ids mapped there (the kernel's EINVAL would not say which)."""
    if "user" not in namespaces:
        raise fail(
            "linux.namespaces",
            "rootless container requires user namespaces (galley-runc is not root: only the"
            " container's own user namespace gives it the rights to build the container)",
        )
    ranges = {
        key: [(m["containerID"], m["size"]) for m in linux.get(field) or []]
        for key, field in (("uid", "uidMappings"), ("gid", "gidMappings"))
    }
    for index, mount in enumerate(spec.get("mounts") or []):
        for option in mount.get("options") or []:
            key, _, value = option.partition("=")
            if key not in ranges or not (value.isascii() and value.isdigit()) or not ranges[key]:
                continue
            if not any(first <= int(value) < first + size for first, size in ranges[key]):
                raise fail(
                    f"mounts[{index}].options",
                    f"{option}: cannot specify {key}= mount options for unmapped {key} in"
                    " rootless containers",
                )


def _personality(path: str, value: object) -> None:
    d = obj(path, value)
    one_of(f"{path}.domain", required(path, d, "domain"), ("LINUX", "LINUX32"), "domain")
    fields(path, d, {"flags": strings})
    if d.get("flags"):
        raise fail(f"{path}.flags", "no personality flags are supported")


def _net_devices(path: str, value: object) -> None:
    """linux.netDevices (1.3): host interface name -> {"name": its name in the container}."""
    names: set[str] = set()
    for host_name, device in obj(path, value).items():
        p = f"{path}.{host_name}"
        _interface_name(p, host_name)
        fields(p, obj(p, device), {"name": lambda q, v: _interface_name(q, string(q, v), True)})
        name = device.get("name") or host_name
        if name in names:
            raise fail(p, f'a second interface called "{name}" in the container')
        names.add(name)


def _interface_name(path: str, name: str, empty: bool = False) -> None:
    """The kernel's rule for interface names (dev_valid_name); empty: "" is allowed."""
    if empty and not name:
        return
    if (
        not name
        or len(name.encode()) > 15
        or name in {".", ".."}
        or any(c in b"/: \t\n\v\f\r" for c in name.encode())  # the kernel's bytes
    ):
        rule = '1-15 bytes, not "." or "..", without "/", ":" or spaces'
        raise fail(path, f'"{name}" is not a valid network interface name ({rule})')


def _memory_policy(path: str, value: object) -> None:
    """linux.memoryPolicy (1.3): set_mempolicy(2) mode, nodes and flags."""
    from galley.oci.scheduling import memory_policy_args  # noqa: PLC0415 - only where set

    memory_policy_args(obj(path, value))
