"""`update`, all or nothing: a failed update puts back the cgroup files it had written.

The kernel refuses some values only when they are written (a memory limit below what the
container uses, a CPU the host lacks, a period against a parent's quota), after the update
has written others. runc sets the container's saved resources again, which cannot undo a
value they never set; galley records each file's text before its first write and, when a
later write fails, writes those texts back, newest first, so that each step returns to a
state the kernel accepted before (memory and memory+swap, period and quota). What the
kernel still refuses gets a second pass, and what it refuses then is named in the error.

How a file's old text is written back depends on the file:
- a single value (cpu.shares, memory.max, "max 100000" in cpu.max): as it was read;
- memory.oom_control reads "oom_kill_disable N" and more lines: N;
- files with a line per device or interface (blkio.throttle.*, io.max, io.weight, rdma.max,
  net_prio.ifpriomap): the old lines, after a line that clears each key the update added;
- v1 devices.allow and devices.deny, which cannot be read: devices.list's text, put back
  through galley.oci.cgroups.devices.restore_v1;
- cpu.idle changes the weight when written: the weight is recorded with it, and put back
  after it.
cgroup v2's device filter is a program, not a file: v2's set() attaches it last, so a
failure before it leaves the old one, and a failure to attach leaves the old one too.
"""

from __future__ import annotations

import _thread

from galley.errors import GalleyError
from galley.oci.cgroups import manager
from galley.oci.cgroups.manager import write
from galley.oci.cgroups.record import read

TYPE_CHECKING = False
if TYPE_CHECKING:
    from galley.oci.cgroups.manager import CgroupManager
    from galley.oci.spec import Resources

# Keyed files: the line that clears a key ({}) the update added.
_CLEARS = {
    "blkio.throttle.read_bps_device": "{} 0",
    "blkio.throttle.write_bps_device": "{} 0",
    "blkio.throttle.read_iops_device": "{} 0",
    "blkio.throttle.write_iops_device": "{} 0",
    "blkio.weight_device": "{} 0",
    "blkio.leaf_weight_device": "{} 0",
    "blkio.bfq.weight_device": "{} 0",
    "io.max": "{} rbps=max wbps=max riops=max wiops=max",
    "io.weight": "{} default",
    "io.bfq.weight": "{} default",
    "rdma.max": "{} hca_handle=max hca_object=max",
    "net_prio.ifpriomap": "{} 0",
}
_DEVICE_FILES = {"devices.allow", "devices.deny"}
# Files that writing another one changes: cpu.idle=1 sets the weight to the lowest, and 0
# sets the default (1024), not what it was. Noted first, so put back after the other.
_CHANGED_BY = {"cpu.idle": ("cpu.shares", "cpu.weight")}


def set_all_or_nothing(cgroup: CgroupManager, resources: Resources) -> None:
    """cgroup.set(resources); when it fails, the files it wrote get their old text back and
    the error is raised, naming what could not be put back if anything."""
    record = Record()
    manager.before_write.append(record.note)
    try:
        cgroup.set(resources)
    except Exception as e:
        manager.before_write.remove(record.note)
        left = record.put_back()
        if left and isinstance(e, GalleyError):
            raise type(e)(f"{e} (and putting back the values it replaced failed: {left})") from e
        raise
    manager.before_write.remove(record.note)


class Record:
    """The text of each cgroup file before its first write, in the order written, by the
    thread that made it (a process running several containers' commands at once, as galleyd
    may, must not put back another's writes)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str]] = []
        self._seen: set[tuple[str, str]] = set()
        self._thread = _thread.get_ident()

    def note(self, directory: str, name: str) -> None:
        if _thread.get_ident() != self._thread:
            return
        for other in _CHANGED_BY.get(name, ()):
            self.note(directory, other)
        if name in _DEVICE_FILES:
            name = "devices.list"
        if (directory, name) in self._seen:
            return
        self._seen.add((directory, name))
        try:
            self.entries.append((directory, name, read(directory, name)))
        except OSError:  # not a file to read back (nothing to put back either)
            pass

    def put_back(self) -> str:
        """Write the old texts back, newest first, and once more for what the kernel refused
        the first time; what it still refuses, as "file: reason; ...", or ""."""
        pending = list(reversed(self.entries))
        failures: list[str] = []
        for _ in range(2):
            retry, failures = [], []
            for entry in pending:
                try:
                    _put_back(*entry)
                except (GalleyError, OSError) as e:
                    retry.append(entry)
                    failures.append(f"{entry[1]}: {e}")
            pending = retry
        return "; ".join(failures)


def _put_back(directory: str, name: str, old: str) -> None:
    if name == "devices.list":
        from galley.oci.cgroups.devices import restore_v1  # noqa: PLC0415 - v1 only

        restore_v1(directory, old)
        return
    now = read(directory, name)
    if now == old:
        return
    if name == "memory.oom_control":
        write(directory, name, old.split()[1])
    elif name in _CLEARS:
        keys = {line.split()[0] for line in old.splitlines()}
        for line in now.splitlines():
            if line.split()[0] not in keys:
                write(directory, name, _CLEARS[name].format(line.split()[0]))
        for line in old.splitlines():
            write(directory, name, line)
    else:
        write(directory, name, old)
