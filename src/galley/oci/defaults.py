"""The default config.json, as `runc spec` writes it (and `galley-runc spec` prints)."""

from __future__ import annotations

import posix

from galley.oci.spec import Spec

OCI_VERSION = "1.2.0"

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

DEFAULT_MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]

DEFAULT_READONLY = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


def default_spec(rootless: bool = False, *, cgroup_namespace: bool = True) -> Spec:
    """A fresh default spec: sh with a terminal in ./rootfs, five namespaces (six with
    cgroup_namespace), runc's mounts."""
    spec: Spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPS),
                "effective": list(DEFAULT_CAPS),
                "permitted": list(DEFAULT_CAPS),
                "ambient": list(DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": list(DEFAULT_MASKED),
            "readonlyPaths": list(DEFAULT_READONLY),
        },
    }
    if cgroup_namespace:
        spec["linux"]["namespaces"].append({"type": "cgroup"})
    if rootless:
        _make_rootless(spec)
    return spec


def _make_rootless(spec: Spec) -> None:
    """What `runc spec --rootless` writes, for a user who is not root on the host: a user
    namespace mapping root to the caller's own ids alone; the host's network (an unprivileged
    user gets no other that reaches anywhere), so /sys is a read-only bind of the host's
    (sysfs is only for who owns the network namespace); no uid=/gid= mount options (no other
    id is mapped); no cgroup resources (the user may not own a cgroup)."""
    linux = spec["linux"]
    namespaces = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")]
    spec["linux"] = linux = {  # the mappings first, where runc's Linux type has its fields
        "uidMappings": [{"containerID": 0, "hostID": posix.geteuid(), "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": posix.getegid(), "size": 1}],
        **linux,
        "namespaces": [*namespaces, {"type": "user"}],
    }
    for mount in spec["mounts"]:
        if mount["destination"] == "/sys":
            mount["source"], mount["type"] = "/sys", "none"
            mount["options"] = ["rbind", "nosuid", "noexec", "nodev", "ro"]
            continue
        if "options" in mount:
            kept = [o for o in mount["options"] if not o.startswith(("uid=", "gid="))]
            mount["options"] = kept
    del linux["resources"]
