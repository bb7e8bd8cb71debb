"""cgroup v2 device rules as an eBPF program (BPF_CGROUP_DEVICE) attached to the cgroup."""

from __future__ import annotations

from typing import Any

from galley.errors import InvalidArgument
from galley.oci.cgroups.devices import Rule


def attach(directory: str, rules: list[Any], implied: list[Rule]) -> None:
    """Compile the rules and attach the program to the cgroup directory."""
    raise InvalidArgument(f"cgroup {directory}: device rules on cgroup v2 are not implemented yet")


def forget(directory: str) -> None:
    """Drop what was attached to the directory (the kernel frees it with the cgroup)."""
    del directory
