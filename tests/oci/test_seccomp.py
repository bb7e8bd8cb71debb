"""linux.seccomp: every action, operator, AND/OR argument rules, flags, arches, bad input."""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from galley.errors import FailedPrecondition, InvalidArgument
from galley.kernel import caps as kcaps
from galley.kernel.seccomp import take_fd
from galley.oci import seccomp, seccomp_notify
from galley.oci.capabilities import apply_capabilities
from tests.oci.process_probe import BUSYBOX, run_child, sh

pytestmark = pytest.mark.root

ENOSYS_TEXT = "Function not implemented"
EPERM_TEXT = "Operation not permitted"


def config(action: str, names: list[str], **rule: Any) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": names, "action": action, **rule}],
    }


def mkdir_under(cfg: dict[str, Any], tmp_path: Path) -> tuple[int, str, bool]:
    """Load cfg in a child, run busybox mkdir; (status, stderr, directory made)."""
    filt = seccomp.compile_filter(cfg)  # type: ignore[arg-type]
    target = tmp_path / "made"
    probe = run_child(filt.load, [BUSYBOX, "mkdir", str(target)], tmp_path)
    filt.close()
    return probe.status, probe.stderr, target.exists()


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ({}, EPERM_TEXT),  # SCMP_ACT_ERRNO defaults to EPERM
        ({"errnoRet": errno.ENOSYS}, ENOSYS_TEXT),
        ({"errnoRet": errno.EROFS}, "Read-only file system"),
    ],
)
def test_errno_action_returns_configured_errno(
    tmp_path: Path, rule: dict[str, int], text: str
) -> None:
    status, stderr, made = mkdir_under(
        config("SCMP_ACT_ERRNO", ["mkdir", "mkdirat"], **rule), tmp_path
    )
    assert (status, made) == (1, False)
    assert text in stderr


def test_without_filter_mkdir_works(tmp_path: Path) -> None:
    status, _, made = mkdir_under(config("SCMP_ACT_ERRNO", ["rmdir"]), tmp_path)
    assert (status, made) == (0, True)


@pytest.mark.parametrize(
    "action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"]
)
def test_kill_and_trap_end_with_sigsys(tmp_path: Path, action: str) -> None:
    status, _, made = mkdir_under(config(action, ["mkdir", "mkdirat"]), tmp_path)
    assert (status, made) == (-signal.SIGSYS, False)


def test_trace_without_tracer_is_enosys(tmp_path: Path) -> None:
    status, stderr, made = mkdir_under(config("SCMP_ACT_TRACE", ["mkdir", "mkdirat"]), tmp_path)
    assert (status, made) == (1, False)
    assert ENOSYS_TEXT in stderr


@pytest.mark.parametrize("action", ["SCMP_ACT_LOG", "SCMP_ACT_ALLOW"])
def test_log_and_allow_let_the_call_through(tmp_path: Path, action: str) -> None:
    cfg = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}],
    }
    cfg["defaultAction"] = "SCMP_ACT_ALLOW" if action == "SCMP_ACT_LOG" else "SCMP_ACT_LOG"
    cfg["syscalls"] = [{"names": ["mkdir", "mkdirat"], "action": action}]
    status, _, made = mkdir_under(cfg, tmp_path)
    assert (status, made) == (0, True)


# Syscalls a static busybox needs to start, run `mkdir`, and report an error.
BUSYBOX_BASE = [
    "execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64",
    "mmap", "munmap", "mprotect", "getuid", "geteuid", "getgid", "getegid", "getpid", "write",
    "writev", "read", "exit", "exit_group", "rt_sigaction", "rt_sigprocmask", "readlink",
    "uname", "stat", "fstat", "newfstatat", "ioctl", "umask", "open", "openat", "close",
    "getrandom", "lseek",
]  # fmt: skip


def test_default_errno_ret_applies_to_unlisted_calls(tmp_path: Path) -> None:
    cfg = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENXIO,
        "syscalls": [{"names": BUSYBOX_BASE, "action": "SCMP_ACT_ALLOW"}],
    }
    status, stderr, made = mkdir_under(cfg, tmp_path)
    assert (status, made) == (1, False)
    assert "No such device or address" in stderr


KILL_SCRIPT = "kill -0 $$; echo a=$?; kill -18 $$; echo b=$?; kill -28 $$; echo c=$?"


def kill_results(tmp_path: Path, args: list[dict[str, int | str]]) -> str:
    """Which of kill(self, 0), kill(self, SIGCONT), kill(self, SIGWINCH) the filter let through."""
    filt = seccomp.compile_filter(config("SCMP_ACT_ERRNO", ["kill"], args=args))  # type: ignore[arg-type]
    probe = run_child(filt.load, sh(KILL_SCRIPT), tmp_path)
    filt.close()
    assert probe.status == 0, probe.stderr
    return " ".join(probe.stdout.split())


def arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, int | str]:
    return {"index": index, "op": f"SCMP_CMP_{op}", "value": value, "valueTwo": value_two}


@pytest.mark.parametrize(
    ("op", "value", "value_two", "expected"),
    [
        ("EQ", 0, 0, "a=1 b=0 c=0"),
        ("NE", 0, 0, "a=0 b=1 c=1"),
        ("LT", 18, 0, "a=1 b=0 c=0"),
        ("LE", 18, 0, "a=1 b=1 c=0"),
        ("GT", 18, 0, "a=0 b=0 c=1"),
        ("GE", 18, 0, "a=0 b=1 c=1"),
        ("MASKED_EQ", 0x10, 0x10, "a=0 b=1 c=1"),  # 18 = 0x12, 28 = 0x1c
        ("MASKED_EQ", 0x0F, 0x02, "a=0 b=1 c=0"),
    ],
)
def test_each_operator(tmp_path: Path, op: str, value: int, value_two: int, expected: str) -> None:
    assert kill_results(tmp_path, [arg(1, op, value, value_two)]) == expected


def test_conditions_on_different_args_are_anded(tmp_path: Path) -> None:
    # signal 0 AND pid 1: our kill -0 targets our own pid, so nothing is blocked
    assert kill_results(tmp_path, [arg(1, "EQ", 0), arg(0, "EQ", 1)]) == "a=0 b=0 c=0"
    assert kill_results(tmp_path, [arg(1, "EQ", 0), arg(0, "GT", 1)]) == "a=1 b=0 c=0"


def test_conditions_on_the_same_arg_are_ored(tmp_path: Path) -> None:
    assert kill_results(tmp_path, [arg(1, "EQ", 0), arg(1, "EQ", 18)]) == "a=1 b=1 c=0"


def test_unknown_syscall_names_are_skipped(tmp_path: Path) -> None:
    status, _, made = mkdir_under(
        config("SCMP_ACT_ERRNO", ["no_such_call", "mkdir", "mkdirat"]), tmp_path
    )
    assert (status, made) == (1, False)


def test_rule_with_the_default_action_is_skipped(tmp_path: Path) -> None:
    """libseccomp refuses a rule whose action is the default one (EACCES); runc leaves such
    a rule out, and so the filter is the one without it."""
    with_rule = bpf_of(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
            ],
        },
        tmp_path,
    )
    without = bpf_of(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}],
        },
        tmp_path,
    )
    assert with_rule == without


def bpf_of(cfg: dict[str, Any], tmp_path: Path) -> bytes:
    filt = seccomp.compile_filter(cfg)  # type: ignore[arg-type]
    path = tmp_path / "filter.bpf"
    with open(path, "wb") as f:
        filt.export_bpf(f.fileno())
    filt.close()
    return path.read_bytes()


def test_architectures_are_added_to_the_filter(tmp_path: Path) -> None:
    i386 = struct.pack("<I", 0x40000003)  # AUDIT_ARCH_I386 in a BPF jump's k field
    native = bpf_of(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        },
        tmp_path,
    )
    both = bpf_of(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        },
        tmp_path,
    )
    assert i386 not in native
    assert i386 in both


@pytest.mark.parametrize(
    "flag",
    ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
)
def test_supported_flags_load(tmp_path: Path, flag: str) -> None:
    cfg = config("SCMP_ACT_ERRNO", ["mkdir", "mkdirat"])
    cfg["flags"] = [flag]
    status, _, made = mkdir_under(cfg, tmp_path)
    assert (status, made) == (1, False)


def test_wait_killable_recv_needs_libseccomp_2_6() -> None:
    cfg = config("SCMP_ACT_ERRNO", ["mkdir"])
    cfg["flags"] = ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in seccomp.supported_flags():
        seccomp.compile_filter(cfg).close()  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidArgument, match=r"flags\[0\].*not supported"):
            seccomp.compile_filter(cfg)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"defaultAction": "SCMP_ACT_NOPE"},
            r"^linux\.seccomp\.defaultAction: unknown seccomp action",
        ),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, r"defaultAction: SCMP_ACT_NOTIFY cannot"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
            r"architectures\[0\]: unknown",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FOO"]},
            r"flags\[0\]: unknown",
        ),
        (config("SCMP_ACT_BAD", ["mkdir"]), r"syscalls\[0\]\.action: unknown seccomp action"),
        (
            config("SCMP_ACT_ERRNO", ["kill"], args=[arg(6, "EQ", 0)]),
            r"syscalls\[0\]\.args\[0\]\.index",
        ),
        (
            config(
                "SCMP_ACT_ERRNO", ["kill"], args=[{"index": 0, "op": "SCMP_CMP_XX", "value": 1}]
            ),
            r"args\[0\]\.op: unknown",
        ),
        (config("SCMP_ACT_NOTIFY", ["mkdir"]), r"listenerPath: SCMP_ACT_NOTIFY needs"),
        (config("SCMP_ACT_NOTIFY", ["write"]), r"cannot be used for the write syscall"),
    ],
)
def test_bad_config_names_the_field(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        seccomp.compile_filter(cfg)  # type: ignore[arg-type]


def test_features_lists_every_action_operator_and_flag() -> None:
    assert len(seccomp.FEATURES["actions"]) == 9  # type: ignore[arg-type]
    assert "SCMP_CMP_MASKED_EQ" in seccomp.FEATURES["operators"]  # type: ignore[operator]
    assert "SCMP_ARCH_X86_64" in seccomp.FEATURES["archs"]  # type: ignore[operator]
    assert set(seccomp.supported_flags()) >= {
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    }


def test_loading_without_nnp_needs_cap_sys_admin(tmp_path: Path) -> None:
    """Why the init stage loads the filter before dropping caps unless noNewPrivileges is set."""
    filt = seccomp.compile_filter(config("SCMP_ACT_ERRNO", ["mkdir"]))  # type: ignore[arg-type]

    def drop_then_load() -> None:
        apply_capabilities(
            {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
        )
        try:
            filt.load()
        except FailedPrecondition as e:
            os.write(1, f"refused: {e}\n".encode())

    probe = run_child(drop_then_load, [BUSYBOX, "true"], tmp_path)
    filt.close()
    assert probe.status == 0
    assert "refused" in probe.stdout and "seccomp_load" in probe.stdout


def test_notify_fd_reaches_the_listener_and_closing_it_fails_the_call(tmp_path: Path) -> None:
    listener_path = str(tmp_path / "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listener_path)
    server.listen(1)
    server.settimeout(10)
    cfg = config("SCMP_ACT_NOTIFY", ["mkdir", "mkdirat"])
    cfg["listenerPath"] = listener_path
    cfg["listenerMetadata"] = "probe"
    filt = seccomp.compile_filter(cfg)  # type: ignore[arg-type]

    def load_and_send() -> None:
        fd = filt.load()
        assert fd is not None
        seccomp_notify.send_listener(
            filt, fd, {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": os.getpid()}
        )
        os.close(fd)

    pid = os.fork()
    if pid == 0:
        server.close()
        probe = run_child(load_and_send, [BUSYBOX, "mkdir", str(tmp_path / "made")], tmp_path)
        os._exit(0 if probe.status == 1 and ENOSYS_TEXT in probe.stderr else 1)
    try:
        conn, _ = server.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        conn.close()
        assert b'"fds": ["seccompFd"]' in msg and b'"metadata": "probe"' in msg
        assert len(fds) == 1
        assert os.readlink(f"/proc/self/fd/{fds[0]}") == "anon_inode:seccomp notify"
        os.close(fds[0])  # no agent: the pending mkdir fails with ENOSYS
    finally:
        server.close()
        _, status = os.waitpid(pid, 0)
        filt.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert not (tmp_path / "made").exists()
    assert kcaps.capget().effective  # the test process itself is untouched


def test_runtime_process_forwards_the_notify_fd_of_its_child(tmp_path: Path) -> None:
    """The init reports its notify fd number; the runtime copies it with pidfd_getfd and sends
    it to the agent; the child then closes its copy, and with no agent left mkdir gets ENOSYS."""
    listener_path = str(tmp_path / "agent.sock")
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(listener_path)
    agent.listen(1)
    agent.settimeout(10)
    cfg = config("SCMP_ACT_NOTIFY", ["mkdir", "mkdirat"])
    cfg["listenerPath"] = listener_path
    filt = seccomp.compile_filter(cfg)  # type: ignore[arg-type]
    to_parent, from_child = os.pipe()[::-1]
    go_read, go_write = os.pipe()

    def init_stage() -> None:
        fd = filt.load()
        os.write(to_parent, f"{fd}".encode())
        os.read(go_read, 1)  # the runtime has its copy
        os.close(fd)  # type: ignore[arg-type]

    pid = os.fork()
    if pid == 0:
        probe = run_child(init_stage, [BUSYBOX, "mkdir", str(tmp_path / "made")], tmp_path)
        os._exit(0 if probe.status == 1 and ENOSYS_TEXT in probe.stderr else 1)
    try:
        # the grandchild (run_child's fork) is the process holding the fd: find it
        child_fd = int(os.read(from_child, 16))
        init_pid = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        fd = take_fd(init_pid, child_fd)  # what P's Channel.take does as root
        seccomp_notify.forward_listener(filt, fd, {"ociVersion": "1.2.0", "pid": init_pid})
        with pytest.raises(OSError):  # forward_listener closed its copy
            os.fstat(fd)
        conn, _ = agent.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        conn.close()
        assert b'"seccompFd"' in msg and len(fds) == 1
        assert os.readlink(f"/proc/self/fd/{fds[0]}") == "anon_inode:seccomp notify"
        os.close(fds[0])
    finally:
        os.write(go_write, b"x")
        agent.close()
        _, status = os.waitpid(pid, 0)
        filt.close()
        for fd in (to_parent, from_child, go_read, go_write):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
