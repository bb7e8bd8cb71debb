"""process.rlimits: every RLIMIT_* type reaches the program; raising above the host fails."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from galley.errors import FailedPrecondition, InvalidArgument
from galley.kernel import caps as kcaps
from galley.oci.rlimits import RLIMIT_TYPES, apply_rlimits
from galley.oci.spec import Rlimit
from tests.oci.process_probe import BUSYBOX, run_child, sh

pytestmark = pytest.mark.root

# /proc/<pid>/limits row title of each type.
TITLES = {
    "RLIMIT_CPU": "Max cpu time",
    "RLIMIT_FSIZE": "Max file size",
    "RLIMIT_DATA": "Max data size",
    "RLIMIT_STACK": "Max stack size",
    "RLIMIT_CORE": "Max core file size",
    "RLIMIT_RSS": "Max resident set",
    "RLIMIT_NPROC": "Max processes",
    "RLIMIT_NOFILE": "Max open files",
    "RLIMIT_MEMLOCK": "Max locked memory",
    "RLIMIT_AS": "Max address space",
    "RLIMIT_LOCKS": "Max file locks",
    "RLIMIT_SIGPENDING": "Max pending signals",
    "RLIMIT_MSGQUEUE": "Max msgqueue size",
    "RLIMIT_NICE": "Max nice priority",
    "RLIMIT_RTPRIO": "Max realtime priority",
    "RLIMIT_RTTIME": "Max realtime timeout",
}
INFINITY = (1 << 64) - 1


def limits_row(text: str, title: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(title):
            return line[len(title) :].split()[:2]
    raise AssertionError(title)


def lowered(name: str) -> tuple[int, int]:
    """A (soft, hard) pair at or below the current hard limit, so no privilege is needed."""
    hard = resource.prlimit(0, RLIMIT_TYPES[name])[1]
    hard = 1 << 40 if hard == resource.RLIM_INFINITY else max(hard - 1, 0)
    return hard // 2, hard


def test_every_type_reaches_the_program(tmp_path: Path) -> None:
    assert set(RLIMIT_TYPES) == set(TITLES)
    wanted = {name: lowered(name) for name in RLIMIT_TYPES if name != "RLIMIT_CPU"}
    wanted["RLIMIT_CPU"] = (3600, INFINITY)
    rlimits: list[Rlimit] = [{"type": n, "soft": s, "hard": h} for n, (s, h) in wanted.items()]
    probe = run_child(
        lambda: apply_rlimits(rlimits), [BUSYBOX, "cat", "/proc/self/limits"], tmp_path
    )
    assert probe.status == 0, probe.stderr
    for name, (soft, hard) in wanted.items():
        shown = [str(v) if v != INFINITY else "unlimited" for v in (soft, hard)]
        assert limits_row(probe.stdout, TITLES[name]) == shown, name


def test_huge_values_are_kept_and_all_ones_is_unlimited(tmp_path: Path) -> None:
    """As runc passes them: rlim_t is unsigned, 2^63 is a (huge) limit, 2^64-1 unlimited."""
    rlimits: list[Rlimit] = [{"type": "RLIMIT_CORE", "soft": 1 << 63, "hard": INFINITY}]
    probe = run_child(
        lambda: apply_rlimits(rlimits), [BUSYBOX, "cat", "/proc/self/limits"], tmp_path
    )
    assert probe.status == 0, probe.stderr
    row = limits_row(probe.stdout, TITLES["RLIMIT_CORE"])
    assert row == [str(1 << 63), "unlimited"]


def test_nofile_through_ulimit(tmp_path: Path) -> None:
    rlimits = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]
    probe = run_child(lambda: apply_rlimits(rlimits), sh("ulimit -n; ulimit -Hn"), tmp_path)  # type: ignore[arg-type]
    assert probe.stdout.split() == ["321", "654"]


@pytest.mark.skipif(
    kcaps.bounding_has(kcaps.CAPABILITY_NUMBERS["CAP_SYS_RESOURCE"]),
    reason="this host's root can raise hard limits",
)
def test_raising_a_hard_limit_names_the_limit(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def setup() -> None:
        try:
            apply_rlimits([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1}])
        except FailedPrecondition as e:
            os.write(1, f"Error: {e}\n".encode())

    probe = run_child(setup, [BUSYBOX, "true"], tmp_path)
    assert "RLIMIT_NOFILE" in probe.stdout and "CAP_SYS_RESOURCE" in probe.stdout


@pytest.mark.parametrize(
    ("rlimit", "message"),
    [
        (
            {"type": "RLIMIT_FOO", "soft": 1, "hard": 1},
            r"rlimits\[0\]\.type: unknown rlimit type 'RLIMIT_FOO'",
        ),
        (
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5},
            r"rlimits\[0\]: RLIMIT_NOFILE soft limit 10 exceeds",
        ),
        ({"type": "RLIMIT_NOFILE", "soft": -1, "hard": 5}, r"rlimits\[0\]\.soft"),
        ({"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1 << 64}, r"rlimits\[0\]\.hard"),
    ],
)
def test_bad_rlimits_name_the_field(rlimit: dict[str, object], message: str) -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    with pytest.raises(InvalidArgument, match=message):
        apply_rlimits([rlimit])  # type: ignore[list-item]
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


def test_set_on_another_process_by_pid(tmp_path: Path) -> None:
    """The runtime process can set the limits of the container's init (runc's way)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        os.read(read_end, 1)  # wait until the parent has set the limits
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        os._exit(0 if (soft, hard) == (77, 88) else 1)
    os.close(read_end)
    try:
        apply_rlimits([{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 88}], pid=pid)
    finally:
        os.write(write_end, b"x")
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert resource.getrlimit(resource.RLIMIT_NOFILE) != (77, 88)
