"""The OCI runtime-spec config.json (1.0 to 1.3) as typed dictionaries.

config.json is read with json.load and used as these TypedDicts: no copying into objects on the
runtime's hot path, and mypy still checks every field access. `galley.oci.validate` checks a
loaded document against the spec before anything uses it; after that, code may trust the shape.

    Spec
    ├── ociVersion, hostname, domainname, annotations
    ├── root: Root {path, readonly}
    ├── process: Process {terminal, consoleSize, user, args, env, cwd, capabilities, rlimits,
    │                     noNewPrivileges, oomScoreAdj, apparmorProfile, selinuxLabel, ioPriority}
    ├── mounts: [Mount {destination, source, type, options, uidMappings, gidMappings}]
    ├── hooks: Hooks {prestart, createRuntime, createContainer, startContainer, poststart, poststop}
    └── linux: Linux {namespaces, uidMappings, gidMappings, timeOffsets, devices, cgroupsPath,
                      resources, rootfsPropagation, seccomp, sysctl, maskedPaths, readonlyPaths,
                      mountLabel, intelRdt, personality}
"""

from __future__ import annotations

from typing import Literal, TypedDict

from galley.oci.vocabulary import NAMESPACE_TYPES, SUPPORTED_VERSIONS

__all__ = ["NAMESPACE_TYPES", "SUPPORTED_VERSIONS"]  # and the TypedDicts below
NamespaceType = Literal["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"]


class Root(TypedDict, total=False):
    path: str
    readonly: bool


class ConsoleSize(TypedDict):
    height: int
    width: int


class User(TypedDict, total=False):
    uid: int
    gid: int
    umask: int
    additionalGids: list[int]
    username: str


class Capabilities(TypedDict, total=False):
    bounding: list[str]
    effective: list[str]
    inheritable: list[str]
    permitted: list[str]
    ambient: list[str]


class Rlimit(TypedDict):
    type: str
    soft: int
    hard: int


class IOPriority(TypedDict, total=False):
    class_: str
    priority: int


class Process(TypedDict, total=False):
    terminal: bool
    consoleSize: ConsoleSize
    user: User
    args: list[str]
    commandLine: str
    env: list[str]
    cwd: str
    capabilities: Capabilities
    rlimits: list[Rlimit]
    noNewPrivileges: bool
    apparmorProfile: str
    oomScoreAdj: int
    selinuxLabel: str
    scheduler: dict[str, object]
    ioPriority: dict[str, object]
    execCPUAffinity: dict[str, str]


class IDMapping(TypedDict):
    containerID: int
    hostID: int
    size: int


class Mount(TypedDict, total=False):
    destination: str
    source: str
    type: str
    options: list[str]
    uidMappings: list[IDMapping]
    gidMappings: list[IDMapping]


class Hook(TypedDict, total=False):
    path: str
    args: list[str]
    env: list[str]
    timeout: int


class Hooks(TypedDict, total=False):
    prestart: list[Hook]
    createRuntime: list[Hook]
    createContainer: list[Hook]
    startContainer: list[Hook]
    poststart: list[Hook]
    poststop: list[Hook]


class Namespace(TypedDict, total=False):
    type: str
    path: str


class Device(TypedDict, total=False):
    type: str
    path: str
    major: int
    minor: int
    fileMode: int
    uid: int
    gid: int


class DeviceRule(TypedDict, total=False):
    allow: bool
    type: str
    major: int | None
    minor: int | None
    access: str


class Memory(TypedDict, total=False):
    limit: int
    reservation: int
    swap: int
    kernel: int
    kernelTCP: int
    swappiness: int
    disableOOMKiller: bool
    useHierarchy: bool
    checkBeforeUpdate: bool


class CPU(TypedDict, total=False):
    shares: int
    quota: int
    burst: int
    period: int
    realtimeRuntime: int
    realtimePeriod: int
    cpus: str
    mems: str
    idle: int


class Pids(TypedDict, total=False):
    limit: int


class WeightDevice(TypedDict, total=False):
    major: int
    minor: int
    weight: int
    leafWeight: int


class ThrottleDevice(TypedDict):
    major: int
    minor: int
    rate: int


class BlockIO(TypedDict, total=False):
    weight: int
    leafWeight: int
    weightDevice: list[WeightDevice]
    throttleReadBpsDevice: list[ThrottleDevice]
    throttleWriteBpsDevice: list[ThrottleDevice]
    throttleReadIOPSDevice: list[ThrottleDevice]
    throttleWriteIOPSDevice: list[ThrottleDevice]


class HugepageLimit(TypedDict):
    pageSize: str
    limit: int


class NetworkPriority(TypedDict):
    name: str
    priority: int


class Network(TypedDict, total=False):
    classID: int
    priorities: list[NetworkPriority]


class Resources(TypedDict, total=False):
    devices: list[DeviceRule]
    memory: Memory
    cpu: CPU
    pids: Pids
    blockIO: BlockIO
    hugepageLimits: list[HugepageLimit]
    network: Network
    rdma: dict[str, dict[str, int]]
    unified: dict[str, str]


class SeccompArg(TypedDict, total=False):
    index: int
    value: int
    valueTwo: int
    op: str


class SeccompSyscall(TypedDict, total=False):
    names: list[str]
    action: str
    errnoRet: int
    args: list[SeccompArg]


class Seccomp(TypedDict, total=False):
    defaultAction: str
    defaultErrnoRet: int
    architectures: list[str]
    flags: list[str]
    listenerPath: str
    listenerMetadata: str
    syscalls: list[SeccompSyscall]


class TimeOffset(TypedDict, total=False):
    secs: int
    nanosecs: int


class NetDevice(TypedDict, total=False):
    name: str  # in the container; the host's name when absent


class Linux(TypedDict, total=False):
    namespaces: list[Namespace]
    uidMappings: list[IDMapping]
    gidMappings: list[IDMapping]
    timeOffsets: dict[str, TimeOffset]
    devices: list[Device]
    cgroupsPath: str
    resources: Resources
    rootfsPropagation: str
    seccomp: Seccomp
    sysctl: dict[str, str]
    maskedPaths: list[str]
    readonlyPaths: list[str]
    mountLabel: str
    intelRdt: dict[str, object]
    personality: dict[str, object]
    netDevices: dict[str, NetDevice]
    memoryPolicy: dict[str, object]


class Spec(TypedDict, total=False):
    ociVersion: str
    root: Root
    process: Process
    hostname: str
    domainname: str
    mounts: list[Mount]
    hooks: Hooks
    annotations: dict[str, str]
    linux: Linux


Status = Literal["creating", "created", "running", "stopped", "paused"]


class State(TypedDict, total=False):
    """The runtime-spec state, as passed to hooks on stdin."""

    ociVersion: str
    id: str
    status: Status
    pid: int
    bundle: str
    annotations: dict[str, str]
