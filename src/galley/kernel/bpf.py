"""The bpf(2) calls a cgroup v2 device filter needs: load, attach, query, detach.

Only BPF_PROG_TYPE_CGROUP_DEVICE programs are loaded here. A program is a list of 8-byte
instructions (struct bpf_insn: u8 code, u8 dst:4|src:4, s16 off, s32 imm, little-endian on
the architectures galley runs on); `insn` packs one. Attaching with BPF_F_ALLOW_MULTI lets a
new program be attached before the old one is detached, so a cgroup is never unfiltered
while its rules are replaced.
"""

from __future__ import annotations

import _struct as struct  # struct.py only re-exports it: one search of sys.path less
import posix

from galley.kernel import ffi
from galley.kernel.libc import MACHINE, check, function

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}

PROG_LOAD = 5
PROG_ATTACH = 8
PROG_DETACH = 9
PROG_GET_FD_BY_ID = 13
PROG_QUERY = 16

PROG_TYPE_CGROUP_DEVICE = 15
CGROUP_DEVICE = 6  # enum bpf_attach_type BPF_CGROUP_DEVICE
F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
DEVCG_DEV_BLOCK = 1
DEVCG_DEV_CHAR = 2
DEVCG_ACC_MKNOD = 1
DEVCG_ACC_READ = 2
DEVCG_ACC_WRITE = 4

# Opcodes used by the device filter (class | op | source).
LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
ALU64_AND_K = 0x57  # dst &= imm
ALU64_RSH_K = 0x77  # dst >>= imm
ALU64_MOV_K = 0xB7  # dst = imm
ALU64_MOV_X = 0xBF  # dst = src
JMP_JEQ_K = 0x15  # if dst == imm: pc += off
JMP_JNE_K = 0x55  # if dst != imm: pc += off
JMP_EXIT = 0x95  # return r0


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One eBPF instruction."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _bpf(cmd: int, attr: ffi.Array[ffi.c_char], what: str) -> int:
    number = _SYS_BPF.get(MACHINE)
    if number is None:
        raise OSError(38, f"bpf: unknown syscall number on {MACHINE}")
    syscall = function("syscall", ffi.c_long, ffi.c_long, ffi.c_int, ffi.c_void_p, ffi.c_uint)
    return check(int(syscall(number, cmd, ffi.addressof(attr), len(attr))), what)


def load_device_program(program: bytes, license_name: str = "Apache") -> int:
    """Load a cgroup device program; returns its fd. The verifier's log is in the error."""
    insns = ffi.create_string_buffer(program, len(program))
    lic = ffi.create_string_buffer(license_name.encode())
    log = ffi.create_string_buffer(65536)
    attr = ffi.create_string_buffer(128)
    struct.pack_into("<II", attr, 0, PROG_TYPE_CGROUP_DEVICE, len(program) // 8)
    struct.pack_into("<QQ", attr, 8, ffi.addressof(insns), ffi.addressof(lic))
    struct.pack_into("<IIQ", attr, 24, 1, len(log), ffi.addressof(log))
    try:
        return _bpf(PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")
    except OSError as e:
        detail = bytes(log).split(b"\0", 1)[0].decode(errors="replace").strip().splitlines()
        raise OSError(e.errno, f"{e.strerror} {detail[-1] if detail else ''}".strip()) from None


def attach_device_program(cgroup_fd: int, prog_fd: int) -> None:
    """Attach a device program to a cgroup2 directory (allowing several at once)."""
    attr = ffi.create_string_buffer(32)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, CGROUP_DEVICE, F_ALLOW_MULTI)
    _bpf(PROG_ATTACH, attr, "bpf(BPF_PROG_ATTACH)")


def detach_device_program(cgroup_fd: int, prog_fd: int) -> None:
    """Detach one device program from a cgroup2 directory."""
    attr = ffi.create_string_buffer(32)
    struct.pack_into("<III", attr, 0, cgroup_fd, prog_fd, CGROUP_DEVICE)
    _bpf(PROG_DETACH, attr, "bpf(BPF_PROG_DETACH)")


def attached_device_programs(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached directly to the cgroup."""
    ids = (ffi.c_uint32 * 64)()
    attr = ffi.create_string_buffer(40)
    struct.pack_into("<III", attr, 0, cgroup_fd, CGROUP_DEVICE, 0)
    struct.pack_into("<QI", attr, 16, ffi.addressof(ids), len(ids))
    _bpf(PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    (count,) = struct.unpack_from("<I", attr, 24)
    return [ids[i] for i in range(count)]


def program_fd(prog_id: int) -> int:
    """An fd for a loaded program, by id."""
    attr = ffi.create_string_buffer(16)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(PROG_GET_FD_BY_ID, attr, "bpf(BPF_PROG_GET_FD_BY_ID)")


def replace_device_program(cgroup_fd: int, prog_fd: int) -> None:
    """Attach prog_fd, then detach every device program that was attached before it."""
    previous = attached_device_programs(cgroup_fd)
    attach_device_program(cgroup_fd, prog_fd)
    for prog_id in previous:
        old = program_fd(prog_id)
        try:
            detach_device_program(cgroup_fd, old)
        finally:
            posix.close(old)
