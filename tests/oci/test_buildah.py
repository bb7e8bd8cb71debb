"""buildah drives galley-runc as it drives runc: `buildah run`, a RUN step of a build.

buildah (installed with podman) runs a command in a working container through the runtime's
create (with a console socket of its own for -t), start, state and delete, relaying stdio
itself. Each test runs on galley-runc and on runc and expects the same.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.fixtures.podman import Buildah
from tests.oci.conftest import RUNTIMES, under_a_tty

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not shutil.which("buildah"), reason="buildah is not installed"),
]


@pytest.fixture(scope="module")
def buildah() -> Iterator[Buildah]:
    top = Path(tempfile.mkdtemp(prefix="galley-buildah-"))
    top.chmod(0o755)
    tool = Buildah(top)
    try:
        yield tool
    finally:
        tool.stop()
        shutil.rmtree(top)


@pytest.fixture(params=sorted(RUNTIMES))
def binary(request: pytest.FixtureRequest) -> str:
    return RUNTIMES[request.param]


@pytest.fixture
def working(buildah: Buildah, binary: str, busybox_rootfs: Path) -> Iterator[str]:
    """A working container with the busybox root; removed afterwards."""
    name = buildah.container(binary, busybox_rootfs)
    yield name
    buildah(binary, "rm", name, check=False)


def test_run_relays_stdin_output_and_exit_status(
    buildah: Buildah, binary: str, working: str
) -> None:
    result = subprocess.run(
        buildah.argv(binary, "run", working, "sh", "-c", "cat; echo err >&2; exit 3"),
        input="piped\n",
        capture_output=True,
        text=True,
        env=buildah.env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout == "piped\n" and "err" in result.stderr


def test_a_build_step_as_a_user_sees_what_runc_shows(
    buildah: Buildah, busybox_rootfs: Path
) -> None:
    """What a RUN step sees (ids, capabilities, seccomp, mounts, /dev) as root and as
    --user 1000, the same on both runtimes."""
    probe = (
        "id; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; touch /made 2>&1 && echo made;"
        " cut -d' ' -f5,6,9- /proc/self/mountinfo | sort; stat -c '%A %u %g %t:%T %n' /dev/*"
    )
    seen = {}
    for name, binary in sorted(RUNTIMES.items()):
        working = buildah.container(binary, busybox_rootfs)
        try:
            root = buildah(binary, "run", working, "sh", "-c", probe).stdout
            user = buildah(binary, "run", "--user", "1000", working, "sh", "-c", probe).stdout
        finally:
            buildah(binary, "rm", working)
        seen[name] = root.replace(working, "<ctr>"), user.replace(working, "<ctr>")
    root, user = seen["galley"]
    assert root.startswith("uid=0(root) gid=0(root)") and "made" in root.splitlines()
    assert user.startswith("uid=1000 gid=0(root)") and "touch: /made: Permission denied" in user
    if "runc" in seen:
        assert seen["runc"] == seen["galley"]


def test_a_terminal_step(buildah: Buildah, binary: str, working: str, tmp_path: Path) -> None:
    """-t: buildah's console socket takes the master; the step's output comes through it."""
    run = buildah.argv(binary, "run", "-t", working, "sh", "-c", "tty; echo on-a-tty")
    seen = under_a_tty(run, tmp_path, held=True, env=buildah.env)
    assert b"/dev/pts/0\r\non-a-tty\r\n" in seen, seen
