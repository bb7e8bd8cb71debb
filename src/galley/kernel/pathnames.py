"""Host path names, for the modules of galley-runc: the parts of os.path (and os.makedirs,
os.walk, os.fsencode, reading a whole file) that they use, written on the posix module alone.

galley.oci, galley.kernel and galley.codecache import posix, never os. `import os` runs the
code of os and of _collections_abc, which the interpreter's start has not run yet: ~2 ms on
the 2-core test VM, on every command (a `state` takes ~8 ms past the interpreter's start).
posix holds every call they make; what os adds on top of it is here, for str paths.
"""

import posix
import stat
import sys


def join(first: str, *rest: str) -> str:
    """os.path.join: an absolute part starts the path again."""
    path = first
    for part in rest:
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def dirname(path: str) -> str:
    """os.path.dirname: everything before the last slash (without trailing slashes)."""
    head = path[: path.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


def basename(path: str) -> str:
    """os.path.basename: everything after the last slash."""
    return path[path.rfind("/") + 1 :]


def normpath(path: str) -> str:
    """os.path.normpath: '.', '..' and repeated slashes resolved lexically ('..' at the root
    stays at the root; two leading slashes are kept, as POSIX allows)."""
    if not path:
        return "."
    leading = len(path) - len(path.lstrip("/"))
    leading = 2 if leading == 2 else min(leading, 1)
    parts: list[str] = []
    for part in path.split("/"):
        if part in {"", "."}:
            continue
        if part != ".." or (not leading and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * leading + "/".join(parts) or "."


def abspath(path: str) -> str:
    """os.path.abspath: absolute, normalised (relative to the working directory)."""
    return normpath(path if path.startswith("/") else join(posix.getcwd(), path))


def go_abspath(path: str) -> str:
    """abspath as Go's filepath.Abs writes it: Go's Clean keeps no second leading slash,
    where POSIX lets os.path keep one (Linux reads "//tmp" as "/tmp")."""
    absolute = abspath(path)
    return absolute[1:] if absolute.startswith("//") else absolute


def resolved_directory(path: str) -> str:
    """The directory path names as the kernel resolves it (each symlink, and each ".." after
    one, taken as chdir takes them) and getcwd writes it: runc's bundle path, which `state`
    prints and hooks read (runc changes into the bundle and records its working directory).
    A lexical cleaning would turn "link/../b" into another directory than runc's. Where it
    cannot be opened as a directory, go_abspath's text, for the caller's error to name."""
    try:
        fd = posix.open(path or ".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError:
        return go_abspath(path)
    try:
        return posix.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return go_abspath(path)
    finally:
        posix.close(fd)


def relpath(path: str, start: str = ".") -> str:
    """os.path.relpath: path as seen from the directory start, lexically."""
    to = [part for part in abspath(path).split("/") if part]
    base = [part for part in abspath(start).split("/") if part]
    common = 0
    while common < min(len(to), len(base)) and to[common] == base[common]:
        common += 1
    return "/".join([".."] * (len(base) - common) + to[common:]) or "."


def realpath(path: str) -> str:
    """os.path.realpath: absolute, every symlink resolved. As os.path's, it does not fail: a
    part that is missing, or a loop of links, is kept as it stands."""
    resolved = "" if path.startswith("/") else posix.getcwd().rstrip("/")
    pending = path.split("/")[::-1]
    hops = 0
    while pending:
        part = pending.pop()
        if part in {"", "."}:
            continue
        if part == "..":
            resolved = resolved[: resolved.rfind("/")]
            continue
        candidate = f"{resolved}/{part}"
        try:
            target = posix.readlink(candidate)
        except OSError:  # not a link, or missing
            resolved = candidate
            continue
        hops += 1
        if hops > 40:  # the kernel's limit: a loop
            resolved = candidate
            continue
        if target.startswith("/"):
            resolved = ""
        pending.extend(target.split("/")[::-1])
    return resolved or "/"


def _mode(path: str, *, follow: bool = True) -> int:
    """The file type and mode bits of path (0: it cannot be stat'ed)."""
    try:
        return posix.stat(path, follow_symlinks=follow).st_mode
    except (OSError, ValueError):
        return 0


def exists(path: str) -> bool:
    return _mode(path) != 0


def lexists(path: str) -> bool:
    return _mode(path, follow=False) != 0


def isdir(path: str) -> bool:
    return stat.S_ISDIR(_mode(path))


def isfile(path: str) -> bool:
    return stat.S_ISREG(_mode(path))


def ismount(path: str) -> bool:
    """os.path.ismount: path is a mount point (its parent is on another device, or is the
    same directory: the root)."""
    try:
        here = posix.lstat(path)
        if stat.S_ISLNK(here.st_mode):
            return False
        parent = posix.lstat(join(path, ".."))
    except (OSError, ValueError):
        return False
    return here.st_dev != parent.st_dev or here.st_ino == parent.st_ino


def makedirs(
    path: str, mode: int = 0o777, *, exist_ok: bool = False, parents_mode: int = 0o777
) -> None:
    """os.makedirs: path and its missing parents (those with parents_mode)."""
    try:
        posix.mkdir(path, mode)
        return
    except FileNotFoundError:
        parent = dirname(path.rstrip("/"))
        if parent in {"", path}:
            raise
        makedirs(parent, parents_mode, exist_ok=True, parents_mode=parents_mode)
    except FileExistsError:
        if not (exist_ok and isdir(path)):
            raise
        return
    try:  # the parents exist now
        posix.mkdir(path, mode)
    except FileExistsError:
        if not (exist_ok and isdir(path)):
            raise


def private_directory(prefix: str) -> str:
    """tempfile.mkdtemp(prefix=prefix): a new directory only its owner may enter, in $TMPDIR
    or /tmp (tempfile itself imports random and shutil: ~10 ms)."""
    top = environ("TMPDIR") or "/tmp"
    while True:
        path = join(top, prefix + posix.urandom(8).hex())
        try:
            posix.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path


def directories(top: str, *, bottom_up: bool = False) -> list[str]:
    """top and every directory below it, parents first (children first with bottom_up);
    symlinks are not followed, and one that vanishes on the way is left out (os.walk)."""
    found = [top]
    index = 0
    while index < len(found):
        try:
            with posix.scandir(found[index]) as entries:
                found += [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
        except OSError:
            pass
        index += 1
    return found[::-1] if bottom_up else found


def fsencode(path: str | bytes) -> bytes:
    """os.fsencode: a path as the kernel takes it."""
    if isinstance(path, bytes):
        return path
    return path.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def fsdecode(path: str | bytes) -> str:
    """os.fsdecode: a path the kernel gave, as str."""
    if isinstance(path, str):
        return path
    return path.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def environ(name: str) -> str | None:
    """os.environ.get(name): the variable as galley-runc was started with it."""
    value = posix.environ.get(fsencode(name))
    return None if value is None else fsdecode(value)


def read_bytes(path: str) -> bytes:
    """The whole file. open() would build a buffered stream and ask fstat, isatty and lseek
    first (~12 us a file on the 2-core test VM), where a create reads some forty /proc and
    cgroup files."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        chunks = []
        while chunk := posix.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        posix.close(fd)


def read_text(path: str, errors: str = "strict") -> str:
    """The whole file as UTF-8 text. Unlike open()'s text mode it leaves a "\\r" alone: in
    /proc and cgroup files one is part of a name, never a line's end."""
    return read_bytes(path).decode("utf-8", errors)
