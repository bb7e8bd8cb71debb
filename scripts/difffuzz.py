#!/usr/bin/env python3
"""Differential fuzzer: random OCI configs under runc and galley-runc, compared.

Each case builds one random config.json (from a seeded generator), runs it once under runc and
once under galley-runc (each in its own bundle, state root, container id and cgroup), and
compares what the container observes (a busybox sh probe prints ids, caps, limits, mounts,
/dev, sysctls, cgroup values, write tests ...), the hooks' traces and the exit status; and
checks that galley-runc's `run`, started or refused, left no state directory, cgroup or host
mount behind when it returned, nor a file in its bundle beside rootfs/. Cases that differ are
written to the report directory (config, both outputs, a unified diff).

    python scripts/difffuzz.py --seed 1 -n 200 --galley bin/galley-runc \\
        --runc /usr/sbin/runc --out /tmp/fuzz-report
    python scripts/difffuzz.py --seed 1 --case 17 --galley bin/galley-runc --out /tmp/r

    python scripts/difffuzz.py --seed 1 -n 100 --rootless 62117 --out /tmp/r   # rootless

--rootless UID runs both runtimes as that uid (no passwd entry needed), each case's config
made rootless first (rootless_variant: a user namespace mapping root to UID alone, mostly
root as the process's user, mostly no resources or uid=/gid= mount options, no cgroupsPath).

Needs root. Everything a case creates (temp dir, network namespace, cgroups, containers) is
removed after it. Only the processes this script starts are ever killed, by pid.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from galley.fixtures.busybox import make_bundle
from galley.fixtures.processes import cgroup_members, cgroup_mounts, kill, remove_cgroup_everywhere
from galley.kernel.caps import CAPABILITY_NAMES

Config = dict[str, Any]

HOSTDIR = "@HOSTDIR@"  # replaced by the per-runtime host directory of the case
MOUNTS = cgroup_mounts()  # every hierarchy, on a hybrid host and a pure v2 one alike

# Every capability but CAP_SYS_RESOURCE (see RARE_CAPS) and CAP_SYS_TIME (a container given
# it may set the host's clock).
ALL_CAPS = [c for c in CAPABILITY_NAMES if c not in {"CAP_SYS_RESOURCE", "CAP_SYS_TIME"}]
# CAP_SYS_RESOURCE is outside this host's bounding set: asking for it fails in both runtimes.
RARE_CAPS = ["CAP_SYS_RESOURCE"]

RLIMITS = [
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
]

MOUNT_FLAGS = [
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "nodiratime",
    "diratime",
    "sync",
    "async",
    "dirsync",
    "mand",
    "nomand",
    "lazytime",
    "nolazytime",
    "silent",
    "loud",
]
PROPAGATION = [
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
]

SYSCTLS: dict[str, list[str]] = {
    "net.ipv4.ip_forward": ["0", "1"],
    "net.ipv4.ping_group_range": ["0 0", "0 2147483647", "1 0"],
    "net.core.somaxconn": ["128", "1024", "4096"],
    "net.ipv4.ip_unprivileged_port_start": ["0", "80", "1024"],
    "net.ipv4.tcp_syncookies": ["0", "1"],
    "net.ipv4.conf.all.forwarding": ["0", "1"],
    "net.ipv6.conf.all.disable_ipv6": ["0", "1"],
    "kernel.shm_rmid_forced": ["0", "1"],
    "kernel.msgmax": ["8192", "16384"],
    "kernel.sem": ["250 32000 32 128", "100 1000 10 10"],
    "kernel.shmmax": ["1048576", "18446744073692774399"],
    "kernel.domainname": ["sysctl.example"],
    "kernel.hostname": ["sysctlhost"],
    "fs.mqueue.msg_max": ["10", "100"],
    "vm.swappiness": ["10"],
    "kernel.pid_max": ["4194304"],
}

SYSCALLS_TO_DENY = [
    "mkdir",
    "mkdirat",
    "uname",
    "sethostname",
    "chmod",
    "fchmodat",
    "fchmod",
    "getcwd",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "utimensat",
    "getpriority",
    "setpriority",
    "sched_getaffinity",
    "getrlimit",
    "prlimit64",
    "personality",
    "chdir",
    "socket",
]

PERSONALITIES = ["LINUX", "LINUX32"]

EXTRA_PATHS_TO_PROBE = [
    "/",
    "/tmp",
    "/etc",
    "/dev",
    "/dev/shm",
    "/dev/mqueue",
    "/proc/sys",
    "/proc/sys/kernel",
    "/sys",
    "/sys/fs/cgroup",
    "/root",
]

CGROUP_FILES = [
    "memory/memory.limit_in_bytes",
    "memory/memory.soft_limit_in_bytes",
    "memory/memory.memsw.limit_in_bytes",
    "memory/memory.swappiness",
    "memory/memory.oom_control",
    "cpu/cpu.shares",
    "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us",
    "cpu/cpu.rt_runtime_us",
    "cpuset/cpuset.cpus",
    "cpuset/cpuset.mems",
    "pids/pids.max",
    "devices/devices.list",
    "blkio/blkio.weight",
    "freezer/freezer.state",
]


# ---------------------------------------------------------------------------------------------
# The generator


@dataclass
class Case:
    """One generated case: the config (with HOSTDIR placeholders) and what to set up."""

    number: int
    config: Config
    host_files: dict[str, str] = field(default_factory=dict)  # relative path -> content
    host_dirs: list[str] = field(default_factory=list)
    netns: bool = False
    notes: list[str] = field(default_factory=list)


class Generator:
    """A seeded generator of random configs: one Random per case, so any case replays alone."""

    def __init__(self, seed: int, number: int) -> None:
        self.r = random.Random(f"difffuzz-{seed}-{number}")
        self.number = number

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def subset(self, items: list[str], p: float = 0.5) -> list[str]:
        return [item for item in items if self.chance(p)]

    def generate(self, base: Config) -> Case:
        config = copy.deepcopy(base)
        case = Case(self.number, config)
        self.namespaces(case)
        self.process_user(case)
        self.capabilities(case)
        self.rlimits(case)
        self.env_and_cwd(case)
        self.misc_process(case)
        self.names(case)
        self.sysctl(case)
        self.mounts(case)
        self.masked(case)
        self.devices(case)
        self.resources(case)
        self.seccomp(case)
        self.personality(case)
        self.hooks(case)
        if self.chance(0.2):
            config["root"]["readonly"] = self.chance(0.5)
        if self.chance(0.05):
            config["linux"]["rootfsPropagation"] = self.r.choice(PROPAGATION)
        return case

    # --- namespaces -----------------------------------------------------------------------

    def namespaces(self, case: Case) -> None:
        linux = case.config["linux"]
        kinds = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        all_kept = self.chance(0.6)
        kept = [k for k in kinds if all_kept or k == "mount" or self.chance(0.7)]
        namespaces: list[dict[str, str]] = [{"type": k} for k in kept]
        if "network" in kept and self.chance(0.15):
            case.netns = True
            for ns in namespaces:
                if ns["type"] == "network":
                    ns["path"] = "@NETNS@"
        if self.chance(0.25):
            namespaces.append({"type": "user"})
            size = self.r.choice([65536, 65536, 1000, 1])
            host = self.r.choice([100000, 200000])
            linux["uidMappings"] = [{"containerID": 0, "hostID": host, "size": size}]
            gsize = self.r.choice([size, 65536, 1000])
            linux["gidMappings"] = [{"containerID": 0, "hostID": host, "size": gsize}]
            if self.chance(0.2):
                linux["uidMappings"].append(
                    {"containerID": 70000, "hostID": host + 70000, "size": 10}
                )
            case.notes.append("userns")
        self.r.shuffle(namespaces)
        linux["namespaces"] = namespaces

    # --- process ----------------------------------------------------------------------------

    def process_user(self, case: Case) -> None:
        user = case.config["process"]["user"]
        if self.chance(0.35):
            user["uid"] = self.r.choice([0, 1, 1000, 65534, 70005])
        if self.chance(0.35):
            user["gid"] = self.r.choice([0, 1, 5, 1000, 65534])
        if self.chance(0.25):
            user["additionalGids"] = self.r.sample([0, 1, 5, 10, 1000, 65534], self.r.randint(0, 3))
        if self.chance(0.3):
            user["umask"] = self.r.choice([0, 0o22, 0o77, 0o027, 0o777])
        if self.chance(0.05):
            user["username"] = "nobody"

    def capabilities(self, case: Case) -> None:
        process = case.config["process"]
        if self.chance(0.3):
            return
        if self.chance(0.1):
            del process["capabilities"]
            return
        pool = ALL_CAPS + (RARE_CAPS if self.chance(0.05) else [])
        caps: dict[str, list[str]] = {}
        bounding = self.subset(pool, self.r.choice([0.2, 0.5, 0.9]))
        permitted = self.subset(bounding, 0.7)
        effective = self.subset(permitted, 0.8)
        inheritable = self.subset(bounding, 0.4)
        ambient = [c for c in permitted if c in inheritable and self.chance(0.7)]
        sets = {
            "bounding": bounding,
            "effective": effective,
            "permitted": permitted,
            "inheritable": inheritable,
            "ambient": ambient,
        }
        for kind, chosen in sets.items():
            if self.chance(0.1):
                continue
            caps[kind] = chosen if not self.chance(0.05) else self.subset(pool, 0.2)
        if self.chance(0.05):
            caps.setdefault("effective", []).append("CAP_NOT_A_CAP")
        process["capabilities"] = caps

    def rlimits(self, case: Case) -> None:
        process = case.config["process"]
        if self.chance(0.4):
            return
        limits = []
        for name in self.r.sample(RLIMITS, self.r.randint(0, 4)):
            if name == "RLIMIT_STACK":
                values = [65536, 8388608, 16777216]  # below ~4 KiB runc's init dies: accepted
            elif name in ("RLIMIT_NOFILE",):
                values = [64, 1024, 4096, 20000]
            elif name in ("RLIMIT_NPROC", "RLIMIT_SIGPENDING"):
                values = [50, 1000, 90000]
            elif name in ("RLIMIT_MEMLOCK",):
                values = [0, 65536, 8388608]
            elif name in ("RLIMIT_CPU", "RLIMIT_RTTIME"):
                values = [1000, 100000, 18446744073709551615]  # low values kill at random
            elif name in ("RLIMIT_NICE", "RLIMIT_RTPRIO"):
                values = [0]  # raising these hard limits needs CAP_SYS_RESOURCE here
            elif name in ("RLIMIT_AS", "RLIMIT_DATA"):
                values = [1 << 30, 1 << 32, 18446744073709551615]
            else:
                values = [0, 1, 100, 65536, 18446744073709551615]
            hard = self.r.choice(values)
            soft = self.r.choice([v for v in values if v <= hard] or [hard])
            if self.chance(0.05):
                soft = hard + 1 if hard < 18446744073709551615 else hard
            limits.append({"type": name, "hard": hard, "soft": soft})
        if self.chance(0.03):
            limits.append({"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1})
        if limits or self.chance(0.3):
            process["rlimits"] = limits
        else:
            process.pop("rlimits", None)

    def env_and_cwd(self, case: Case) -> None:
        process = case.config["process"]
        env: list[str] = list(process["env"])
        roll = self.r.random()
        if roll < 0.1:
            env = [e for e in env if not e.startswith("PATH=")]
        elif roll < 0.2:
            env = [e if not e.startswith("PATH=") else "PATH=/nonexistent:/bin" for e in env]
        elif roll < 0.25:
            env.append("PATH=/sbin")
        if self.chance(0.2):
            env.append(f"HOME=/home{self.r.randint(0, 9)}")
        if self.chance(0.2):
            env.append("FOO=bar=baz")
        if self.chance(0.1):
            env.append("EMPTY=")
        if self.chance(0.1):
            env.append("FOO=second")
        if self.chance(0.05):
            env.append("NOEQUALS")
        if self.chance(0.05):
            env.append("SP ACE=1")
        process["env"] = env
        if self.chance(0.3):
            process["cwd"] = self.r.choice(
                [
                    "/tmp",
                    "/root",
                    "/nonexistent/dir",
                    "/etc/passwd",
                    "/proc/self",
                    "/tmp/../etc",
                    "/tmp/",
                    "/dev/shm",
                    "//tmp",
                    "/mnt/new",
                ]
            )
        if self.chance(0.02):
            process["cwd"] = "tmp"  # relative: both runtimes should refuse (spec)

    def misc_process(self, case: Case) -> None:
        process = case.config["process"]
        if self.chance(0.3):
            process["noNewPrivileges"] = self.chance(0.5)
        if self.chance(0.3):
            process["oomScoreAdj"] = self.r.choice([0, 1, 500, 999, 1000, 0, 1, 500, -1, 1001])
        if self.chance(0.15):
            process["args"][0] = self.r.choice(["sh", "busybox", "./bin/sh", "bin/sh"])
            if process["args"][0] == "busybox":
                process["args"].insert(1, "sh")

    def names(self, case: Case) -> None:
        config = case.config
        has_uts = any(ns["type"] == "uts" for ns in config["linux"]["namespaces"])
        if not has_uts and self.chance(0.9):
            config.pop("hostname", None)
            return
        roll = self.r.random()
        if roll < 0.2:
            config.pop("hostname", None)
        elif roll < 0.5:
            config["hostname"] = self.r.choice(["h", "a-b.c", "x" * 64, ""])
        if self.chance(0.3):
            config["domainname"] = self.r.choice(["example.org", "d", ""])

    def sysctl(self, case: Case) -> None:
        if self.chance(0.75):
            return
        kinds = {ns["type"] for ns in case.config["linux"]["namespaces"] if "path" not in ns}
        pool = sorted(SYSCTLS)
        if self.chance(0.9):  # mostly keys the namespaces allow
            pool = [
                k
                for k in pool
                if (k.startswith("net.") and "network" in kinds)
                or (
                    k.startswith(("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue"))
                    and "ipc" in kinds
                )
                or (k in ("kernel.domainname", "kernel.hostname") and "uts" in kinds)
            ] or pool
        keys = self.r.sample(pool, min(len(pool), self.r.randint(1, 3)))
        sysctl = {k: self.r.choice(SYSCTLS[k]) for k in keys}
        if case.config.get("domainname") and "kernel.domainname" in sysctl:
            sysctl["kernel.domainname"] = case.config["domainname"]  # galley refuses two names
        case.config["linux"]["sysctl"] = sysctl

    # --- mounts -----------------------------------------------------------------------------

    def mount_options(self, base: list[str]) -> list[str]:
        options = list(base) + self.subset(MOUNT_FLAGS, 0.08)
        if self.chance(0.2):
            options.append(self.r.choice(PROPAGATION))
        self.r.shuffle(options)
        return options

    def mounts(self, case: Case) -> None:
        config = case.config
        mounts: list[Config] = config["mounts"]
        # Mutate the defaults' options a little.
        for mount in mounts:
            if self.chance(0.08):
                mount["options"] = self.mount_options(
                    [o for o in mount.get("options", []) if "=" in o]
                )
        if self.chance(0.05):
            mounts[:] = [m for m in mounts if m["destination"] != "/sys/fs/cgroup"]
        if self.chance(0.05):
            mounts[:] = [m for m in mounts if m["destination"] != "/dev"]
        for i in range(self.r.choice([0, 0, 1, 1, 2, 3])):
            kind = self.r.choice(["tmpfs", "bind-dir", "bind-file", "proc", "sysfs", "mqueue"])
            kind = self.r.choice([kind, "tmpfs", "bind-dir", "devpts"])
            dest = self.r.choice(
                [
                    f"/mnt/m{i}",
                    f"/tmp/t{i}",
                    f"/srv/deep/d{i}",
                    "/etc/hostname" if kind == "bind-file" else f"/opt/o{i}",
                    f"/dev/x{i}",
                    "/tmp",
                ]
            )
            if kind == "tmpfs":
                extra = self.subset(["mode=700", "mode=1777", "size=1m", "uid=1000", "gid=5"], 0.3)
                mount = {"destination": dest, "type": "tmpfs", "source": "tmpfs"}
                mount["options"] = self.mount_options(extra)
            elif kind == "bind-dir":
                rel = f"dir{i}"
                case.host_dirs.append(rel)
                case.host_files[f"{rel}/file"] = "hello\n"
                base = [self.r.choice(["bind", "rbind"])]
                mount = {"destination": dest, "type": "bind", "source": f"{HOSTDIR}/{rel}"}
                if self.chance(0.2):
                    mount.pop("type")
                mount["options"] = self.mount_options(base)
            elif kind == "bind-file":
                rel = f"file{i}"
                case.host_files[rel] = f"content {i}\n"
                mount = {
                    "destination": dest,
                    "type": "bind",
                    "source": f"{HOSTDIR}/{rel}",
                    "options": self.mount_options(["bind"]),
                }
            elif kind == "devpts":
                mount = {
                    "destination": dest,
                    "type": "devpts",
                    "source": "devpts",
                    "options": self.mount_options(["newinstance", "ptmxmode=0666"]),
                }
            else:
                mount = {
                    "destination": dest,
                    "type": kind,
                    "source": kind,
                    "options": self.mount_options([]),
                }
            if self.chance(0.1):
                mount.pop("options")
            mounts.append(mount)
        if self.chance(0.05):
            mounts.append({"destination": "relative/dest", "type": "tmpfs", "source": "tmpfs"})

    def masked(self, case: Case) -> None:
        linux = case.config["linux"]
        pool = [
            "/etc/passwd",
            "/etc",
            "/tmp",
            "/proc/cpuinfo",
            "/proc/sys/kernel",
            "/nonexistent",
            "/bin/ls",
            "/sys/kernel",
            "/dev/null",
            "/root",
        ]
        if self.chance(0.3):
            linux["maskedPaths"] = list(linux["maskedPaths"]) + self.r.sample(
                pool, self.r.randint(1, 2)
            )
        if self.chance(0.3):
            linux["readonlyPaths"] = list(linux["readonlyPaths"]) + self.r.sample(
                pool, self.r.randint(1, 2)
            )
        if self.chance(0.05):
            linux["maskedPaths"] = []
        if self.chance(0.05):
            linux["readonlyPaths"] = []

    def devices(self, case: Case) -> None:
        if self.chance(0.8):
            return
        devices = []
        for _ in range(self.r.randint(1, 2)):
            kind = self.r.choice(["c", "b", "u", "p"])
            dev: Config = {
                "path": self.r.choice(["/dev/fuse", "/dev/xdev", "/dev/sub/dir/node", "/dev/null"]),
                "type": kind,
            }
            if kind != "p":
                dev["major"], dev["minor"] = self.r.choice([(10, 229), (1, 3), (7, 0), (250, 1)])
            if self.chance(0.5):
                dev["fileMode"] = self.r.choice([0o666, 0o600, 0o640, 0o4755])
            if self.chance(0.3):
                dev["uid"] = self.r.choice([0, 1000])
            if self.chance(0.3):
                dev["gid"] = self.r.choice([0, 5])
            devices.append(dev)
        case.config["linux"]["devices"] = devices

    def resources(self, case: Case) -> None:
        linux = case.config["linux"]
        resources: Config = linux.setdefault("resources", {})
        if self.chance(0.3):
            memory: Config = {}
            if self.chance(0.7):
                memory["limit"] = self.r.choice([33554432, 67108864, 1 << 30, -1])
            if self.chance(0.3):
                memory["reservation"] = self.r.choice([16777216, 1 << 30])
            if self.chance(0.2):
                memory["swap"] = self.r.choice([67108864, 1 << 31, -1])
            if self.chance(0.2):
                memory["swappiness"] = self.r.choice([0, 60, 100, 101])
            if self.chance(0.1):
                memory["disableOOMKiller"] = self.chance(0.5)
            resources["memory"] = memory
        if self.chance(0.3):
            cpu: Config = {}
            if self.chance(0.5):
                cpu["shares"] = self.r.choice([2, 512, 1024, 262144, 1])
            if self.chance(0.4):
                cpu["quota"] = self.r.choice([50000, -1, 20000, 500])
            if self.chance(0.4):
                cpu["period"] = self.r.choice([100000, 10000, 1000000])
            if self.chance(0.3):
                cpu["cpus"] = self.r.choice(["0", "0-1", "1", "0", "1", "5"])
            if self.chance(0.2):
                cpu["mems"] = self.r.choice(["0", "0", "0", "1"])
            resources["cpu"] = cpu
        if self.chance(0.2):
            resources["pids"] = {"limit": self.r.choice([0, -1, 20, 100, 1000])}
        if self.chance(0.25):
            rules: list[Config] = [{"allow": False, "access": "rwm"}]
            for _ in range(self.r.randint(1, 3)):
                rule: Config = {"allow": self.chance(0.7)}
                kind = self.r.choice(["c", "b", "a", None])
                if kind:
                    rule["type"] = kind
                if self.chance(0.7):
                    rule["major"] = self.r.choice([1, 5, 10, 136])
                if self.chance(0.5):
                    rule["minor"] = self.r.choice([3, 5, 8, 9, 229])
                rule["access"] = "".join(self.subset(["r", "w", "m"], 0.6)) or "rwm"
                rules.append(rule)
            if self.chance(0.3):
                rules.pop(0)
            resources["devices"] = rules

    def seccomp(self, case: Case) -> None:
        if self.chance(0.8):
            return
        names = self.r.sample(SYSCALLS_TO_DENY, self.r.randint(1, 3))
        action = self.r.choice(
            ["SCMP_ACT_ERRNO", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_LOG"]
        )
        rule: Config = {"names": names, "action": action}
        if action == "SCMP_ACT_ERRNO" and self.chance(0.6):
            rule["errnoRet"] = self.r.choice([1, 13, 38, 95])
        profile: Config = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [rule],
        }
        if self.chance(0.1):
            profile["syscalls"].append(
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                }
            )
        if self.chance(0.05):
            profile["flags"] = ["SECCOMP_FILTER_FLAG_LOG"]
        if self.chance(0.05):
            profile["syscalls"].append({"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"})
        case.config["linux"]["seccomp"] = profile

    def personality(self, case: Case) -> None:
        if self.chance(0.9):
            return
        p: Config = {"domain": self.r.choice(PERSONALITIES)}
        if self.chance(0.2):
            p["flags"] = []
        case.config["linux"]["personality"] = p

    def hooks(self, case: Case) -> None:
        if self.chance(0.75):
            return
        hooks: dict[str, list[Config]] = {}
        for kind in ("prestart", "createRuntime", "poststart", "poststop"):
            if not self.chance(0.5):
                continue
            entries = []
            for j in range(self.r.randint(1, 2)):
                status = 1 if self.chance(0.1) else 0
                script = f'echo {kind}-{j} $# "$@" >> {HOSTDIR}/hooks.log; exit {status}'
                hook: Config = {"path": "/bin/sh", "args": ["sh", "-c", script, "x", "arg"]}
                if self.chance(0.3):
                    hook["env"] = ["HOOKVAR=1"]
                    hook["args"][2] = (
                        f"echo {kind}-{j} env=$(env | sort | tr '\\n' ,) >> {HOSTDIR}/hooks.log;"
                        f" exit {status}"
                    )
                if self.chance(0.05):
                    hook["timeout"] = 1
                    hook["args"][2] = "sleep 3"
                entries.append(hook)
            hooks[kind] = entries
        if self.chance(0.3):
            hooks["startContainer"] = [
                {
                    "path": "/bin/sh",
                    "args": ["sh", "-c", "echo startContainer $(id -u) $PWD > /tmp/.sc.log"],
                }
            ]
        case.config["hooks"] = hooks


# ---------------------------------------------------------------------------------------------
# The probe


def probe_script(config: Config) -> str:
    """The busybox sh probe: prints what the container sees, in a stable order."""
    paths = list(EXTRA_PATHS_TO_PROBE)
    for mount in config.get("mounts", []):
        dest = mount.get("destination", "")
        if dest.startswith("/") and dest not in paths:
            paths.append(dest)
    linux = config.get("linux", {})
    for p in linux.get("maskedPaths", []) + linux.get("readonlyPaths", []):
        if p not in paths:
            paths.append(p)
    for dev in linux.get("devices", []):
        if dev.get("path") not in paths:
            paths.append(dev["path"])
    sysctls = sorted(linux.get("sysctl", {}))
    q = shlex.quote
    lines = [
        "exec 2>&1",
        "echo '== id'; id",
        "echo '== umask'; umask",
        "echo '== stdio'; for fd in 1 2; do readlink /proc/self/fd/$fd | sed 's/:.*//';"
        " stat -L -c %a /proc/self/fd/$fd; done",
        "echo '== cwd'; pwd; ls -d . >/dev/null && echo cwd-ok",
        "echo '== uts'; hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname",
        "echo '== uname'; uname -m",
        "echo '== env'; env | grep -v '^SHLVL=' | sort",
        "echo '== status'; grep -E 'Cap|NoNewPrivs|Seccomp' /proc/self/status",
        "echo '== limits'; cat /proc/self/limits",
        "echo '== oom'; cat /proc/self/oom_score_adj",
        "echo '== mounts'",
        'awk \'{o=""; i=7; while ($i != "-") { t=$i; sub(/:[0-9]+$/, "", t); o=o " " t;'
        ' i++ }; print $5, $6, o, "-", $(i+1), $(i+3)}\' /proc/self/mountinfo | sort',
        "echo '== dev'",
        "for f in /dev/* /dev/.* /dev/*/*; do case $f in */.|*/..|/dev/fd/*) continue;; esac;"
        ' [ -e "$f" -o -L "$f" ] && stat -c \'%n %F %a %u:%g %t,%T\' "$f"; done',
        "echo '== paths'",
        f"for p in {' '.join(q(p) for p in paths)}; do",
        '  if [ -d "$p" ]; then t=dir; n=$(ls -A "$p" 2>/dev/null | wc -l);'
        '    if touch "$p/.probe-w" 2>/dev/null; then w=rw; rm -f "$p/.probe-w"; else w=ro; fi',
        '  elif [ -f "$p" ]; then t=file; n=$(head -c 64 "$p" 2>/dev/null | wc -c);'
        '    if (: >> "$p") 2>/dev/null; then w=rw; else w=ro; fi',
        '  elif [ -e "$p" ]; then t=$(stat -c %F "$p" | tr \' \' _); n=-; w=-;',
        "  else t=missing; n=-; w=-; fi",
        '  echo "$p $t $n $w $(stat -c \'%a %u:%g\' "$p" 2>/dev/null)"',
        "done",
        "echo '== sysctl'",
        *[
            f"echo {q(k)}=$(cat /proc/sys/{k.replace('.', '/')} 2>&1 | tr '\\t' ' ')"
            for k in sysctls
        ],
        "echo '== cgroup'",
        *[f"echo {f}=$(cat /sys/fs/cgroup/{f} 2>/dev/null | tr '\\n' ' ')" for f in CGROUP_FILES],
        "echo '== net'; cat /proc/net/dev | tail -n +3 | awk '{print $1}' | sort",
        # A sysfs shows the network namespace it was made for: it must be the process's own.
        "echo '== sysfs-net'; s=$(ls /sys/class/net 2>/dev/null | sort | tr '\\n' ' ');"
        " p=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ');"
        ' if [ -z "$s" ]; then echo none; elif [ "$s" = "$p" ]; then echo own-netns;'
        " else echo OTHER-NETNS; fi",
        "echo '== hook'; cat /tmp/.sc.log 2>/dev/null",
        "echo '== ops'",
        "mkdir /tmp/.probe-d 2>/dev/null && echo mkdir-ok && rmdir /tmp/.probe-d",
        "echo > /dev/null && echo devnull-ok",
        "head -c 4 /dev/zero | wc -c",
        "echo '== end'",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str
    hooks: str
    timed_out: bool
    left: list[str]  # galley-runc only: what its `run` left behind when it returned


def rootless_variant(case: Case, uid: int) -> None:
    """Make case's config one a user who is uid can run (see the module's docstring); drawn
    from the case's own generator, so that a case replays alike."""
    r = random.Random(f"difffuzz-rootless-{case.number}")
    config = case.config
    linux = config["linux"]
    namespaces = [ns for ns in linux["namespaces"] if ns["type"] != "user"]
    for ns in namespaces:
        ns.pop("path", None)  # a namespace the host's root owns: refused to both alike
    case.netns = False
    linux["namespaces"] = [*namespaces, {"type": "user"}]
    if not any(ns["type"] == "mount" for ns in namespaces):
        linux["namespaces"].append({"type": "mount"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    user = config["process"]["user"]
    if r.random() < 0.9:
        user.update(uid=0, gid=0)
    if r.random() < 0.95:  # refused to a rootless container, by both
        user.pop("additionalGids", None)
    if r.random() < 0.9:
        linux.pop("resources", None)
    if r.random() < 0.95:
        for mount in config.get("mounts", []):
            options = mount.get("options") or []
            mount["options"] = [o for o in options if not o.startswith(("uid=", "gid="))]
    case.notes.append("rootless")


def _as_uid(uid: int | None, env_dir: Path) -> dict[str, Any]:
    """Popen's arguments that run a command as uid (none: as we are)."""
    if uid is None:
        return {}
    return {
        "user": uid,
        "group": uid,
        "extra_groups": [],
        "env": {"PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": str(env_dir)},
    }


def run_one(
    *,
    runtime: str,
    which: str,
    case: Case,
    workdir: Path,
    netns_path: str,
    timeout: float,
    tag: str,
    uid: int | None = None,
) -> tuple[Result, Config]:
    hostdir = workdir / f"host-{which}"
    hostdir.mkdir()
    for rel in case.host_dirs:
        (hostdir / rel).mkdir(parents=True, exist_ok=True)
    for rel, content in case.host_files.items():
        (hostdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (hostdir / rel).write_text(content)
    (hostdir / "hooks.log").write_text("")
    text = json.dumps(case.config).replace(HOSTDIR, str(hostdir)).replace("@NETNS@", netns_path)
    config: Config = json.loads(text)
    container_id = f"{tag}-{which}"
    if uid is None and isinstance(config.get("linux"), dict):  # mutfuzz's may be anything
        config["linux"]["cgroupsPath"] = f"/{container_id}"
    bundle = make_bundle(workdir / f"bundle-{which}", ["true"])  # its config replaced below
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    state_root = workdir / f"root-{which}"
    if uid is not None:  # its bundle (a user's own files), its hooks' log, its state
        state_root.mkdir()
        owned = [str(bundle), str(hostdir), str(state_root)]
        subprocess.run(["chown", "-R", f"{uid}:{uid}", *owned], check=True)
    as_uid = _as_uid(uid, state_root)
    cmd = [runtime, "--root", str(state_root), "run", "--bundle", str(bundle), container_id]
    timed_out = False
    with subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(bundle),
        start_new_session=True,
        **as_uid,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.kill(proc.pid, signal.SIGKILL)  # only the runtime process we started
            kill_cgroup(container_id)  # and the container's processes, by pid
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                kill_cgroup(container_id)
                out, err = b"", b""
        status = proc.returncode
    left = leftovers(state_root, container_id, bundle) if which == "galley" else []
    kill_cgroup(container_id)
    subprocess.run(
        [runtime, "--root", str(state_root), "delete", "-f", container_id],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
        **as_uid,
    )
    hooks = (hostdir / "hooks.log").read_text() if (hostdir / "hooks.log").exists() else ""
    hooks = hooks.replace(str(hostdir), HOSTDIR).replace(str(bundle), "@BUNDLE@")
    result = Result(
        status,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        hooks,
        timed_out,
        left,
    )
    return result, config


def leftovers(state_root: Path, container_id: str, bundle: Path) -> list[str]:
    """What a finished `run` left: its state directory, cgroups, mounts on the host. A
    foreground run deletes the container whether it started or failed (runc 1.1.5 is known
    to leave cgroups after some failures, so only galley-runc's are checked)."""
    left = [str(state_root / container_id)] if (state_root / container_id).exists() else []
    left += [f"{m}/{container_id}" for m in MOUNTS if os.path.isdir(f"{m}/{container_id}")]
    with open("/proc/self/mountinfo") as mountinfo:
        left += [
            f"mount {line.split()[4]}"
            for line in mountinfo
            if line.split()[4].startswith((str(bundle), str(state_root)))
        ]
    return left


def kill_cgroup(container_id: str) -> None:
    """SIGKILL what is left in the container's cgroups (every hierarchy): ours."""
    for mount in MOUNTS:
        kill(cgroup_members(f"{mount}/{container_id}"))


def cleanup_cgroups(tag: str) -> list[str]:
    """Remove the cgroups the case's containers left behind; returns what was left."""
    deadline = time.monotonic() + 2
    return [
        p for w in ("runc", "galley") for p in remove_cgroup_everywhere(f"/{tag}-{w}", deadline)
    ]


def normalise(result: Result) -> str:
    """The probe output, with the accepted differences taken out."""
    lines = []
    for line in result.stdout.splitlines():
        parts = line.split(" ")
        # Accepted: the v1 cgroup mount's tmpfs is read-only in galley under "ro".
        if len(parts) >= 2 and parts[0] == "/sys/fs/cgroup" and " - tmpfs" in line:
            opts = [o for o in parts[1].split(",") if o not in ("ro", "rw")]
            parts[1] = ",".join(opts)
            line = " ".join(parts)
        # Reported once (runc 555, galley 755); folded with the accepted ro/rw difference.
        if line.startswith("/sys/fs/cgroup dir "):
            line = " ".join(parts[:3])
        if line.startswith("/proc dir "):  # the count of /proc entries is the count of pids
            line = "/proc dir"
        # A cwd of /proc/self in the host's pid namespace is the probe's pid, run by run.
        line = re.sub(r"^(PWD=)?/proc/\d+$", r"\1/proc/PID", line)
        if line.startswith("devices/devices.list="):
            key, _, value = line.partition("=")
            words = value.split()
            entries = sorted(" ".join(words[i : i + 3]) for i in range(0, len(words), 3))
            line = key + "=" + " | ".join(entries)
        lines.append(line)
    return "\n".join(lines) + "\n"


def started(result: Result) -> bool:
    return "== id" in result.stdout


def outcome(result: Result) -> str:
    if result.timed_out:
        return "timeout"
    if not started(result):
        return "fail" if result.status != 0 else "ok-no-output"
    if "== end" not in result.stdout:
        return f"probe-died:{result.status}"
    return "ok" if result.status == 0 else f"exit:{result.status}"


def compare(runc: Result, galley: Result) -> list[str]:
    """The differences between the two results, as readable lines (empty: the same), and
    what galley-runc's run left behind."""
    problems: list[str] = []
    if galley.left and not galley.timed_out:
        problems.append(f"galley-runc's run left: {', '.join(galley.left)}")
    a, b = outcome(runc), outcome(galley)
    if a != b:
        problems.append(f"outcome: runc={a} galley={b}")
    if started(runc) and started(galley):
        diff = list(
            difflib.unified_diff(
                normalise(runc).splitlines(),
                normalise(galley).splitlines(),
                "runc",
                "galley",
                lineterm="",
                n=1,
            )
        )
        if diff:
            problems.append("probe output differs")
            problems.extend(diff)
    # Hooks are compared when both containers ran: a refusal at a different stage (accepted:
    # galley validates more up front) changes which hooks ran before it.
    if runc.hooks != galley.hooks and started(runc) and started(galley):
        problems.append("hooks differ")
        problems.extend(
            difflib.unified_diff(
                runc.hooks.splitlines(), galley.hooks.splitlines(), "runc", "galley", lineterm=""
            )
        )
    return problems


def make_netns(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    return f"/var/run/netns/{name}"


def remove_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def base_config() -> Config:
    from galley.fixtures.busybox import default_config  # noqa: PLC0415

    config: Config = default_config(["/bin/sh", "-c", "PROBE"])
    config["root"]["readonly"] = False
    config["process"]["terminal"] = False
    config["ociVersion"] = "1.0.2"
    return config


def make_case(args: argparse.Namespace, number: int) -> Case:
    """Case number of args.seed, made rootless with --rootless, its probe in place."""
    case = Generator(args.seed, number).generate(base_config())
    if args.rootless is not None:
        rootless_variant(case, args.rootless)
    case.config["process"]["args"][-1] = probe_script(case.config)
    return case


@dataclass
class Pair:
    """One case run under both runtimes."""

    runc: Result
    galley: Result
    leftovers: list[str]  # cgroups the case's containers left, removed
    strays: list[str]  # what galley-runc made in its bundle outside the root filesystem


def run_both(args: argparse.Namespace, case: Case, tag: str) -> Pair:
    """case under runc, then galley-runc, in a work directory removed after it."""
    workdir = Path(tempfile.mkdtemp(prefix=f"fuzz-{tag}-"))
    os.chmod(workdir, 0o755)  # a user namespace's root must reach the rootfs
    netns_name = f"{tag}-ns"
    netns_path = make_netns(netns_name) if case.netns else "/nonexistent-netns"
    try:
        common: dict[str, Any] = {
            "case": case,
            "workdir": workdir,
            "netns_path": netns_path,
            "timeout": args.timeout,
            "tag": tag,
            "uid": args.rootless,
        }
        runc, _ = run_one(runtime=args.runc, which="runc", **common)
        galley, _ = run_one(runtime=args.galley, which="galley", **common)
        bundle = workdir / "bundle-galley"
        strays = [str(bundle / n) for n in sorted(os.listdir(bundle)) if n not in BUNDLE_FILES]
    finally:
        if case.netns:
            remove_netns(netns_name)
        leftovers = cleanup_cgroups(tag)
        shutil.rmtree(workdir, ignore_errors=True)
    return Pair(runc, galley, leftovers, strays)


BUNDLE_FILES = {"rootfs", "config.json"}


def run_case(args: argparse.Namespace, number: int, out: Path) -> tuple[bool, str]:
    case = make_case(args, number)
    pair = run_both(args, case, f"dfz{os.getpid()}-{args.seed}-{number}")
    runc, galley, leftovers = pair.runc, pair.galley, pair.leftovers
    problems = compare(runc, galley)
    if pair.strays:
        problems.append("galley-runc made files outside the root: " + ", ".join(pair.strays))
    summary = f"case {number} (--seed {args.seed} --case {number}): " + (
        "DIFF " + problems[0] if problems else f"same ({outcome(runc)})"
    )
    if leftovers and args.verbose:
        summary += f" [removed leftover cgroups: {len(leftovers)}]"
    if problems or args.keep_all:
        dest = out / f"seed{args.seed}-case{number}"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "config.json").write_text(json.dumps(case.config, indent=2) + "\n")
        for name, res in (("runc", runc), ("galley", galley)):
            (dest / f"{name}.stdout").write_text(res.stdout)
            (dest / f"{name}.stderr").write_text(res.stderr)
            (dest / f"{name}.hooks").write_text(res.hooks)
            (dest / f"{name}.status").write_text(f"{res.status} {outcome(res)}\n")
        (dest / "diff.txt").write_text("\n".join(problems) + "\n")
        (dest / "replay.txt").write_text(
            f"python scripts/difffuzz.py --seed {args.seed} --case {number}"
            f" --galley {args.galley} --runc {args.runc} --out {out}"
            + (f" --rootless {args.rootless}" if args.rootless is not None else "")
            + "\n"
        )
    return bool(problems), summary


def case_parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """The options of a fuzzer that runs configs case by case (this one, mutfuzz)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-n", type=int, default=100, help="number of cases")
    parser.add_argument("--start", type=int, default=0, help="first case number")
    parser.add_argument("--case", type=int, help="run only this case (replay)")
    parser.add_argument("--galley", default="bin/galley-runc")
    parser.add_argument("--runc", default="/usr/sbin/runc")
    parser.add_argument("--out", default=out)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--print-config", action="store_true", help="print the config and exit")
    parser.add_argument("--rootless", type=int, metavar="UID", help="run both as this uid")
    return parser


def parse_case_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The options, the runtimes made absolute and `numbers` the cases to run."""
    args = parser.parse_args(argv)
    args.galley = os.path.abspath(args.galley)
    args.runc = os.path.abspath(args.runc)
    args.numbers = [args.case] if args.case is not None else range(args.start, args.start + args.n)
    return args


def run_cases(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, int, Path], tuple[bool, str]],
    counted: str,
) -> int:
    """Each case through run (differs, summary line), printed and added to OUT/summary.txt;
    the exit status: 1 when one was counted (differing, reported)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    differing = 0
    with (out / "summary.txt").open("a") as log:
        for number in args.numbers:
            differs, summary = run(args, number, out)
            differing += differs
            print(summary, flush=True)
            log.write(summary + "\n")
    print(f"{len(args.numbers)} cases, {differing} {counted}; report in {out}")
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    parser = case_parser(__doc__, "/tmp/fuzz-report")
    parser.add_argument("--keep-all", action="store_true", help="record every case")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parse_case_args(parser, argv)
    if args.print_config:
        for number in args.numbers:
            print(json.dumps(make_case(args, number).config, indent=2))
        return 0
    return run_cases(args, run_case, "differing")


if __name__ == "__main__":
    sys.exit(main())
