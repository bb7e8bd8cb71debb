"""Container cgroups on v1, hybrid and v2 hosts: `manager_for(spec, id)` and `load(saved)`.

Importing the package imports nothing: its names come from their modules on first use, so a
command that needs only the cgroup's record in state.json (`state`, `list`, `start`, and
`delete` of an empty cgroup: galley.oci.cgroups.record) skips the managers' code.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from galley.oci.cgroups.factory import build, load, manager_for
    from galley.oci.cgroups.layout import CgroupLayout, detect
    from galley.oci.cgroups.manager import CgroupManager

__all__ = ["CgroupLayout", "CgroupManager", "build", "detect", "load", "manager_for"]

_HOMES = {
    "build": "factory",
    "load": "factory",
    "manager_for": "factory",
    "CgroupLayout": "layout",
    "detect": "layout",
    "CgroupManager": "manager",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = __import__(f"{__name__}.{home}", fromlist=[name])
    return getattr(module, name)
