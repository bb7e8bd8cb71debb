"""One file with the compiled code of galley-runc's modules, so that its imports are cheap.

A command of galley-runc imports about 40 of our modules, and the stage it forks another 20.
importlib spends ~80 us on each before the module's code even runs (the path search, stats,
opening and checking the .pyc); here an import is a dict lookup, one stat and an unmarshal.

    build()          compile galley.oci, galley.kernel and galley.errors into CACHE
                     (scripts/setup.sh and bench/ run it); written to a temporary file
                     and renamed into place
    install()        bin/galley-runc, before its first import: a finder, first on
                     sys.meta_path, that serves the modules the cache holds

The file is an index (4-byte length, then the marshalled index) followed by each module's
marshalled code: install() reads the index only, and an import preads its own code, so a
command pays for the modules it imports and not for the file (reading all of it would cost
more than the cache saves). The file stays open, close-on-exec (the stage forked from
galley-runc uses it too).

The few standard-library modules galley-runc loads from files are served too (STDLIB):
`__future__`'s code, and the extension modules by their recorded path, so that none of them
costs a search of sys.path (the first one also listed lib-dynload: ~0.3 ms in all). Their
entries are relative to the running interpreter's standard library, so a cache built by
another Python never loads that Python's files.

The cache is never stale, only incomplete: each entry records its source file's mtime and
ctime (ns), inode and size (stamp), and a module whose source changed since, a copied tree,
or a cache written for another bytecode version is imported the usual way. An unreadable
cache, or one that another user or group could have written, is no cache.
"""

# No `from __future__ import annotations` here: this module is imported before install(), and
# __future__ is a module of its own (~0.2 ms to find on sys.path); the annotations that name
# types only the type checker imports are strings instead.
import _frozen_importlib  # importlib.machinery costs ~1 ms; this one is loaded already
import _frozen_importlib_external
import marshal
import posix  # not os: galley.kernel.pathnames says why
import sys

TYPE_CHECKING = False  # typing costs galley-runc milliseconds; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType


def _parent(path: str) -> str:
    return path[: path.rfind("/")] or "/"


_HERE = __file__ if __file__.startswith("/") else f"{posix.getcwd()}/{__file__}"
SRC = _parent(_parent(_HERE))
CACHE = f"{SRC}/galley/__pycache__/runtime.{sys.implementation.cache_tag}.bin"
# What galley-runc imports of ours, and only that: packages (every module under them) or modules.
# Only galley and galley.codecache itself are imported before the cache is there.
PACKAGES = ("galley.oci", "galley.kernel", "galley.errors")
# What galley-runc imports of the standard library that is neither built in nor frozen.
STDLIB = ("__future__", "_ctypes", "_json", "resource", "termios")
MAGIC = _frozen_importlib_external.MAGIC_NUMBER  # the .pyc format's version
# An entry's path under the running interpreter's standard library starts with this.
IN_STDLIB = "<stdlib>/"

# name -> (source path under src or IN_STDLIB, its stamp, is a package, offset of the code
# (-1: an extension module, loaded from its path), length)
Entry = tuple[str, tuple[int, int, int, int], bool, int, int]
_INDEX_GUESS = 1 << 14  # the index of galley.oci and galley.kernel is ~8 KiB
# Compiled as `python -OO` would: no docstrings (galley-runc never reads one; they are ~13% of
# the cache's bytes, unmarshalled on every import) and no asserts (the few there are only
# narrow types for mypy).
OPTIMIZE = 2


class CodeCache:
    """The meta-path finder and loader for the modules of one cache file."""

    def __init__(self, fd: int, entries: dict[str, Entry], src: str, path: str = CACHE) -> None:
        self.fd = fd
        self.entries = entries
        self.src = src
        self.path = path
        self.stdlib = _stdlib_dir()

    def find_spec(
        self, name: str, path: "Sequence[str] | None" = None, target: "ModuleType | None" = None
    ) -> "ModuleSpec | None":
        entry = self.entries.get(name)
        if entry is None:
            return None
        relative, built, is_package, offset = entry[:4]
        source = self._source(relative)
        try:
            if not source or stamp(posix.stat(source)) != built:
                return None  # edited (or copied) since build(): importlib compiles it
        except OSError:
            return None
        if offset < 0:  # an extension module, where importlib's search would find it
            extension = _frozen_importlib_external.ExtensionFileLoader(name, source)
            return _frozen_importlib_external.spec_from_file_location(
                name, source, loader=extension
            )
        spec: ModuleSpec = _frozen_importlib.ModuleSpec(
            name,
            self,  # type: ignore[arg-type]  # a loader by its methods: importlib.abc costs ~2 ms
            origin=source,
            is_package=is_package,
        )
        spec.has_location = True  # __file__ is the source file, for tracebacks
        spec.cached = self.path  # __cached__; importlib would derive a .pyc path (~10 us)
        if is_package:
            spec.submodule_search_locations = [_parent(source)]
        return spec

    def create_module(self, spec: "ModuleSpec") -> None:
        return None  # the default module object

    def exec_module(self, module: "ModuleType") -> None:
        exec(self._code(module.__name__), module.__dict__)  # as a .pyc's code would be

    def _code(self, name: str) -> "CodeType":
        """The module's code from the cache, or compiled from its source if the cache's bytes
        are damaged (a truncated file, a disk error): a bad cache never breaks an import."""
        relative, _, _, offset, length = self.entries[name]
        source = self._source(relative)
        try:
            data = posix.pread(self.fd, length, offset)
            if len(data) == length:
                code: CodeType = marshal.loads(data)
                return code
        except (OSError, ValueError, EOFError, TypeError):
            pass
        with open(source, "rb") as f:
            return compile(f.read(), source, "exec", dont_inherit=True, optimize=OPTIMIZE)

    def _source(self, relative: str) -> str:
        """The file an entry names ("" for the standard library's, where it is unknown)."""
        if relative.startswith(IN_STDLIB):
            if not self.stdlib:
                return ""
            return f"{self.stdlib}/{relative[len(IN_STDLIB) :]}"
        return f"{self.src}/{relative}"


def _stdlib_dir() -> str:
    """The running interpreter's standard library, where its os.py is ("" if unknown)."""
    stdlib: str = getattr(sys, "_stdlib_dir", None) or ""
    return stdlib


def install(path: str = CACHE, src: str = SRC) -> "CodeCache | None":
    """Serve imports from the cache at path (None, and nothing changes, without a usable one)."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        head = posix.pread(fd, _INDEX_GUESS, 0)
        size = int.from_bytes(head[:4], "little")
        if size + 4 > len(head):
            head = posix.pread(fd, size + 4, 0)
        magic, entries = marshal.loads(head[4 : 4 + size])
        usable = magic == MAGIC and _trusted(posix.fstat(fd)) and _well_formed(entries)
    except (OSError, ValueError, EOFError, TypeError):
        usable = False
    if not usable:  # unreadable, another Python's, or a file others could have written
        posix.close(fd)
        return None
    cache = CodeCache(fd, entries, src, path)
    sys.meta_path.insert(0, cache)
    return cache


def stamp(st: "posix.stat_result") -> tuple[int, int, int, int]:
    """What an entry records of its source: mtime, ctime (which no utime() can set back),
    inode and size. An edit changes the ctime, and a copy of the tree has other inodes."""
    return st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size


def _trusted(st: "posix.stat_result") -> bool:
    """Root runs this code: only a file of our own user that no one else can write is used."""
    return st.st_uid == posix.geteuid() and not st.st_mode & 0o022


def _well_formed(entries: object) -> bool:
    return isinstance(entries, dict) and all(
        isinstance(entry, tuple) and len(entry) == 5 for entry in entries.values()
    )


def build(
    path: str = CACHE,
    packages: "Sequence[str]" = PACKAGES,
    src: str = SRC,
    stdlib: "Sequence[str]" = STDLIB,
) -> int:
    """Compile every module of packages (found under src; a name may be a plain module
    too) and of stdlib into the cache at path; how many modules it serves."""
    import os  # noqa: PLC0415 - setup time only; galley-runc never builds

    index: dict[str, Entry] = {}
    codes: list[bytes] = []
    offset = 0
    extensions, sources = _stdlib(stdlib)
    for name, source, is_package in [*_modules(packages, src), *sources]:
        with open(source, "rb") as f:
            st = os.fstat(f.fileno())  # before the read: an edit meanwhile shows as stale
            source_code = f.read()
            code = marshal.dumps(
                compile(source_code, source, "exec", dont_inherit=True, optimize=OPTIMIZE)
            )
        index[name] = (_relative(source, src), stamp(st), is_package, offset, len(code))
        codes.append(code)
        offset += len(code)
    for name, library in extensions:
        index[name] = (_relative(library, src), stamp(os.stat(library)), False, -1, 0)
    head = marshal.dumps((MAGIC, index))
    base = 4 + len(head)
    index = {
        name: (*entry[:3], entry[3] + base if entry[3] >= 0 else -1, entry[4])
        for name, entry in index.items()
    }
    head = marshal.dumps((MAGIC, index))
    if 4 + len(head) != base:
        raise AssertionError("the index changed size when its offsets moved")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}-{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:  # 0644 whatever the umask: root runs this code
        f.write(len(head).to_bytes(4, "little") + head + b"".join(codes))
    os.replace(tmp, path)
    return len(index)


def _relative(source: str, src: str) -> str:
    import os  # noqa: PLC0415 - build() only

    stdlib = _stdlib_dir()
    if stdlib and source.startswith(stdlib + os.sep):
        return IN_STDLIB + os.path.relpath(source, stdlib)
    return os.path.relpath(source, src)


def _stdlib(
    names: "Sequence[str]",
) -> tuple[list[tuple[str, str]], list[tuple[str, str, bool]]]:
    """Of names, what this interpreter loads from files in its standard library: the
    extension modules (name, file) and the Python modules (name, source, False). Built-in
    and frozen ones are left out."""
    import _imp  # noqa: PLC0415 - build() only
    import os  # noqa: PLC0415 - build() only
    from importlib.machinery import ExtensionFileLoader, PathFinder  # noqa: PLC0415 - build()

    if not _stdlib_dir():
        return [], []
    stdlib = _stdlib_dir() + os.sep
    extensions, sources = [], []
    for name in names:
        if name in sys.builtin_module_names or _imp.is_frozen(name):
            continue  # importlib's own finders serve these before any file is looked at
        spec = PathFinder.find_spec(name, [stdlib, os.path.join(stdlib, "lib-dynload")])
        if spec is None or spec.origin is None or not spec.origin.startswith(stdlib):
            continue
        if isinstance(spec.loader, ExtensionFileLoader):
            extensions.append((name, spec.origin))
        elif spec.origin.endswith(".py"):
            sources.append((name, spec.origin, False))
    return extensions, sources


def _modules(packages: "Sequence[str]", src: str) -> list[tuple[str, str, bool]]:
    """(module name, source file, is a package) for every module of packages (and for each
    name that is a plain module, itself)."""
    import os  # noqa: PLC0415 - build() only

    found = []
    for package in packages:
        top = os.path.join(src, *package.split("."))
        if os.path.isfile(f"{top}.py"):
            found.append((package, f"{top}.py", False))
            continue
        for directory, subdirectories, files in os.walk(top):
            subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
            for file in sorted(f for f in files if f.endswith(".py")):
                source = os.path.join(directory, file)
                parts = os.path.relpath(source, src)[: -len(".py")].split(os.sep)
                is_package = parts[-1] == "__init__"
                found.append((".".join(parts[:-1] if is_package else parts), source, is_package))
    return found


if __name__ == "__main__":
    print(f"{build()} modules -> {CACHE}")
