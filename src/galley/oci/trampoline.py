"""The trampoline: the last program every container process runs before its own.

The init and exec stages run Python from the host's interpreter file. If a container process
could make the kernel execute that file again (a `#!/proc/self/exe` entrypoint resolves
/proc/self/exe while the stage is still the process), it would hold the host's interpreter and
could write to it (CVE-2019-5736). So the stage never execs the container's program itself: it
execs this static program (about 2 KiB) from a sealed memfd, which then execs the program. While the
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

import posix

from galley.kernel import pathnames
from galley.kernel.memfd import sealed

# .text of trampoline_x86_64.s: code, then the parameters at PARAMS, the messages, and the
# seccomp program and the error texts (ERROR_TEXTS) appended at the end.
X86_64 = bytes.fromhex(
    "4989e4bf0400000031f6e871020000bf0f000000488d3585020000e860020000498b04244883f8024c8d2d94"
    "0200000f82bd010000498b4424088038200f85af0100008b3d4702000085ff7837e8c10100008b3d38020000"
    "504889e6ba0100000031c00f05594883f8014c8d2d820200000f857b0100008b3d13020000b8030000000f05"
    "833d0902000000741fbf26000000be01000000e8e40100004c8d2d7c0200004885c00f85460100008b05ea01"
    "000085c0742e488d0dd30200005150bf010000008b35ce0100004889e2b83d0100000f054c8d2d7302000048"
    "85c00f850e010000498b0424498b7c2410498d742418498d54c410b83b0000000f0548f7d84889c3498b7424"
    "104889f7803f00740548ffc7ebf64829f74883ec70488d055f0200004889042448c744240805000000488974"
    "241048897c2418488d0546020000488944242048c744242802000000488d0533020000488944244048c74424"
    "48010000008b0d31010000488d351e020000488d34ce0fb70e4839cb73100fb74c5e024801ce0fb60e48ffc6"
    "eb3a488d7c24704889d8b90a00000031d248f7f180c23048ffcf88174885c075ee4883ef06c7076572726e66"
    "c747046f204889fe488d4c24704829f9488974243048894c2438bf020000004889e6ba05000000b814000000"
    "0f05bf01000000b8e70000000f05410fb65500498d7501bf02000000b8010000000f05bf7f000000b8e70000"
    "000f0553488d0551000000488d0d570000004883ec204889042448c74424080000000448894c241048c74424"
    "1800000000488d1d640000000fb63b85ff74174889e631d241ba08000000b80d0000000f0548ffc3ebe24883"
    "c4205bc381c780000000b8e70000000f05b80f0000000f0531d24531d24531c0b89d0000000f05c3ffffffff"
    "00000000000000000000000067616c6c65792d696e69740001020304050607080a0b0c0d0e0f1018191a1b1d"
    "1e1f002f67616c6c65792d72756e6320696e69743a206e6f7420612070726f6772616d20746f2072756e2062"
    "792068616e640a2b67616c6c65792d72756e6320696e69743a2077616974696e6720666f7220737461727420"
    "6661696c65640a2e67616c6c65792d72756e6320696e69743a2073657474696e67206e6f5f6e65775f707269"
    "7673206661696c65640a3467616c6c65792d72756e6320696e69743a206c6f6164696e672074686520736563"
    "636f6d702066696c746572206661696c65640a65786563203a200a0f1f440000"
)
PARAMS = 0x290  # fifo fd, no_new_privs, seccomp flags, instruction count: four int32
BASE = 0x400000  # load address (ET_EXEC): the code addresses its data relative to rip
_HEADERS = 64 + 2 * 56  # ELF header, PT_LOAD and PT_GNU_STACK program headers

ARGV0 = " "

# What the trampoline writes for the errno of a failed execve, as Go (and so runc) words it:
# the C library's strerror with a lower-case first letter. An errno past these (a seccomp
# errnoRet, rarely) is written "errno N", as Go writes one it has no text for.
ERROR_TEXTS = (
    "",
    "operation not permitted",
    "no such file or directory",
    "no such process",
    "interrupted system call",
    "input/output error",
    "no such device or address",
    "argument list too long",
    "exec format error",
    "bad file descriptor",
    "no child processes",
    "resource temporarily unavailable",
    "cannot allocate memory",
    "permission denied",
    "bad address",
    "block device required",
    "device or resource busy",
    "file exists",
    "invalid cross-device link",
    "no such device",
    "not a directory",
    "is a directory",
    "invalid argument",
    "too many open files in system",
    "too many open files",
    "inappropriate ioctl for device",
    "text file busy",
    "file too large",
    "no space left on device",
    "illegal seek",
    "read-only file system",
    "too many links",
    "broken pipe",
    "numerical argument out of domain",
    "numerical result out of range",
    "resource deadlock avoided",
    "file name too long",
    "no locks available",
    "function not implemented",
    "directory not empty",
    "too many levels of symbolic links",
)


def _error_table(texts: tuple[str, ...] = ERROR_TEXTS) -> bytes:
    """The texts as the trampoline reads them: u16 count, a u16 offset (from the table's
    start) for each, and at each offset a u8 length and the text."""
    offsets, body = [], b""
    first = 2 + 2 * len(texts)
    for text in texts:
        offsets.append(first + len(body))
        data = text.encode()
        body += bytes((len(data),)) + data
    return b"".join(n.to_bytes(2, "little") for n in (len(texts), *offsets)) + body


_ERRORS = _error_table()


# The signals the trampoline catches while it waits for start (its `signals` list): those that
# end a process by default, which pid 1 of a new pid namespace would otherwise drop.
CAUGHT_SIGNALS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 24, 25, 26, 27, 29, 30, 31)


def supported() -> bool:
    """Whether this machine has a trampoline (else the stage re-executes the interpreter and
    execs the process itself). GALLEY_RUNC_TRAMPOLINE=0 takes the other way on x86_64 too: the
    tests run it there, as other machines would."""
    return posix.uname().machine == "x86_64" and pathnames.environ("GALLEY_RUNC_TRAMPOLINE") != "0"


def image(*, fifo: int | None, no_new_privs: bool, program: bytes = b"", flags: int = 0) -> bytes:
    """The static ELF executable for one process: its parameters patched in."""
    params = b"".join(
        value.to_bytes(4, "little", signed=True)
        for value in (-1 if fifo is None else fifo, int(no_new_privs), flags, len(program) // 8)
    )
    text = X86_64[:PARAMS] + params + X86_64[PARAMS + len(params) :] + program + _ERRORS
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
    """The trampoline in a sealed, close-on-exec memfd, ready for posix.execve(fd, ...)."""
    data = image(fifo=fifo, no_new_privs=no_new_privs, program=program, flags=flags)
    return sealed("galley-init", data, executable=True)


def argv(path: str, args: list[str]) -> list[str]:
    """The trampoline's argv: the marker, the program's path, then the program's own argv."""
    return [ARGV0, path, *args]
