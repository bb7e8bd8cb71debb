"""What an OCI conformance suite (opencontainers/runtime-tools' validation/) drives and checks.

That suite calls the runtime the way a shell would: `create --bundle DIR ID` with the
container's stdout and stderr going to files inside the bundle, `start`, `state`, `kill ID KILL`
(signal names without SIG), `delete`, with a config whose root.path is "." (the bundle directory
is the root filesystem) and all five capability sets filled. These tests replay those steps and
the checks its in-container probe makes; the rest of tests/oci covers the behaviour it shares
with runc in more detail. Where runc 1.1 departs from the spec the test runs galley only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.kernel import caps as kcaps
from tests.oci.conftest import Bundle, Runtime, wait_status
from tests.oci.conftest import create_in_files as create

pytestmark = pytest.mark.root

# runtime-tools' generator: these fourteen in every set, ambient and inheritable included.
GENERATOR_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def is_galley(rt: Runtime) -> bool:
    return rt.binary.endswith("galley-runc")


@pytest.fixture
def flat_bundle(tmp_path: Path, busybox_rootfs: Path, bundle: Bundle) -> Bundle:
    """A bundle that is its own root filesystem (root.path "."), config as the suite writes it."""
    path = tmp_path / "flat"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(path)], check=True)
    config = bundle.config
    config["root"] = {"path": ".", "readonly": False}
    config["hostname"] = "mrsdalloway"
    config["process"]["capabilities"] = {name: list(GENERATOR_CAPS) for name in CAP_SETS}
    config["process"].pop("noNewPrivileges", None)
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    linux = config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    linux.pop("maskedPaths", None)
    linux.pop("readonlyPaths", None)
    return Bundle(path=path, config=config)


def state(rt: Runtime, cid: str) -> dict[str, Any]:
    result = rt("state", cid, check=True)
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def started(rt: Runtime, bundle: Bundle, cid: str) -> None:
    """create and start; fail the test with the runtime's message if either fails."""
    made = create(rt, bundle, cid)
    assert made.returncode == 0, made.stderr
    began = rt("start", cid)
    assert began.returncode == 0, began.stderr


def output_of(bundle: Bundle) -> str:
    """Everything the container wrote to the stdout files create gave it."""
    return "".join(p.read_text() for p in sorted(bundle.path.glob("stdout-*")))


# --- the bundle layout and the default config ------------------------------------------------


def test_bundle_as_root_with_generator_config(any_runtime: Runtime, flat_bundle: Bundle) -> None:
    """root.path ".", a UUID for the id, output to files in the bundle (which the container
    sees as /stdout-*): the process gets the capabilities, hostname and privileges asked for."""
    script = "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; hostname; ls /config.json"
    flat_bundle.config["process"]["args"] = ["sh", "-c", script]
    cid = str(uuid.uuid4())
    started(any_runtime, flat_bundle, cid)
    wait_status(any_runtime, cid, "stopped")
    out = output_of(flat_bundle)
    fields = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    want = f"{kcaps.mask_of(GENERATOR_CAPS):016x}"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert fields[field] == want, out
    assert fields["NoNewPrivs"] == "0"
    assert "mrsdalloway\n/config.json\n" in out
    assert state(any_runtime, cid)["bundle"] == str(flat_bundle.path)
    any_runtime("delete", cid, check=True)


def test_unknown_capability_is_reported(runtime: Runtime, flat_bundle: Bundle) -> None:
    """runc 1.1 logs "ignoring unknown or unavailable capabilities: [CAP_TEST]" and runs; the
    spec (and runtime-tools' process_capabilities_fail) want an error. Either way, not silence."""
    flat_bundle.config["process"]["capabilities"]["bounding"].append("CAP_TEST")
    made = create(runtime, flat_bundle, str(uuid.uuid4()))
    assert made.returncode != 0 or "CAP_TEST" in made.stderr


def test_seccomp_profile_denying_getcwd(runtime: Runtime, flat_bundle: Bundle) -> None:
    """runtime-tools' linux_seccomp: allow by default, getcwd fails with an errno. The process
    runs (as with runc: only ENOENT from getcwd means a cwd outside the root) and its getcwd
    fails (busybox's `pwd -P` then prints an empty line)."""
    flat_bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}],
    }
    flat_bundle.config["process"]["args"] = ["sh", "-c", "echo ran; pwd -P"]
    cid = str(uuid.uuid4())
    started(runtime, flat_bundle, cid)
    wait_status(runtime, cid, "stopped")
    assert output_of(flat_bundle).split() == ["ran"]


# --- operations on containers in the wrong state ---------------------------------------------


def test_start_of_a_stopped_container_fails_and_runs_nothing(
    any_runtime: Runtime, flat_bundle: Bundle
) -> None:
    flat_bundle.config["process"]["args"] = ["sh", "-c", "echo 'process called' >> /output"]
    cid = str(uuid.uuid4())
    assert create(any_runtime, flat_bundle, cid).returncode == 0
    assert not (flat_bundle.path / "output").exists()  # args wait for start
    any_runtime("start", cid, check=True)
    wait_status(any_runtime, cid, "stopped")
    assert any_runtime("start", cid).returncode != 0
    time.sleep(0.2)  # a second run, had there been one, would have appended by now
    assert (flat_bundle.path / "output").read_text() == "process called\n"


def test_kill_of_a_stopped_container_fails_and_changes_nothing(
    any_runtime: Runtime, flat_bundle: Bundle
) -> None:
    cid = str(uuid.uuid4())
    started(any_runtime, flat_bundle, cid)
    wait_status(any_runtime, cid, "stopped")
    before = any_runtime("state", cid, check=True).stdout
    for signal in ("KILL", "SIGKILL", "9"):
        assert any_runtime("kill", cid, signal).returncode != 0
    assert any_runtime("state", cid, check=True).stdout == before


def test_kill_of_a_created_container(any_runtime: Runtime, flat_bundle: Bundle) -> None:
    cid = str(uuid.uuid4())
    assert create(any_runtime, flat_bundle, cid).returncode == 0
    any_runtime("kill", cid, "KILL", check=True)
    wait_status(any_runtime, cid, "stopped")
    any_runtime("delete", cid, check=True)
    assert any_runtime("state", cid).returncode != 0


def test_term_stops_a_created_container_as_with_runc(runtime: Runtime, flat_bundle: Bundle) -> None:
    cid = str(uuid.uuid4())
    assert create(runtime, flat_bundle, cid).returncode == 0
    runtime("kill", cid, "TERM", check=True)
    wait_status(runtime, cid, "stopped", timeout=2)


@pytest.mark.parametrize("signal", ["TERM", "USR1", "USR2"])
def test_kill_delivers_signal_names_without_sig(
    any_runtime: Runtime, flat_bundle: Bundle, signal: str
) -> None:
    """The suite's `kill ID USR1`: the container's shell traps it and leaves a file behind."""
    trap = f"trap 'touch /{signal}' {signal}; sleep 10 & wait $!"
    flat_bundle.config["process"]["args"] = ["sh", "-c", trap]
    cid = str(uuid.uuid4())
    started(any_runtime, flat_bundle, cid)
    wait_status(any_runtime, cid, "running")
    time.sleep(0.2)  # let the shell install its trap
    any_runtime("kill", cid, signal, check=True)
    wait_status(any_runtime, cid, "stopped")
    assert (flat_bundle.path / signal).exists()


def test_pid_file_is_a_bare_number(any_runtime: Runtime, flat_bundle: Bundle) -> None:
    """The suite parses the file with strconv.Atoi: no newline, no spaces."""
    pid_file = flat_bundle.path.parent / "pidfile"
    cid = str(uuid.uuid4())
    made = create(any_runtime, flat_bundle, cid, "--pid-file", str(pid_file))
    assert made.returncode == 0, made.stderr
    text = pid_file.read_text()
    assert text.isdigit(), repr(text)
    assert int(text) == state(any_runtime, cid)["pid"]


def test_config_changes_after_create_do_not_apply(
    any_runtime: Runtime, flat_bundle: Bundle
) -> None:
    flat_bundle.config["process"]["args"] = ["sh", "-c", "echo from-create"]
    cid = str(uuid.uuid4())
    assert create(any_runtime, flat_bundle, cid).returncode == 0
    flat_bundle.config["process"]["args"] = ["sh", "-c", "echo from-edit"]
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"echo hook >> {flat_bundle.path}/hooks"]}
    flat_bundle.config["hooks"] = {"poststart": [hook], "poststop": [hook]}
    flat_bundle.write()
    any_runtime("start", cid, check=True)
    wait_status(any_runtime, cid, "stopped")
    any_runtime("delete", cid, check=True)
    assert output_of(flat_bundle) == "from-create\n"
    assert not (flat_bundle.path / "hooks").exists()


# --- hooks -----------------------------------------------------------------------------------


def test_every_hook_gets_id_bundle_pid_and_annotations(
    any_runtime: Runtime, flat_bundle: Bundle
) -> None:
    """The hook binary is the bundle's own /bin/sh, named through "." as the suite does."""
    annotations = {"org.opencontainers.runtime-tools": "hook stdin test"}
    flat_bundle.config["annotations"] = annotations
    sh = f"{flat_bundle.path}/./bin/sh"
    flat_bundle.config["hooks"] = {
        phase: [
            {"path": sh, "args": ["sh", "-c", f"cat > {flat_bundle.path}/{phase}"], "timeout": 5}
        ]
        for phase in ("prestart", "poststart", "poststop")
    }
    cid = str(uuid.uuid4())
    assert create(any_runtime, flat_bundle, cid).returncode == 0
    pid = state(any_runtime, cid)["pid"]
    any_runtime("start", cid, check=True)
    wait_status(any_runtime, cid, "stopped")
    any_runtime("delete", cid, check=True)
    for phase in ("prestart", "poststart", "poststop"):
        seen = json.loads((flat_bundle.path / phase).read_text())
        assert (seen["id"], seen["bundle"]) == (cid, str(flat_bundle.path)), phase
        assert seen["annotations"] == annotations, phase
        assert seen["status"], phase
        if phase != "poststop":
            assert seen["pid"] == pid, phase
    assert "pid" not in json.loads((flat_bundle.path / "poststop").read_text())


# --- namespaces, propagation, masked and read-only paths -------------------------------------


@pytest.mark.parametrize(
    ("kind", "wrong"),
    [("cgroup", "ipc"), ("ipc", "mnt"), ("mount", "net"), ("network", "pid"), ("uts", "cgroup")],
)
def test_namespace_path_of_another_type_is_an_error(
    any_runtime: Runtime, bundle: Bundle, kind: str, wrong: str
) -> None:
    namespaces = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != kind]
    bundle.config["linux"]["namespaces"] = [
        *namespaces,
        {"type": kind, "path": f"/proc/self/ns/{wrong}"},
    ]
    cid = any_runtime.new_id()
    assert create(any_runtime, bundle, cid).returncode != 0
    assert any_runtime("state", cid).returncode != 0


@pytest.mark.parametrize(
    ("propagation", "seen"),
    [("shared", True), ("slave", False), ("private", False), ("unbindable", None)],
)
def test_rootfs_propagation_as_the_probe_sees_it(
    runtime: Runtime, flat_bundle: Bundle, propagation: str, seen: bool | None
) -> None:
    """The suite's probe binds "/" recursively to /tg, then mounts under "/": the new mount
    shows in /tg only when "/" is shared, and an unbindable "/" refuses the bind (EINVAL).
    runc 1.1 fails "shared" (its "/" ends up private) and "unbindable" (create fails)."""
    script = (
        "mkdir -p /tg /mt /ts; touch /ts/ex; "
        "mount --rbind / /tg || { echo bind-refused; exit 0; }; "
        "mount --bind /ts /mt; test -e /tg/mt/ex && echo seen || echo unseen"
    )
    flat_bundle.config["process"]["args"] = ["sh", "-c", script]
    for name in CAP_SETS:
        flat_bundle.config["process"]["capabilities"][name].append("CAP_SYS_ADMIN")
    flat_bundle.config["linux"]["rootfsPropagation"] = propagation
    cid = str(uuid.uuid4())
    started(runtime, flat_bundle, cid)
    wait_status(runtime, cid, "stopped")
    want = {True: "seen", False: "unseen", None: "bind-refused"}[seen]
    assert output_of(flat_bundle).split()[-1] == want


@pytest.fixture
def special_files(flat_bundle: Bundle) -> Iterator[list[str]]:
    """A FIFO and a character device in the root filesystem (opening the FIFO would block)."""
    os.mkfifo(flat_bundle.path / "fifo")
    os.mknod(flat_bundle.path / "chardev", 0o666 | 0o020000, os.makedev(1, 7))
    yield ["/fifo", "/chardev"]


@pytest.mark.parametrize("key", ["maskedPaths", "readonlyPaths"])
def test_masked_and_readonly_special_files(
    any_runtime: Runtime, flat_bundle: Bundle, special_files: list[str], key: str
) -> None:
    """The suite masks (or makes read-only) device nodes and FIFOs: create must not hang on
    or refuse them. Masked, each becomes /dev/null; read-only, each keeps its type."""
    flat_bundle.config["linux"][key] = special_files
    flat_bundle.config["process"]["args"] = ["sh", "-c", "ls -l /fifo /chardev"]
    cid = str(uuid.uuid4())
    started(any_runtime, flat_bundle, cid)
    wait_status(any_runtime, cid, "stopped")
    listing = output_of(flat_bundle).splitlines()
    kinds = [line[0] for line in listing]
    assert kinds == (["c", "c"] if key == "maskedPaths" else ["c", "p"]), listing
    if key == "maskedPaths":
        assert all(" 1,   3 " in line for line in listing), listing


# --- cgroups ---------------------------------------------------------------------------------


def pids_hierarchy() -> Path:
    """Where the pids controller is: its own v1 hierarchy, or the unified one."""
    v1 = Path("/sys/fs/cgroup/pids")
    return v1 if v1.is_dir() else Path("/sys/fs/cgroup")


@pytest.fixture
def foreign_cgroup() -> Iterator[Path]:
    """A pids cgroup that no container created; removed afterwards."""
    path = pids_hierarchy() / f"galley-foreign-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        for _ in range(50):  # the moved process may take a moment to be reaped
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def test_delete_leaves_a_cgroup_it_did_not_create(
    any_runtime: Runtime, flat_bundle: Bundle, foreign_cgroup: Path
) -> None:
    """The suite moves the created container's process into a cgroup of its own, then starts,
    waits and deletes: the container's cgroup goes, that one stays."""
    cid = str(uuid.uuid4())
    flat_bundle.config["linux"]["cgroupsPath"] = f"/galley-conformance-{uuid.uuid4().hex[:8]}"
    assert create(any_runtime, flat_bundle, cid).returncode == 0
    own = pids_hierarchy() / flat_bundle.config["linux"]["cgroupsPath"].lstrip("/")
    assert own.is_dir()
    (foreign_cgroup / "cgroup.procs").write_text(str(state(any_runtime, cid)["pid"]))
    any_runtime("start", cid, check=True)
    wait_status(any_runtime, cid, "stopped")
    any_runtime("delete", cid, check=True)
    assert foreign_cgroup.is_dir()
    assert not own.exists()
