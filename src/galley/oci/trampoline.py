"""The trampoline: the last program every container process runs before its own.

The init and exec stages run Python from the host's interpreter file. If a container process
could make the kernel execute that file again (a `#!/proc/self/exe` entrypoint resolves
/proc/self/exe while the stage is still the process), it would hold the host's interpreter and
could write to it (CVE-2019-5736). So the stage never execs the container's program itself: it
execs this 568-byte static program from a sealed memfd, which then execs the program. While the
trampoline runs, /proc/<pid>/exe is a sealed memory file that no one can write; a script whose
interpreter is /proc/self/exe finds the trampoline, which refuses to run for it (argv[0] must be
" ", which no shebang line can produce).

The trampoline also does what must happen after `start` and as late as possible, as runc's init
does: it waits on the exec fifo (so a created container's init is the trampoline, not Python),
sets no_new_privs and loads the late seccomp filter, then execve(argv[1], argv + 2, envp). It
makes itself non-dumpable before anything else, so no process can attach to it meanwhile.

Source: trampoline_x86_64.s beside this module. Other architectures fall back to re-executing
the interpreter from a read-only mount (galley.oci.stage).
"""

from __future__ import annotations

import os

from galley.kernel.memfd import sealed

# .text of trampoline_x86_64.s: code, then the parameters at PARAMS, the messages, and the
# seccomp program appended at the end.
X86_64 = bytes.fromhex(
    "4989e4bf0400000031f6e804010000bf0f000000488d351d010000e8f3000000498b04244883f8024c8d2d15"
    "0100000f82bd000000498b4424088038200f85af0000008b3ddf00000085ff782c504889e6ba0100000031c0"
    "0f05594883f8014c8d2d0e0100000f85860000008b3db6000000b8030000000f05833dac00000000741bbf26"
    "000000be01000000e8820000004c8d2d080100004885c075558b059100000085c0742a488d0d8a0100005150"
    "bf010000008b35750000004889e2b83d0100000f054c8d2d030100004885c07521498b0424498b7c2410498d"
    "742418498d54c410b83b0000000f054c8d2d12010000410fb65500498d7501bf02000000b8010000000f05bf"
    "7f000000b8e70000000f0531d24531d24531c0b89d0000000f05c30f1f440000ffffffff0000000000000000"
    "0000000067616c6c65792d696e6974002f67616c6c65792d72756e6320696e69743a206e6f7420612070726f"
    "6772616d20746f2072756e2062792068616e640a2b67616c6c65792d72756e6320696e69743a207761697469"
    "6e6720666f72207374617274206661696c65640a2e67616c6c65792d72756e6320696e69743a207365747469"
    "6e67206e6f5f6e65775f7072697673206661696c65640a3467616c6c65792d72756e6320696e69743a206c6f"
    "6164696e672074686520736563636f6d702066696c746572206661696c65640a2d67616c6c65792d72756e63"
    "20696e69743a2065786563206f66207468652070726f63657373206661696c65640a660f1f440000"
)
PARAMS = 0x128  # fifo fd, no_new_privs, seccomp flags, instruction count: four int32
BASE = 0x400000  # load address (ET_EXEC): the code addresses its data relative to rip
_HEADERS = 64 + 2 * 56  # ELF header, PT_LOAD and PT_GNU_STACK program headers

ARGV0 = " "


def supported() -> bool:
    """Whether this machine has a trampoline (else the stage re-executes the interpreter)."""
    return os.uname().machine == "x86_64"


def image(*, fifo: int | None, no_new_privs: bool, program: bytes = b"", flags: int = 0) -> bytes:
    """The static ELF executable for one process: its parameters patched in."""
    params = b"".join(
        value.to_bytes(4, "little", signed=True)
        for value in (-1 if fifo is None else fifo, int(no_new_privs), flags, len(program) // 8)
    )
    text = X86_64[:PARAMS] + params + X86_64[PARAMS + len(params) :] + program
    size = _HEADERS + len(text)
    header = b"".join(
        (
            b"\x7fELF\x02\x01\x01" + bytes(9),  # 64-bit, little-endian, ELF version 1, SysV
            _u(2, 2) + _u(62, 2) + _u(1, 4),  # ET_EXEC, EM_X86_64, version
            _u(BASE + _HEADERS, 8) + _u(64, 8) + _u(0, 8),  # entry, program headers, no sections
            _u(0, 4) + _u(64, 2) + _u(56, 2) + _u(2, 2) + _u(64, 2) + _u(0, 2) + _u(0, 2),
        )
    )
    load = _u(1, 4) + _u(5, 4) + _u(0, 8) + _u(BASE, 8) * 2 + _u(size, 8) * 2 + _u(0x1000, 8)
    stack = _u(0x6474E551, 4) + _u(6, 4) + bytes(48)  # PT_GNU_STACK: RW, not executable
    return header + load + stack + text


def _u(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def load(*, fifo: int | None, no_new_privs: bool, program: bytes = b"", flags: int = 0) -> int:
    """The trampoline in a sealed, close-on-exec memfd, ready for os.execve(fd, ...)."""
    data = image(fifo=fifo, no_new_privs=no_new_privs, program=program, flags=flags)
    return sealed("galley-init", data, executable=True)


def argv(path: str, args: list[str]) -> list[str]:
    """The trampoline's argv: the marker, the program's path, then the program's own argv."""
    return [ARGV0, path, *args]
