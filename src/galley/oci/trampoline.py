"""The trampoline: the last program every container process runs before its own.

The init and exec stages run Python from the host's interpreter file. If a container process
could make the kernel execute that file again (a `#!/proc/self/exe` entrypoint resolves
/proc/self/exe while the stage is still the process), it would hold the host's interpreter and
could write to it (CVE-2019-5736). So the stage never execs the container's program itself: it
execs this static program (under 1 KiB) from a sealed memfd, which then execs the program. While the
trampoline runs, /proc/<pid>/exe is a sealed memory file that no one can write; a script whose
interpreter is /proc/self/exe finds the trampoline, which refuses to run for it (argv[0] must be
" ", which no shebang line can produce).

The trampoline also does what must happen after `start` and as late as possible, as runc's init
does: it waits on the exec fifo (so a created container's init is the trampoline, not Python),
sets no_new_privs and loads the late seccomp filter, then execve(argv[1], argv + 2, envp). It
makes itself non-dumpable before anything else, so no process can attach to it meanwhile.
While it waits it catches the signals that end a process by default (and exits 128 + the
signal): pid 1 of a new pid namespace drops signals it has no handler for, even the host's,
and `kill <created container> TERM` must stop it, as it stops runc's init.

Source: trampoline_x86_64.s beside this module. Other architectures fall back to re-executing
the interpreter from a read-only mount (galley.oci.stage).
"""

from __future__ import annotations

import os

from galley.kernel.memfd import sealed

# .text of trampoline_x86_64.s: code, then the parameters at PARAMS, the messages, and the
# seccomp program appended at the end.
X86_64 = bytes.fromhex(
    "4989e4bf0400000031f6e87c010000bf0f000000488d3595010000e86b010000498b04244883f8024c8d2da4"
    "0100000f82c8000000498b4424088038200f85ba0000008b3d5701000085ff7837e8cc0000008b3d48010000"
    "504889e6ba0100000031c00f05594883f8014c8d2d920100000f85860000008b3d23010000b8030000000f05"
    "833d1901000000741bbf26000000be01000000e8ef0000004c8d2d8c0100004885c075558b05fe00000085c0"
    "742a488d0d0f0200005150bf010000008b35e20000004889e2b83d0100000f054c8d2d870100004885c07521"
    "498b0424498b7c2410498d742418498d54c410b83b0000000f054c8d2d96010000410fb65500498d7501bf02"
    "000000b8010000000f05bf7f000000b8e70000000f0553488d0551000000488d0d570000004883ec20488904"
    "2448c74424080000000448894c241048c744241800000000488d1d690000000fb63b85ff74174889e631d241"
    "ba08000000b80d0000000f0548ffc3ebe24883c4205bc381c780000000b8e70000000f05b80f0000000f0531"
    "d24531d24531c0b89d0000000f05c30f1f440000ffffffff00000000000000000000000067616c6c65792d69"
    "6e69740001020304050607080a0b0c0d0e0f1018191a1b1d1e1f002f67616c6c65792d72756e6320696e6974"
    "3a206e6f7420612070726f6772616d20746f2072756e2062792068616e640a2b67616c6c65792d72756e6320"
    "696e69743a2077616974696e6720666f72207374617274206661696c65640a2e67616c6c65792d72756e6320"
    "696e69743a2073657474696e67206e6f5f6e65775f7072697673206661696c65640a3467616c6c65792d7275"
    "6e6320696e69743a206c6f6164696e672074686520736563636f6d702066696c746572206661696c65640a2d"
    "67616c6c65792d72756e6320696e69743a2065786563206f66207468652070726f63657373206661696c6564"
    "0a0f1f8000000000"
)
PARAMS = 0x1A0  # fifo fd, no_new_privs, seccomp flags, instruction count: four int32
BASE = 0x400000  # load address (ET_EXEC): the code addresses its data relative to rip
_HEADERS = 64 + 2 * 56  # ELF header, PT_LOAD and PT_GNU_STACK program headers

ARGV0 = " "


# The signals the trampoline catches while it waits for start (its `signals` list): those that
# end a process by default, which pid 1 of a new pid namespace would otherwise drop.
CAUGHT_SIGNALS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 24, 25, 26, 27, 29, 30, 31)


def supported() -> bool:
    """Whether this machine has a trampoline (else the stage re-executes the interpreter and
    execs the process itself). GALLEY_RUNC_TRAMPOLINE=0 takes the other way on x86_64 too: the
    tests run it there, as other machines would."""
    return os.uname().machine == "x86_64" and os.environ.get("GALLEY_RUNC_TRAMPOLINE") != "0"


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
