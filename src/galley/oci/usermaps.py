"""P's half of a new user namespace: its uid_map and gid_map (user_namespaces(7)).

Root writes both maps itself. A caller that is not root (rootless) may write only a map of its
own id, and a gid_map only once the namespace's setgroups is "deny"; wider maps (the ranges
/etc/subuid and /etc/subgid grant it) go through the set-user-ID helpers newuidmap and
newgidmap, as runc does:

    gidMappings just the caller's own gid  →  setgroups "deny", then gid_map written here
    a map written here refused (EPERM)     →  newuidmap / newgidmap <pid> <c h s>...

With setgroups denied, the container's processes keep the groups they have (runc's too).
The stage is dumpable meanwhile (galley.oci.namespaces): else root would own its /proc files.
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from galley.oci.spec import IDMapping

_TOOLS = {"uid_map": "newuidmap", "gid_map": "newgidmap"}
_FIELDS = {"uid_map": "linux.uidMappings", "gid_map": "linux.gidMappings"}  # named in errors


def write_id_maps(pid: int, uid_mappings: list[IDMapping], gid_mappings: list[IDMapping]) -> None:
    """Map the ids of the user namespace of process pid, which waits for it."""
    rootless = posix.geteuid() != 0
    if rootless and _own_gid_only(gid_mappings):
        _write_proc(f"/proc/{pid}/setgroups", "deny")
    _write_map(pid, "uid_map", uid_mappings, rootless=rootless)
    _write_map(pid, "gid_map", gid_mappings, rootless=rootless)


def _own_gid_only(mappings: list[IDMapping]) -> bool:
    return [(m["hostID"], m["size"]) for m in mappings] == [(posix.getegid(), 1)]


def map_text(mappings: list[IDMapping]) -> str:
    """What is written to a uid_map or gid_map: a line "<container> <host> <size>" each (the
    kernel takes it in one write shorter than a page)."""
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def _write_map(pid: int, name: str, mappings: list[IDMapping], *, rootless: bool) -> None:
    text = map_text(mappings)
    if not text:
        return
    try:
        _write_proc(f"/proc/{pid}/{name}", text)
        return
    except PermissionError as err:
        if not rootless:
            raise _explained(err, name, text) from None
        refused = err
    except OSError as err:
        raise _explained(err, name, text) from None
    import shutil  # noqa: PLC0415 - rootless with wide maps only

    tool = shutil.which(_TOOLS[name])
    if tool is None:
        raise FailedPrecondition(
            f"{_explained(refused, name, text).strerror}: a caller that is not root maps other"
            f" ids than its own with {_TOOLS[name]} (Debian's uidmap package), which is not"
            " installed"
        )
    _run_tool(tool, pid, mappings, _FIELDS[name])


def _explained(err: OSError, name: str, text: str) -> OSError:
    message = f"{_FIELDS[name]}: write {name} {text.strip()!r}: {err.strerror}"
    return OSError(err.errno, message, err.filename)


def _run_tool(tool: str, pid: int, mappings: list[IDMapping], field: str) -> None:
    import subprocess  # noqa: PLC0415 - rootless with wide maps only

    numbers = [str(m[key]) for m in mappings for key in ("containerID", "hostID", "size")]
    done = subprocess.run([tool, str(pid), *numbers], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        reason = done.stderr.strip().replace("\n", "; ") or f"exit status {done.returncode}"
        raise FailedPrecondition(f"{field}: {tool} {pid} {' '.join(numbers)}: {reason}")


def _write_proc(path: str, text: str) -> None:
    fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, text.encode())
    finally:
        posix.close(fd)
