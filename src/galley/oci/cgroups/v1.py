"""cgroup v1 (and hybrid): one directory per mounted hierarchy, limits in each controller's files.

    paths: {"cpu": /sys/fs/cgroup/cpu/<p>, "memory": .../memory/<p>, ..., "name=systemd": ...}
    unified: a V2Manager for the cgroup2 mount of a hybrid host (here it carries hugetlb)

Controllers not mounted are absent from `paths`; asking for their resources is an error, while
an unset resource is skipped. So are those a caller that is not root may not make a cgroup in
(`denied`, galley.oci.cgroups.rootless); with none left at all, the container has no cgroup.
A new cpuset cgroup starts with empty cpus/mems, so every level created gets its parent's
values first, as runc does.
"""

from __future__ import annotations

import errno
import time

from galley.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from galley.kernel import pathnames
from galley.oci.cgroups import devices, manager, record
from galley.oci.cgroups.devices import Rule
from galley.oci.cgroups.manager import Denied, read_int, write
from galley.oci.cgroups.record import read
from galley.oci.cgroups.v2 import V2Manager

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from typing import Any

    from galley.oci.spec import CPU, BlockIO, Memory, Resources


def _limit(value: int) -> int:
    return -1 if value < 0 else value


class V1Manager:
    """A container's cgroups across the v1 hierarchies (plus the hybrid cgroup2 part)."""

    def __init__(
        self,
        paths: dict[str, str],
        unified: V2Manager | None = None,
        device_rules: list[Rule] | None = None,
        denied: list[str] | None = None,
        *,
        refusal: str | None = None,
    ) -> None:
        self._paths = dict(paths)
        self.unified = unified
        self.device_rules = list(device_rules or [])
        self.denied = sorted(denied or [])
        self.refusal = refusal  # what a limit on a denied hierarchy says, if not the default

    @property
    def paths(self) -> dict[str, str]:
        """Controller → directory, with "" for the hybrid cgroup2 directory."""
        extra = {"": self.unified.directory} if self.unified is not None else {}
        return {**self._paths, **extra}

    def _dir(self, controller: str, field: str) -> str:
        try:
            return self._paths[controller]
        except KeyError:
            if controller in self.denied or "*" in self.denied:
                return Denied.of(  # an error once something is written there
                    controller,
                    FailedPrecondition(
                        f"{field}: "
                        + (
                            self.refusal
                            or f"cannot set {controller} limit: container could not join or"
                            " create cgroup (galley-runc is not root, and may not make one there)"
                        )
                    ),
                )
            raise InvalidArgument(
                f"{field}: the {controller} cgroup controller is not mounted on this host"
            ) from None

    def exists(self) -> bool:
        """Whether the cgroup exists (judged, as runc does, by one hierarchy)."""
        probe = self._paths.get("devices") or next(iter(self._paths.values()), "")
        return bool(probe) and pathnames.isdir(probe)

    def create(self) -> None:
        """Make the directories in every hierarchy (and the hybrid cgroup2 one)."""
        for controller, directory in sorted(self._paths.items()):
            pathnames.makedirs(directory, 0o755, exist_ok=True)
            if controller == "cpuset":
                fill_cpusets(directory)
        if self.unified is not None:
            self.unified.create()

    def join(self, pid: int, sub: dict[str, str] | None = None) -> None:
        """Move pid into the cgroup in every hierarchy; with sub (exec --cgroup: controller,
        or "" for all, → a path below the container's cgroup), into those sub-cgroups."""
        sub = sub or {}
        unknown = sorted(set(sub) - set(self._paths) - {""})
        if unknown:
            raise InvalidArgument(f"--cgroup: unknown controller {unknown[0]}")
        targets = {
            manager.below(directory, sub.get(controller) or sub.get("", ""), pid)
            for controller, directory in self._paths.items()
        }
        for directory in sorted(targets):
            write(directory, "cgroup.procs", pid)
        if self.unified is not None:
            self.unified.join(pid, {"": sub[""]} if sub.get("") else None)

    def apply(self, pid: int) -> None:
        """Make the directories, then move pid into each."""
        self.create()
        self.join(pid)

    def set(self, resources: Resources) -> None:
        """Write every resource the OCI struct sets."""
        if resources.get("cpu"):
            self._cpu(resources["cpu"])
        if resources.get("memory"):
            self._memory(resources["memory"])
        pids_max = manager.pids_max(resources.get("pids", {}).get("limit", 0))
        if pids_max is not None:
            write(self._dir("pids", "linux.resources.pids"), "pids.max", pids_max)
        if resources.get("blockIO"):
            self._blkio(resources["blockIO"])
        if resources.get("hugepageLimits"):
            self._hugetlb(list(resources["hugepageLimits"]))
        if resources.get("network"):
            self._network(dict(resources["network"]))
        if resources.get("devices") is not None:
            rules = devices.effective_rules(resources["devices"], self.device_rules)
            devices.write_v1(self._dir("devices", "linux.resources.devices"), rules)
        if resources.get("rdma"):
            directory = self._dir("rdma", "linux.resources.rdma")
            for line in manager.rdma_lines(resources["rdma"]):
                write(directory, "rdma.max", line)
        if resources.get("unified"):
            raise InvalidArgument(  # runc's words first: tools match "invalid configuration"
                "invalid configuration: linux.resources.unified: cannot use unified on cgroup v1"
            )

    def _cpu(self, cpu: CPU) -> None:
        field = "linux.resources.cpu"
        idle = cpu.get("idle")
        if idle == 0:  # before the shares: an idle cgroup refuses a weight
            write(self._dir("cpu", field), "cpu.idle", 0)
        if cpu.get("shares"):
            directory = self._dir("cpu", field)
            manager.write_weight(directory, "cpu.shares", cpu["shares"])
            actual = read_int(directory, "cpu.shares")
            if actual != cpu["shares"]:
                raise InvalidArgument(
                    f"{field}.shares: {cpu['shares']} is out of range (the kernel set {actual})"
                )
        self._cfs(cpu)
        if cpu.get("realtimePeriod"):
            write(self._dir("cpu", field), "cpu.rt_period_us", cpu["realtimePeriod"])
        if cpu.get("realtimeRuntime"):
            write(self._dir("cpu", field), "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        if idle:  # after the shares, which it makes the lowest weight
            write(self._dir("cpu", field), "cpu.idle", idle)
        for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            value = cpu.get(key)
            if value:
                write(self._dir("cpuset", f"{field}.{key}"), name, str(value))

    def _cfs(self, cpu: CPU) -> None:
        """period then quota. The kernel may refuse a shorter period against the old quota
        (their ratio would pass a parent's limit): then quota first, and the period again."""
        quota, period = cpu.get("quota", 0), cpu.get("period", 0)
        if not (quota or period or cpu.get("burst") is not None):
            return
        directory = self._dir("cpu", "linux.resources.cpu")
        period_later = False
        if period:
            try:
                write(directory, "cpu.cfs_period_us", period)
            except InvalidArgument:
                if not quota:
                    raise
                period_later = True
        if quota:
            write(directory, "cpu.cfs_quota_us", quota)
        if period_later:
            write(directory, "cpu.cfs_period_us", period)
        if cpu.get("burst") is not None:
            write(directory, "cpu.cfs_burst_us", cpu["burst"])

    def _memory(self, memory: Memory) -> None:
        field = "linux.resources.memory"
        directory = self._dir("memory", field)
        if memory.get("checkBeforeUpdate"):
            manager.check_usage(directory, "memory.usage_in_bytes", memory.get("limit", 0))
        _memory_and_swap(directory, memory.get("limit", 0), memory.get("swap", 0))
        if memory.get("reservation"):
            write(directory, "memory.soft_limit_in_bytes", _limit(memory["reservation"]))
        if memory.get("kernel") and pathnames.exists(
            pathnames.join(directory, "memory.kmem.limit_in_bytes")
        ):
            # Deprecated: recent kernels accept and ignore it; runc 1.1 ignores it outright, so
            # a kernel that refuses it does not fail the container either.
            try:
                write(directory, "memory.kmem.limit_in_bytes", _limit(memory["kernel"]))
            except InvalidArgument:
                pass
        if memory.get("kernelTCP"):
            write(directory, "memory.kmem.tcp.limit_in_bytes", _limit(memory["kernelTCP"]))
        swappiness = memory.get("swappiness")
        if swappiness is not None and swappiness != -1:
            if not 0 <= swappiness <= 100:
                raise InvalidArgument(f"{field}.swappiness: {swappiness} is not in 0..100")
            write(directory, "memory.swappiness", swappiness)
        disable = memory.get("disableOOMKiller")
        if disable is not None:  # false too: an update turns the killer back on
            write(directory, "memory.oom_control", int(bool(disable)))

    def _blkio(self, blkio: BlockIO) -> None:
        field = "linux.resources.blockIO"
        directory = self._dir("blkio", field)
        for key, name in (("weight", "weight"), ("leafWeight", "leaf_weight")):
            value = blkio.get(key)
            if value:
                _weight_file(directory, name, str(value), f"{field}.{key}")
        for i, device in enumerate(blkio.get("weightDevice") or []):
            for key, name in (("weight", "weight_device"), ("leafWeight", "leaf_weight_device")):
                value = device.get(key)
                if value:
                    line = f"{device['major']}:{device['minor']} {value}"
                    _weight_file(directory, name, line, f"{field}.weightDevice[{i}].{key}")
        for key, name in (
            ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
            ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
            ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
            ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"),
        ):
            for throttle in blkio.get(key) or []:  # type: ignore[attr-defined]
                write(
                    directory, name, f"{throttle['major']}:{throttle['minor']} {throttle['rate']}"
                )

    def _hugetlb(self, limits: list[Any]) -> None:
        """The limit, and the same limit on reservations where the kernel has them (5.7+),
        as runc sets both: pages reserved by mmap but not yet faulted count too."""
        if "hugetlb" in self._paths:
            directory = self._paths["hugetlb"]
            for entry in limits:
                size, limit = entry["pageSize"], _limit(entry["limit"])
                write(directory, f"hugetlb.{size}.limit_in_bytes", limit)
                reserved = f"hugetlb.{size}.rsvd.limit_in_bytes"
                if pathnames.exists(pathnames.join(directory, reserved)):
                    write(directory, reserved, limit)
        elif self.unified is not None and "hugetlb" in _controllers(self.unified.directory):
            self.unified.set({"hugepageLimits": limits})
        else:
            self._dir("hugetlb", "linux.resources.hugepageLimits")

    def _network(self, network: dict[str, Any]) -> None:
        if network.get("classID") is not None:
            directory = self._dir("net_cls", "linux.resources.network.classID")
            write(directory, "net_cls.classid", network["classID"])
        for entry in network.get("priorities") or []:
            directory = self._dir("net_prio", "linux.resources.network.priorities")
            write(directory, "net_prio.ifpriomap", f"{entry['name']} {entry['priority']}")

    def freeze(self) -> None:
        """Write FROZEN and wait until the freezer reports it (re-asking while FREEZING)."""
        directory = self._freezer()
        deadline = time.monotonic() + 5
        while True:
            write(directory, "freezer.state", "FROZEN")
            if read(directory, "freezer.state") == "FROZEN":
                return
            if time.monotonic() > deadline:
                write(directory, "freezer.state", "THAWED")
                raise DeadlineExceeded(f"cgroup {directory}: not frozen after 5s")
            time.sleep(0.001)

    def thaw(self) -> None:
        """Write THAWED (and clear the unified part's cgroup.freeze if the container set it:
        on a hybrid host that freezes it as well)."""
        write(self._freezer(), "freezer.state", "THAWED")
        if self.unified is not None and self.unified.frozen():
            self.unified.thaw()

    def _freezer(self) -> str:
        if "freezer" in self.denied or "*" in self.denied:
            raise FailedPrecondition(
                "cannot pause or resume a container without a freezer cgroup (galley-runc is"
                " not root, and may not make one here)"
            )
        return self._dir("freezer", "freezer")

    def frozen(self) -> bool:
        """Whether the freezer is FROZEN or FREEZING, or the unified part is frozen."""
        unified = self.unified is not None and self.unified.frozen()
        return record.v1_frozen(self._paths.get("freezer")) or unified

    def pids(self) -> list[int]:
        """Processes of the cgroup (read from one hierarchy, with sub-cgroups)."""
        directory = record.v1_procs_directory(self._paths)
        if directory is None or not pathnames.isdir(directory):
            return []
        return manager.procs(directory)

    def kill(self, sig: int) -> list[OSError]:
        """Signal every process (freezing first so none forks away, then thawing); kill(2)'s
        refusals. After SIGKILL, sub-cgroups the container froze itself are thawed too: v1's
        frozen processes die only once thawed, and the container's would outlive delete."""
        freezer = self._paths.get("freezer")
        can_freeze = freezer is not None and pathnames.isdir(freezer)
        refused = manager.signal_all(self, sig, can_freeze=can_freeze)
        if sig == manager.SIGKILL and can_freeze and freezer is not None:
            for directory in pathnames.directories(freezer)[1:]:
                if record.v1_frozen(directory):
                    write(directory, "freezer.state", "THAWED")
        return refused

    def stats(self) -> dict[str, object]:
        """runc's stats shape from the v1 files (hugetlb from cgroup2 on hybrid hosts)."""
        if not self.exists() and not (self.denied and not self.paths):
            raise FailedPrecondition(f"cgroup {self.paths} does not exist")
        from galley.oci.cgroups.stats import for_events, hugetlb_v2, v1_stats  # noqa: PLC0415

        out = v1_stats(self._paths)
        if "hugetlb" not in self._paths and self.unified is not None:
            out["hugetlb"] = hugetlb_v2(self.unified.directory)
        return for_events(out)

    def destroy(self) -> None:
        """Remove the directory in every hierarchy, killing what is still inside first.

        Only a failed create or a forced delete gets here with processes left; either way
        nothing of the container may outlive its cgroup (and rmdir would wait for nothing).
        """
        if self.pids():
            self.kill(manager.SIGKILL)
        for directory in sorted(set(self._paths.values())):
            record.remove(directory)
        if self.unified is not None:
            self.unified.destroy()

    def save(self) -> dict[str, object]:
        """The JSON form for state.json."""
        return {
            "mode": "v1",
            "paths": self._paths,
            "unified": self.unified.save() if self.unified is not None else None,
            "device_rules": [r.to_json() for r in self.device_rules],
            **({"denied": self.denied} if self.denied else {}),
        }


def _controllers(directory: str) -> set[str]:
    try:
        return set(read(directory, "cgroup.controllers").split())
    except OSError:
        return set()


def fill_cpusets(directory: str) -> None:
    """Give the cgroup, and every ancestor whose cpus or mems are empty (both start so on v1,
    and no process may join such a cpuset), its parent's, from the first full one down: an
    ancestor someone else made and left empty too, as runc does. Each file is read once."""
    empty: list[tuple[str, str, str]] = []  # (cgroup, its cpus, its mems), ours first
    current = directory
    while True:
        cpus, mems = read(current, "cpuset.cpus"), read(current, "cpuset.mems")
        if cpus and mems:
            break
        empty.append((current, cpus, mems))
        parent = pathnames.dirname(current)
        if parent == current or not pathnames.exists(pathnames.join(parent, "cpuset.cpus")):
            raise FailedPrecondition(f"cpuset: no ancestor of {directory} has cpus and mems")
        current = parent
    for level, own_cpus, own_mems in reversed(empty):  # from the top: each gets its parent's
        if own_cpus:
            cpus = own_cpus
        else:
            write(level, "cpuset.cpus", cpus)
        if own_mems:
            mems = own_mems
        else:
            write(level, "cpuset.mems", mems)


def _weight_file(directory: str, name: str, value: str, field: str) -> None:
    """blkio.<name>, or blkio.bfq.<name> where only BFQ provides weights; error if neither."""
    for candidate in (f"blkio.{name}", f"blkio.bfq.{name}"):
        if pathnames.exists(pathnames.join(directory, candidate)):
            write(directory, candidate, value)
            return
    raise InvalidArgument(f"{field}: blkio {name} is not supported by this kernel (no CFQ/BFQ)")


def _memory_and_swap(directory: str, limit: int, swap: int) -> None:
    """memory.limit_in_bytes and memory.memsw.limit_in_bytes in the order the kernel accepts.

    The kernel requires memsw >= memory at every moment, so growing limits write memsw first
    and shrinking ones memory first. -1 memory with no swap given means both unlimited.
    """
    if limit == -1 and swap == 0:
        swap = -1
    memsw = "memory.memsw.limit_in_bytes"
    if swap and not pathnames.exists(pathnames.join(directory, memsw)):
        raise InvalidArgument("linux.resources.memory.swap: this kernel has no swap accounting")
    if limit and swap:
        current = read_int(directory, "memory.limit_in_bytes")
        if swap == -1 or current < swap:
            _write_limit(directory, "memsw.", swap)
            _write_limit(directory, "", limit)
        else:
            _write_limit(directory, "", limit)
            _write_limit(directory, "memsw.", swap)
    elif limit:
        _write_limit(directory, "", limit)
    elif swap:
        _write_limit(directory, "memsw.", swap)


def _write_limit(directory: str, kind: str, limit: int) -> None:
    """memory.<kind>limit_in_bytes; a limit below what the cgroup uses is refused in runc's
    words, with the usage (the kernel only says "device or resource busy")."""
    try:
        write(directory, f"memory.{kind}limit_in_bytes", _limit(limit))
    except InvalidArgument as e:
        if not (isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.EBUSY):
            raise
        usage = read_int(directory, f"memory.{kind}usage_in_bytes")
        peak = read_int(directory, f"memory.{kind}max_usage_in_bytes")
        what = "memory+swap limit" if kind else "memory limit"
        raise FailedPrecondition(
            f"cgroup {directory}: unable to set {what} to {limit} "
            f"(current usage: {usage}, peak usage: {peak})"
        ) from e
