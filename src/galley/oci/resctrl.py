"""linux.intelRdt: the container's resctrl group (Intel RDT, AMD PQoS, Arm MPAM).

    <resctrl mount>/                   the default group ("closID": "/"); info/L3 and info/MB
    │                                  say the CPU can allocate cache (CAT) and memory
    │                                  bandwidth (MBA)
    └── <closID, else container id>/   the container's class of service
        ├── schemata                   a line per resource: "L3:0=7f0;1=1f", "MB:0=20;1=70"
        ├── tasks                      the pids in the group: the init's, each exec'd one's
        │                              (a child starts in its parent's group)
        └── mon_groups/<container id>/ with enableMonitoring: the container's own counters
                                       inside a class it may share

A group the config names by closID is a class of service whoever configured the node made,
or the first container naming it with schemas; others may share it, so it stays when the
container goes (as runc leaves it). One made for the container id (no closID) is the
container's own, and delete removes it (the kernel moves what is left in a removed group to
the default one); so does its monitoring group.

The rules are runtime-spec's (config-linux.md, IntelRdt): with closID and no schema the group
must exist; an existing group given schemas must already have them (the values are compared
as numbers, per cache domain: the kernel prints "7f0" back as "07f0" on a 16-bit mask, and
keeps a bandwidth rounded up to its step); a new group is written l3CacheSchema's lines
(less any "MB:" line when memBwSchema is set), memBwSchema, then the `schemata` lines
(runtime-spec 1.3), in one write, which the kernel applies whole or not at all. Every
resource a line names must be one the CPU allocates (info/<resource>: with CDP, L3CODE and
L3DATA, not L3), and enableMonitoring needs a CPU that monitors. enableCMT and enableMBM ask
for statistics: `events` reports the group's (stats()), with what the CPU monitors, as runc
does. A name of the kernel's own files ("info", "tasks", ...) is never a group's.

No syscall of its own: the files are read and written with posix, under the mount that
/proc/self/mountinfo shows as "resctrl".
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import pathnames

TYPE_CHECKING = False  # typing costs galley-runc milliseconds; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FIELD = "linux.intelRdt"
DEFAULT_CLOS = "/"  # runtime-spec 1.3: the resctrl mount's own, default group
MONITORING = "L3_MON"  # info/'s directory where the CPU monitors (CMT, MBM)
# What the kernel keeps in a group's directory besides its subgroups: never a group's name
# (a container called "info" would otherwise take the info directory for its own group).
KERNEL_NAMES = frozenset(
    {"info", "mon_data", "mon_groups", "tasks", "cpus", "cpus_list", "schemata", "mode", "size"}
)


class Resctrl:
    """One mounted resctrl filesystem: its files, read and written as the kernel wants them
    (a pid per write to tasks; schemata lines each ending in a newline, all of one write
    applied or none; an error's reason in info/last_cmd_status)."""

    def __init__(self, mount: str) -> None:
        self.mount = mount

    def has(self, resource: str) -> bool:
        """Whether the CPU can allocate this resource ("L3": cache, "MB": bandwidth)."""
        return pathnames.isdir(pathnames.join(self.mount, "info", resource))

    def group(self, clos: str) -> str:
        """The directory of a class of service."""
        return self.mount if clos == DEFAULT_CLOS else pathnames.join(self.mount, clos)

    def make(self, path: str) -> bool:
        """Make a group; False when it was there."""
        try:
            self.mkdir(path)
        except FileExistsError:
            return False
        except OSError as err:
            raise FailedPrecondition(f"{FIELD}: making {path}: {self._reason(err)}") from err
        return True

    def remove(self, path: str) -> None:
        """Remove a group; one already gone is fine."""
        try:
            self.rmdir(path)
        except FileNotFoundError:
            pass

    def mkdir(self, path: str) -> None:
        """The kernel fills a new group with its files."""
        posix.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        """The kernel moves what is still in a removed group to the group above it."""
        posix.rmdir(path)

    def read(self, path: str, name: str) -> str:
        return pathnames.read_text(pathnames.join(path, name))

    def write(self, path: str, name: str, value: str) -> None:
        """Write one value; the error says what the kernel found wrong with it."""
        try:
            self.put(path, name, value)
        except OSError as err:
            raise FailedPrecondition(
                f"{FIELD}: writing {value!r} to {pathnames.join(path, name)}: " + self._reason(err)
            ) from err

    def put(self, path: str, name: str, value: str) -> None:
        """The write itself: one write(2) of value to the group's file."""
        fd = posix.open(pathnames.join(path, name), posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, value.encode())
        finally:
            posix.close(fd)

    def _reason(self, err: OSError) -> str:
        """The kernel's own words for the last refusal, else the error's."""
        try:
            status = self.read(pathnames.join(self.mount, "info"), "last_cmd_status").strip()
        except OSError:
            status = ""
        return status if status and status != "ok" else os_error_text(err)


def find(mountinfo: str = "/proc/self/mountinfo") -> Resctrl | None:
    """The resctrl filesystem this process sees (the last visible mount), or None."""
    from galley.oci.cgroups.layout import visible_mounts  # noqa: PLC0415 - intelRdt only

    text = pathnames.read_text(mountinfo, "surrogateescape")
    mounts = [mount for _fstype, _options, _root, mount in visible_mounts(text, {"resctrl"})]
    return Resctrl(mounts[-1]) if mounts else None


def check(rdt: dict[str, Any]) -> None:
    """The rules a config's intelRdt must keep whatever the host (validation)."""
    clos = rdt.get("closID")  # "" is none, as in runc (Go's zero value)
    if clos and clos != DEFAULT_CLOS and (clos in {".", ".."} | KERNEL_NAMES or "/" in clos):
        raise InvalidArgument(
            f"{FIELD}.closID: invalid class of service {clos!r} (a directory name under the"
            ' resctrl mount, or "/" for its default group)'
        )
    if rdt.get("memBwSchema") is not None:
        check_bandwidth(f"{FIELD}.memBwSchema", rdt["memBwSchema"])
    for i, line in enumerate(rdt.get("schemata") or []):
        if not line or "\n" in line:
            raise InvalidArgument(f"{FIELD}.schemata[{i}]: {line!r} is not one schemata line")


def check_bandwidth(name: str, schema: str) -> None:
    """A memory bandwidth schema is one "MB:" line (runtime-spec's MUST)."""
    if not schema.startswith("MB:") or "\n" in schema:
        raise InvalidArgument(f'{name}: {schema!r} is not one "MB:" line')


def schemata_lines(rdt: dict[str, Any]) -> list[str]:
    """What the group's schemata must hold, in the order written."""
    memory = rdt.get("memBwSchema") or ""
    lines = [line for line in (rdt.get("l3CacheSchema") or "").split("\n") if line.strip()]
    if memory:
        lines = [line for line in lines if not line.startswith("MB:")] + [memory]
    return lines + list(rdt.get("schemata") or [])


class Group:
    """A container's place in resctrl: its class of service's directory, whether it was made
    for this container (and goes with it), and its monitoring group if it has one."""

    __slots__ = ("fs", "monitor", "owned", "path")

    def __init__(self, fs: Resctrl, path: str, *, owned: bool, monitor: str = "") -> None:
        self.fs = fs
        self.path = path
        self.owned = owned
        self.monitor = monitor

    def join(self, pid: int) -> None:
        """Move a process in: its class of service, then its monitoring group (the kernel
        takes a task into a monitoring group only from the group above it)."""
        self.fs.write(self.path, "tasks", str(pid))
        if self.monitor:
            self.fs.write(self.monitor, "tasks", str(pid))

    def made_for_container(self) -> list[str]:
        """The directories that are the container's own: what its delete removes."""
        return [path for path in (self.monitor, self.path if self.owned else "") if path]

    def remove(self) -> None:
        """Remove what was made for the container (its monitoring group first)."""
        for path in self.made_for_container():
            self.fs.remove(path)


def remove_noted(paths: list[object], container_id: str) -> None:
    """What a killed create noted it would make (creating.json): removed where it is still a
    group of this container's under a resctrl mount, never anything else."""
    fs = find()
    if fs is None:  # unmounted: its groups went with it
        return
    for path in paths:
        if (
            isinstance(path, str)
            and path.startswith(f"{fs.mount}/")
            and ".." not in path.split("/")
            and pathnames.basename(path) == container_id
            and container_id not in KERNEL_NAMES
        ):
            fs.remove(path)


def locate(rdt: dict[str, Any], container_id: str, fs: Resctrl | None = None) -> Group:
    """Where the container is (or is to be): for exec, delete and update."""
    fs = fs or _host()
    clos = rdt.get("closID")
    path = fs.group(clos or container_id)
    monitor = ""
    if rdt.get("enableMonitoring"):
        monitor = pathnames.join(path, "mon_groups", container_id)
    return Group(fs, path, owned=not clos, monitor=monitor)


def set_up(rdt: dict[str, Any], container_id: str, fs: Resctrl | None = None) -> Group:
    """The container's group made (or found) and its schemata written; call remove() on the
    result to undo it. Nothing is made when the host cannot apply the config."""
    fs = fs or _host()
    require(fs, rdt)
    lines = schemata_lines(rdt)
    group = locate(rdt, container_id, fs)
    clos = rdt.get("closID")
    if not clos and container_id in KERNEL_NAMES:
        raise FailedPrecondition(
            f"{FIELD}: the container's own group would be {group.path}, a file of the resctrl"
            " filesystem's; give the container another id, or a closID"
        )
    if clos and not lines and not pathnames.isdir(group.path):
        raise FailedPrecondition(
            f"{FIELD}.closID: class of service {clos!r} does not exist ({group.path}): with"
            " no schema it must be configured before the container"
        )
    made = group.path != fs.mount and fs.make(group.path)
    try:
        if lines and not made and clos:
            _compare(fs, group.path, lines)
        elif lines:
            write_schemata(fs, group.path, lines)
        if group.monitor:
            fs.make(group.monitor)
    except BaseException:
        group.remove()
        if made and not group.owned:  # a class this create made, still unused
            fs.remove(group.path)
        raise
    return group


def update(
    rdt: dict[str, Any] | None, schemas: dict[str, str], container_id: str, pid: int
) -> Callable[[], None]:
    """`update --l3-cache-schema/--mem-bw-schema`: the schemas written to the container's
    group in one write (the kernel applies all of it or none); a container whose config had
    no intelRdt gets a group of its own first, with its init moved in (as runc 1.1 does).
    Returns what undoes it, for an update whose cgroup part then fails; on its own failure
    nothing is left changed. The default group ("/") is the host's: it is not written."""
    fs = _host()
    if rdt is not None and rdt.get("closID") == DEFAULT_CLOS:
        raise FailedPrecondition(
            f'{FIELD}.closID is "/", the host\'s default group, which every process outside'
            " another group shares: galley-runc does not change its schemata"
        )
    require(fs, schemas)
    lines = schemata_lines(schemas)
    group = set_up({}, container_id, fs) if rdt is None else locate(rdt, container_id, fs)
    try:
        if rdt is None:
            group.join(pid)
        before = [line.strip() for line in fs.read(group.path, "schemata").splitlines()]
        write_schemata(fs, group.path, lines)
    except BaseException:
        if rdt is None:
            group.remove()  # its init goes back to the default group, where it was
        raise

    def undo() -> None:
        if rdt is None:
            group.remove()
            return
        changed = {line.partition(":")[0].strip() for line in lines}
        previous = [line for line in before if line.partition(":")[0] in changed]
        write_schemata(fs, group.path, previous)

    return undo


def write_schemata(fs: Resctrl, path: str, lines: list[str]) -> None:
    """A group's schemata lines, in one write: the kernel applies all of it or none."""
    fs.write(path, "schemata", "".join(line + "\n" for line in lines))


def require(fs: Resctrl, rdt: dict[str, Any]) -> None:
    """The schemas given name resources this host's CPU allocates (with CDP, L3CODE and
    L3DATA instead of L3), and monitoring is there if asked for."""
    for field in ("l3CacheSchema", "memBwSchema", "schemata"):
        value = rdt.get(field) or []
        for line in value.split("\n") if isinstance(value, str) else value:
            resource = line.partition(":")[0].strip()
            if resource and not fs.has(resource):
                what = _ALLOCATION.get(resource, f"{resource!r} allocation")
                raise FailedPrecondition(
                    f"{FIELD}.{field} is set, but this host's Intel RDT has no {what}"
                    f" ({pathnames.join(fs.mount, 'info', resource)} is missing)"
                )
    if rdt.get("enableMonitoring") and not fs.has(MONITORING):
        raise FailedPrecondition(
            f"{FIELD}.enableMonitoring is set, but this host's Intel RDT does not monitor"
            f" ({pathnames.join(fs.mount, 'info', MONITORING)} is missing)"
        )


_ALLOCATION = {"L3": "cache allocation (CAT)", "MB": "bandwidth allocation (MBA)"}


# info/<resource>'s files that `events` reports, by runc's names (all whole numbers but
# cbm_mask, a hexadecimal mask kept as the kernel spells it).
_INFO = {
    "L3": ("l3_cache_info", ("cbm_mask", "min_cbm_bits", "num_closids")),
    "MB": ("mem_bw_info", ("bandwidth_gran", "delay_linear", "min_bandwidth", "num_closids")),
}
_SCHEMA = {"L3": "l3_cache_schema", "MB": "mem_bw_schema"}
# mon_data/<domain>/'s counters, per list runc's `events` has for them.
_MONITORS = {
    "mbm_stats": ("mbm_total_bytes", "mbm_local_bytes"),
    "cmt_stats": ("llc_occupancy",),
}


def stats(rdt: dict[str, Any], container_id: str, fs: Resctrl | None = None) -> dict[str, object]:
    """`events`' "intel_rdt": what the CPU allocates (info/), the default group's schema
    and the container's for each, and the counters of each L3 domain (mon_data/mon_L3_*)
    where the CPU monitors, from the container's monitoring group if it has one. A file
    that cannot be read (the group removed behind galley's back) is a FailedPrecondition."""
    fs = fs or _host()
    try:
        return _stats(rdt, container_id, fs)
    except OSError as err:
        raise FailedPrecondition(
            f"{FIELD}: reading the container's group: {os_error_text(err)}"
        ) from err


def _stats(rdt: dict[str, Any], container_id: str, fs: Resctrl) -> dict[str, object]:
    group = locate(rdt, container_id, fs)
    out: dict[str, object] = {}
    # Each schemata file's lines, less the spaces the kernel aligns names with (it pads
    # bandwidths too: "MB:0=100;1= 50"), read once for both resources.
    schemata = {
        suffix: [line.strip() for line in fs.read(path, "schemata").splitlines()]
        for suffix, path in (("_root", fs.mount), ("", group.path))
    }
    for resource, (info_key, names) in _INFO.items():
        if not fs.has(resource):
            continue
        out[info_key] = _info(fs, resource, names)
        # The last line whose resource starts with "L3" (L3CODE, L3DATA with CDP) or "MB", as
        # runc reports it; AMD's SMBA is another resource, which runc's substring match
        # would take for MB.
        for suffix, lines in schemata.items():
            mine = [line for line in lines if line.startswith(resource)]
            if mine:
                out[_SCHEMA[resource] + suffix] = mine[-1]
    features = _monitored(fs)
    for key, counters in _MONITORS.items():
        if features.isdisjoint(counters):
            continue
        data = pathnames.join(group.monitor or group.path, "mon_data")
        try:
            domains = sorted(d for d in posix.listdir(data) if d.startswith("mon_L3_"))
        except FileNotFoundError:  # a group the kernel keeps no counters for
            continue
        out[key] = [
            {name: _counter(fs, pathnames.join(data, domain), name, features) for name in counters}
            for domain in domains
        ]
    return out


def _info(fs: Resctrl, resource: str, names: tuple[str, ...]) -> dict[str, int | str]:
    """info/<resource>'s values, less those the kernel does not have or has as 0."""
    out: dict[str, int | str] = {}
    for name in names:
        try:
            text = fs.read(pathnames.join(fs.mount, "info", resource), name).strip()
        except FileNotFoundError:
            continue
        value = int(text) if text.isdigit() else text
        if value:
            out[name] = value
    return out


def _monitored(fs: Resctrl) -> frozenset[str]:
    """The events this CPU counts (info/L3_MON/mon_features), none where it counts none."""
    try:
        return frozenset(
            fs.read(pathnames.join(fs.mount, "info", MONITORING), "mon_features").split()
        )
    except FileNotFoundError:
        return frozenset()


def _counter(fs: Resctrl, domain: str, name: str, features: frozenset[str]) -> int:
    """One cache domain's counter; 0 for one the CPU does not count (runc's zero value) or
    has no number for now (the kernel reads "Unavailable" until it has one)."""
    text = fs.read(domain, name).strip() if name in features else ""
    return int(text) if text.isdigit() else 0


def _host() -> Resctrl:
    fs = find()
    if fs is None:
        raise FailedPrecondition(
            f"{FIELD}: no resctrl filesystem is mounted: Intel RDT is not supported or not"
            " enabled on this host (mount -t resctrl resctrl /sys/fs/resctrl)"
        )
    return fs


def _domains(line: str) -> tuple[str, dict[str, int]]:
    """A schemata line as its resource and each domain's value (hexadecimal masks, decimal
    bandwidths), so that spellings of one value compare equal."""
    resource, _, rest = line.strip().partition(":")
    base = 10 if "MB" in resource else 16  # MB, SMBA: bandwidths; L3, L2, L3CODE...: masks
    values = {}
    for item in rest.split(";"):
        domain, _, value = item.partition("=")
        try:
            values[domain.strip()] = int(value.strip(), base)
        except ValueError:
            raise InvalidArgument(f"{FIELD}: {line!r} is not a schemata line") from None
    return resource.strip(), values


def _compare(fs: Resctrl, path: str, lines: list[str]) -> None:
    """An existing class of service must already have the schemas a config gives it. A
    bandwidth the kernel rounded up to its step (info/MB/bandwidth_gran: 25 is kept as 30)
    matches what was asked for."""
    current = dict(_domains(line) for line in fs.read(path, "schemata").splitlines() if ":" in line)
    for line in lines:
        resource, wanted = _domains(line)
        have = current.get(resource, {})
        step = _granularity(fs, resource)
        if any(
            have.get(domain) not in {value, -(-value // step) * step}
            for domain, value in wanted.items()
        ):
            raise FailedPrecondition(
                f"{FIELD}: class of service {pathnames.basename(path)!r} exists with other"
                f" schemata than {line!r} ({path}/schemata holds"
                f" {fs.read(path, 'schemata').strip()!r})"
            )


def _granularity(fs: Resctrl, resource: str) -> int:
    """The step a bandwidth resource's values are rounded up to (1: none, or a mask)."""
    step = _info(fs, resource, ("bandwidth_gran",)).get("bandwidth_gran")
    return step if isinstance(step, int) else 1
