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
While it waits it treats signals as runc's init does: it dies of HUP, INT, TERM and the others
Go's runtime dies of (by the signal, or, as pid 1 of a new pid namespace, which cannot die of a
signal it sends itself, with exit status 128 + the signal), and ignores USR1, USR2, PIPE and the
others Go's runtime ignores. Pid 1 of a new pid namespace drops signals it has no handler for,
even the host's, and `kill <created container> TERM` must stop it, as it stops runc's init.

Source: trampoline_x86_64.s beside this module. Other architectures fall back to re-executing
the interpreter from a read-only mount (galley.oci.stage).
"""

from __future__ import annotations

import posix

from galley.kernel import pathnames
from galley.kernel.memfd import reserved, seal, sealed

# .text of trampoline_x86_64.s: code, then the parameters at PARAMS, the messages, and the
# seccomp program and the error texts (ERROR_TEXTS) appended at the end.
X86_64 = bytes.fromhex(
    "4989e4bf0400000031f6e899020000bf0f000000488d35ad020000e888020000498b04244883f8024c8d2dbc"
    "0200000f82bd010000498b4424088038200f85af0100008b3d6f02000085ff7837e8c10100008b3d60020000"
    "504889e6ba0100000031c00f05594883f8014c8d2daa0200000f857b0100008b3d3b020000b8030000000f05"
    "833d3102000000741fbf26000000be01000000e80c0200004c8d2da40200004885c00f85460100008b051202"
    "000085c0742e488d0dfb0200005150bf010000008b35f60100004889e2b83d0100000f054c8d2d9b02000048"
    "85c00f850e010000498b0424498b7c2410498d742418498d54c410b83b0000000f0548f7d84889c3498b7424"
    "104889f7803f00740548ffc7ebf64829f74883ec70488d05870200004889042448c744240805000000488974"
    "241048897c2418488d056e020000488944242048c744242802000000488d055b020000488944244048c74424"
    "48010000008b0d59010000488d3546020000488d34ce0fb70e4839cb73100fb74c5e024801ce0fb60e48ffc6"
    "eb3a488d7c24704889d8b90a00000031d248f7f180c23048ffcf88174885c075ee4883ef06c7076572726e66"
    "c747046f204889fe488d4c24704829f9488974243048894c2438bf020000004889e6ba05000000b814000000"
    "0f05bf01000000b8e70000000f05410fb65500498d7501bf02000000b8010000000f05bf7f000000b8e70000"
    "000f0553488d0d860000004883ec2048894c241048c744241800000000488d1da00000000fb63b85ff743e48"
    "8d053d000000b9000000c40fbaf707730c488d054c000000b9000000144889042448894c24084889e631d241"
    "ba08000000b80d0000000f0548ffc3ebbb4883c4205bc389fbb8270000000f0589c789deb83e0000000f058d"
    "bb80000000b8e70000000f05c3b80f0000000f0531d24531d24531c0b89d0000000f05c3ffffffff00000000"
    "000000000000000067616c6c65792d696e69740001020304050607080b0f101f8a8c8d8e98999a9b9d9e002f"
    "67616c6c65792d72756e6320696e69743a206e6f7420612070726f6772616d20746f2072756e206279206861"
    "6e640a2b67616c6c65792d72756e6320696e69743a2077616974696e6720666f72207374617274206661696c"
    "65640a2e67616c6c65792d72756e6320696e69743a2073657474696e67206e6f5f6e65775f70726976732066"
    "61696c65640a3467616c6c65792d72756e6320696e69743a206c6f6164696e672074686520736563636f6d70"
    "2066696c746572206661696c65640a65786563203a200a0000000000"
)
PARAMS = 0x2B8  # fifo fd, no_new_privs, seccomp flags, instruction count: four int32
BASE = 0x400000  # load address (ET_EXEC): the code addresses its data relative to rip
# The owner of a trampoline for a container with a user namespace (reserve): the highest id
# there is, which no container's namespace maps in practice; where one does (or where we may
# not give the file away), galley.oci.starter loads the late filter before the trampoline.
OWNER = (0xFFFFFFFE, 0xFFFFFFFE)
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


# What the trampoline does with a signal while it waits for start (its `signals` list), as
# runc's init (Go's runtime) does. It dies of these: HUP INT QUIT ILL TRAP ABRT BUS FPE SEGV TERM
# STKFLT SYS. Pid 1 of a new pid namespace would drop them without a handler, even the host's.
FATAL_SIGNALS = (1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 31)
# It ignores these, which would end a process by default: USR1 USR2 PIPE ALRM XCPU XFSZ VTALRM
# PROF IO PWR. A created container outside a pid namespace of its own would otherwise die of
# them, and inside one the handler changes nothing. The container's process gets the
# defaults back at its execve.
IGNORED_SIGNALS = (10, 12, 13, 14, 24, 25, 26, 27, 29, 30)


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


def reserve() -> int:
    """An empty memfd for load(into=...), owned by OWNER where we are root: made before the
    stage enters a user namespace of the container's, for the trampoline it will exec there.

    A trampoline exec'd from a file that namespace can read (ours, made inside it, say) would
    have its memory tied to that namespace, and a container process holding CAP_SYS_PTRACE
    there could write into it through /proc/<pid>/mem while it waits for `start` or before it
    loads the late seccomp filter: zero the filter's length and the process runs unconfined.
    runc's init was exec'd in the host's namespace and stays out of such reach. This file's
    owner is one the container's namespace does not map, so the kernel ties the trampoline's
    memory to an ancestor namespace instead (galley.kernel.memfd.reserved)."""
    return reserved("galley-init", OWNER)


def load(
    *, fifo: int | None, no_new_privs: bool, program: bytes = b"", flags: int = 0, into: int = -1
) -> int:
    """The trampoline in a sealed, close-on-exec memfd, ready for posix.execve(fd, ...): into,
    a memfd from reserve(), or a new one."""
    data = image(fifo=fifo, no_new_privs=no_new_privs, program=program, flags=flags)
    if into < 0:
        return sealed("galley-init", data, executable=True)
    seal(into, data)
    return into


def argv(path: str, args: list[str]) -> list[str]:
    """The trampoline's argv: the marker, the program's path, then the program's own argv."""
    return [ARGV0, path, *args]
