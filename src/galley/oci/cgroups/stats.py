"""Usage counters read from cgroup files, in the shape of runc's `events --stats` "data".

    {"cpu": {"usage": {total, percpu, percpu_kernel, percpu_user, kernel, user},
             "throttling": {periods, throttled_periods, throttled_time}},
     "memory": {"cache", "usage": {limit, usage, max, failcnt}, "swap": {...},
                "kernel": {...}, "kernelTCP": {...}, "raw": {memory.stat}},
     "pids": {current, limit},
     "blkio": {"ioServiceBytesRecursive": [{major, minor, op, value}],
               "ioServicedRecursive": [...]},
     "hugetlb": {"2MB": {usage, max, failcnt}}}

Times are nanoseconds (v2's microsecond counters are converted); a limit of "max" reads as
2**64-1 as runc prints it for v1's unlimited values.
"""

from __future__ import annotations

import posix

from galley.kernel import pathnames
from galley.oci.cgroups.manager import procs, read_int, read_keyed
from galley.oci.cgroups.record import read

UNLIMITED = 2**64 - 1
_HUGEPAGES = "/sys/kernel/mm/hugepages"


def hugepage_sizes() -> list[str]:
    """The host's huge page sizes as cgroup files name them ("2MB", "1GB")."""
    try:
        names = posix.listdir(_HUGEPAGES)
    except FileNotFoundError:
        return []
    sizes = []
    for name in sorted(names):
        kb = int(name.removeprefix("hugepages-").removesuffix("kB"))
        for unit, scale in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
            if kb % scale == 0:
                sizes.append(f"{kb // scale}{unit}")
                break
    return sizes


def _entry(usage: int, limit: int, peak: int, failcnt: int) -> dict[str, int]:
    return {"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt}


def _memory_v1(d: str) -> dict[str, object]:
    def entry(prefix: str) -> dict[str, int]:
        if not pathnames.exists(pathnames.join(d, f"{prefix}.usage_in_bytes")):
            return _entry(0, 0, 0, 0)  # no such accounting (swap, kmem), or no cgroup: runc's zeros
        return _entry(
            read_int(d, f"{prefix}.usage_in_bytes"),
            read_int(d, f"{prefix}.limit_in_bytes", UNLIMITED),
            read_int(d, f"{prefix}.max_usage_in_bytes"),
            read_int(d, f"{prefix}.failcnt"),
        )

    raw = read_keyed(d, "memory.stat")
    return {
        "cache": raw.get("total_cache", raw.get("cache", 0)),
        "usage": entry("memory"),
        "swap": entry("memory.memsw"),
        "kernel": entry("memory.kmem"),
        "kernelTCP": entry("memory.kmem.tcp"),
        "raw": raw,
    }


def _percpu(d: str, name: str) -> list[int]:
    try:
        return [int(v) for v in read(d, name).split()]
    except OSError:
        return []


def _cpu_v1(cpu: str | None, cpuacct: str | None) -> dict[str, object]:
    usage: dict[str, object] = {}
    if cpuacct is not None:
        ticks = posix.sysconf("SC_CLK_TCK")
        times = read_keyed(cpuacct, "cpuacct.stat")
        usage = {
            "total": read_int(cpuacct, "cpuacct.usage"),
            "percpu": _percpu(cpuacct, "cpuacct.usage_percpu"),
            "percpu_kernel": _percpu(cpuacct, "cpuacct.usage_percpu_sys"),
            "percpu_user": _percpu(cpuacct, "cpuacct.usage_percpu_user"),
            "kernel": times.get("system", 0) * 1_000_000_000 // ticks,
            "user": times.get("user", 0) * 1_000_000_000 // ticks,
        }
    stat = read_keyed(cpu, "cpu.stat") if cpu is not None else {}
    throttling = {
        "periods": stat.get("nr_periods", 0),
        "throttled_periods": stat.get("nr_throttled", 0),
        "throttled_time": stat.get("throttled_time", 0),
    }
    return {"usage": usage, "throttling": throttling}


def _blkio_v1(d: str) -> dict[str, object]:
    def entries(name: str) -> list[dict[str, object]]:
        try:
            lines = read(d, name).splitlines()
        except OSError:
            return []
        out: list[dict[str, object]] = []
        for line in lines:
            fields = line.split()
            if len(fields) == 3 and ":" in fields[0]:
                major, minor = fields[0].split(":")
                out.append(
                    {
                        "major": int(major),
                        "minor": int(minor),
                        "op": fields[1],
                        "value": int(fields[2]),
                    }
                )
        return out

    return {
        "ioServiceBytesRecursive": entries("blkio.throttle.io_service_bytes_recursive"),
        "ioServicedRecursive": entries("blkio.throttle.io_serviced_recursive"),
    }


def _pids(d: str) -> dict[str, int]:
    """pids.current and pids.max; without the pids controller, the processes counted (as runc)."""
    if not pathnames.exists(pathnames.join(d, "pids.current")):
        return {"current": len(procs(d)), "limit": 0}
    return {"current": read_int(d, "pids.current"), "limit": read_int(d, "pids.max")}


def hugetlb_v1(d: str) -> dict[str, object]:
    """hugetlb counters of a v1 hugetlb cgroup."""
    return {
        size: {
            "usage": read_int(d, f"hugetlb.{size}.usage_in_bytes"),
            "max": read_int(d, f"hugetlb.{size}.max_usage_in_bytes"),
            "failcnt": read_int(d, f"hugetlb.{size}.failcnt"),
        }
        for size in hugepage_sizes()
    }


def hugetlb_v2(d: str) -> dict[str, object]:
    """hugetlb counters of a cgroup2 directory: usage, and failcnt from events. cgroup2 keeps
    no peak, v1's "max" (max_usage_in_bytes), so runc leaves it out there; hugetlb.<size>.max
    is the limit, another thing."""
    return {
        size: {
            "usage": read_int(d, f"hugetlb.{size}.current"),
            "failcnt": read_keyed(d, f"hugetlb.{size}.events").get("max", 0),
        }
        for size in hugepage_sizes()
        if pathnames.exists(pathnames.join(d, f"hugetlb.{size}.current"))
    }


def _cpu_list(text: str) -> list[int]:
    """ "0-2,5" → [0, 1, 2, 5]."""
    out: list[int] = []
    for part in text.split(","):
        if part:
            first, _, last = part.partition("-")
            out.extend(range(int(first), int(last or first) + 1))
    return out


# cpuset's fields in the order runc's CPUSet type prints them: the two lists, and v1's flags.
_CPU_LISTS = ("cpus", "mems")
_CPUSET_FIELDS = (
    "cpus",
    "cpu_exclusive",
    "mems",
    "mem_hardwall",
    "mem_exclusive",
    "memory_migrate",
    "memory_spread_page",
    "memory_spread_slab",
    "memory_pressure",
    "sched_load_balance",
    "sched_relax_domain_level",
)


def _cpuset(d: str, suffix: str = "") -> dict[str, object]:
    """cpus and mems as lists (v2 reads the .effective files), plus v1's flag files."""
    out: dict[str, object] = {}
    for key in _CPU_LISTS if suffix else _CPUSET_FIELDS:
        if key not in _CPU_LISTS:
            out[key] = read_int(d, f"cpuset.{key}")
            continue
        try:
            out[key] = _cpu_list(read(d, f"cpuset.{key}{suffix}"))
        except OSError:
            continue
    return out


def v1_stats(paths: dict[str, str]) -> dict[str, object]:
    """Stats of a v1 cgroup given its per-controller directories."""
    out: dict[str, object] = {
        "cpu": _cpu_v1(paths.get("cpu"), paths.get("cpuacct")),
        "cpuset": _cpuset(paths["cpuset"]) if "cpuset" in paths else {},
        "memory": _memory_v1(paths["memory"]) if "memory" in paths else {},
        "pids": _pids(paths["pids"]) if "pids" in paths else {},
        "blkio": _blkio_v1(paths["blkio"]) if "blkio" in paths else {},
        "hugetlb": hugetlb_v1(paths["hugetlb"]) if "hugetlb" in paths else {},
    }
    return out


# Fields runc leaves out when zero or empty (Go's omitempty), by their key in any nested
# object but the map of raw counters (memory.raw), whose entries runc prints all.
_OMIT_WHEN_ZERO = frozenset(
    {"usage", "max", "total", "percpu", "percpu_kernel", "percpu_user", "current", "limit"}
    | {"periods", "throttled_periods", "throttled_time", "cache"}
    | {"ioServiceBytesRecursive", "ioServicedRecursive"}
)
_ALWAYS = frozenset({("usage", "limit"), ("swap", "limit"), ("kernel", "limit")})
_RAW_COUNTERS = frozenset({"raw"})
# What runc's types hold as Go maps, which its encoder writes in the order of their keys.
_MAPS = frozenset({"raw", "hugetlb"})
# blkio's entries ({major, minor, op, value}) leave out each field that is zero, as runc's.
_ENTRY_LISTS = frozenset({"ioServiceBytesRecursive", "ioServicedRecursive"})


def for_events(stats: dict[str, object]) -> dict[str, object]:
    """The stats as `events --stats` prints them: runc's omissions, and no network data."""
    return {**runc_shape(stats), "intel_rdt": {}, "network_interfaces": None}


def runc_shape(stats: dict[str, object], parent: str = "") -> dict[str, object]:
    """Drop zero and empty values where runc's JSON omits them; keep memory limits."""
    out: dict[str, object] = {}
    for key, value in stats.items():
        if isinstance(value, dict) and key in _MAPS:
            value = dict(sorted(value.items()))
        if isinstance(value, dict) and key not in _RAW_COUNTERS:
            value = runc_shape(value, key)
        if key in _ENTRY_LISTS and isinstance(value, list):
            value = [{k: v for k, v in entry.items() if v not in (0, "")} for entry in value]
        keep = (parent, key) in _ALWAYS or key not in _OMIT_WHEN_ZERO
        if value in (0, [], {}) and not keep and key != "failcnt":
            continue
        out[key] = value
    return out


def _cpu_v2(d: str) -> dict[str, object]:
    stat = read_keyed(d, "cpu.stat")
    return {
        "usage": {
            "total": stat.get("usage_usec", 0) * 1000,
            "kernel": stat.get("system_usec", 0) * 1000,
            "user": stat.get("user_usec", 0) * 1000,
        },
        "throttling": {
            "periods": stat.get("nr_periods", 0),
            "throttled_periods": stat.get("nr_throttled", 0),
            "throttled_time": stat.get("throttled_usec", 0) * 1000,
        },
    }


def _memory_v2(d: str) -> dict[str, object]:
    raw = read_keyed(d, "memory.stat")
    failcnt = read_keyed(d, "memory.events").get("max", 0)
    usage = _entry(
        read_int(d, "memory.current"),
        read_int(d, "memory.max", UNLIMITED),
        read_int(d, "memory.peak"),
        failcnt,
    )
    swap = _entry(
        read_int(d, "memory.swap.current"),
        read_int(d, "memory.swap.max", UNLIMITED),
        read_int(d, "memory.swap.peak"),
        read_keyed(d, "memory.swap.events").get("max", 0),
    )
    # v1 reports swap as memory+swap; runc adds memory to v2's swap-only numbers to match.
    swap["usage"] += usage["usage"]
    if swap["limit"] != UNLIMITED and usage["limit"] != UNLIMITED:
        swap["limit"] += usage["limit"]
    return {"cache": raw.get("file", 0), "usage": usage, "swap": swap, "raw": raw}


def _io_v2(d: str) -> dict[str, object]:
    try:
        lines = read(d, "io.stat").splitlines()
    except OSError:
        lines = []
    service_bytes: list[dict[str, object]] = []
    serviced: list[dict[str, object]] = []
    for line in lines:
        device, *pairs = line.split()
        major, minor = (int(n) for n in device.split(":"))
        values = dict(p.split("=", 1) for p in pairs)
        for key, target, op in (
            ("rbytes", service_bytes, "Read"),
            ("wbytes", service_bytes, "Write"),
            ("rios", serviced, "Read"),
            ("wios", serviced, "Write"),
        ):
            if key in values:
                target.append({"major": major, "minor": minor, "op": op, "value": int(values[key])})
    return {"ioServiceBytesRecursive": service_bytes, "ioServicedRecursive": serviced}


def v2_stats(d: str) -> dict[str, object]:
    """Stats of one cgroup2 directory."""
    return {
        "cpu": _cpu_v2(d),
        "cpuset": _cpuset(d, ".effective"),
        "memory": _memory_v2(d),
        "pids": _pids(d),
        "blkio": _io_v2(d),
        "hugetlb": hugetlb_v2(d),
    }


def oom_kills(paths: dict[str, str]) -> int:
    """OOM kills the container's memory cgroup has seen: `oom_kill` of memory.oom_control (v1)
    or of memory.events (v2); 0 where the kernel keeps no count."""
    for directory, name in (
        (paths.get("memory"), "memory.oom_control"),
        (paths.get(""), "memory.events"),
    ):
        if not directory:
            continue
        try:
            with open(pathnames.join(directory, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0
