"""validate.py: every field checked, one-line errors that start with the field path."""
# ruff: noqa: E501 - the table of cases reads best one per line

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest

from galley.errors import InvalidArgument
from galley.oci.defaults import default_spec
from galley.oci.validate import validate

DELETE = object()


def mutate(doc: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """doc with the dotted path (list indexes as numbers) set to value (or deleted)."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


BASE: dict[str, Any] = dict(default_spec())  # a JSON document, mutated freely below

CASES = [
    ("ociVersion", DELETE, "ociVersion: is required"),
    ("ociVersion", "2.0.0", 'ociVersion: unsupported version "2.0.0"'),
    ("ociVersion", "0.9.0", 'ociVersion: unsupported version "0.9.0"'),
    ("ociVersion", "banana", 'ociVersion: "banana" is not a semantic version'),
    ("ociVersion", 1, "ociVersion: must be a string, not number"),
    ("root", DELETE, "root: is required"),
    ("root.path", "", "root.path: must not be empty"),
    ("root.readonly", "yes", "root.readonly: must be a boolean, not string"),
    ("process", DELETE, "process: is required"),
    ("process.args", [], "process.args: must not be empty"),
    ("process.args", ["sh", 1], "process.args[1]: must be a string"),
    ("process.cwd", "relative", "process.cwd: 'relative' must be an absolute path"),
    ("process.cwd", DELETE, "process.cwd: is required"),
    ("process.env", ["NOEQUALS"], 'process.env[0]: "NOEQUALS" is not of the form KEY=value'),
    ("process.terminal", 1, "process.terminal: must be a boolean"),
    ("process.user.uid", -1, "process.user.uid: -1: uids and gids must be in range 0-2147483647"),
    ("process.user.gid", 2**32, "process.user.gid: 4294967296: uids and gids must be in range"),
    ("process.user.uid", 2**32 - 1, "process.user.uid: 4294967295: uids and gids must be in range"),
    ("process.user.additionalGids", [2**31], "process.user.additionalGids[0]: 2147483648: uids"),
    ("process.user.uid", 1.0, "process.user.uid: must be an integer, not 1.0"),
    ("hostname", "x" * 65, "hostname: longer than the kernel's 64 bytes"),
    ("process.user.additionalGids", [5] * 65537, "process.user.additionalGids: more than the kernel's 65536"),
    ("linux.resources.memory", {"limit": -2}, "linux.resources.memory.limit: -2 is out of range [-1, "),
    ("linux.devices", [{"type": "c", "path": "/dev/x", "major": 4096, "minor": 0}], "linux.devices[0].major: 4096 is out of range [0, 4095]"),
    ("process.args", ["sh", "a\0b"], "process.args[1]: must not contain a NUL character"),
    ("process.env", ["A=\ud800"], "process.env[0]: is not valid Unicode"),
    ("linux.resources.devices", [{"allow": True, "access": ""}], "linux.resources.devices[0].access: cannot be empty"),
    ("linux.resources.devices", [{"allow": True}], "linux.resources.devices[0].access: cannot be empty"),
    ("linux.resources.pids", {"limit": 1e9}, "linux.resources.pids.limit: must be an integer, not 1000000000.0"),
    ("linux.memoryPolicy", {"mode": ["MPOL_BIND"]}, "linux.memoryPolicy.mode: invalid memory policy mode: ['MPOL_BIND']"),
    ("linux.memoryPolicy", {"mode": "MPOL_BIND", "flags": [[1]]}, "linux.memoryPolicy.flags[0]: invalid memory policy flag"),
    ("process.execCPUAffinity", {"initial": "1" * 5000}, 'process.execCPUAffinity.initial: invalid CPU "111111111111111111111111": CPUs'),
    ("process.user.additionalGids", [1, "x"], "process.user.additionalGids[1]: must be an integer"),
    ("process.capabilities.bounding", ["CAP_KILL", 7], "process.capabilities.bounding[1]: must be a string"),
    ("process.rlimits.0.type", "RLIMIT_FOO", 'process.rlimits[0].type: unknown rlimit type "RLIMIT_FOO"'),
    ("process.rlimits.0.soft", 2048, "process.rlimits[0].soft: 2048 is greater than hard limit 1024"),
    ("process.oomScoreAdj", 1001, "process.oomScoreAdj: 1001 is out of range"),
    ("process.consoleSize", {"height": -1, "width": 1}, "process.consoleSize.height: -1 is out of range"),
    ("process.scheduler", {"policy": "SCHED_NOPE"}, 'process.scheduler.policy: unknown scheduler policy "SCHED_NOPE"'),
    ("process.scheduler", {"policy": "SCHED_OTHER", "nice": 40}, "process.scheduler.nice: 40 is out of range"),
    ("process.ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": 9}, "process.ioPriority.priority: 9 is out of range"),
    ("process.ioPriority", {"priority": 1}, "process.ioPriority.class: is required"),
    ("hostname", 5, "hostname: must be a string"),
    ("mounts.0.destination", DELETE, "mounts[0].destination: is required"),
    ("mounts.1.options", "ro", "mounts[1].options: must be an array, not string"),
    ("hooks.prestart", [{"path": "rel"}], "hooks.prestart[0].path: 'rel' must be an absolute path"),
    ("hooks.poststop", [{"path": "/x", "timeout": 0}], "hooks.poststop[0].timeout: 0 is out of range"),
    ("hooks.createRuntime", [{"args": []}], "hooks.createRuntime[0].path: is required"),
    ("annotations", {"a": 1}, "annotations.a: must be a string"),
    ("linux.namespaces.2.type", "foo", 'linux.namespaces[2].type: unknown namespace type "foo"'),
    ("linux.namespaces.2", {"type": "pid"}, 'linux.namespaces[2].type: duplicate namespace type "pid"'),
    ("linux.namespaces.0.path", "relative", "linux.namespaces[0].path: 'relative' must be an absolute path"),
    ("linux.uidMappings", [{"containerID": 0, "hostID": 0, "size": 1}], "linux.uidMappings: id mappings need a user namespace"),
    ("linux.gidMappings", [{"containerID": 0, "hostID": 0, "size": 1}], "linux.gidMappings: id mappings need a user namespace"),
    ("linux.devices", [{"type": "x", "path": "/dev/x"}], 'linux.devices[0].type: unknown device type "x"'),
    ("linux.devices", [{"type": "c", "path": "/dev/x"}], "linux.devices[0].major: is required"),
    ("linux.resources.devices.0.access", "rwx", 'linux.resources.devices[0].access: "rwx" must be a combination'),
    ("linux.resources.devices.0.allow", DELETE, "linux.resources.devices[0].allow: is required"),
    ("linux.resources.memory", {"limit": "1G"}, "linux.resources.memory.limit: must be an integer"),
    ("linux.resources.memory", {"swappiness": 101}, "linux.resources.memory.swappiness: 101 is out of range"),
    ("linux.resources.cpu", {"cpus": "0-a"}, 'linux.resources.cpu.cpus: "0-a" is not a CPU list'),
    ("linux.resources.pids", {"limit": "x"}, "linux.resources.pids.limit: must be an integer"),
    ("linux.resources.blockIO", {"weight": 70000}, "linux.resources.blockIO.weight: 70000 is out of range"),
    ("linux.resources.cpu", {"idle": 2}, "linux.resources.cpu.idle: 2 is out of range [0, 1]"),
    ("linux.resources.hugepageLimits", [{"limit": 1}], "linux.resources.hugepageLimits[0].pageSize: is required"),
    ("linux.resources.unified", {"memory.max": 5}, "linux.resources.unified.memory.max: must be a string"),
    ("linux.rootfsPropagation", "sideways", 'linux.rootfsPropagation: unknown propagation "sideways"'),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_NOPE"}, 'linux.seccomp.defaultAction: unknown seccomp action "SCMP_ACT_NOPE"'),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}, "linux.seccomp.syscalls[0].names: must not be empty"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "linux.seccomp.syscalls[0].args[0].index: 6 is out of range"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, 'linux.seccomp.flags[0]: unknown seccomp flag "SECCOMP_FILTER_FLAG_NOPE"'),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "CMP_ARCH_X86"]}, "linux.seccomp.architectures[1]: unknown architecture 'CMP_ARCH_X86'"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/l"}, "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, "linux.seccomp.listenerPath: SCMP_ACT_NOTIFY needs a listenerPath"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/l", "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}, "linux.seccomp.syscalls[0]: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ("linux.personality", {"domain": "LINUX", "flags": ["SHORT_INODE"]}, "linux.personality.flags: no personality flags are supported"),
    ("process.scheduler", {"policy": "SCHED_OTHER", "priority": 5}, "process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority"),
    ("process.scheduler", {"policy": "SCHED_RR"}, "process.scheduler.priority: SCHED_RR needs a priority in [1, 99]"),
    ("linux.sysctl", {"kernel.panic": "1"}, "linux.sysctl.kernel.panic: sysctl is not in a separate kernel namespace"),
    ("linux.sysctl", {"kernel/panic": "1"}, "linux.sysctl.kernel/panic: sysctl is not in a separate kernel namespace"),
    ("linux.sysctl", {"net/../kernel/core_pattern": "|x"}, "linux.sysctl.net/../kernel/core_pattern: not a sysctl name"),
    ("linux.sysctl", {"kernel.hostname": "h"}, 'linux.sysctl.kernel.hostname: sysctl is not allowed as it conflicts with the OCI "hostname" field'),
    ("linux.sysctl", {"kernel/hostname": "h"}, 'linux.sysctl.kernel/hostname: sysctl is not allowed as it conflicts'),
    ("linux.maskedPaths", ["relative"], "linux.maskedPaths[0]: 'relative' must be an absolute path"),
    ("linux.timeOffsets", {"monotonic": {"secs": 1}}, "linux.timeOffsets: needs a time namespace"),
    ("linux.personality", {"domain": "WINDOWS"}, 'linux.personality.domain: unknown domain "WINDOWS"'),
    ("linux.intelRdt", {"closID": ".."}, "linux.intelRdt.closID: invalid class of service '..'"),
    ("linux.intelRdt", {"closID": "a/b"}, "linux.intelRdt.closID: invalid class of service 'a/b'"),
    ("linux.intelRdt", {"closID": "a\0b"}, "linux.intelRdt.closID: must not contain a NUL character"),
    ("linux.intelRdt", {"closID": 5}, "linux.intelRdt.closID: must be a string"),
    ("linux.intelRdt", {"memBwSchema": "L3:0=f"}, "linux.intelRdt.memBwSchema: 'L3:0=f' is not one \"MB:\" line"),
    ("linux.intelRdt", {"memBwSchema": "MB:0=20\nL3:0=f"}, "linux.intelRdt.memBwSchema: 'MB:0=20\\nL3:0=f' is not one"),
    ("linux.intelRdt", {"schemata": ["L3:0=f", ""]}, "linux.intelRdt.schemata[1]: '' is not one schemata line"),
    ("linux.intelRdt", {"schemata": "L3:0=f"}, "linux.intelRdt.schemata: must be an array"),
    ("linux.intelRdt", {"enableMonitoring": "yes"}, "linux.intelRdt.enableMonitoring: must be a boolean"),
    ("linux", [], "linux: must be an object, not array"),
    ("linux.netDevices", {"eth0": {"name": 5}}, "linux.netDevices.eth0.name: must be a string"),
    ("linux.netDevices", {"eth0": {"name": "a/b"}}, 'linux.netDevices.eth0.name: "a/b" is not a valid network interface name'),
    ("linux.netDevices", {"eth0:1": {}}, 'linux.netDevices.eth0:1: "eth0:1" is not a valid network interface name'),
    ("linux.netDevices", {"a" * 16: {}}, f'linux.netDevices.{"a" * 16}: "{"a" * 16}" is not a valid network interface name (1-15 bytes'),
    ("linux.netDevices", {"..": {}}, 'linux.netDevices...: ".." is not a valid network interface name'),
    ("linux.netDevices", {"eth0": {"name": "net1"}, "eth1": {"name": "net1"}}, 'linux.netDevices.eth1: a second interface called "net1"'),
    ("linux.netDevices", {"eth0": {}, "eth1": {"name": "eth0"}}, 'linux.netDevices.eth1: a second interface called "eth0"'),
    ("linux.memoryPolicy", {"mode": "MPOL_NOPE"}, 'linux.memoryPolicy.mode: invalid memory policy mode: "MPOL_NOPE"'),
    ("linux.memoryPolicy", {"mode": "MPOL_BIND", "nodes": "0-x"}, 'linux.memoryPolicy.nodes: "0-x" is not a memory policy node list'),
    ("linux.memoryPolicy", {"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]}, "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES needs nodes, which MPOL_LOCAL has none of"),
    ("linux.memoryPolicy", {"mode": "MPOL_PREFERRED", "flags": ["MPOL_F_RELATIVE_NODES"]}, "linux.memoryPolicy.flags: MPOL_F_RELATIVE_NODES needs nodes, which MPOL_PREFERRED has none of"),
    ("process.execCPUAffinity", {"initial": "0-98765432100"}, 'process.execCPUAffinity.initial: invalid CPU "0-98765432100": CPUs are numbered below 8192'),
    ("process.execCPUAffinity", {"final": "2-1"}, 'process.execCPUAffinity.final: bad CPU range "2-1"'),
    # Shapes runc's Go decoder refuses (checked against Go's encoding/json and specs-go):
    # an empty value of the wrong type is no absent field, an int64 stops at 2^63-1.
    ("linux.namespaces", {}, "linux.namespaces: must be an array, not object"),
    ("linux.namespaces.0.path", [], "linux.namespaces[0].path: must be a string, not array"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": {}}, "linux.seccomp.architectures: must be an array"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "flags": {}}, "linux.seccomp.flags: must be an array"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG", "args": {}}]}, "linux.seccomp.syscalls[0].args: must be an array"),
    ("linux.resources.devices", [{"allow": False, "major": 2**63, "access": "r"}], "linux.resources.devices[0].major: 9223372036854775808 is out of range [-1, 9223372036854775807]"),
    ("linux.resources.blockIO", {"weightDevice": [{"major": 2**63, "minor": 0}]}, "linux.resources.blockIO.weightDevice[0].major: 9223372036854775808 is out of range"),
    ("linux.resources.blockIO", {"throttleReadBpsDevice": [{"major": 8, "minor": 2**63, "rate": 1}]}, "linux.resources.blockIO.throttleReadBpsDevice[0].minor: 9223372036854775808 is out of range"),
    ("linux.resources.rdma", {"mlx5_0": 5}, "linux.resources.rdma.mlx5_0: must be an object, not number"),
    ("linux.resources.rdma", {"mlx5_0": {"hcaHandles": -1}}, "linux.resources.rdma.mlx5_0.hcaHandles: -1 is out of range [0, 4294967295]"),
    # The other platforms' sections: not run here, but read by runc into Go types.
    ("windows", "x", "windows: must be an object, not string"),
    ("windows.layerFolders", 5, "windows.layerFolders: must be an array, not number"),
    ("windows.resources", {"cpu": {"shares": 65536}}, "windows.resources.cpu.shares: 65536 is out of range [0, 65535]"),
    ("solaris.anet", [{"linkname": 5}], "solaris.anet[0].linkname: must be a string, not number"),
    ("vm", {"kernel": {"path": 5}}, "vm.kernel.path: must be a string, not number"),
    ("zos.devices", [{"path": "/dev/z", "uid": -1}], "zos.devices[0].uid: -1 is out of range [0, 4294967295]"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_field_is_named(path: str, value: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate(mutate(BASE, path, value))
    text = str(err.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_null_optional_fields_count_as_absent() -> None:
    doc = mutate(BASE, "process.rlimits", None)
    doc["hostname"] = None
    doc["linux"]["seccomp"] = None
    doc["mounts"][0]["options"] = None
    validate(doc)


def test_other_platforms_sections_of_the_right_shape_are_ignored() -> None:
    doc = copy.deepcopy(BASE)
    doc["windows"] = {"layerFolders": ["C:\\l"], "credentialSpec": [1, {"any": "value"}]}
    doc["vm"] = {"kernel": {"path": "/k", "parameters": ["quiet"]}, "image": {"path": "/i"}}
    doc["solaris"] = {"cappedMemory": {"physical": "512m"}}
    doc["zos"] = {"devices": [{"path": "/dev/z", "type": "c", "major": 1, "minor": 2}]}
    doc["linux"]["namespaces"][0]["path"] = ""  # an empty path is no path, as Go's zero value
    validate(doc)


def test_default_specs_are_valid() -> None:
    validate(default_spec())
    validate(default_spec(rootless=True))


@pytest.mark.parametrize(
    "version", ["1.0.0", "1.0.2-dev", "1.1.0-rc.1", "1.2.1", "1.3.0", "1.2.0+dev"]
)
def test_supported_versions(version: str) -> None:
    validate(mutate(BASE, "ociVersion", version))


def test_hostname_needs_uts_namespace() -> None:
    doc = mutate(BASE, "linux.namespaces", [{"type": "mount"}])
    doc["hostname"] = "h"
    with pytest.raises(
        InvalidArgument, match=r"^hostname: unable to set hostname without a private UTS"
    ):
        validate(doc)


def test_namespaced_sysctls_are_accepted() -> None:
    doc = mutate(
        BASE,
        "linux.sysctl",
        {
            "net.ipv4.ip_forward": "1",
            "kernel.shmmax": "1",
            "fs.mqueue.msg_max": "10",
            "net/ipv4/conf/all/forwarding": "1",  # /proc/sys's own form, as runc takes it
        },
    )
    validate(doc)
    doc["linux"]["namespaces"] = [n for n in doc["linux"]["namespaces"] if n["type"] != "network"]
    with pytest.raises(
        InvalidArgument, match=r"^linux.sysctl.net.ipv4.ip_forward: sysctl needs a new network"
    ):
        validate(doc)


def test_a_net_sysctl_in_our_own_network_namespace_is_refused() -> None:
    """A network namespace joined by path that is the one the runtime runs in: a net.*
    sysctl would be written to the host's (galley wrote it; runc refuses, in these words)."""
    doc = mutate(BASE, "linux.sysctl", {"net.ipv4.tcp_keepalive_probes": "7"})
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        for path in (f"/proc/{sleeper.pid}/ns/net", "/proc/self/ns/net"):
            doc["linux"]["namespaces"] = [
                n if n["type"] != "network" else {"type": "network", "path": path}
                for n in BASE["linux"]["namespaces"]
            ]
            with pytest.raises(
                InvalidArgument,
                match=r"^linux.sysctl.net.ipv4.tcp_keepalive_probes: sysctl not allowed in host"
                r" network namespace$",
            ):
                validate(doc)
    finally:
        sleeper.kill()
        sleeper.wait()
    doc["linux"]["namespaces"] = [
        n if n["type"] != "network" else {"type": "network", "path": "/nonexistent/net"}
        for n in BASE["linux"]["namespaces"]
    ]
    validate(doc)  # not ours as far as can be told: the join names the path when it fails


def test_time_offsets_go_with_a_new_time_namespace() -> None:
    """A time namespace joined by path keeps its own offsets: the config's went unused
    without a word (runc 1.2 refuses them too)."""
    doc = mutate(BASE, "linux.timeOffsets", {"boottime": {"secs": 99}})
    doc["linux"]["namespaces"].append({"type": "time", "path": "/proc/1/ns/time"})
    with pytest.raises(InvalidArgument, match=r"^linux.timeOffsets: a time namespace joined by"):
        validate(doc)
    doc["linux"]["namespaces"][-1] = {"type": "time"}
    validate(doc)


def test_a_domainname_sysctl_must_agree_with_the_domainname_field() -> None:
    doc = mutate(BASE, "linux.sysctl", {"kernel.domainname": "example.org"})
    doc["domainname"] = "example.org"
    validate(doc)  # the same name twice: Docker's --domainname arrives as this sysctl
    del doc["domainname"]
    validate(doc)
    for key in ("kernel.domainname", "kernel/domainname"):
        doc = mutate(BASE, "linux.sysctl", {key: "foo"})
        doc["domainname"] = "foomachine"
        with pytest.raises(InvalidArgument) as err:
            validate(doc)
        assert str(err.value) == (
            f"linux.sysctl.{key}: 'foo' conflicts with the OCI \"domainname\" field ('foomachine')"
        )


def test_user_namespace_needs_mappings() -> None:
    doc = copy.deepcopy(BASE)
    doc["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(InvalidArgument, match=r"^linux.uidMappings: a new user namespace needs"):
        validate(doc)
    doc["linux"]["namespaces"][-1]["path"] = "/proc/1/ns/user"
    validate(doc)


def test_masked_paths_need_mount_namespace() -> None:
    doc = mutate(BASE, "linux.namespaces", [{"type": "pid"}])
    doc.pop("hostname")
    with pytest.raises(
        InvalidArgument, match=r"^linux.maskedPaths: needs a private mount namespace"
    ):
        validate(doc)


def test_net_devices_need_a_network_namespace() -> None:
    namespaces = [n for n in BASE["linux"]["namespaces"] if n["type"] != "network"]
    doc = mutate(BASE, "linux.namespaces", namespaces)
    doc["linux"]["netDevices"] = {"eth1": {}}
    with pytest.raises(InvalidArgument, match=r"^linux.netDevices: needs a network namespace"):
        validate(doc)


def test_labels_without_selinux_or_apparmor() -> None:
    with pytest.raises(InvalidArgument, match=r"^process.selinuxLabel: selinux"):
        validate(mutate(BASE, "process.selinuxLabel", "system_u:system_r:container_t:s0"))
    with pytest.raises(InvalidArgument, match=r"^process.apparmorProfile: apparmor is not enabled"):
        validate(mutate(BASE, "process.apparmorProfile", "docker-default"))


def test_full_featured_config_is_valid() -> None:
    doc = copy.deepcopy(BASE)
    doc["linux"]["resources"] = {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        ],
        "memory": {
            "limit": 1 << 30,
            "reservation": 1 << 29,
            "swap": -1,
            "swappiness": 10,
            "disableOOMKiller": False,
        },
        "cpu": {"shares": 1024, "quota": 100000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {
            "weight": 500,
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
        "unified": {"memory.high": "max"},
    }
    doc["linux"]["devices"] = [
        {"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 0o666}
    ]
    doc["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {
                "names": ["read"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    doc["linux"]["rootfsPropagation"] = "rslave"
    doc["linux"]["netDevices"] = {"eth1": {"name": "net1"}}
    doc["linux"]["memoryPolicy"] = {
        "mode": "MPOL_INTERLEAVE",
        "nodes": "0",
        "flags": ["MPOL_F_STATIC_NODES"],
    }
    doc["linux"]["cgroupsPath"] = "/galley/x"
    doc["hooks"] = {
        p: [{"path": "/bin/true", "args": ["true"], "env": ["A=b"], "timeout": 5}]
        for p in ("prestart", "poststop")
    }
    doc["process"]["scheduler"] = {
        "policy": "SCHED_BATCH",
        "nice": 5,
        "flags": ["SCHED_FLAG_RESET_ON_FORK"],
    }
    doc["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    doc["process"]["user"] = {"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5]}
    validate(doc)


def _mapping(container: int, host: int, size: int) -> dict[str, int]:
    return {"containerID": container, "hostID": host, "size": size}


@pytest.mark.parametrize(
    ("mappings", "error"),
    [
        ([_mapping(0, 1000, 10), _mapping(0, 2000, 10)], "linux.uidMappings[1]: container IDs 0-9 overlap linux.uidMappings[0]'s"),
        ([_mapping(0, 1000, 10), _mapping(10, 1005, 1)], "linux.uidMappings[1]: host IDs 1005-1005 overlap linux.uidMappings[0]'s"),
        ([_mapping(5, 1000, 1), _mapping(0, 2000, 10)], "linux.uidMappings[1]: container IDs 0-9 overlap linux.uidMappings[0]'s"),
        ([_mapping(2**32 - 1, 1000, 1)], "linux.uidMappings[0]: container IDs 4294967295+1 run past 4294967294"),
        ([_mapping(0, 2**32 - 10, 10)], "linux.uidMappings[0]: host IDs 4294967286+10 run past 4294967294"),
        ([_mapping(i, 1000 + i, 1) for i in range(341)], "linux.uidMappings: 341 mappings, more than the kernel's 340"),
        ([_mapping(i * 2, 100000 + i * 3, 2) for i in range(340)], "linux.uidMappings: the map is 4365 bytes, more than the kernel's 4095"),
    ],
)  # fmt: skip
def test_id_mappings_the_kernel_would_refuse_name_the_entry(
    mappings: list[dict[str, int]], error: str
) -> None:
    """A uid_map the kernel refuses fails its write with EINVAL, which names nothing (and runc
    1.1 says "failed to update /proc/<pid>/uid_map: Invalid argument"); mutfuzz seed 2."""
    doc = copy.deepcopy(BASE)
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["gidMappings"] = [_mapping(0, 1000, 10)]
    doc["linux"]["uidMappings"] = mappings
    with pytest.raises(InvalidArgument) as err:
        validate(doc)
    assert str(err.value) == error
    doc["mounts"][0]["uidMappings"] = doc["linux"].pop("uidMappings")
    doc["linux"]["uidMappings"] = [_mapping(0, 1000, 10)]
    with pytest.raises(InvalidArgument) as err:
        validate(doc)
    assert str(err.value) == error.replace("linux.uidMappings", "mounts[0].uidMappings")


def test_the_most_id_mappings_the_kernel_takes_pass() -> None:
    doc = copy.deepcopy(BASE)
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["gidMappings"] = [_mapping(2**32 - 2, 0, 1)]
    doc["linux"]["uidMappings"] = [_mapping(i, i, 1) for i in range(340)]  # 3-9 bytes a line
    validate(doc)
