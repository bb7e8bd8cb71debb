"""Compiled seccomp programs kept on disk, so containers sharing a profile skip libseccomp.

Building a Docker-style profile (~350 rules, three architectures) costs libseccomp 10-20 ms per
container; a CRI node starts most containers with the same RuntimeDefault profile.

    <cache_dir>/<crc32 of the key>-<length of the key>.bpf     marshal of
        {"key": marshal((profile, libseccomp version, API level, machine, kernel release)),
         "program": BPF bytes, "flags": seccomp(2) flags, "notify": bool}

The file name is only a hint: an entry is used when its stored key equals the current key byte
for byte, so a crc32 collision can never load another profile's filter. Writes are atomic
(rename) and best effort: a cache that cannot be written (read-only root, a user namespace's
root lacking access) only costs the compile time. The directory must be writable by root only
(it lives under the runtime's --root): whoever can write an entry chooses a container's filter.
"""

from __future__ import annotations

import marshal
import posix
import zlib

from galley.kernel import pathnames
from galley.kernel import seccomp as scmp

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import Seccomp

_FORMAT = 1


def key_of(seccomp: Seccomp) -> bytes:
    """The exact cache key: the profile and every host fact libseccomp's output depends on."""
    uname = posix.uname()
    facts = (_FORMAT, scmp.version(), scmp.api_level(), uname.machine, uname.release)
    return marshal.dumps((dict(seccomp), facts))


def _path(cache_dir: str, key: bytes) -> str:
    return pathnames.join(cache_dir, f"{zlib.crc32(key):08x}-{len(key)}.bpf")


def _trusted(cache_dir: str) -> bool:
    """Only a directory that no one but its owner, our own uid, can write is trusted."""
    st = posix.stat(cache_dir)
    return st.st_uid == posix.geteuid() and not st.st_mode & 0o022


def lookup(cache_dir: str, key: bytes) -> dict[str, object] | None:
    """The cached entry for key ({program, flags, notify}), or None."""
    try:
        if not _trusted(cache_dir):
            return None
        with open(_path(cache_dir, key), "rb") as f:
            entry = marshal.loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    return entry


def store(cache_dir: str, key: bytes, program: bytes, flags: int, notify: bool) -> None:
    """Save an entry atomically; failures are ignored (the cache is an optimisation)."""
    path = _path(cache_dir, key)
    # Not named by pid alone: the create stage is pid 1 of its container's pid namespace, as
    # every other stage storing at the same moment may be.
    temporary = f"{path}.{posix.getpid()}-{posix.urandom(6).hex()}.tmp"
    data = marshal.dumps({"key": key, "program": program, "flags": flags, "notify": notify})
    try:
        pathnames.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = posix.open(
            temporary, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC, 0o600
        )
    except OSError:
        return
    try:
        try:
            posix.write(fd, data)
        finally:
            posix.close(fd)
        posix.replace(temporary, path)
    except OSError:
        try:
            posix.unlink(temporary)  # ours: O_EXCL made it
        except OSError:
            pass
