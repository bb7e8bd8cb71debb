"""The CgroupManager protocol, cgroupsPath resolution, and the file operations v1 and v2 share.

A manager owns one container's cgroup: on v1 a directory per hierarchy (`paths` maps each
controller to it), on v2 one directory (`paths[""]`). Its lifecycle:

    manager_for(spec, id) ──► create() ──► set(resources) ──► join(pid) ──► freeze()/thaw()/...
          │                                                          │
          └── save() → state.json ── load(saved) ──► (the same manager, in a later process)
                                                                     ▼
                                                                 destroy()

cgroupsPath follows runc: an absolute path is taken from each hierarchy's root; a relative
one (and the default, the container id) goes under the runtime's own cgroup; systemd's
"slice:prefix:name" form maps onto the directories the systemd driver would make.
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, InvalidArgument, reason_text
from galley.kernel import pathnames
from galley.oci.cgroups.record import read

SIGKILL = 9  # the same on every Linux architecture; the signal module costs ~2 ms (enum)

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from galley.oci.spec import Resources
else:
    Protocol = object  # at run time the protocol is documentation only


class CgroupManager(Protocol):
    """What the runtime asks of a container's cgroup, whatever the hierarchy version."""

    @property
    def paths(self) -> dict[str, str]:
        """Controller name ("" for cgroup2) → the container's cgroup directory."""

    def create(self) -> None:
        """Make the cgroup where missing (create does it while the stage makes namespaces)."""

    def join(self, pid: int, sub: dict[str, str] | None = None) -> None:
        """Move pid into the cgroup, which exists (create's init, and every exec); sub maps
        controllers ("" for all) to paths below it (exec --cgroup)."""

    def apply(self, pid: int) -> None:
        """create(), then join(pid)."""

    def set(self, resources: Resources) -> None:
        """Write the resource limits given (fields absent stay as they are)."""

    def freeze(self) -> None:
        """Freeze every process of the cgroup and wait until the kernel says FROZEN."""

    def thaw(self) -> None:
        """Let the cgroup's processes run again."""

    def frozen(self) -> bool:
        """Whether the cgroup is frozen (or freezing)."""

    def pids(self) -> list[int]:
        """Every process in the cgroup and its descendants."""

    def kill(self, sig: int) -> list[OSError]:
        """Signal every process in the cgroup (cgroup.kill on v2 for SIGKILL where present);
        kill(2)'s refusals, one per process it refused (an invalid signal: EINVAL)."""

    def stats(self) -> dict[str, object]:
        """Usage counters in the shape of runc's `events --stats` "data"."""

    def exists(self) -> bool:
        """Whether the cgroup directory exists."""

    def destroy(self) -> None:
        """Remove the cgroup in every hierarchy, waiting briefly for exiting processes."""

    def save(self) -> dict[str, object]:
        """A JSON-able form that `load` turns back into an equal manager."""


SCOPE_PREFIX = "galley-runc"  # the scope of a container without a path, as runc's "runc-<id>"


def cgroup_path(spec_path: str, container_id: str, *, systemd: bool = False) -> str:
    """linux.cgroupsPath as a cgroup path; relative results are under the runtime's cgroup.
    systemd's "slice:prefix:name" is told by its form; with systemd (--systemd-cgroup, as
    runc's driver) it is the only form taken, and none means ":galley-runc:<id>"."""
    if systemd:
        if not spec_path:
            spec_path = f":{SCOPE_PREFIX}:{container_id}"
        elif ":" not in spec_path or spec_path.startswith("/"):
            raise InvalidArgument(
                f'linux.cgroupsPath: "{spec_path}": with --systemd-cgroup it must be'
                ' systemd\'s "slice:prefix:name"'
            )
    if not spec_path:
        return container_id
    if ":" in spec_path and not spec_path.startswith("/"):
        return _systemd_path(spec_path, container_id)
    cleaned = pathnames.normpath("/" + spec_path.strip("/"))  # ".." cannot climb above the root
    if cleaned == "/":
        raise InvalidArgument(f'linux.cgroupsPath: "{spec_path}" names no cgroup of its own')
    return cleaned if spec_path.startswith("/") else cleaned.lstrip("/")


def _systemd_path(spec_path: str, container_id: str) -> str:
    """ "slice:prefix:name" → /a.slice/a-b.slice/prefix-name.scope, as systemd would place it."""
    parts = spec_path.split(":")
    if len(parts) != 3:
        raise InvalidArgument(
            f'linux.cgroupsPath: "{spec_path}" is neither a path nor systemd\'s "slice:prefix:name"'
        )
    slice_name, prefix, name = parts
    slice_name = slice_name or "system.slice"
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise InvalidArgument(f'linux.cgroupsPath: invalid systemd slice "{slice_name}"')
    stem = slice_name.removesuffix(".slice")
    path = ""
    if stem != "-":
        words = stem.split("-")
        if "" in words:
            raise InvalidArgument(f'linux.cgroupsPath: invalid systemd slice "{slice_name}"')
        path = "".join("/" + "-".join(words[: i + 1]) + ".slice" for i in range(len(words)))
    name = name or container_id
    unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope" if prefix else name
    return f"{path}/{unit}"


def check_usage(directory: str, usage_file: str, limit: int) -> None:
    """memory.checkBeforeUpdate: refuse a limit below what the cgroup uses now (as runc)."""
    usage = read_int(directory, usage_file)
    if 0 < limit < usage:
        raise FailedPrecondition(
            f"cgroup {directory}: rejecting memory limit {limit} below current usage {usage}"
        )


_RDMA_FIELDS = (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object"))


def rdma_lines(rdma: dict[str, dict[str, int]]) -> list[str]:
    """linux.resources.rdma as rdma.max lines: "<device> hca_handle=N hca_object=M"."""
    lines = []
    for device, limits in sorted(rdma.items()):
        fields = [f"{name}={limits[key]}" for key, name in _RDMA_FIELDS if key in limits]
        if fields:
            lines.append(" ".join([device, *fields]))
    return lines


def pids_max(limit: int | None) -> str | None:
    """pids.limit as pids.max: 0 or null leaves it unset, negative means "max" (runc's
    reading)."""
    if not limit:
        return None
    return "max" if limit < 0 else str(limit)


def signal_all(cgroup: CgroupManager, sig: int, *, can_freeze: bool = True) -> list[OSError]:
    """Signal every process with the cgroup frozen, so none forks away between read and kill;
    kill(2)'s refusals, one per process, as runc warns of each (a process gone meanwhile is
    none).

    The cgroup is thawed afterwards whatever it was before, as runc's `kill --all` thaws it,
    even when every kill was refused: frozen processes act on no signal, not even SIGKILL on
    v1, so a paused container given `kill --all TERM` resumes and handles it (a caller that
    then waits for it to stop would otherwise wait for good).
    """
    if can_freeze:
        cgroup.freeze()
    try:
        return signal_each(cgroup.pids(), sig)
    finally:
        if can_freeze:
            cgroup.thaw()


def signal_each(pids: list[int], sig: int) -> list[OSError]:
    """kill(2) each pid; the refusals (a process gone meanwhile is none)."""
    refused = []
    for pid in pids:
        try:
            posix.kill(pid, sig)
        except ProcessLookupError:
            pass
        except OSError as err:
            refused.append(err)
    return refused


def below(directory: str, sub: str, pid: int) -> str:
    """The existing cgroup at sub below directory (exec --cgroup), to move pid into; never
    above it. The errors end in runc's words (its tests match them)."""
    parts = [part for part in sub.split("/") if part not in {"", "."}]
    if ".." in parts:
        raise InvalidArgument(f"--cgroup: {sub} is not a sub cgroup path (it leaves the cgroup)")
    path = pathnames.join(directory, *parts)
    if not pathnames.isdir(path):
        if not parts:
            raise FailedPrecondition(f"cgroup {path} does not exist")
        raise FailedPrecondition(
            f"--cgroup {sub}: adding pid {pid} to {path}/cgroup.procs: no such file or directory"
        )
    return path


# Called with (directory, name) before each write: galley.oci.cgroups.undo records there the
# values an update is about to change.
before_write: list[Callable[[str, str], None]] = []


class Denied(str):
    """The directory of a controller that a caller who is not root could not make (v1's
    rootless manager: galley.oci.cgroups.rootless). A write there fails with the refusal,
    naming the field, as runc's does; a resources section that writes nothing (a 0, which
    means "unset") passes, as it does in runc (`update --memory-reservation 0`). Its text is a
    path that cannot exist, so a read there fails too."""

    refusal: FailedPrecondition

    @classmethod
    def of(cls, controller: str, refusal: FailedPrecondition) -> Denied:
        denied = cls(f"/sys/fs/cgroup/{controller}/(not made: galley-runc is not root)")
        denied.refusal = refusal
        return denied


def write(directory: str, name: str, value: str | int) -> None:
    """Write one value to a cgroup control file; the error names the file and the value."""
    if isinstance(directory, Denied):
        raise directory.refusal
    for hook in before_write:
        hook(directory, name)
    path = pathnames.join(directory, name)
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_TRUNC | posix.O_CLOEXEC)
    except FileNotFoundError:
        if not pathnames.isdir(directory):  # removed behind our back (exec joins, never makes)
            raise FailedPrecondition(f"cgroup {directory} does not exist") from None
        raise InvalidArgument(
            f"cgroup {directory}: {name} is not supported by this kernel"
        ) from None
    try:
        posix.write(fd, str(value).encode())
    except OSError as e:
        raise InvalidArgument(
            f"cgroup {directory}: writing {str(value)!r} to {name}: {reason_text(e)}"
        ) from e
    finally:
        posix.close(fd)


def write_weight(directory: str, name: str, weight: int) -> None:
    """cpu.shares (v1) or cpu.weight (v2); the kernel's refusal in an idle cgroup explained
    (it only says "invalid argument")."""
    try:
        write(directory, name, weight)
    except InvalidArgument as e:
        if read_int(directory, "cpu.idle") != 1:
            raise
        raise InvalidArgument(
            f"linux.resources.cpu.shares: cgroup {directory} is idle (cpu.idle 1), and the "
            "kernel keeps an idle cgroup's weight at the lowest: give idle 0 with the shares"
        ) from e


def read_int(directory: str, name: str, default: int = 0) -> int:
    """A numeric cgroup file; "max" and a missing file read as default."""
    try:
        text = read(directory, name)
    except OSError:
        return default
    return default if text in {"", "max"} else int(text.split()[0])


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat, ...) as a dict; {} when missing."""
    try:
        text = read(directory, name)
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def procs(directory: str, *, recursive: bool = True) -> list[int]:
    """The pids in cgroup.procs of directory (and of every cgroup below it)."""
    tops = pathnames.directories(directory) if recursive else [directory]
    found: set[int] = set()
    for top in tops:
        try:
            found.update(int(p) for p in read(top, "cgroup.procs").split())
        except FileNotFoundError:
            continue
    return sorted(found)
