"""Cgroups for a caller that is not root: runc's rootless cgroup manager.

A user who is not root may make cgroups only where the host delegated a subtree to it. As runc
does then, a container that names no linux.cgroupsPath runs without a cgroup where making one
is denied: on v1 the hierarchies that refuse it are left out (`V1Manager.denied` names them, so
that a limit or a pause asked of them says why); on cgroup v2, a refused directory leaves the
container with no cgroup at all (a V1Manager with no hierarchies). With a cgroupsPath, a
refusal is an error, as it is for root, but for a named hierarchy's or a hybrid host's
cgroup2 part (create).

Limits go where the cgroup was made, and a limit for a hierarchy left out is an error; device
rules alone are tried and let go when refused, as runc's rootless manager lets them go: device
cgroups (v1) and eBPF device programs (v2) are root's, and the container's user namespace
keeps it from making device nodes anyway.
"""

from __future__ import annotations

import errno

from galley.errors import FailedPrecondition, os_error_text
from galley.kernel import pathnames
from galley.oci.cgroups.v1 import V1Manager, fill_cpusets
from galley.oci.cgroups.v2 import V2Manager

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from galley.oci.cgroups.manager import CgroupManager
    from galley.oci.spec import Resources

_DENIED = {errno.EPERM, errno.EACCES, errno.EROFS}


def create(manager: CgroupManager, *, path_given: bool) -> CgroupManager:
    """manager.create() for a caller that is not root: the manager of what could be made.
    With a cgroupsPath, a controller's hierarchy that refuses is an error; a named one
    (name=systemd) and the cgroup2 part of a hybrid host are let go even then, as runc lets
    them go (a user given the controllers' hierarchies seldom has those)."""
    if isinstance(manager, V2Manager):
        error = _refused(manager, path_given=path_given)
        if error is None:
            return manager
        # runc's words for a limit then (a cgroup v2 host's; its v1 ones are V1Manager's)
        refusal = (
            "rootless needs no limits + no cgrouppath when no permission is granted for"
            f" cgroups: {_reason(error)}"
        )
        return V1Manager({}, None, manager.device_rules, ["*"], refusal=refusal)
    if not isinstance(manager, V1Manager):  # pragma: no cover - the two kinds there are
        raise TypeError(f"unknown cgroup manager {manager!r}")
    made: dict[str, str] = {}
    refused: list[str] = []
    for controller, directory in sorted(manager.paths.items()):
        if not controller:  # the hybrid host's cgroup2 part: below
            continue
        try:
            pathnames.makedirs(directory, 0o755, exist_ok=True)
            if controller == "cpuset":
                fill_cpusets(directory)
        except Exception as err:
            if not denied(err):
                raise
            if path_given and not controller.startswith("name="):
                raise _refusal(err) from err
            refused.append(controller)
        else:
            made[controller] = directory
    part = manager.unified
    unified = part if part is not None and _refused(part, path_given=False) is None else None
    return V1Manager(made, unified, manager.device_rules, refused)


def _reason(err: BaseException) -> str:
    return os_error_text(err) if isinstance(err, OSError) else str(err)


def _refusal(err: BaseException) -> FailedPrecondition:
    return FailedPrecondition(
        f"unable to apply cgroup configuration: {_reason(err)} (galley-runc is not root: a"
        " linux.cgroupsPath must be one this user may create)"
    )


def set_resources(manager: CgroupManager, resources: Resources) -> None:
    """manager.set(resources), the device rules tried apart (see above)."""
    rules = resources.get("devices")
    rest: Resources = dict(resources)  # type: ignore[assignment]
    rest.pop("devices", None)
    manager.set(rest)
    if rules is None or "devices" in getattr(manager, "denied", ()) or not manager.paths:
        return
    try:
        manager.set({"devices": rules})
    except Exception as err:
        if not denied(err):
            raise


def _refused(manager: V2Manager, *, path_given: bool) -> BaseException | None:
    """manager.create(); the kernel's refusal, where the container may go without the cgroup
    (no cgroupsPath given): any other error, or a refusal with one, is raised."""
    try:
        manager.create()
    except Exception as err:
        if not denied(err):
            raise
        if path_given:
            raise _refusal(err) from err
        return err
    return None


def denied(err: BaseException) -> bool:
    """Whether err (or what caused it: galley.oci.cgroups.manager.write wraps the OSError) is
    the kernel's refusal of a caller without the right."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _DENIED:
            return True
        cause = cause.__cause__
    return False
