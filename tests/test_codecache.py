"""galley.codecache: galley-runc's modules from one file, never staler than their sources."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from galley import codecache

REPO = Path(__file__).resolve().parent.parent

# Imports pkg.mod and pkg.sub in a fresh interpreter with the cache installed; prints what
# each module says and which loader served it.
DRIVER = """
import sys
sys.path.insert(0, {src!r})
sys.path.insert(0, {repo_src!r})
from galley import codecache
cache = codecache.install({cache!r}, {src!r})
import pkg.mod, pkg.sub
for module in (pkg, pkg.mod, pkg.sub):
    print(module.__name__, module.VALUE, type(module.__loader__).__name__, module.__file__)
print("path", pkg.__path__)
print("cached", pkg.mod.__cached__)
"""


def _tree(root: Path) -> Path:
    src = root / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("VALUE = 'package'\n")
    (src / "pkg" / "mod.py").write_text("VALUE = 'module'\n")
    (src / "pkg" / "sub.py").write_text("from pkg.mod import VALUE as _V\nVALUE = _V + '+sub'\n")
    return src


def _import(src: Path, cache: Path) -> list[str]:
    driver = DRIVER.format(src=str(src), repo_src=str(REPO / "src"), cache=str(cache))
    out = subprocess.run(
        [sys.executable, "-IS", "-B", "-c", driver], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_modules_come_from_the_cache_with_their_own_names_and_files(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    cache = tmp_path / "cache.bin"
    assert codecache.build(str(cache), ["pkg"], str(src), stdlib=()) == 3
    lines = _import(src, cache)
    assert lines[:3] == [
        f"pkg package CodeCache {src / 'pkg' / '__init__.py'}",
        f"pkg.mod module CodeCache {src / 'pkg' / 'mod.py'}",
        f"pkg.sub module+sub CodeCache {src / 'pkg' / 'sub.py'}",
    ]
    assert lines[3] == f"path [{str(src / 'pkg')!r}]"
    assert lines[4] == f"cached {cache}"  # where its code is, not a .pyc path derived for it


def test_an_edited_module_is_imported_from_its_source(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    cache = tmp_path / "cache.bin"
    codecache.build(str(cache), ["pkg"], str(src))
    edited = src / "pkg" / "mod.py"
    edited.write_text("VALUE = 'edited'\n")  # same size as before: the mtime tells
    stat = edited.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    lines = _import(src, cache)
    assert lines[1].split()[:3] == ["pkg.mod", "edited", "SourceFileLoader"]
    assert lines[2].split()[:3] == ["pkg.sub", "edited+sub", "CodeCache"]


def test_a_copied_tree_checks_its_own_files(tmp_path: Path) -> None:
    """Entries name files relative to src: a copy of the tree never runs the original's code."""
    original = _tree(tmp_path / "a")
    cache = tmp_path / "cache.bin"
    codecache.build(str(cache), ["pkg"], str(original))
    copy = _tree(tmp_path / "b")
    (copy / "pkg" / "mod.py").write_text("VALUE = 'the copy'\n")
    lines = _import(copy, cache)
    assert lines[1].split()[:3] == ["pkg.mod", "the", "copy"]


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x10garbage", b"\xff" * 64])
def test_an_unreadable_cache_is_no_cache(tmp_path: Path, content: bytes) -> None:
    cache = tmp_path / "cache.bin"
    cache.write_bytes(content)
    before = list(sys.meta_path)
    assert codecache.install(str(cache)) is None
    assert sys.meta_path == before


def test_a_cache_for_another_bytecode_version_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path)
    cache = tmp_path / "cache.bin"
    monkeypatch.setattr(codecache, "MAGIC", b"\x00\x00\r\n")
    codecache.build(str(cache), ["pkg"], str(src))
    monkeypatch.undo()
    assert codecache.install(str(cache), str(src)) is None
    assert codecache.install(str(tmp_path / "missing.bin")) is None


def test_a_plain_module_is_served_alone(tmp_path: Path) -> None:
    """A name in packages that is a module, not a package: that module and nothing else."""
    src = _tree(tmp_path)
    cache = tmp_path / "cache.bin"
    assert codecache.build(str(cache), ["pkg.mod"], str(src), stdlib=()) == 1
    lines = _import(src, cache)
    assert lines[:3] == [
        f"pkg package SourceFileLoader {src / 'pkg' / '__init__.py'}",
        f"pkg.mod module CodeCache {src / 'pkg' / 'mod.py'}",
        f"pkg.sub module+sub SourceFileLoader {src / 'pkg' / 'sub.py'}",
    ]


def test_galley_runc_runs_from_the_cache_setup_builds() -> None:
    """What scripts/setup.sh and scripts/test.sh build: every module of galley.oci and
    galley.kernel, and galley.errors, and galley-runc's own imports served from it."""
    built = subprocess.run(
        ["/usr/bin/python3", "-IS", str(REPO / "src" / "galley" / "codecache.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert built.stdout.split()[0].isdigit() and int(built.stdout.split()[0]) > 50
    probe = (
        f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); from galley import codecache; "
        "codecache.install(); from galley import errors; from galley.oci import cli, launch; "
        "print(*(type(m.__loader__).__name__ for m in (cli, launch, errors)))"
    )
    out = subprocess.run(
        ["/usr/bin/python3", "-IS", "-c", probe], capture_output=True, text=True, check=False
    )
    assert out.stdout.split() == ["CodeCache", "CodeCache", "CodeCache"], out.stderr


def test_standard_library_files_come_from_the_cache_without_a_path_search(
    tmp_path: Path,
) -> None:
    """__future__'s code and the extension modules galley-runc loads are served by the cache:
    importlib never searches sys.path for them, nor lists lib-dynload. (Built by the Python
    galley-runc runs, into its own file.)"""
    cache_file = str(tmp_path / "cache.bin")
    prelude = (
        f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); from galley import codecache; "
    )
    subprocess.run(
        ["/usr/bin/python3", "-IS", "-c", prelude + f"codecache.build({cache_file!r})"], check=True
    )
    probe = (
        prelude + f"cache = codecache.install({cache_file!r}); "
        "import __future__, _ctypes, _json, resource, termios; "
        "print(type(__future__.__loader__).__name__, _json.__file__ == cache._source("
        "cache.entries['_json'][0]), [p for p in sys.path_importer_cache if "
        "p.endswith('lib-dynload')])"
    )
    out = subprocess.run(
        ["/usr/bin/python3", "-IS", "-c", probe], capture_output=True, text=True, check=False
    )
    assert out.stdout.split() == ["CodeCache", "True", "[]"], out.stderr


def test_a_standard_library_entry_serves_only_the_file_it_was_built_from(tmp_path: Path) -> None:
    """Entries are relative to the running interpreter's standard library and stamped: a
    cache built by another Python (or before an upgrade) finds other files, and falls back."""
    src = _tree(tmp_path)
    cache_file = tmp_path / "cache.bin"
    stdlib = ("_json", "__future__", "os", "posix")  # os is frozen, posix built in: left out
    assert codecache.build(str(cache_file), ["pkg"], str(src), stdlib) == 5
    cache = codecache.install(str(cache_file), str(src))
    assert cache is not None
    try:
        relative = cache.entries["_json"][0]
        assert relative.startswith(codecache.IN_STDLIB) and cache.entries["_json"][3] == -1
        spec = cache.find_spec("_json")
        assert spec is not None and spec.origin == os.path.join(
            os.path.dirname(os.__file__), relative.removeprefix(codecache.IN_STDLIB)
        )
        other = tmp_path / "other-python"  # the same names, other files
        (other / "lib-dynload").mkdir(parents=True)
        assert spec.origin is not None
        (other / os.path.relpath(spec.origin, cache.stdlib)).write_bytes(b"not this one")
        (other / "__future__.py").write_text("raise SystemExit('the wrong __future__')\n")
        cache.stdlib = str(other)
        assert cache.find_spec("_json") is None
        assert cache.find_spec("__future__") is None
        cache.stdlib = ""  # an interpreter whose os module has no __file__
        assert cache.find_spec("_json") is None
    finally:
        sys.meta_path.remove(cache)
        os.close(cache.fd)


def test_damaged_code_is_compiled_from_the_source(tmp_path: Path) -> None:
    """An index that reads well over code that does not (a truncated file): the import still
    works, from the source."""
    src = _tree(tmp_path)
    cache = tmp_path / "cache.bin"
    codecache.build(str(cache), ["pkg"], str(src))
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) - 20])  # the last module's code is cut short
    lines = _import(src, cache)
    assert [line.split()[:2] for line in lines[:3]] == [
        ["pkg", "package"],
        ["pkg.mod", "module"],
        ["pkg.sub", "module+sub"],
    ]
    assert all(line.split()[2] == "CodeCache" for line in lines[:3])


INTERPRETER = "/usr/bin/python3"  # galley-runc's, from its shebang
SRC = str(REPO / "src")


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INTERPRETER, "-IS", "-c", code, *args], capture_output=True, text=True, check=False
    )


BUILD = """
import os, sys
sys.path.insert(0, {src!r})
from galley import codecache
os.umask(int(sys.argv[3], 8))
codecache.build(sys.argv[1], ("rvpkg",), sys.argv[2])
"""


def _package(src: Path) -> Path:
    (src / "rvpkg").mkdir(parents=True)
    (src / "rvpkg" / "__init__.py").write_text("")
    module = src / "rvpkg" / "mod.py"
    module.write_text("VALUE = 1\n")
    return module


def test_code_cache_is_not_writable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    """Root runs this code: whatever the umask of whoever built it, no one else may write it,
    and a cache others could have written is not used."""
    src = tmp_path / "src"
    _package(src)
    cache = tmp_path / "cache" / "runtime.bin"
    built = _python(BUILD.format(src=SRC), str(cache), str(src), "0")
    assert built.returncode == 0, built.stderr
    mode = stat.S_IMODE(cache.stat().st_mode)
    assert not mode & 0o022, f"the code cache is mode {mode:o}"
    assert codecache.install(str(cache), str(src)) is not None
    sys.meta_path.pop(0)
    cache.chmod(0o666)
    assert codecache.install(str(cache), str(src)) is None


INSTALL = """
import sys
sys.path.insert(0, {src!r})
from galley import codecache
assert codecache.install(sys.argv[1], sys.argv[2]) is not None
sys.path.insert(0, sys.argv[2])
import rvpkg.mod
print(rvpkg.mod.VALUE)
"""


def test_code_cache_serves_no_stale_code_after_a_same_size_edit(tmp_path: Path) -> None:
    """An edit of the same size whose mtime is put back (cp -p, rsync -a, tar x) still shows:
    its ctime moved."""
    src = tmp_path / "src"
    module = _package(src)
    cache = tmp_path / "cache" / "runtime.bin"
    built = _python(BUILD.format(src=SRC), str(cache), str(src), "022")
    assert built.returncode == 0, built.stderr
    before = module.stat()
    module.write_text("VALUE = 2\n")  # same size
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))  # cp -p, rsync -a, tar x
    imported = _python(INSTALL.format(src=SRC), str(cache), str(src))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "2", "the cache served the module's old code"


def test_cached_code_has_no_docstrings_or_asserts(tmp_path: Path) -> None:
    """Compiled as -OO would: the cache's bytes are code, not documentation."""
    src = _tree(tmp_path)
    (src / "pkg" / "mod.py").write_text('"""Documented."""\nassert False\nVALUE = str(__doc__)\n')
    cache = tmp_path / "cache.bin"
    codecache.build(str(cache), ["pkg"], str(src))
    assert _import(src, cache)[1].split()[:3] == ["pkg.mod", "None", "CodeCache"]
