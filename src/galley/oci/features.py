"""`galley-runc features`: what this runtime supports, in the runtime-spec features.md shape.

What galley implements, not what this host has (features-linux.md: cgroup, AppArmor and SELinux
are "irrelevant to" the host's; only seccomp's supportedFlags depend on the kernel and
libseccomp): a config may be written on one machine for another.
"""

from __future__ import annotations

from galley.oci.vocabulary import NAMESPACE_TYPES

OCI_VERSION_MIN = "1.0.0"
OCI_VERSION_MAX = "1.3.0"
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
# Which cgroup managers galley has, whatever the host mounts (features-linux.md: "irrelevant
# to the cgroup version of the host"): both versions, with the rdma controller's limits
# (linux.resources.rdma), and no systemd (no D-Bus client; a "slice:prefix:name"
# cgroupsPath is made as a path, as --systemd-cgroup says).
CGROUP = {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": True}


def _mount_options() -> list[str]:
    """Every option string galley.oci.mounts understands in a mount's "options"."""
    from galley.oci.mounts import MOUNT_OPTIONS  # noqa: PLC0415 - lazy: loads the mount code

    return list(MOUNT_OPTIONS)


def _capabilities() -> list[str]:
    try:
        from galley.oci.capabilities import ALL_CAPABILITIES  # noqa: PLC0415 - lazy
    except ImportError:
        return []
    return list(ALL_CAPABILITIES)


def _seccomp() -> dict[str, object]:
    try:
        from galley.oci import seccomp  # noqa: PLC0415 - lazy: loads libseccomp
    except (ImportError, OSError):
        return {"enabled": False}
    features = dict(seccomp.FEATURES)
    try:
        features["supportedFlags"] = seccomp.supported_flags()
    except (AttributeError, OSError):
        pass
    return features


def _memory_policy() -> dict[str, object]:
    from galley.oci.scheduling import MEMORY_POLICY_FLAGS, MEMORY_POLICY_MODES  # noqa: PLC0415

    return {"modes": list(MEMORY_POLICY_MODES), "flags": list(MEMORY_POLICY_FLAGS)}


def _annotations(version: str) -> dict[str, str]:
    """Informational: the runc release whose command line galley-runc speaks, galley's own
    version, and as runc the libseccomp that filters are built with; in the order of their
    keys, as runc's Go map prints."""
    out = {"org.opencontainers.runc.version": "1.1.5", "io.galley.version": version}
    try:
        from galley.kernel import seccomp  # noqa: PLC0415 - lazy: loads libseccomp

        out["io.github.seccomp.libseccomp.version"] = ".".join(map(str, seccomp.version()))
    except (ImportError, OSError):
        pass
    return dict(sorted(out.items()))


def features() -> dict[str, object]:
    """The features document."""
    from galley.oci.cli import VERSION  # noqa: PLC0415 - avoids an import cycle

    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": list(HOOKS),
        "mountOptions": _mount_options(),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": _capabilities(),
            "cgroup": CGROUP,
            "seccomp": _seccomp(),
            "apparmor": {"enabled": True},  # galley.oci.lsm; where the host has AppArmor
            "selinux": {"enabled": True},  # the same, SELinux
            "intelRdt": {"enabled": True, "schemata": True},  # galley.oci.resctrl
            "mountExtensions": {"idmap": {"enabled": True}},  # mounts' uid/gidMappings
            "memoryPolicy": _memory_policy(),
            "netDevices": {"enabled": True},
        },
        "annotations": _annotations(VERSION),
    }
