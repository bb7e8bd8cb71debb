"""Hostile: a seccomp filter cannot be bypassed through the other x86 syscall ABIs (int 0x80
i386 calls, x32 calls with bit 30 set), whichever architectures the profile lists."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from galley.oci import seccomp
from tests.oci.process_probe import build_static, run_child

pytestmark = pytest.mark.root

SOURCE = r"""
#include <stdio.h>
#include <string.h>
static char path[256]; /* in .data: below 4 GiB, reachable by the 32-bit ABI */
int main(int argc, char **argv) {
    long r = -9999;
    if (argc < 3) return 2;
    strncpy(path, argv[2], sizeof(path) - 1);
    if (!strcmp(argv[1], "x86_64"))
        __asm__ volatile("syscall" : "=a"(r) : "a"(83L), "D"(path), "S"(0755L)
                         : "rcx", "r11", "memory");
    else if (!strcmp(argv[1], "i386"))
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(39L), "b"(path), "c"(0755L) : "memory");
    else
        __asm__ volatile("syscall" : "=a"(r) : "a"(83L | 0x40000000L), "D"(path), "S"(0755L)
                         : "rcx", "r11", "memory");
    printf("%ld\n", r);
    return 0;
}
"""


@pytest.fixture(scope="module")
def abi_probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A static binary calling mkdir(argv[2]) through the ABI named by argv[1]."""
    if os.uname().machine != "x86_64":
        pytest.skip("x86-64 only")
    return str(build_static(tmp_path_factory, "abi", SOURCE))


def mkdir_via(
    probe: str, abi: str, cfg: dict[str, Any] | None, tmp_path: Path
) -> tuple[int, str, bool]:
    target = tmp_path / f"made-{abi}"
    filt = seccomp.compile_filter(cfg) if cfg else None  # type: ignore[arg-type]
    result = run_child(filt.load if filt else lambda: None, [probe, abi, str(target)], tmp_path)
    if filt:
        filt.close()
    return result.status, result.stdout.strip(), target.exists()


def block_mkdir(arches: list[str]) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": arches,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }


def ia32_emulation(probe: str, tmp_path: Path) -> bool:
    """The control: without a filter, int 0x80 reaches mkdir."""
    target = tmp_path / "control"
    result = run_child(lambda: None, [probe, "i386", str(target)], tmp_path)
    made = target.exists()
    if made:
        target.rmdir()
    return result.status == 0 and made


@pytest.mark.parametrize("abi", ["i386", "x32"])
def test_unlisted_abis_are_killed(abi_probe: str, tmp_path: Path, abi: str) -> None:
    """Profile for x86-64 only: a call through another ABI is a bad-arch kill, never a bypass."""
    status, _, made = mkdir_via(abi_probe, abi, block_mkdir([]), tmp_path)
    assert (status, made) == (-signal.SIGSYS, False)


@pytest.mark.parametrize("abi", ["x86_64", "i386", "x32"])
def test_listed_abis_get_the_rule(abi_probe: str, tmp_path: Path, abi: str) -> None:
    arches = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    status, out, made = mkdir_via(abi_probe, abi, block_mkdir(arches), tmp_path)
    assert (status, out, made) == (0, "-1", False)  # -EPERM from the rule, not a bypass
