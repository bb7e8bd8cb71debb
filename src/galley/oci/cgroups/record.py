"""A container's cgroup known by its record alone, without a manager's code.

state.json keeps what a manager's save() gave (galley.oci.cgroups.factory.load makes the
manager again). The commands run most often read that record and no more, for the managers'
modules cost a command ~0.6 ms to import: `state`, `list` and `start` whether the cgroup is
frozen (saved_frozen), `delete` the removal of an empty cgroup (remove_idle), leaving to
the manager a cgroup with something left in it.

The two file operations those need, read and remove, are here too; the managers use them.
"""

from __future__ import annotations

import errno
import posix
import time

from galley.errors import FailedPrecondition
from galley.kernel import pathnames

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from typing import Any


def read(directory: str, name: str) -> str:
    """The stripped text of one cgroup file."""
    return pathnames.read_text(pathnames.join(directory, name)).strip()


def v1_frozen(freezer: str | None) -> bool:
    """Whether a v1 freezer cgroup is FROZEN or FREEZING (no directory: no)."""
    try:
        return freezer is not None and read(freezer, "freezer.state") != "THAWED"
    except FileNotFoundError:
        return False


def v2_frozen(directory: str) -> bool:
    """Whether a cgroup2 directory's cgroup.freeze is set."""
    try:
        return read(directory, "cgroup.freeze") == "1"
    except FileNotFoundError:
        return False


def saved_frozen(saved: dict[str, Any]) -> bool:
    """Whether the cgroup a manager's save() describes is frozen, without loading the manager.
    A record of another shape (an edited state.json) tells no frozen cgroup: `state` and
    `list` go by the init, and the commands that need the cgroup say the record is damaged
    (galley.oci.cgroups.factory.load)."""
    paths = _object(saved.get("paths"))
    if saved.get("mode") == "v2":
        return isinstance(paths.get(""), str) and v2_frozen(paths[""])
    freezer, unified = paths.get("freezer"), _object(_object(saved.get("unified")).get("paths"))
    return (isinstance(freezer, str) and v1_frozen(freezer)) or (
        isinstance(unified.get(""), str) and v2_frozen(unified[""])
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# The v1 hierarchy whose cgroup.procs a manager reads for the container's processes: the
# first of these it has, else any.
V1_PROCS_FROM = ("pids", "freezer", "devices")


def v1_procs_directory(paths: dict[str, str]) -> str | None:
    """The directory, of a v1 manager's controller → directory map, that tells its processes."""
    for controller in V1_PROCS_FROM:
        if controller in paths:
            return paths[controller]
    return next(iter(paths.values()), None)


def remove_idle(saved: dict[str, Any]) -> bool:
    """Remove the cgroup a manager's save() describes, without loading the manager (its
    modules cost a `delete` ~0.6 ms), when nothing is left in it: True once it is gone.

    No directory is looked into. The first rmdir is of the directory the manager reads the
    container's processes from; while a process or a sub-cgroup is left there it fails,
    EBUSY, having removed nothing, and so does a record of a shape this does not know: False,
    and the caller loads the manager, which kills what is left first and removes
    sub-cgroups."""
    directories = _saved_directories(saved)
    if not directories:
        return False
    try:
        posix.rmdir(directories[0])
    except FileNotFoundError:
        pass  # a delete that stopped halfway removed it; the manager would find nothing either
    except OSError:
        return False
    for directory in directories[1:]:
        remove(directory)
    return True


def _saved_directories(saved: dict[str, Any]) -> list[str] | None:
    """Every directory of a save(), the one that tells the processes first; None for a record
    that is not a plain one."""
    mode, unified = saved.get("mode"), saved.get("unified")
    try:
        paths = saved["paths"]
        if mode == "v2":
            first, every = paths[""], list(paths.values())
        elif mode == "v1":
            first, every = v1_procs_directory(paths), list(paths.values())
            if unified is not None:
                every.append(unified["paths"][""])
        else:
            return None
    except (KeyError, TypeError, AttributeError):
        return None
    if not isinstance(first, str) or not all(isinstance(path, str) for path in every):
        return None
    return [first, *sorted(set(every) - {first})]


def remove(directory: str, timeout: float = 2.0) -> None:
    """rmdir the cgroup and its children, retrying while exiting processes still hold them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _remove_tree(directory)
            return
        except OSError as e:
            if e.errno not in {errno.EBUSY, errno.EAGAIN} or time.monotonic() > deadline:
                raise FailedPrecondition(
                    f"cgroup {directory}: cannot remove: {posix.strerror(e.errno or 0)}"
                ) from e
            time.sleep(0.01)


def _remove_tree(directory: str) -> None:
    try:  # a container's cgroup seldom has children: one rmdir, no listing of control files
        posix.rmdir(directory)
        return
    except FileNotFoundError:
        return
    except OSError as e:
        # cgroupfs says EBUSY both for processes still leaving and for child cgroups (made
        # by exec --cgroup, or by systemd or a runtime inside the container): children are
        # removed first; processes make the caller retry
        if e.errno not in {errno.ENOTEMPTY, errno.EBUSY} or not _has_children(directory):
            raise
    for below in pathnames.directories(directory, bottom_up=True):  # children first
        _rmdir(below)


def _has_children(directory: str) -> bool:
    with posix.scandir(directory) as entries:
        return any(entry.is_dir(follow_symlinks=False) for entry in entries)


def _rmdir(path: str) -> None:
    try:
        posix.rmdir(path)
    except FileNotFoundError:
        pass
