"""Bundles that umoci writes, run as umoci wrote them: `umoci unpack && runc run` is a common
way to run an image without a daemon. umoci's config (runtime-tools' defaults: a few
capabilities, no-new-privileges, an rlimit, a read-only sysfs and cgroup tmpfs, masked
and read-only paths), and its `--rootless` one (a user namespace mapping only root, /sys
bound from the host), give a container that looks the same from inside on galley-runc and
on runc."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from galley.fixtures import images
from tests.oci.conftest import RUNC_CGROUP_TMPFS, RUNTIMES, Runtime

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed"),
    pytest.mark.skipif("runc" not in RUNTIMES, reason="runc is not installed"),
]

# Who the process is, what it may do, and what it sees mounted and in /dev.
PROBE = (
    "id; grep -E 'Cap|NoNewPrivs' /proc/self/status; ulimit -n; hostname;"
    " cat /proc/self/uid_map /proc/self/gid_map;"
    " awk '{print $5, $6, $9, $NF}' /proc/self/mountinfo | sort; ls -l /dev | awk '{print $1, $NF}'"
)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI image layout holding the busybox image, tagged v1."""
    path = tmp_path_factory.mktemp("umoci") / "layout"
    return images.write_oci_layout(path, images.busybox_image(extra_layers=0), "v1")


def _unpacked(layout: Path, bundle: Path, *options: str) -> Path:
    """`umoci unpack` of the image into bundle, its process replaced by the probe (umoci's
    runs /bin/sh on a terminal); the rest of umoci's config.json as it wrote it."""
    subprocess.run(
        ["umoci", "unpack", *options, "--image", f"{layout}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"].update(terminal=False, args=["sh", "-c", PROBE])
    config_path.write_text(json.dumps(config))
    return bundle


@pytest.mark.parametrize("options", [(), ("--rootless",)], ids=["default", "rootless"])
def test_an_umoci_bundle_runs_as_under_runc(
    layout: Path, options: tuple[str, ...], tmp_path: Path
) -> None:
    seen = {}
    for name, binary in RUNTIMES.items():
        bundle = _unpacked(layout, tmp_path / f"bundle-{name}", *options)
        runtime = Runtime(binary, tmp_path / f"state-{name}")
        try:
            result = runtime("run", "--bundle", str(bundle), runtime.new_id())
        finally:
            runtime.cleanup()
        assert result.returncode == 0, result.stderr
        seen[name] = result.stdout
    assert "umoci-default" in seen["galley"]  # the hostname umoci's config names
    assert "NoNewPrivs:\t1" in seen["galley"]
    if options:  # rootless: /sys is the host's, bound, and its cgroup tmpfs rw under both
        assert seen["runc"] == seen["galley"]
    else:
        assert seen["runc"].replace(*RUNC_CGROUP_TMPFS) == seen["galley"]
