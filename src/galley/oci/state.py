"""The runtime's state directory: one folder per container, holding state.json and the exec fifo.

    <root>/                      --root, default /run/galley-runc (0700)
    └── <id>/                    made by `create` with mkdir: its existence reserves the id
        ├── state.json           ContainerState, written atomically (tmp + rename)
        ├── exec.fifo            made by launch; init blocks opening it until `start` reads it
        └── lock                 flock()ed by commands that change the container

state.json holds what later commands need and cannot derive: the init pid and its start time
(field 22 of /proc/<pid>/stat, so a recycled pid is not mistaken for our init), the bundle and
rootfs, the creation time (RFC 3339, UTC), the owner, annotations, the full config, the cgroup
manager's saved form and the namespace paths. The status is derived, never stored (see
`galley.oci.status`).
"""

from __future__ import annotations

import errno
import fcntl
import posix
import stat
import time

from galley.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from galley.kernel import pathnames
from galley.oci import jsonfast
from galley.oci.status import Status

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from galley.oci.cgroups import CgroupManager
    from galley.oci.spec import Spec, State

DEFAULT_ROOT = "/run/galley-runc"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
LOCK_FILE = "lock"
# Made by an exec whose process may hold CAP_SYS_PTRACE where the config's may not (exec
# --cap, --process): later execs then treat the container as one with tracers (stage.tracers_in).
TRACERS_FILE = "tracers"
# Held shared by every exec while its stage may be seen in the container (until its execve),
# exclusively by one that brings a tracer while it records it (galley.oci.execution).
EXECS_LOCK_FILE = "execs.lock"
# What a create has made outside the state directory so far (its cgroup): what `delete
# --force` takes down when the create was killed before state.json was written (with
# galley.oci.hostmounts' record). Removed once state.json is written.
INCOMPLETE_FILE = "creating.json"
# A container without a mount namespace (galley.oci.hostmounts): its rootfs clone's mount
# point, and the record of the clone's mount id.
ROOTFS_MOUNT_POINT = "rootfs"
ROOTFS_RECORD = "rootfs-mount.json"
NOTIFY_DIR = "notify"  # with NOTIFY_SOCKET: bound into the container (galley.oci.commands.notify)
NOTIFY_SOCKET = "notify.sock"  # in NOTIFY_DIR
# Everything galley puts in a state directory (and the temporary files of the JSON ones):
# all a delete ever removes there.
OWN_NAMES = frozenset(
    {
        STATE_FILE,
        EXEC_FIFO,
        LOCK_FILE,
        INCOMPLETE_FILE,
        ROOTFS_MOUNT_POINT,
        ROOTFS_RECORD,
        NOTIFY_DIR,
        TRACERS_FILE,
        EXECS_LOCK_FILE,
    }
) | frozenset(f"{name}.tmp" for name in (STATE_FILE, INCOMPLETE_FILE, ROOTFS_RECORD))
# Compiled seccomp programs, shared by the containers under a root (galley.oci.seccomp_cache);
# '@' is not allowed in a container id, so no container's directory can take its name.
SECCOMP_CACHE = "@seccomp"
# The runtime-spec version galley-runc implements: `state` reports it as ociVersion (runc 1.1
# reports the one it was built against, "1.0.2-dev"), and `--version` prints it.
RUNTIME_OCI_VERSION = "1.2.0"

# runc's id pattern ^[\w+-\.]+$ (ASCII; "+-\." is the range + , - .) as a set of characters:
# `re` would cost every command ~3 ms to import.
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+,-.")


def validate_id(container_id: str) -> str:
    """Return container_id if runc would accept it, else raise InvalidArgument."""
    if not container_id or container_id in {".", ".."} or not _ID_CHARS.issuperset(container_id):
        raise InvalidArgument("invalid container ID format")
    return container_id


def container_dir(root: str, container_id: str) -> str:
    """The state directory of container_id under root."""
    return pathnames.join(root, validate_id(container_id))


def seccomp_cache_dir(root: str) -> str:
    """Where the stages of the containers under root cache compiled seccomp filters."""
    return pathnames.join(root, SECCOMP_CACHE)


def fifo_path(state_dir: str) -> str:
    """The exec fifo inside a container's state directory."""
    return pathnames.join(state_dir, EXEC_FIFO)


def now_rfc3339() -> str:
    """The current UTC time, RFC 3339 to the nanosecond, trailing zeros trimmed (as Go)."""
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def process_start_time(pid: int, *, zombie: bool = False) -> int | None:
    """Field 22 (starttime, clock ticks since boot) of /proc/<pid>/stat; None if gone, or a
    zombie unless zombie is set (a zombie still takes kill(2), and keeps its pid)."""
    try:
        data = pathnames.read_bytes(f"/proc/{pid}/stat")
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] == b"X" or (fields[0] == b"Z" and not zombie):
        return None
    return int(fields[19])


def reserve(root: str, container_id: str) -> str:
    """Create the state directory for a new container; AlreadyExists if the id is taken."""
    pathnames.makedirs(root, mode=0o700, exist_ok=True, parents_mode=0o700)  # as runc
    path = container_dir(root, container_id)
    try:
        posix.mkdir(path, 0o711)
    except FileExistsError:
        raise AlreadyExists("container with given ID already exists") from None
    return path


# state.json's keys, in order (everything but root, which is where the file lives).
FIELDS = (
    "id",
    "bundle",
    "rootfs",
    "pid",
    "start_time",
    "created",
    "owner",
    "annotations",
    "config",
    "cgroup",
    "namespaces",
    "keyring",
)


# What load() requires of state.json's fields (the first six must be there): anything else
# is a damaged file, which must not become a wrong pid to signal or another container's
# directory to remove.
FIELD_TYPES: dict[str, type] = {
    "id": str,
    "bundle": str,
    "rootfs": str,
    "pid": int,
    "start_time": int,
    "created": str,
    "owner": str,
    "annotations": dict,
    "config": dict,
    "cgroup": dict,
    "namespaces": dict,
    "keyring": str,
}
REQUIRED_FIELDS = FIELDS[:6]


class CorruptState(FailedPrecondition):
    """A container's state.json is there but cannot be read. Its process and cgroup are not
    known, so no command may kill or remove on a guess (delete --force included, as runc):
    a person must look."""

    def __init__(self, root: str, container_id: str, reason: str) -> None:
        super().__init__(
            f'container "{container_id}": corrupt {STATE_FILE} ({reason}): galley-runc cannot'
            " tell its process or cgroup; stop those and remove"
            f" {container_dir(root, container_id)} by hand"
        )


def _shape_problem(data: object, container_id: str) -> str:
    """What is wrong with state.json's decoded content ("" when nothing)."""
    if not isinstance(data, dict):
        return f"not an object but {type(data).__name__}"
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        return f"no {', '.join(missing)}"
    for name, kind in FIELD_TYPES.items():
        value = data.get(name, kind())
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{name} is not a{'n' if kind is int else ''} {kind.__name__}"
    if data["id"] != container_id:
        return f"it names container {data['id']!r}"
    if data["pid"] < 1:
        return f"pid {data['pid']}"
    return _config_problem(data.get("config", {}))


# The saved config's sections the commands read after create, and their types: create
# validated them, so another type is an edited file (runc's Go decoder refuses one too).
CONFIG_TYPES: dict[str, type] = {
    "ociVersion": str,
    "process": dict,
    "root": dict,
    "mounts": list,
    "hooks": dict,
    "annotations": dict,
    "linux": dict,
}


def _config_problem(config: dict[str, Any]) -> str:
    """What is wrong with the shape of the saved config's sections ("" when nothing): the
    hooks delete runs and the namespaces exec joins down to their entries."""
    for name, kind in CONFIG_TYPES.items():
        if not isinstance(config.get(name, kind()), kind):
            return f"config.{name} is not {_JSON_NAMES[kind]}"
    for stage, hooks in config.get("hooks", {}).items():
        if not isinstance(hooks, list) or not all(isinstance(hook, dict) for hook in hooks):
            return f"config.hooks.{stage} is not an array of objects"
    namespaces = config.get("linux", {}).get("namespaces", [])
    if not isinstance(namespaces, list) or not all(isinstance(ns, dict) for ns in namespaces):
        return "config.linux.namespaces is not an array of objects"
    return ""


_JSON_NAMES: dict[type, str] = {str: "a string", dict: "an object", list: "an array"}


class ContainerState:
    """What state.json records about one container: a frozen value (dataclass-like, without
    importing dataclasses, which costs galley-runc ~7 ms a start)."""

    __slots__ = ("root", *FIELDS)
    root: str
    id: str
    bundle: str
    rootfs: str
    pid: int
    start_time: int
    created: str
    owner: str
    annotations: dict[str, str]
    config: Spec
    cgroup: dict[str, object]
    namespaces: dict[str, str]
    keyring: str  # the session keyring exec's processes join ("": none, --no-new-keyring)

    def __init__(
        self,
        *,
        root: str,
        id: str,
        bundle: str,
        rootfs: str,
        pid: int,
        start_time: int,
        created: str,
        owner: str = "",
        annotations: dict[str, str] | None = None,
        config: Spec | dict[str, Any] | None = None,
        cgroup: dict[str, object] | None = None,
        namespaces: dict[str, str] | None = None,
        keyring: str = "",
    ) -> None:
        values = {
            "root": root,
            "id": id,
            "bundle": bundle,
            "rootfs": rootfs,
            "pid": pid,
            "start_time": start_time,
            "created": created,
            "owner": owner,
            "annotations": annotations or {},
            "config": config or {},
            "cgroup": cgroup or {},
            "namespaces": namespaces or {},
            "keyring": keyring,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ContainerState is frozen: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContainerState):
            return NotImplemented
        return self.as_dict() == other.as_dict() and self.root == other.root

    def __hash__(self) -> int:
        return hash((self.root, self.id, self.pid, self.start_time))

    def __repr__(self) -> str:
        return f"ContainerState(root={self.root!r}, id={self.id!r}, pid={self.pid})"

    def as_dict(self) -> dict[str, Any]:
        """state.json's content."""
        return {name: getattr(self, name) for name in FIELDS}

    @property
    def dir(self) -> str:
        """This container's state directory."""
        return pathnames.join(self.root, self.id)

    @property
    def spec(self) -> Spec:
        """The container's config.json as it was at create."""
        return self.config

    @classmethod
    def load(cls, root: str, container_id: str) -> ContainerState:
        """Read state.json; NotFound (runc's wording) when the container does not exist."""
        path = pathnames.join(container_dir(root, container_id), STATE_FILE)
        try:
            data = jsonfast.loads(pathnames.read_bytes(path))
        except FileNotFoundError:
            raise NotFound(f'container "{container_id}" does not exist') from None
        except ValueError as e:
            raise CorruptState(root, container_id, str(e)) from None
        problem = _shape_problem(data, container_id)
        if problem:
            raise CorruptState(root, container_id, problem)
        return cls(root=root, **{k: v for k, v in data.items() if k in FIELDS})

    def save(self) -> None:
        """Write state.json atomically."""
        write_private(pathnames.join(self.dir, STATE_FILE), jsonfast.dumps(self.as_dict()))

    def replace(self, **changes: Any) -> ContainerState:
        """A copy with some fields changed (the value is frozen)."""
        values = {"root": self.root, **self.as_dict(), **changes}
        return ContainerState(**values)

    def reread(self) -> ContainerState:
        """state.json as it is now. Read it again holding the container's lock (Locked):
        since this one was read, another command may have changed it (`update`), or deleted
        the container and made another under its id."""
        return ContainerState.load(self.root, self.id)

    def same_container(self, other: ContainerState) -> bool:
        """Whether other is a reading of this container, not of one made later under its id."""
        return (self.pid, self.start_time, self.created) == (
            other.pid,
            other.start_time,
            other.created,
        )

    def alive(self) -> bool:
        """Whether the init process still runs (same pid and same start time)."""
        return self.pid > 0 and process_start_time(self.pid) == self.start_time

    def processes(self) -> list[int]:
        """The container's processes: those in its cgroup; without a cgroup (rootless: one
        may not have been made), its living init and the init's descendants."""
        if self.cgroup:
            manager = self.cgroup_manager()
            if manager.paths:
                return manager.pids()
        if not self.alive():
            return []
        from galley.kernel.proc import descendants  # noqa: PLC0415

        return descendants(self.pid)

    def cgroup_manager(self) -> CgroupManager:
        """The cgroup manager, restored from its saved form."""
        from galley.oci import cgroups  # noqa: PLC0415 - lazy: not every command needs cgroups

        return cgroups.load(self.cgroup)

    def status(self, *, check_frozen: bool = True) -> Status:
        """The derived status: paused while the cgroup is frozen (even before start, and
        even once init has died, as runc asks the freezer first: cgroup v2 lets a fatal
        signal kill a frozen process, v1 holds it until thawed); else stopped unless init
        lives, then created (the exec fifo is still there) or running. check_frozen=False
        skips reading the freezer while init lives, for a caller to whom paused and running
        are alike (`kill` of any signal but SIGKILL)."""
        alive = self.alive()
        if (check_frozen or not alive) and self.cgroup and self._frozen():
            return Status.PAUSED
        if not alive:
            return Status.STOPPED
        if pathnames.exists(fifo_path(self.dir)):
            return Status.CREATED
        return Status.RUNNING

    def _frozen(self) -> bool:
        from galley.oci.cgroups.record import saved_frozen  # noqa: PLC0415 - not the managers

        try:
            return saved_frozen(self.cgroup)
        except OSError:
            return False

    def oci_state(self, status: Status | None = None) -> State:
        """The runtime-spec state (what hooks read on stdin)."""
        status = status or self.status()
        state: State = {
            "ociVersion": str(self.config.get("ociVersion", RUNTIME_OCI_VERSION)),
            "id": self.id,
            "status": status.value,
            "pid": self.pid if status is not Status.STOPPED else 0,
            "bundle": self.bundle,
        }
        if self.annotations:
            state["annotations"] = dict(self.annotations)
        return state

    def to_runc_json(self, *, owner: str | None = None) -> dict[str, object]:
        """`runc state`'s JSON object, keys in runc's order."""
        status = self.status()
        out: dict[str, object] = {
            "ociVersion": RUNTIME_OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status is not Status.STOPPED else 0,
            "status": status.value,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
        }
        if self.annotations:  # a Go map, which runc's encoder writes in the order of its keys
            out["annotations"] = dict(sorted(self.annotations.items()))
        out["owner"] = self.owner if owner is None else owner
        return out


def list_ids(root: str) -> list[str]:
    """The ids of the containers under root, sorted (an absent root holds none)."""
    try:
        names = posix.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if pathnames.isfile(pathnames.join(root, n, STATE_FILE)))


def list_states(
    root: str, damaged: Callable[[str, CorruptState], None] | None = None
) -> Iterator[ContainerState]:
    """Every container under root whose state.json can be read; damaged(id, error) hears of
    those whose state.json is corrupt (a directory without one is a create still running,
    or one killed midway: skipped)."""
    for cid in list_ids(root):
        try:
            yield ContainerState.load(root, cid)
        except (NotFound, InvalidArgument):
            continue
        except CorruptState as e:
            if damaged is not None:
                damaged(cid, e)


class ContainerGone(NotFound):
    """The container's state directory went away before a command held its lock: another
    command deleted the container."""


class Lock:
    """An exclusive flock on a container's state directory, held for one command (without
    wait, BlockingIOError when another command holds it); or on another of its lock files,
    shared if asked. ContainerGone when the directory is no more."""

    def __init__(
        self, state_dir: str, *, wait: bool = True, name: str = LOCK_FILE, shared: bool = False
    ) -> None:
        self._path = pathnames.join(state_dir, name)
        self._fd = -1
        self._mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)

    def __enter__(self) -> Lock:
        while True:
            try:
                fd = posix.open(self._path, posix.O_RDWR | posix.O_CREAT | posix.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                raise self._gone() from None
            try:
                fcntl.flock(fd, self._mode)
                held = posix.fstat(fd)
                now = posix.stat(self._path)  # removed while we waited for the lock
            except FileNotFoundError:
                posix.close(fd)
                raise self._gone() from None
            except BaseException:
                posix.close(fd)
                raise
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                self._fd = fd
                return self
            posix.close(fd)  # removed and made again while we waited: lock the new one

    def __exit__(self, *exc: object) -> None:
        posix.close(self._fd)
        self._fd = -1

    def _gone(self) -> ContainerGone:
        container_id = self._path.rsplit("/", 2)[-2]
        return ContainerGone(f'container "{container_id}" does not exist')


class Locked:
    """`with Locked(state) as current`: the container's lock held, and current its state.json
    as read under the lock, not state's older reading (ContainerState.reread says why).
    ContainerGone when the container is no more."""

    def __init__(self, state: ContainerState) -> None:
        self._state = state
        self._lock = Lock(state.dir)

    def __enter__(self) -> ContainerState:
        self._lock.__enter__()
        try:
            return self._state.reread()
        except NotFound as e:  # the directory a create killed midway left, say
            self._lock.__exit__()
            raise ContainerGone(str(e)) from None
        except BaseException:
            self._lock.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__()


def write_private(path: str, text: str) -> None:
    """Write path whole or not at all (a temporary file renamed over it), readable by its
    owner alone, as runc writes state.json (0600): the config it holds may carry secrets in
    the process's environment."""
    tmp = path + ".tmp"
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
    try:
        posix.fchmod(fd, 0o600)  # a temporary file a killed writer left keeps its own mode
        data = text.encode()
        while data:
            data = data[posix.write(fd, data) :]
    except OSError as e:  # ENOSPC, EDQUOT: the old file stays; name the one not written
        posix.unlink(tmp)
        raise OSError(e.errno, e.strerror, path) from None
    finally:
        posix.close(fd)
    posix.rename(tmp, path)


def note_incomplete(state_dir: str, **made: object) -> None:
    """Write what the create of this state directory has made so far (INCOMPLETE_FILE)."""
    write_private(pathnames.join(state_dir, INCOMPLETE_FILE), jsonfast.dumps(made))


def read_incomplete(state_dir: str) -> dict[str, Any]:
    """What an unfinished (or killed) create noted it had made; {} when nothing."""
    try:
        noted = jsonfast.loads(pathnames.read_bytes(pathnames.join(state_dir, INCOMPLETE_FILE)))
    except (FileNotFoundError, ValueError):
        return {}
    return noted if isinstance(noted, dict) else {}


def is_incomplete(state_dir: str) -> bool:
    """Whether state_dir is what a create killed before state.json leaves: a directory of
    ours that no one else may write, holding nothing but our own names (a directory of
    anything else under --root is no container, and is left alone)."""
    try:
        st = posix.lstat(state_dir)
        names = posix.listdir(state_dir)
    except OSError:
        return False
    ours = stat.S_ISDIR(st.st_mode) and st.st_uid == posix.geteuid() and not st.st_mode & 0o022
    return ours and all(name in OWN_NAMES for name in names)


def remove(state_dir: str) -> None:
    """Remove a container's state directory: galley's own names in it only (OWN_NAMES;
    anything else makes the last rmdir fail), symlinks not followed.

    The notify directory goes with its socket (NOTIFY_SOCKET). Its other subdirectory, the
    mount point of a rootfs clone (galley.oci.hostmounts), goes
    first and with rmdir alone, so that a clone still attached (EBUSY) stops the removal
    before the rest goes: its files are the container's and its volumes', and the container
    stays there to delete again."""
    try:
        names = [name for name in posix.listdir(state_dir) if name in OWN_NAMES]
    except FileNotFoundError:
        return
    if ROOTFS_MOUNT_POINT in names:
        try:
            posix.rmdir(pathnames.join(state_dir, ROOTFS_MOUNT_POINT))
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            posix.unlink(pathnames.join(state_dir, ROOTFS_MOUNT_POINT))
    if NOTIFY_DIR in names:
        notify_dir = pathnames.join(state_dir, NOTIFY_DIR)
        try:
            posix.unlink(pathnames.join(notify_dir, NOTIFY_SOCKET))
        except FileNotFoundError:
            pass
        posix.rmdir(notify_dir)
    for name in names:
        try:
            posix.unlink(pathnames.join(state_dir, name))
        except (FileNotFoundError, IsADirectoryError):
            pass
    for _ in range(3):
        try:
            posix.rmdir(state_dir)
            return
        except OSError as err:  # a Lock opened meanwhile made its file again: that one goes
            if err.errno != errno.ENOTEMPTY:
                raise
            for name in (LOCK_FILE, EXECS_LOCK_FILE):  # an exec's, too: it takes no LOCK_FILE
                try:
                    posix.unlink(pathnames.join(state_dir, name))
                except FileNotFoundError:
                    pass
    posix.rmdir(state_dir)


def signal_start(state_dir: str) -> None:
    """Let a created container's init run its process: one byte into the exec fifo."""
    path = fifo_path(state_dir)
    name = pathnames.basename(state_dir)
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except FileNotFoundError:
        raise FailedPrecondition(f"container {name!r} cannot start: it is not created") from None
    except OSError as err:  # ENXIO: no reader, the init has gone
        raise FailedPrecondition(f"container {name!r} cannot start: {err.strerror}") from None
    try:
        posix.write(fd, b"0")
    finally:
        posix.close(fd)
    posix.unlink(path)
