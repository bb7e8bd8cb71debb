"""The -ENOSYS prologue: syscalls newer than any the profile names get ENOSYS, not the default."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from galley.oci import seccomp
from galley.oci import seccomp_enosys as enosys
from tests.oci.process_probe import BUSYBOX, run_child

pytestmark = pytest.mark.root

X86_64, X32, I386 = 0xC000003E, 0x4000003E, 0x40000003
ENOSYS_RET = 0x00050000 | errno.ENOSYS


def simulate(program: bytes, arch: int, nr: int) -> str | int:
    """Run the classic-BPF prologue on seccomp_data(nr, arch): its return value, or "filter"
    when it falls through to libseccomp's program."""
    insns: list[tuple[int, int, int, int]] = [
        struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)
    ]
    acc, pc = 0, 0
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = {0: nr, 4: arch}[k]
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x45):  # jeq, jgt, jset
            taken = {0x15: acc == k, 0x25: acc > k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected BPF code {code:#x}")
    assert pc == len(insns), "jumped past the end of the prologue"
    return "filter"


def test_prologue_per_architecture() -> None:
    program = enosys.prologue({X86_64: 300, X32: 0x40000000 | 200, I386: 400})
    cases = [
        (X86_64, 300, "filter"),
        (X86_64, 301, ENOSYS_RET),
        (X86_64, 0x40000000 | 200, "filter"),  # x32 call: x32's own last number applies
        (X86_64, 0x40000000 | 201, ENOSYS_RET),
        (I386, 400, "filter"),
        (I386, 401, ENOSYS_RET),
        (0xC00000B7, 9999, "filter"),  # aarch64: not in the filter, libseccomp decides
    ]
    for arch, nr, expected in cases:
        assert simulate(program, arch, nr) == expected, (hex(arch), nr)


def test_x86_64_without_x32_leaves_x32_calls_to_libseccomp() -> None:
    program = enosys.prologue({X86_64: 300})
    assert simulate(program, X86_64, 0x40000000 | 5000) == "filter"
    assert simulate(program, X86_64, 301) == ENOSYS_RET
    assert enosys.prologue({}) == b""


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"defaultAction": "SCMP_ACT_ERRNO"}, True),
        ({"defaultAction": "SCMP_ACT_KILL_PROCESS"}, True),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS}, False),
        ({"defaultAction": "SCMP_ACT_ALLOW"}, False),
        ({"defaultAction": "SCMP_ACT_LOG"}, False),
        ({"defaultAction": "SCMP_ACT_TRACE"}, False),
    ],
)
def test_when_the_prologue_is_wanted(profile: dict[str, Any], expected: bool) -> None:
    assert enosys.wanted(profile) is expected  # type: ignore[arg-type]


def test_last_syscalls_per_arch() -> None:
    profile = {"syscalls": [{"names": ["read", "mkdir", "nonexistent"]}, {"names": ["socketcall"]}]}
    last = enosys.last_syscalls(profile, [X86_64, X32, I386])  # type: ignore[arg-type]
    assert last == {X86_64: 83, X32: 0x40000000 | 83, I386: 102}  # i386 socketcall = 102


# Enough for Python to write a line and exit; exit_group (231) is the highest number named.
PYTHON_MINIMUM = [
    "write", "exit_group", "exit", "brk", "mmap", "munmap", "mremap", "madvise", "rt_sigreturn",
    "futex",
]  # fmt: skip


def errno_after_load(cfg: dict[str, Any], tmp_path: Path) -> list[str]:
    """Load cfg in a child, then try getsid (124), getrandom (318), pidfd_open (434)."""
    filt = seccomp.compile_filter(cfg)  # type: ignore[arg-type]
    calls: list[tuple[str, Callable[[], object]]] = [
        ("getsid", lambda: os.getsid(0)),
        ("getrandom", lambda: os.getrandom(1)),
    ]
    calls.append(("pidfd_open", lambda: os.pidfd_open(os.getpid())))

    def setup() -> None:
        filt.load()
        for name, call in calls:
            try:
                call()
                os.write(1, f"{name}=ok\n".encode())
            except OSError as e:
                os.write(1, f"{name}={errno.errorcode[e.errno or 0]}\n".encode())
        os._exit(0)

    probe = run_child(setup, [BUSYBOX, "true"], tmp_path)
    filt.close()
    assert probe.status == 0, probe.stderr
    return probe.stdout.split()


def test_new_syscalls_get_enosys_old_ones_the_default(tmp_path: Path) -> None:
    cfg = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": PYTHON_MINIMUM, "action": "SCMP_ACT_ALLOW"}],
    }
    assert errno_after_load(cfg, tmp_path) == [
        "getsid=EPERM",
        "getrandom=ENOSYS",
        "pidfd_open=ENOSYS",
    ]


def test_naming_a_newer_syscall_moves_the_line(tmp_path: Path) -> None:
    cfg = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EACCES,
        "syscalls": [
            {"names": PYTHON_MINIMUM, "action": "SCMP_ACT_ALLOW"},
            {"names": ["memfd_create"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EBADF},
        ],
    }  # memfd_create = 319: getrandom (318) is now "known" and gets the default
    assert errno_after_load(cfg, tmp_path) == [
        "getsid=EACCES",
        "getrandom=EACCES",
        "pidfd_open=ENOSYS",
    ]


def test_notify_with_tsync_through_the_raw_loader(tmp_path: Path) -> None:
    """NOTIFY + TSYNC + ERRNO default: raw seccomp(2) with NEW_LISTENER | TSYNC | TSYNC_ESRCH."""
    cfg = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "listenerPath": str(tmp_path / "unused.sock"),
        "syscalls": [
            {"names": [*PYTHON_MINIMUM, "readlink", "close"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
        ],
    }
    filt = seccomp.compile_filter(cfg)  # type: ignore[arg-type]
    assert filt.program is not None and filt.notify

    def setup() -> None:
        fd = filt.load()
        os.write(1, f"link: {os.readlink(f'/proc/self/fd/{fd}')}\n".encode())
        os._exit(0)

    probe = run_child(setup, [BUSYBOX, "true"], tmp_path)
    filt.close()
    assert probe.field("link") == "anon_inode:seccomp notify", probe.stderr
