"""linux.memoryPolicy (runtime-spec 1.3): set_mempolicy(2) for the container's process and for
exec'd ones, read back from /proc/self/numa_maps; bad policies refused before anything is
made. runc 1.1 does not know the field, so these run on galley-runc alone; the cases and
messages follow runc 1.4's tests."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.oci.conftest import Bundle, Runtime

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not os.path.exists("/proc/self/numa_maps"), reason="the kernel has no NUMA support"
    ),
]

SHOW_POLICY = ["sh", "-c", "head -n 1 /proc/self/numa_maps | cut -d ' ' -f 2"]


def run_with(runtime: Runtime, bundle: Bundle, policy: dict[str, Any]) -> tuple[int, str, str]:
    bundle.config["linux"]["memoryPolicy"] = policy
    bundle.config["process"]["args"] = SHOW_POLICY
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    return res.returncode, res.stdout.strip(), res.stderr


@pytest.mark.parametrize(
    ("policy", "shown"),
    [
        ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
        ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
        ({"mode": "MPOL_DEFAULT"}, "default"),
        ({"mode": "MPOL_LOCAL"}, "local"),
        ({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}, "prefer"),
    ],
)
def test_the_process_runs_under_the_policy(
    runtime: Runtime, bundle: Bundle, policy: dict[str, Any], shown: str
) -> None:
    status, out, err = run_with(runtime, bundle, policy)
    assert status == 0, err
    assert out.startswith(shown), out


def test_exec_runs_under_the_policy(runtime: Runtime, bundle: Bundle) -> None:
    policy = {"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}
    bundle.config["linux"]["memoryPolicy"] = policy
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    res = runtime("exec", cid, *SHOW_POLICY)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("prefer=relative:0"), res.stdout


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({}, "linux.memoryPolicy.mode: invalid memory policy mode: missing"),
        ({"nodes": "0-7"}, "linux.memoryPolicy.mode: invalid memory policy mode: missing"),
        ({"mode": "INTERLEAVE", "nodes": "0"}, 'invalid memory policy mode: \\"INTERLEAVE'),
        (
            {"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES", "bad"]},
            'linux.memoryPolicy.flags[1]: invalid memory policy flag \\"bad',
        ),
        ({"mode": "MPOL_DEFAULT", "nodes": "0-7"}, "MPOL_DEFAULT mode requires 0 nodes but got 8"),
        ({"mode": "MPOL_BIND"}, "MPOL_BIND mode requires at least one node"),
        ({"mode": "MPOL_BIND", "nodes": "0-9876543210"}, 'memory policy node \\"0-9876543210'),
        (
            {
                "mode": "MPOL_BIND",
                "nodes": "0",
                "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"],
            },
            "exclude each other",
        ),
    ],
)
def test_bad_policies_are_refused_before_anything_is_made(
    runtime: Runtime, bundle: Bundle, policy: dict[str, Any], message: str
) -> None:
    status, out, err = run_with(runtime, bundle, policy)
    assert status == 1
    assert message in err, err
    assert out == ""
    assert runtime("list", "-q").stdout == ""


def test_a_node_the_host_lacks_fails_create_naming_the_field(
    runtime: Runtime, bundle: Bundle
) -> None:
    nodes = (
        os.listdir("/sys/devices/system/node") if os.path.isdir("/sys/devices/system/node") else []
    )
    missing = (
        max((int(n[4:]) for n in nodes if n.startswith("node") and n[4:].isdigit()), default=0) + 1
    )
    status, _, err = run_with(runtime, bundle, {"mode": "MPOL_BIND", "nodes": str(missing)})
    assert status == 1
    assert "linux.memoryPolicy: set_mempolicy" in err, err
    assert "Invalid argument (nodes must be online" in err, err
    assert runtime("list", "-q").stdout == ""
