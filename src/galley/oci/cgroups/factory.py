"""The manager for a container's cgroup: a new one from its config (manager_for), one saved
in state.json (load), or one for a path in a given layout (build)."""

from __future__ import annotations

from galley.errors import FailedPrecondition, InvalidArgument
from galley.kernel import pathnames
from galley.oci.cgroups.devices import Rule, implied_rules, normalise
from galley.oci.cgroups.layout import CgroupLayout, detect, own_cgroups
from galley.oci.cgroups.manager import CgroupManager, cgroup_path
from galley.oci.cgroups.v1 import V1Manager
from galley.oci.cgroups.v2 import V2Manager

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from typing import Any

    from galley.oci.spec import Spec


def _v2_directory(mount: str, path: str) -> str:
    """Relative paths go under the parent of this process's cgroup2 cgroup, as runc's: our own
    cgroup holds a process (us), and cgroup v2's no-internal-processes rule would keep it from
    enabling controllers for a child (no memory, pids or cpu for the container)."""
    if path.startswith("/"):
        return pathnames.normpath(pathnames.join(mount, path.lstrip("/")))
    own = pathnames.dirname(own_cgroups().get("", "/"))
    return pathnames.normpath(pathnames.join(mount, own.lstrip("/"), path))


def build(layout: CgroupLayout, path: str, rules: list[Rule] | None = None) -> CgroupManager:
    """The manager for cgroup path (absolute, or relative to ours) in the given layout."""
    if layout.mode == "v2":
        if layout.unified is None:
            raise FailedPrecondition("no cgroup hierarchy is mounted on this host")
        return V2Manager(_v2_directory(layout.unified.mount, path), layout.unified.mount, rules)
    own = {} if path.startswith("/") else own_cgroups()
    paths: dict[str, str] = {}
    for controller, hierarchy in layout.v1.items():
        if path.startswith("/"):
            paths[controller] = pathnames.normpath(
                pathnames.join(hierarchy.mount, path.lstrip("/"))
            )
        else:
            base = hierarchy.directory(own.get(controller, "/"))
            paths[controller] = pathnames.normpath(pathnames.join(base, path))
    unified = None
    if layout.unified is not None:
        unified = V2Manager(_v2_directory(layout.unified.mount, path), layout.unified.mount)
    return V1Manager(paths, unified, rules)


def manager_for(spec: Spec, container_id: str, *, systemd: bool = False) -> CgroupManager:
    """The cgroup of a new container: linux.cgroupsPath resolved as runc does (systemd: as
    its systemd driver names it); must be unused and not frozen (runc 1.1 refuses that one
    too: the container's process would stop in it before it could report anything)."""
    linux = spec.get("linux", {})
    path = cgroup_path(linux.get("cgroupsPath", ""), container_id, systemd=systemd)
    manager = build(detect(), path, implied_rules(spec))
    if manager.exists():
        count = len(manager.pids())
        if count:
            raise FailedPrecondition(
                f"container '{container_id}': cgroup {path} is not empty: "
                f"{count} process(es) found (in use by another container?)"
            )
    if manager.frozen():
        raise FailedPrecondition(f"container's cgroup unexpectedly frozen: {path}")
    return manager


class DamagedRecord(FailedPrecondition):
    """state.json's record of the cgroup cannot be read back (edited, or written by something
    else): commands that need the cgroup fail with this; delete goes on without it."""


def load(saved: dict[str, Any]) -> CgroupManager:
    """The manager a `save()` described; DamagedRecord if the record is not one."""
    try:
        return _load(saved)
    except KeyError as e:
        problem = f"{e.args[0]!r} is missing"
    except (InvalidArgument, AttributeError, TypeError) as e:
        problem = str(e)
    raise DamagedRecord(f"state.json: the record of the container's cgroup is damaged: {problem}")


def _load(saved: dict[str, Any]) -> CgroupManager:
    rules = [normalise(r, "device_rules") for r in saved.get("device_rules") or []]
    mode = saved.get("mode")
    if mode == "v2":
        return V2Manager(_path(saved), _text(saved["mount"]), rules)
    if mode == "v1":
        unified = saved.get("unified")
        part = V2Manager(_path(unified), _text(unified["mount"])) if unified else None
        paths = {_text(name): _text(path) for name, path in saved["paths"].items()}
        return V1Manager(paths, part, rules, [_text(name) for name in saved.get("denied") or []])
    raise InvalidArgument(f"unknown mode {mode!r}")


def _path(saved: dict[str, Any]) -> str:
    """The one directory of a saved cgroup v2 record."""
    return _text(saved["paths"][""])


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a path")
    return value
