"""cgroup v2: one directory in the unified hierarchy, limits in its interface files.

Controllers are enabled in cgroup.subtree_control of every ancestor from the mount down to
the container's parent (a v2 cgroup only has the files of controllers its parent enables).
Conversions follow runc: cpu.shares → cpu.weight, blkio weight → io.weight, OCI's
memory+swap → memory.swap.max (swap alone), v1 names like hugepage sizes kept as they are.
"""

from __future__ import annotations

import errno
import posix
import time

from galley.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from galley.kernel import pathnames
from galley.oci.cgroups import layout, manager, record
from galley.oci.cgroups.conversions import blkio_to_io_weight, shares_to_weight, swap_max
from galley.oci.cgroups.devices import Rule
from galley.oci.cgroups.manager import write
from galley.oci.cgroups.record import read

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.spec import CPU, BlockIO, Memory, Pids, Resources


def _limit(value: int) -> str:
    return "max" if value < 0 else str(value)


class V2Manager:
    """A container's cgroup in a cgroup2 hierarchy mounted at `mount`."""

    def __init__(self, directory: str, mount: str, device_rules: list[Rule] | None = None) -> None:
        self.directory = directory
        self.mount = mount
        self.device_rules = list(device_rules or [])

    @property
    def paths(self) -> dict[str, str]:
        """The one cgroup2 directory, under the key ""."""
        return {"": self.directory}

    def exists(self) -> bool:
        """Whether the cgroup directory exists."""
        return pathnames.isdir(self.directory)

    def create(self) -> None:
        """Make the directory, enabling every available controller on the way down."""
        relative = pathnames.relpath(self.directory, self.mount)
        if relative.startswith(".."):
            raise InvalidArgument(
                f"cgroup {self.directory} is outside the cgroup2 mount {self.mount}"
            )
        current = self.mount
        for part in [] if relative == "." else relative.split("/"):
            _enable_controllers(current, is_root=current == self.mount)
            current = pathnames.join(current, part)
            if not pathnames.isdir(current):
                try:
                    posix.mkdir(current, 0o755)
                except OSError as err:  # named as runc names it: "mkdir PATH: REASON"
                    # made meanwhile (a sibling's create, under the same new parent): fine
                    if not (isinstance(err, FileExistsError) and pathnames.isdir(current)):
                        raise OSError(err.errno, f"mkdir {current}: {err.strerror}") from None

    def apply(self, pid: int) -> None:
        """Create the cgroup and move pid into it."""
        self.create()
        self.join(pid)

    def join(self, pid: int, sub: dict[str, str] | None = None) -> None:
        """Move pid into the cgroup (with sub, exec --cgroup's {"": path}: into that path
        below it).

        A container may have made sub-cgroups and enabled controllers for them (systemd or
        a runtime inside it); its own directory then takes no processes (EBUSY). Like runc's
        exec, join the cgroup of the container's init instead: the member that is pid 1 of
        its pid namespace.
        """
        if sub:
            if set(sub) != {""}:
                raise InvalidArgument("--cgroup: cgroup v2 takes a path without controllers")
            write(manager.below(self.directory, sub[""], pid), "cgroup.procs", pid)
            return
        try:
            write(self.directory, "cgroup.procs", pid)
        except InvalidArgument as e:
            cause = e.__cause__
            busy = isinstance(cause, OSError) and cause.errno in {errno.EBUSY, errno.EOPNOTSUPP}
            init_dir = self._init_directory() if busy else None
            if init_dir is None:
                raise
            write(init_dir, "cgroup.procs", pid)

    def _init_directory(self) -> str | None:
        """The cgroup directory of the container's init, if it lives below ours."""
        for member in self.pids():
            try:  # its Name is the process's own to choose: any bytes
                status = pathnames.read_text(f"/proc/{member}/status", "surrogateescape")
                cgroup = layout.own_cgroups(member).get("")
            except OSError:
                continue
            nspid = next((line for line in status.split("\n") if line.startswith("NSpid:")), "")
            if nspid.split()[-1:] == ["1"] and nspid.split()[1:2] != ["1"] and cgroup:
                directory = pathnames.join(self.mount, cgroup.lstrip("/"))
                if directory.startswith(self.directory + "/"):
                    return directory
        return None

    def set(self, resources: Resources) -> None:
        """Write every resource the OCI struct sets; the device filter last, so that an
        update that fails leaves the old one (galley.oci.cgroups.undo puts the files back)."""
        writers: list[tuple[str, Callable[[Any], None]]] = [
            ("cpu", self._cpu),
            ("memory", self._memory),
            ("pids", self._pids),
            ("blockIO", self._io),
            ("hugepageLimits", self._hugetlb),
            ("rdma", lambda rdma: self._lines("rdma.max", manager.rdma_lines(rdma))),
            ("unified", self._unified),
            ("devices", self._devices),
        ]
        if resources.get("network"):
            raise InvalidArgument(
                "linux.resources.network: net_cls/net_prio do not exist on cgroup v2"
            )
        for key, writer in writers:
            value = resources.get(key)
            if value is not None:
                writer(value)

    def _pids(self, pids: Pids) -> None:
        value = manager.pids_max(pids.get("limit", 0))
        if value is not None:
            self._write("pids.max", value)

    def _write(self, name: str, value: str | int) -> None:
        self._check_writable(name)
        write(self.directory, name, value)

    def _check_writable(self, name: str) -> None:
        controller = name.split(".", 1)[0]
        if not self._has(name) and controller not in {"cgroup", *self._enabled()}:
            raise InvalidArgument(
                f"cgroup {self.directory}: cannot write {name}: {self._why_missing(controller)}"
            )

    def _why_missing(self, controller: str) -> str:
        """Which ancestor keeps controller from this cgroup, and why (for the error)."""
        relative = pathnames.relpath(pathnames.dirname(self.directory), self.mount)
        current = self.mount
        for part in ["", *([] if relative == "." else relative.split("/"))]:
            current = pathnames.join(current, part) if part else current
            if controller in _read_set(current, "cgroup.subtree_control"):
                continue
            where = (
                f"the {controller} controller is not enabled in {current}/cgroup.subtree_control"
            )
            if controller not in _read_set(current, "cgroup.controllers"):
                return f"{where}: {current} does not have it (the kernel or its parent lacks it)"
            if current != self.mount and _read_set(current, "cgroup.procs"):
                return (
                    f"{where}: {current} holds processes, and cgroup v2's no-internal-processes "
                    "rule keeps a cgroup with processes of its own from enabling controllers "
                    "for its children (use a cgroupsPath outside it)"
                )
            return f"{where}: the kernel refused to enable it there"
        return f"the {controller} controller is not available in {self.directory}"

    def _enabled(self) -> frozenset[str]:
        try:
            return frozenset(read(self.directory, "cgroup.controllers").split())
        except OSError:
            return frozenset()

    def _cpu(self, cpu: CPU) -> None:
        # runc 1.1 drops these on v2 without a word; a limit asked for and not set is an error
        for field in ("realtimeRuntime", "realtimePeriod"):
            if cpu.get(field):
                raise InvalidArgument(
                    f"linux.resources.cpu.{field}: cgroup v2 has no realtime scheduling"
                )
        idle = cpu.get("idle")
        if idle == 0:  # before the weight: an idle cgroup refuses one
            self._write("cpu.idle", 0)
        if cpu.get("shares"):
            weight = shares_to_weight(cpu["shares"])
            self._check_writable("cpu.weight")
            manager.write_weight(self.directory, "cpu.weight", weight)
        if idle:  # after the weight, which it makes the lowest
            self._write("cpu.idle", idle)
        quota, period = cpu.get("quota", 0), cpu.get("period", 0)
        if quota or period:
            text = str(quota) if quota > 0 else "max"
            self._write("cpu.max", f"{text} {period}" if period else text)
        if cpu.get("burst") is not None:
            self._write("cpu.max.burst", cpu["burst"])
        for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            if cpu.get(key):
                self._write(name, cpu[key])  # type: ignore[literal-required]

    def _memory(self, memory: Memory) -> None:
        limit, swap = memory.get("limit", 0), memory.get("swap", 0)
        swap_value = swap_max(swap, limit)
        if memory.get("checkBeforeUpdate") and limit > 0:
            manager.check_usage(self.directory, "memory.current", limit)
        if swap_value or swap > 0:  # swap == limit: swap.max 0, no swap at all (as runc)
            if self._has("memory.swap.max"):
                self._write("memory.swap.max", _limit(swap_value))
            elif swap_value > 0:
                raise InvalidArgument(
                    "linux.resources.memory.swap: this kernel has no swap accounting"
                )
        if limit:
            self._write("memory.max", _limit(limit))
        if memory.get("reservation"):
            self._write("memory.low", _limit(memory["reservation"]))

    def _io(self, blkio: BlockIO) -> None:
        weight = blkio.get("weight")
        if weight:
            if pathnames.exists(pathnames.join(self.directory, "io.bfq.weight")):
                self._write("io.bfq.weight", weight)
            else:
                self._write("io.weight", blkio_to_io_weight(weight))
        for device in blkio.get("weightDevice") or []:
            if device.get("weight"):
                line = f"{device['major']}:{device['minor']} {device['weight']}"
                self._write("io.bfq.weight" if self._has("io.bfq.weight") else "io.weight", line)
        for key, field in (
            ("throttleReadBpsDevice", "rbps"),
            ("throttleWriteBpsDevice", "wbps"),
            ("throttleReadIOPSDevice", "riops"),
            ("throttleWriteIOPSDevice", "wiops"),
        ):
            for throttle in blkio.get(key) or []:  # type: ignore[attr-defined]
                rate = throttle["rate"]
                value = "max" if rate == 0 else str(rate)
                self._write("io.max", f"{throttle['major']}:{throttle['minor']} {field}={value}")

    def _lines(self, name: str, lines: list[str]) -> None:
        for line in lines:
            self._write(name, line)

    def _has(self, name: str) -> bool:
        return pathnames.exists(pathnames.join(self.directory, name))

    def _hugetlb(self, limits: list[dict[str, Any]]) -> None:
        """The limit, and the same limit on reservations where the kernel has them (5.7+),
        as runc sets both: pages reserved by mmap but not yet faulted count too."""
        for i, entry in enumerate(limits):
            name = f"hugetlb.{entry['pageSize']}.max"
            if not self._has(name):
                raise InvalidArgument(
                    f"linux.resources.hugepageLimits[{i}].pageSize: "
                    f"{entry['pageSize']!r} is not a huge page size of this host"
                )
            self._write(name, _limit(entry["limit"]))
            if self._has(f"hugetlb.{entry['pageSize']}.rsvd.max"):
                self._write(f"hugetlb.{entry['pageSize']}.rsvd.max", _limit(entry["limit"]))

    def _devices(self, rules: list[Any]) -> None:
        from galley.oci.cgroups import bpfdevices  # noqa: PLC0415 - only when rules are given

        bpfdevices.attach(self.directory, rules, self.device_rules)

    def _unified(self, files: dict[str, str]) -> None:
        for key, value in files.items():
            if "/" in key or key.startswith("."):
                raise InvalidArgument(f'linux.resources.unified: invalid file name "{key}"')
            if not self._has(key):
                raise InvalidArgument(
                    f'linux.resources.unified: "{key}" does not exist (controller not enabled?)'
                )
            self._write(key, value)

    def freeze(self) -> None:
        """cgroup.freeze=1, then wait for cgroup.events to report frozen."""
        self._write("cgroup.freeze", "1")
        deadline = time.monotonic() + 5
        while "frozen 1" not in read(self.directory, "cgroup.events").splitlines():
            if time.monotonic() > deadline:
                self._write("cgroup.freeze", "0")
                raise DeadlineExceeded(f"cgroup {self.directory}: not frozen after 5s")
            time.sleep(0.001)

    def thaw(self) -> None:
        """cgroup.freeze=0."""
        self._write("cgroup.freeze", "0")

    def frozen(self) -> bool:
        """Whether cgroup.freeze is set."""
        return record.v2_frozen(self.directory)

    def pids(self) -> list[int]:
        """Processes of the cgroup and its sub-cgroups."""
        return manager.procs(self.directory) if self.exists() else []

    def kill(self, sig: int) -> list[OSError]:
        """SIGKILL through cgroup.kill where the kernel has it, else signal each process frozen;
        kill(2)'s refusals. Either way the cgroup ends thawed, as runc's `kill --all` leaves
        it (manager.signal_all): cgroup.kill kills frozen processes, but a freeze left on
        would keep a container whose processes are all gone reading as paused."""
        if sig == manager.SIGKILL and self._has("cgroup.kill"):
            self._write("cgroup.kill", "1")
            if self.frozen():
                self.thaw()
            return []
        return manager.signal_all(self, sig, can_freeze=self._has("cgroup.freeze"))

    def stats(self) -> dict[str, object]:
        """runc's stats shape from the v2 files."""
        if not self.exists():
            raise FailedPrecondition(f"cgroup {self.directory} does not exist")
        from galley.oci.cgroups.stats import for_events, v2_stats  # noqa: PLC0415

        return for_events(v2_stats(self.directory))

    def destroy(self) -> None:
        """Remove the directory (and any sub-cgroups), killing what is still inside first."""
        if self.pids():
            self.kill(manager.SIGKILL)
        record.remove(self.directory)

    def save(self) -> dict[str, object]:
        """The JSON form for state.json."""
        return {
            "mode": "v2",
            "paths": self.paths,
            "mount": self.mount,
            "device_rules": [r.to_json() for r in self.device_rules],
        }


def _read_set(directory: str, name: str) -> set[str]:
    """The words of a cgroup file (controllers, pids) as a set; empty when unreadable."""
    try:
        return set(read(directory, name).split())
    except OSError:
        return set()


def _enable_controllers(directory: str, *, is_root: bool) -> None:
    """Enable in subtree_control every controller the directory has but does not pass down.

    Not in a non-root cgroup that holds processes itself (e.g. the runtime's own cgroup for
    a relative cgroupsPath): domain controllers are refused there, and enabling a threaded
    one (cpu, cpuset, pids) would turn it into a threaded domain whose new children are
    "domain invalid" and take no processes. Its children then simply get no controllers.
    """
    if not is_root and read(directory, "cgroup.procs"):
        return
    available = set(read(directory, "cgroup.controllers").split())
    enabled = set(read(directory, "cgroup.subtree_control").split())
    wanted = sorted(available - enabled)
    if not wanted:
        return
    try:
        write(directory, "cgroup.subtree_control", " ".join("+" + c for c in wanted))
    except InvalidArgument:
        for (
            controller
        ) in wanted:  # one by one: a controller may be refused (e.g. cpu with RT tasks)
            try:
                write(directory, "cgroup.subtree_control", "+" + controller)
            except InvalidArgument:
                continue
