"""Hostile root filesystems: symlinks and symlink races must never put a mount outside the root.

Each test reads the mount table of the container's mount namespace just before pivot_root (the
runner dumps it, also when setup fails) and checks that every mount setup_rootfs added lies
inside the rootfs; the host's own table must not change either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime, run_bundle
from tests.oci.rootfs_harness import FAILED, host_mounts, mountinfo, run_in_rootfs

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def host_unchanged() -> Iterator[None]:
    before = host_mounts()
    yield
    assert host_mounts() == before


def added_mounts(bundle: Bundle, dump: Path) -> list[str]:
    """Mount points in the container's namespace that the host does not have."""
    with open("/proc/self/mountinfo") as own:
        host = set(mountinfo(own.read()))
    return [point for point in mountinfo(dump.read_text()) if point not in host]


def assert_all_inside(bundle: Bundle, dump: Path) -> list[str]:
    root = str(bundle.rootfs.resolve())
    added = added_mounts(bundle, dump)
    outside = [p for p in added if p != root and not p.startswith(root + "/")]
    assert outside == [], f"mounts escaped the root: {outside}"
    return added


def tmpfs(destination: str) -> dict[str, object]:
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs"}


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory on the host that a hostile rootfs points its symlinks at."""
    path = tmp_path / "host-target"
    path.mkdir()
    (path / "secret").write_text("host data\n")
    return path


@pytest.mark.parametrize("style", ["absolute-root", "absolute-host", "relative-dotdot"])
def test_symlinked_destination_stays_inside(
    bundle: Bundle, host_dir: Path, tmp_path: Path, style: str
) -> None:
    target = {
        "absolute-root": "/",
        "absolute-host": str(host_dir),
        "relative-dotdot": "../" * 30 + str(host_dir).lstrip("/"),
    }[style]
    os.symlink(target, bundle.rootfs / "mnt" if style != "absolute-root" else bundle.rootfs / "up")
    link = "/mnt" if style != "absolute-root" else "/up"
    bundle.config["mounts"].append(tmpfs(f"{link}/escape"))
    dump = tmp_path / "mounts"
    result = run_in_rootfs(
        bundle.path, bundle.config, "echo mounted > " + link + "/escape/f", mounts_file=str(dump)
    )
    assert result.returncode == 0, result.stderr
    added = assert_all_inside(bundle, dump)
    resolved = str(bundle.rootfs.resolve()) + ("/escape" if style == "absolute-root" else
                                               str(host_dir) + "/escape")  # fmt: skip
    assert resolved in added
    assert not (host_dir / "escape").exists()
    assert sorted(os.listdir(host_dir)) == ["secret"]


@pytest.mark.parametrize("link", ["/", "..", "../.."])
def test_a_bind_whose_destination_the_image_points_at_the_root_is_refused(
    any_runtime: Runtime, bundle: Bundle, host_dir: Path, link: str
) -> None:
    """/data is the image's symlink to the root, and a volume is bound there: galley took
    the volume for a mount over the root and made the container's /dev nodes, cwd and later
    mount points in the host directory, as root, replacing what it held at those names
    (session 39's review). Both runtimes refuse; the host directory is as it was."""
    os.symlink(link, bundle.rootfs / "data")
    (host_dir / "dev").mkdir()
    (host_dir / "dev" / "ptmx").write_text("precious\n")
    bundle.config["mounts"].append(
        {"destination": "/data", "type": "bind", "source": str(host_dir),
         "options": ["rbind", "rprivate"]}
    )  # fmt: skip
    bundle.config["process"]["cwd"] = "/app"
    result = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    assert sorted(os.listdir(host_dir)) == ["dev", "secret"]
    assert os.listdir(host_dir / "dev") == ["ptmx"]
    assert (host_dir / "dev" / "ptmx").read_text() == "precious\n"
    assert result.returncode != 0, result.stdout
    if "galley" in any_runtime.binary:
        assert "resolves through a symlink to the container's root directory" in result.stderr


def test_bind_file_through_symlink_to_host_file(
    bundle: Bundle, host_dir: Path, tmp_path: Path
) -> None:
    """A file destination that is a symlink to a host file: the bind lands inside the root."""
    (bundle.rootfs / "etc" / "resolv.conf").unlink(missing_ok=True)
    os.symlink(str(host_dir / "secret"), bundle.rootfs / "etc" / "resolv.conf")
    source = tmp_path / "resolv"
    source.write_text("nameserver 10.0.0.1\n")
    bundle.config["mounts"].append(
        {"destination": "/etc/resolv.conf", "source": str(source), "options": ["bind", "ro"]}
    )
    dump = tmp_path / "mounts"
    result = run_in_rootfs(
        bundle.path, bundle.config, "cat /etc/resolv.conf", mounts_file=str(dump)
    )
    assert result.returncode == 0, result.stderr
    assert "nameserver 10.0.0.1" in result.stdout
    assert_all_inside(bundle, dump)
    assert (host_dir / "secret").read_text() == "host data\n"


def test_magic_link_destination_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    """/proc/self/root style links are not followed (RESOLVE_NO_MAGICLINKS)."""
    bundle.config["mounts"].append(tmpfs("/proc/self/root/tmp/x"))
    dump = tmp_path / "mounts"
    result = run_in_rootfs(bundle.path, bundle.config, "true", mounts_file=str(dump))
    assert result.returncode == FAILED
    assert "mounts[7] '/proc/self/root/tmp/x'" in result.stderr
    assert "too many levels of symbolic links" in result.stderr
    assert_all_inside(bundle, dump)


SWAPPER = """
import os, sys, time
root, outside, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
race, as_dir, as_link = root + "/race", root + "/race.dir", root + "/race.link"
os.mkdir(as_dir)
os.symlink(outside, as_link)
end = time.monotonic() + seconds
strays = 0
while time.monotonic() < end:
    for name in (as_dir, as_link):
        try:
            os.rename(name, race)
        except OSError:  # the runtime made /race itself: move it out of the way
            try:
                os.rename(race, f"{root}/stray{strays}")
                strays += 1
            except OSError:
                pass
            continue
        try:
            os.rename(race, name)
        except OSError:
            pass
"""


def test_racing_symlink_swap_never_escapes(bundle: Bundle, host_dir: Path, tmp_path: Path) -> None:
    """A background process swaps /race between a directory and a symlink to a host path."""
    bundle.config["mounts"] += [tmpfs(f"/race/m{i}") for i in range(10)]
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(bundle.rootfs), str(host_dir), "3"]
    )
    try:
        time.sleep(0.1)
        escaped_any = False
        for attempt in range(8):
            dump = tmp_path / f"mounts{attempt}"
            run_in_rootfs(bundle.path, bundle.config, "true", mounts_file=str(dump))
            if dump.exists():
                assert_all_inside(bundle, dump)
            escaped_any |= any(name.startswith("m") for name in os.listdir(host_dir))
        assert not escaped_any, os.listdir(host_dir)
    finally:
        swapper.kill()
        swapper.wait()


def test_masked_paths_unreadable(bundle: Bundle) -> None:
    masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/acpi"]
    bundle.config["linux"]["maskedPaths"] = masked
    script = "; ".join(f"cat {p} 2>/dev/null | wc -c; ls {p} 2>/dev/null | wc -l" for p in masked)
    result = run_in_rootfs(bundle.path, bundle.config, script)
    assert result.returncode == 0, result.stderr
    counts = result.stdout.split()
    # a masked file reads empty; a masked directory lists nothing (ls of a file prints its name)
    for index, path in enumerate(masked):
        assert counts[2 * index] == "0", path
        exists = os.path.exists(path)
        assert counts[2 * index + 1] == ("1" if exists and os.path.isfile(path) else "0"), path


@pytest.mark.parametrize(
    "node",
    [
        {"type": "c", "major": 1, "minor": 5},  # /dev/zero
        {"type": "b", "major": 1, "minor": 3},  # a block device of the null device's numbers
        {"type": "p"},
    ],
    ids=["zero", "block-1-3", "fifo"],
)
def test_masking_with_another_node_at_dev_null_is_refused(
    runtime: Runtime, bundle: Bundle, node: dict[str, object]
) -> None:
    """maskedPaths bind the container's /dev/null over each path: linux.devices giving
    /dev/null another node would show that node there instead (CVE-2025-31133). runc 1.1.5
    binds whatever is there; galley refuses, leaving no container."""
    bundle.config["linux"]["devices"] = [{"path": "/dev/null", "fileMode": 0o666, **node}]
    bundle.config["linux"]["maskedPaths"] = ["/proc/kcore"]
    result = run_bundle(runtime, bundle, status=1)
    assert "the container's /dev/null is not the null device" in result.stderr
    assert runtime("list", "-q", check=True).stdout == ""


@pytest.mark.parametrize(("link", "target"), [("proc", "/"), ("proc", "/etc"), ("sys", "..")])
def test_proc_and_sysfs_through_symlinks_refused(
    bundle: Bundle, tmp_path: Path, link: str, target: str
) -> None:
    """A rootfs whose /proc or /sys is a symlink: procfs is never mounted somewhere else."""
    (bundle.rootfs / link).rmdir()
    os.symlink(target, bundle.rootfs / link)
    dump = tmp_path / "mounts"
    result = run_in_rootfs(bundle.path, bundle.config, "true", mounts_file=str(dump))
    assert result.returncode == FAILED
    refusals = ("destination resolves through a symlink", "cannot mount over the container's root")
    assert any(refusal in result.stderr for refusal in refusals), result.stderr
    assert_all_inside(bundle, dump)
