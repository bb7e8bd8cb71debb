"""process.scheduler, ioPriority and execCPUAffinity applied in a real child, read back from
/proc and the kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.kernel import sched
from galley.oci.cgroups.layout import detect, own_cgroups
from galley.oci.scheduling import (
    apply_cpu_affinity,
    apply_io_priority,
    apply_personality,
    apply_scheduler,
    parse_cpus,
    scheduler_args,
)
from tests.oci.process_probe import BUSYBOX, SETUP_FAILED, Probe, run_child

pytestmark = pytest.mark.root


def stat_fields(tmp_path: Path, setup: object) -> list[str]:
    """/proc/self/stat of busybox after setup: fields split after the command name."""
    probe = run_child(setup, [BUSYBOX, "cat", "/proc/self/stat"], tmp_path)  # type: ignore[arg-type]
    skip_if_no_realtime_budget(probe)
    assert probe.status == 0, probe.stderr
    return probe.stdout.rsplit(")", 1)[1].split()


def skip_if_no_realtime_budget(probe: Probe) -> None:
    """Skip when the kernel refused a real-time policy with EPERM in a non-root cpu cgroup: with
    RT group scheduling (cgroup v2's cpu controller), such a cgroup has no RT runtime to give."""
    text = probe.stderr.lower()
    refused = "sched_setattr policy=" in text and "operation not permitted" in text
    mine = own_cgroups()
    cgroup = mine.get("cpu", mine.get("", "/"))
    # in a cgroup namespace our cgroup2 path reads "/" even when it is not the real root
    grouped = cgroup != "/" or "cpu" in detect().unified_controllers()
    if probe.status == SETUP_FAILED and refused and grouped:
        pytest.skip(
            f"the kernel refuses SCHED_FIFO/RR in cgroup {cgroup} (RT group scheduling: "
            "a non-root cpu cgroup has no real-time budget)"
        )


# /proc/<pid>/stat after the name: state=0 ... nice=16, rt_priority=37, policy=38 (0-based)
NICE, RT_PRIORITY, POLICY = 16, 37, 38


@pytest.mark.parametrize(
    ("scheduler", "policy", "nice", "priority"),
    [
        ({"policy": "SCHED_BATCH", "nice": 7}, sched.SCHED_BATCH, "7", "0"),
        ({"policy": "SCHED_IDLE"}, sched.SCHED_IDLE, "0", "0"),
        ({"policy": "SCHED_OTHER", "nice": -3}, sched.SCHED_OTHER, "-3", "0"),
        ({"policy": "SCHED_FIFO", "priority": 3}, sched.SCHED_FIFO, "0", "3"),
        ({"policy": "SCHED_RR", "priority": 2}, sched.SCHED_RR, "0", "2"),
    ],
)
def test_scheduler_reaches_the_program(
    tmp_path: Path, scheduler: dict[str, object], policy: int, nice: str, priority: str
) -> None:
    fields = stat_fields(tmp_path, lambda: apply_scheduler(scheduler))
    assert (fields[POLICY], fields[NICE], fields[RT_PRIORITY]) == (str(policy), nice, priority)


def test_reset_on_fork_flag(tmp_path: Path) -> None:
    """The program's children fall back from real-time to SCHED_OTHER: sh forks cat."""
    scheduler = {"policy": "SCHED_RR", "priority": 1, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
    probe = run_child(
        lambda: apply_scheduler(scheduler),
        [BUSYBOX, "sh", "-c", "cat /proc/self/stat; cat /proc/$$/stat"],
        tmp_path,
    )
    skip_if_no_realtime_budget(probe)
    assert probe.status == 0, probe.stderr
    child, shell = (line.rsplit(")", 1)[1].split() for line in probe.stdout.splitlines())
    assert (shell[POLICY], child[POLICY]) == (str(sched.SCHED_RR), str(sched.SCHED_OTHER))


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ({"policy": "SCHED_FAST"}, r"policy: unknown scheduling policy"),
        ({"policy": "SCHED_OTHER", "nice": 20}, r"nice: 20 is not an integer in \[-20, 19\]"),
        ({"policy": "SCHED_OTHER", "priority": 5}, r"only SCHED_FIFO and SCHED_RR"),
        ({"policy": "SCHED_FIFO"}, r"SCHED_FIFO needs a priority"),
        ({"policy": "SCHED_BATCH", "runtime": 100}, r"runtime: only SCHED_DEADLINE"),
        ({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_X"]}, r"flags\[0\]: unknown"),
    ],
)
def test_bad_scheduler_names_the_field(scheduler: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        scheduler_args(scheduler)


def test_deadline_arguments() -> None:
    policy, kwargs = scheduler_args(
        {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 20, "period": 30}
    )
    assert policy == sched.SCHED_DEADLINE
    assert (kwargs["runtime"], kwargs["deadline"], kwargs["period"]) == (10, 20, 30)


@pytest.mark.parametrize(("io_class", "number"), [("IOPRIO_CLASS_BE", 2), ("IOPRIO_CLASS_IDLE", 3)])
def test_io_priority(tmp_path: Path, io_class: str, number: int) -> None:
    def setup() -> None:
        apply_io_priority({"class": io_class, "priority": 6 if number == 2 else 0})
        got = sched.ioprio_get()
        os.write(1, f"io: {got[0]} {got[1]}\n".encode())

    probe = run_child(setup, [BUSYBOX, "true"], tmp_path)
    assert probe.field("io") == f"{number} {6 if number == 2 else 0}"
    with pytest.raises(InvalidArgument, match=r"ioPriority.priority: 8"):
        apply_io_priority({"class": "IOPRIO_CLASS_BE", "priority": 8})
    with pytest.raises(InvalidArgument, match=r"ioPriority.class: unknown"):
        apply_io_priority({"class": "IOPRIO_CLASS_FAST"})


def test_cpu_affinity(tmp_path: Path) -> None:
    assert parse_cpus("0-2,5, 7", "f") == {0, 1, 2, 5, 7}
    with pytest.raises(InvalidArgument, match="not a CPU list"):
        parse_cpus("zero", "process.execCPUAffinity.final")
    with pytest.raises(InvalidArgument, match="bad CPU range"):
        parse_cpus("3-1", "process.execCPUAffinity.final")
    with pytest.raises(InvalidArgument, match='invalid CPU "0-98765432100"'):  # not 10^11 CPUs
        parse_cpus("0-98765432100", "process.execCPUAffinity.final")
    cpu = min(os.sched_getaffinity(0))
    probe = run_child(
        lambda: apply_cpu_affinity({"initial": "0-63", "final": str(cpu)}, "final"),
        [BUSYBOX, "grep", "Cpus_allowed_list", "/proc/self/status"],
        tmp_path,
    )
    assert probe.field("Cpus_allowed_list") == str(cpu)


@pytest.mark.parametrize(
    ("domain", "machine"), [("LINUX32", "i686"), ("LINUX", os.uname().machine)]
)
def test_personality(tmp_path: Path, domain: str, machine: str) -> None:
    probe = run_child(
        lambda: apply_personality({"domain": domain}), [BUSYBOX, "uname", "-m"], tmp_path
    )
    assert probe.stdout.strip() == machine
    with pytest.raises(InvalidArgument, match=r"personality\.domain"):
        apply_personality({"domain": "SVR4"})
