"""Validation of linux.resources (config.json, and what `update --resources` reads)."""

from __future__ import annotations

from galley.oci.validate_fields import (
    I64,
    INT64_MAX,
    MAX_CPUS,
    MAX_NODES,
    U16,
    U32,
    U64,
    array_of,
    boolean,
    cpuset,
    fail,
    fields,
    int_range,
    integer,
    obj,
    one_of,
    required,
    string,
    string_map,
    struct,
)

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _device_rule(path: str, value: object) -> None:
    d = obj(path, value)
    boolean(f"{path}.allow", required(path, d, "allow"))
    if d.get("type") is not None:
        one_of(f"{path}.type", d["type"], ("a", "c", "b"), "device type")
    for key in ("major", "minor"):  # int64, -1 (or absent) for any
        if d.get(key) is not None:
            integer(f"{path}.{key}", d[key], -1, INT64_MAX)
    access = string(f"{path}.access", d.get("access") or "")
    if not access:  # runc refuses it; "no access" must not read as "rwm"
        raise fail(f"{path}.access", "cannot be empty: give r, w and/or m")
    if not set(access) <= set("rwm"):
        raise fail(f"{path}.access", f'"{access}" must be a combination of r, w and m')


def _throttle(path: str, value: object) -> None:
    d = obj(path, value)
    for key in ("major", "minor"):
        integer(f"{path}.{key}", required(path, d, key), 0, INT64_MAX)
    integer(f"{path}.rate", required(path, d, "rate"), 0)


def _weight_device(path: str, value: object) -> None:
    d = obj(path, value)
    for key in ("major", "minor"):
        integer(f"{path}.{key}", required(path, d, key), 0, INT64_MAX)
    fields(path, d, {"weight": U16, "leafWeight": U16})


def _block_io(path: str, value: object) -> None:
    d = obj(path, value)
    fields(path, d, {"weight": U16, "leafWeight": U16})
    fields(path, d, {"weightDevice": array_of(_weight_device)})
    for key in ("Read", "Write"):
        for unit in ("Bps", "IOPS"):
            name = f"throttle{key}{unit}Device"
            fields(path, d, {name: array_of(_throttle)})


def _hugepage(path: str, value: object) -> None:
    d = obj(path, value)
    string(f"{path}.pageSize", required(path, d, "pageSize"), empty=False)
    integer(f"{path}.limit", required(path, d, "limit"), 0)


_RDMA_LIMITS = struct({"hcaHandles": U32, "hcaObjects": U32})


def _rdma(path: str, value: object) -> None:
    """Per device: the most HCA handles and objects, each a uint32."""
    for device, limits in obj(path, value).items():
        _RDMA_LIMITS(f"{path}.{device}", limits)


def _priority(path: str, value: object) -> None:
    d = obj(path, value)
    string(f"{path}.name", required(path, d, "name"), empty=False)
    U32(f"{path}.priority", required(path, d, "priority"))


def _network(path: str, value: object) -> None:
    d = obj(path, value)
    fields(path, d, {"classID": U32, "priorities": array_of(_priority)})


def check_resources(path: str, value: object) -> None:
    """linux.resources (also what `update --resources` reads)."""
    d = obj(path, value)
    # bytes, or -1 for no limit
    memory = dict.fromkeys(
        ("limit", "reservation", "swap", "kernel", "kernelTCP"), int_range(-1, 2**63 - 1)
    )
    memory.update(
        swappiness=int_range(0, 100),
        disableOOMKiller=boolean,
        useHierarchy=boolean,
        checkBeforeUpdate=boolean,
    )
    cpu: dict[str, Callable[[str, Any], object]] = {
        "shares": U64,
        "quota": I64,
        "burst": U64,
        "period": U64,
        "realtimeRuntime": I64,
        "realtimePeriod": U64,
        "cpus": cpuset(MAX_CPUS, "CPU"),
        "mems": cpuset(MAX_NODES, "memory node"),
        "idle": int_range(0, 1),  # the kernel takes 0 or 1 (SCHED_IDLE for the group)
    }
    fields(
        path,
        d,
        {
            "devices": array_of(_device_rule),
            "memory": struct(memory),
            "cpu": struct(cpu),
            "pids": struct({"limit": I64}),
            "blockIO": _block_io,
            "hugepageLimits": array_of(_hugepage),
            "network": _network,
            "rdma": _rdma,
            "unified": string_map,
        },
    )
