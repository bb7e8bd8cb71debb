"""The compiled-program cache: a second compile of the same profile skips libseccomp, loads the
same program, and never takes another profile's entry."""

from __future__ import annotations

import errno
import marshal
import posix
from pathlib import Path
from typing import Any

import pytest

from galley.oci import seccomp
from galley.oci import seccomp_cache as cache
from tests.oci.conftest import Bundle, Runtime
from tests.oci.process_probe import BUSYBOX, run_child

pytestmark = pytest.mark.root


def profile(errno_ret: int) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret}
        ],
    }


def mkdir_text(filt: seccomp.SeccompFilter, tmp_path: Path) -> str:
    probe = run_child(filt.load, [BUSYBOX, "mkdir", str(tmp_path / "made")], tmp_path)
    assert probe.status == 1, probe.stderr
    return probe.stderr


def test_second_compile_comes_from_the_cache(tmp_path: Path) -> None:
    cache_dir = str(tmp_path / "cache")
    first = seccomp.compile_filter(profile(errno.EROFS), cache_dir)  # type: ignore[arg-type]
    second = seccomp.compile_filter(profile(errno.EROFS), cache_dir)  # type: ignore[arg-type]
    assert first.context is not None and second.context is None
    assert first.program == second.program and first.program
    assert len(list(Path(cache_dir).iterdir())) == 1
    assert "Read-only file system" in mkdir_text(second, tmp_path)
    first.close()


def test_another_profile_never_uses_the_entry(tmp_path: Path) -> None:
    """Even under the same file name (a crc32 collision), only an exact key matches."""
    cache_dir = str(tmp_path / "cache")
    rofs = profile(errno.EROFS)
    seccomp.compile_filter(rofs, cache_dir).close()  # type: ignore[arg-type]
    other = profile(errno.ENOSPC)
    entry_file = next(Path(cache_dir).iterdir())
    entry_file.rename(Path(cache_dir) / Path(cache._path(cache_dir, cache.key_of(other))).name)  # type: ignore[arg-type]
    filt = seccomp.compile_filter(other, cache_dir)  # type: ignore[arg-type]
    assert filt.context is not None  # compiled, not taken from the misnamed entry
    assert "No space left on device" in mkdir_text(filt, tmp_path)
    filt.close()


def test_corrupt_or_unwritable_cache_is_ignored(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    key = cache.key_of(profile(errno.EROFS))  # type: ignore[arg-type]
    cache_dir.mkdir()
    Path(cache._path(str(cache_dir), key)).write_bytes(b"not marshal")
    filt = seccomp.compile_filter(profile(errno.EROFS), str(cache_dir))  # type: ignore[arg-type]
    assert filt.context is not None
    filt.close()
    entry = marshal.loads(Path(cache._path(str(cache_dir), key)).read_bytes())
    assert entry["key"] == key  # the corrupt file was replaced
    blocked = tmp_path / "file"
    blocked.write_text("")
    filt = seccomp.compile_filter(profile(errno.EROFS), str(blocked / "cache"))  # type: ignore[arg-type]
    assert "Read-only file system" in mkdir_text(filt, tmp_path)
    filt.close()


def test_a_directory_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    seccomp.compile_filter(profile(errno.EROFS), str(cache_dir)).close()  # type: ignore[arg-type]
    cache_dir.chmod(0o777)
    filt = seccomp.compile_filter(profile(errno.EROFS), str(cache_dir))  # type: ignore[arg-type]
    assert filt.context is not None  # compiled again, the entry was not read
    filt.close()


def test_runtime_caches_filters_under_its_root(runtime: Runtime, bundle: Bundle) -> None:
    """Containers under one --root share compiled filters in <root>/@seccomp; a cached filter
    denies as the compiled one did, and the cache is no container."""
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    bundle.config["process"]["args"] = ["sh", "-c", "mkdir /tmp/x || echo denied"]
    path = str(bundle.write())
    written: list[int] = []
    for _ in range(2):
        res = runtime("run", "-b", path, runtime.new_id())
        assert (res.returncode, res.stdout) == (0, "denied\n"), res.stderr
        entries = list((runtime.root / "@seccomp").glob("*.bpf"))
        assert len(entries) == 1
        written.append(entries[0].stat().st_mtime_ns)
    assert written[0] == written[1]  # the second container read it, wrote nothing
    assert runtime("list", "-q", check=True).stdout == ""


def test_stores_from_stages_with_the_same_pid_do_not_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every create stage is pid 1 of its own pid namespace: a temporary file named by pid
    alone would be another stage's (whose file the failed store then removed)."""
    monkeypatch.setattr(posix, "getpid", lambda: 1)  # the module seccomp_cache calls
    key = b"k" * 32
    other = Path(f"{cache._path(str(tmp_path), key)}.1.tmp")  # another stage, mid-write
    tmp_path.chmod(0o700)
    other.write_bytes(b"half")
    cache.store(str(tmp_path), key, b"\x06\x00\x00\x00\x00\x00\xff\x7f", 0, False)
    assert other.read_bytes() == b"half"
    entry = cache.lookup(str(tmp_path), key)
    assert entry is not None and entry["program"] == b"\x06\x00\x00\x00\x00\x00\xff\x7f"
