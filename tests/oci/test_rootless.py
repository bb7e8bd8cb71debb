"""Rootless containers: the runtime run by a user who is not root, as podman's and docker's
rootless modes run runc, on both runtimes where runc is installed.

The user is a uid with no passwd entry (USER below); the bundle lies where it may read it, and
its state under an $XDG_RUNTIME_DIR of its own. The container's user namespace maps root to that
uid alone (what `spec --rootless` writes), or wider ranges through newuidmap/newgidmap and a
line of /etc/subuid and /etc/subgid this module adds for the test and takes back.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from galley.oci.cgroups.layout import detect
from galley.oci.defaults import default_spec
from tests.oci.cgroup_fixtures import remove_everywhere
from tests.oci.conftest import (
    MEMORY_LIMIT,
    RUNC_CGROUP_TMPFS,
    RUNTIMES,
    Bundle,
    Runtime,
    mount_namespace,
)
from tests.oci.test_escape_userns import SHOW, ZERO_IT, tracer_under_filter
from tests.oci.test_pure_v2_host import PURE_V2

USER = 62117  # uid and gid of the unprivileged caller; no passwd entry needed
SUBIDS = 300000  # the first of the 65536 ids /etc/subuid and /etc/subgid grant USER here

PIDS_MAX = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
PROBE = (
    "id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; hostname;"
    " grep -E '^(Cap|NoNewPrivs|Groups)' /proc/self/status;"
    " ls -ln /dev | sed 1d | sort;"
    " cut -d' ' -f5- /proc/self/mountinfo | sort"
)


@dataclass
class AsUser(Runtime):
    """A Runtime whose commands run as USER, with $XDG_RUNTIME_DIR set to runtime_dir."""

    runtime_dir: Path = Path()

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": str(self.runtime_dir)}

    def __call__(
        self, *args: str, check: bool = False, timeout: float = 30, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        if len(args) > 1 and args[0] in {"create", "run"}:
            self.created.append(args[-1])
        argv = [self.binary, "--root", str(self.root), *args]
        done = self.as_user(argv, timeout, **kw)
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        return done

    def bare(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The runtime without --root: the state goes where the runtime puts it."""
        return self.as_user([self.binary, *args], 30)

    def as_user(
        self, argv: list[str], timeout: float, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """argv as USER, its output through files, not pipes: a container that create (or
        run -d) leaves behind holds its stdio open."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            done = subprocess.run(
                argv,
                user=USER,
                group=USER,
                extra_groups=[],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                check=False,
                **kw,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                argv, done.returncode, out.read().decode(), err.read().decode()
            )


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory USER may enter (0755, owned by root) for its bundle and runtime dirs."""
    top = Path(tempfile.mkdtemp(prefix="galley-rootless-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _as_user(binary: str, home: Path, name: str) -> AsUser:
    runtime_dir = home / f"xdg-{name}"
    runtime_dir.mkdir(mode=0o700)
    os.chown(runtime_dir, USER, USER)
    return AsUser(binary, runtime_dir / "state", runtime_dir=runtime_dir)


@pytest.fixture(params=sorted(RUNTIMES))
def rootless(request: pytest.FixtureRequest, home: Path) -> Iterator[AsUser]:
    """galley-runc and, where installed, runc, called by USER."""
    rt = _as_user(RUNTIMES[request.param], home, request.param)
    yield rt
    rt.cleanup()


@pytest.fixture
def galley(home: Path) -> Iterator[AsUser]:
    """galley-runc called by USER."""
    rt = _as_user(RUNTIMES["galley"], home, "galley")
    yield rt
    rt.cleanup()


def rootless_config(args: list[str]) -> dict[str, Any]:
    """`spec --rootless` as USER would get it, running args."""
    spec: dict[str, Any] = copy.deepcopy(dict(default_spec(rootless=True)))
    spec["root"] = {"path": "rootfs", "readonly": True}
    spec["process"].update(args=args, terminal=False)
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": USER, "size": 1}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": USER, "size": 1}]
    return spec


@pytest.fixture
def user_bundle(bundle: Bundle, home: Path) -> Bundle:
    """The busybox bundle where USER reads it, with a rootless config running the probe."""
    moved = Bundle(path=Path(shutil.move(str(bundle.path), home)), config=bundle.config)
    moved.config = rootless_config(["sh", "-c", PROBE])
    return moved


def run(rt: AsUser, bundle: Bundle) -> subprocess.CompletedProcess[str]:
    return rt("run", "-b", str(bundle.write()), rt.new_id())


def normalised(text: str) -> str:
    return text.replace(*RUNC_CGROUP_TMPFS)


def test_a_rootless_container_looks_the_same_on_both_runtimes(
    user_bundle: Bundle, home: Path
) -> None:
    outputs = {}
    for name, binary in RUNTIMES.items():
        rt = _as_user(binary, home, f"cmp-{name}")
        try:
            done = run(rt, user_bundle)
        finally:
            rt.cleanup()
        assert done.returncode == 0, done.stderr
        outputs[name] = normalised(done.stdout)
    lines = [" ".join(line.split()) for line in outputs["galley"].splitlines()]
    # no supplementary groups: the caller has none (they would stay, setgroups being "deny")
    assert lines[:4] == ["uid=0(root) gid=0(root)", f"0 {USER} 1", f"0 {USER} 1", "deny"]
    assert "/sys ro," in outputs["galley"]
    if "runc" in outputs:
        assert outputs["galley"] == outputs["runc"]


def test_state_goes_under_xdg_runtime_dir_without_root(galley: AsUser, user_bundle: Bundle) -> None:
    user_bundle.config["process"]["args"] = ["sleep", "30"]
    cid = galley.new_id()
    created = galley.bare("run", "-d", "-b", str(user_bundle.write()), cid)
    try:
        assert created.returncode == 0, created.stderr
        state_dir = galley.runtime_dir / "galley-runc" / cid
        assert (state_dir / "state.json").is_file()
        assert os.stat(state_dir).st_uid == USER
        listed = galley.bare("list", "--format", "json")
        assert [c["id"] for c in json.loads(listed.stdout)] == [cid]
    finally:
        deleted = galley.bare("delete", "--force", cid)
    assert deleted.returncode == 0, deleted.stderr
    assert not state_dir.exists()


def test_lifecycle_without_a_cgroup(galley: AsUser, user_bundle: Bundle) -> None:
    """No cgroup could be made: ps and kill --all find the init and its descendants, pause
    says why it cannot, exec and delete work."""
    user_bundle.config["process"]["args"] = ["sh", "-c", "sleep 30 & sleep 30 & wait"]
    cid = galley.new_id()
    assert galley("create", "-b", str(user_bundle.write()), cid).returncode == 0
    state = json.loads(galley("state", cid, check=True).stdout)
    saved = json.loads((galley.root / cid / "state.json").read_text())
    assert saved["cgroup"]["paths"] == {}, "this host delegates no cgroup to USER"
    assert galley("start", cid).returncode == 0
    deadline = time.monotonic() + 10
    while len(json.loads(galley("ps", "--format", "json", cid).stdout or "null") or []) < 3:
        assert time.monotonic() < deadline, galley("ps", cid).stdout
        time.sleep(0.05)
    pids = json.loads(galley("ps", "--format", "json", cid, check=True).stdout)
    assert state["pid"] in pids
    for pid in pids:
        assert Path(f"/proc/{pid}/status").read_text().count(f"\t{USER}\t") >= 1
    done = galley("exec", cid, "id", "-u")
    assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr
    paused = galley("pause", cid)
    assert paused.returncode == 1
    assert "cannot pause or resume a container without a freezer cgroup" in paused.stderr
    resumed = galley("resume", cid)
    assert resumed.returncode == 1 and "not paused" in resumed.stderr
    updated = galley("update", "--memory", "100000000", cid)
    assert updated.returncode == 1
    assert "cannot set memory limit: container could not join or create cgroup" in updated.stderr
    assert galley("kill", "--all", cid, "KILL").returncode == 0
    deadline = time.monotonic() + 10
    while json.loads(galley("state", cid, check=True).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
        )
    assert galley("delete", cid).returncode == 0
    assert not (galley.root / cid).exists()


def test_limits_without_a_cgroup_fail_and_leave_nothing(
    rootless: AsUser, user_bundle: Bundle
) -> None:
    user_bundle.config["linux"]["resources"] = {"pids": {"limit": 100}}
    done = run(rootless, user_bundle)
    assert done.returncode == 1
    if detect().mode == "v2":  # runc's words there (the device machine, session 38)
        assert re.search(
            "rootless needs no limits [+] no cgrouppath when no permission is granted for"
            " cgroups: mkdir /sys/fs/cgroup/[^:]*: permission denied",
            done.stderr,
        ), done.stderr
    else:
        assert "cannot set pids limit: container could not join or create cgroup" in done.stderr
    assert not any(rootless.root.glob("*/state.json"))


AS_USER = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups"]


def as_root_first(rt: AsUser, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """argv started by root, which becomes USER itself (AS_USER) once it has done what only
    root may, with rt's environment."""
    return subprocess.run(
        argv,
        env=rt.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def run_on_v2(rt: AsUser, bundle: Bundle) -> subprocess.CompletedProcess[str]:
    """`run` of bundle by USER on a pure cgroup v2 host: this one's, as a mount namespace
    shows it (galley and runc tell the layout from the mounts)."""
    runtime = [rt.binary, "--root", str(rt.root), "run", "-b", str(bundle.write()), rt.new_id()]
    with mount_namespace(PURE_V2) as holder:
        return as_root_first(rt, ["nsenter", "-t", str(holder), "-m", "--", *AS_USER, *runtime])


def test_no_cgroup_of_its_own_masks_the_cgroup_mount_on_v2(
    rootless: AsUser, user_bundle: Bundle
) -> None:
    """On a pure cgroup v2 host (this one's, simulated by a mount namespace) a caller that
    may make no cgroup runs its container in the caller's own. `spec --rootless` binds the
    host's /sys in, so cgroup2 on /sys/fs/cgroup is EBUSY, and the bind that stands in for it
    was of that cgroup: here the host's root, its whole hierarchy. runc binds the cgroup it
    meant to make, finds none, and masks the mount point with an empty read-only tmpfs;
    galley now does too (the device machine, session 38)."""
    script = "grep ' /sys/fs/cgroup ' /proc/self/mountinfo | tail -1 | cut -d' ' -f6,9-10;"
    user_bundle.config["process"]["args"] = ["sh", "-c", f"{script} ls -A /sys/fs/cgroup | wc -l"]
    assert {"type": "cgroup"} in user_bundle.config["linux"]["namespaces"]
    done = run_on_v2(rootless, user_bundle)
    assert done.returncode == 0, done.stderr
    # options, source, the superblock's (a tmpfs of the user namespace's root), entries
    expected = ["ro,relatime", "tmpfs", f"ro,uid={USER},gid={USER}", "0"]
    assert done.stdout.split() == expected, done.stdout


def test_limits_without_a_cgroup_on_v2_say_what_runc_says(
    galley: AsUser, user_bundle: Bundle
) -> None:
    """runc's words on a cgroup v2 host, where it checks the limits against the controllers
    there (its run on this host's simulated layout, which has none, fails later instead)."""
    user_bundle.config["linux"]["resources"] = {"pids": {"limit": 100}}
    done = run_on_v2(galley, user_bundle)
    assert done.returncode == 1
    assert (
        "linux.resources.pids: rootless needs no limits + no cgrouppath when no permission is"
        " granted for cgroups: mkdir /sys/fs/cgroup/"
    ) in done.stderr, done.stderr
    assert done.stderr.rstrip().endswith(': permission denied"'), done.stderr
    assert not any(galley.root.glob("*/state.json"))


def test_limits_that_write_nothing_need_no_cgroup(rootless: AsUser, user_bundle: Bundle) -> None:
    """A 0 means "unset" (memory reservation, cpu shares, pids limit): with no cgroup made, a
    section of zeros writes nothing and so fails nothing, at create and in update, as in runc
    (argfuzz --rootless seed 2 found galley-runc's update refused it)."""
    zeros = {"memory": {"reservation": 0}, "cpu": {"shares": 0}, "pids": {"limit": 0}}
    user_bundle.config["process"]["args"] = ["sleep", "30"]
    user_bundle.config["linux"]["resources"] = zeros
    cid = rootless.new_id()
    created = rootless("create", "-b", str(user_bundle.write()), cid)
    assert created.returncode == 0, created.stderr
    updated = rootless("update", "--memory-reservation", "0", "--cpu-share", "0", cid)
    assert updated.returncode == 0, updated.stderr
    refused = rootless("update", "--memory-reservation", "1000000", cid)
    assert refused.returncode == 1
    if rootless.binary == RUNTIMES.get("runc") and detect().mode == "v2":
        # runc 1.1.5's v2 update writes to the cgroup it never made (galley says why)
        assert "memory.low: no such file or directory" in refused.stderr
    else:
        assert "cannot set memory limit: container could not join or create cgroup" in (
            refused.stderr
        )


def test_a_cgroups_path_it_may_not_make_is_an_error(rootless: AsUser, user_bundle: Bundle) -> None:
    user_bundle.config["linux"]["cgroupsPath"] = f"/galley-rootless-{os.getpid()}"
    done = run(rootless, user_bundle)
    assert done.returncode == 1
    assert "unable to apply cgroup configuration" in done.stderr
    assert "permission denied" in done.stderr  # Go's words (runc's bats match them)
    assert "Errno" not in done.stderr
    assert not any(rootless.root.glob("*/state.json"))


def test_rootless_needs_a_user_namespace(rootless: AsUser, user_bundle: Bundle) -> None:
    linux = user_bundle.config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "user"]
    del linux["uidMappings"], linux["gidMappings"]
    done = run(rootless, user_bundle)
    assert done.returncode == 1
    assert "rootless container requires user namespaces" in done.stderr
    assert not any(rootless.root.glob("*/state.json"))


def test_mount_options_must_name_mapped_ids(rootless: AsUser, user_bundle: Bundle) -> None:
    user_bundle.config["mounts"].append(
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["gid=5"]}
    )
    done = run(rootless, user_bundle)
    assert done.returncode == 1
    assert "cannot specify gid= mount options for unmapped gid in rootless containers" in (
        done.stderr
    )


def test_a_mount_option_id_in_other_digits_is_left_to_the_kernel(
    galley: AsUser, user_bundle: Bundle
) -> None:
    """ "uid=²": "²" is a digit to str.isdigit() and no number to int(), and the check of
    unmapped ids ended in a ValueError's traceback. It is no id to check: the kernel refuses
    the option, in one line."""
    user_bundle.config["mounts"].append(
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["uid=\u00b2"]}
    )
    done = run(galley, user_bundle)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "/tmp" in done.stderr, done.stderr


def test_rootless_flag_false_keeps_cgroup_errors(galley: AsUser, user_bundle: Bundle) -> None:
    done = galley("--rootless", "false", "run", "-b", str(user_bundle.write()), galley.new_id())
    assert done.returncode == 1
    assert "permission denied" in done.stderr.lower()
    bad = galley("--rootless", "maybe", "run", "-b", str(user_bundle.write()), galley.new_id())
    assert bad.returncode == 1
    assert r"--rootless: parsing \"maybe\": invalid syntax" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_a_terminal_through_the_console_socket(galley: AsUser, user_bundle: Bundle) -> None:
    user_bundle.config["process"].update(terminal=True, args=["sh", "-c", "tty; id -u"])
    sock_path = galley.runtime_dir / "console.sock"
    cid = galley.new_id()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(sock_path))
        os.chown(sock_path, USER, USER)
        server.listen(1)
        server.settimeout(30)
        created = galley(
            "create", "--console-socket", str(sock_path), "-b", str(user_bundle.write()), cid
        )
        assert created.returncode == 0, created.stderr
        conn, _ = server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    assert len(fds) == 1
    try:
        assert galley("start", cid).returncode == 0
        out = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:  # EIO: the container's side closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(fds[0])
    assert out.replace(b"\r\n", b"\n") == b"/dev/pts/0\n0\n"


@pytest.fixture
def subids() -> Iterator[None]:
    """/etc/subuid and /etc/subgid grant USER 65536 ids from SUBIDS, for the test alone; USER
    gets a passwd entry meanwhile (newuidmap looks its caller up by name)."""
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        pytest.skip("newuidmap/newgidmap (Debian's uidmap) are not installed")
    files = [Path(name) for name in ("/etc/subuid", "/etc/subgid", "/etc/passwd", "/etc/group")]
    files += [Path(name) for name in ("/etc/shadow", "/etc/gshadow")]
    saved = {path: path.read_bytes() if path.exists() else None for path in files}
    try:
        name = "galley-rootless"
        subprocess.run(["groupadd", "-g", str(USER), name], check=True, capture_output=True)
        subprocess.run(
            ["useradd", "-r", "-M", "-u", str(USER), "-g", str(USER), "-d", "/nonexistent", name],
            check=True,
            capture_output=True,
        )
        for path in files[:2]:
            with path.open("a") as f:
                f.write(f"{USER}:{SUBIDS}:65536\n")
        yield
    finally:
        for path, content in saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)


def _wide(bundle: Bundle) -> None:
    for key in ("uidMappings", "gidMappings"):
        bundle.config["linux"][key] = [
            {"containerID": 0, "hostID": USER, "size": 1},
            {"containerID": 1, "hostID": SUBIDS, "size": 65536},
        ]
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups;"
        " su nobody -s /bin/sh -c 'id -u; id -g' 2>&1 || true",
    ]


def test_wider_maps_through_newuidmap(rootless: AsUser, user_bundle: Bundle, subids: None) -> None:
    _wide(user_bundle)
    done = run(rootless, user_bundle)
    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines[:5] == [
        f"0 {USER} 1",
        f"1 {SUBIDS} 65536",
        f"0 {USER} 1",
        f"1 {SUBIDS} 65536",
        "allow",
    ]


def test_wider_maps_not_granted_say_so(galley: AsUser, user_bundle: Bundle) -> None:
    """Without the subids fixture USER has no passwd entry and no ranges: newuidmap refuses,
    and its words reach the caller."""
    if shutil.which("newuidmap") is None:
        pytest.skip("newuidmap (Debian's uidmap) is not installed")
    _wide(user_bundle)
    done = run(galley, user_bundle)
    assert done.returncode == 1
    assert f" 0 {USER} 1 1 {SUBIDS} 65536: newuidmap: " in done.stderr
    assert "failed: linux.uidMappings: /usr/bin/newuidmap " in done.stderr  # the field first
    assert len(done.stderr.splitlines()) == 1
    assert not any(galley.root.glob("*/state.json"))


def test_root_of_a_user_namespace_runs_a_plain_bundle(
    rootless: AsUser, user_bundle: Bundle
) -> None:
    """podman's rootless mode: the runtime runs as root of a user namespace the user made
    (`unshare -r`), on a config with no user namespace of its own."""
    config = user_bundle.config
    config["linux"]["namespaces"] = [
        ns for ns in config["linux"]["namespaces"] if ns["type"] != "user"
    ]
    del config["linux"]["uidMappings"], config["linux"]["gidMappings"]
    config["process"]["args"] = ["sh", "-c", "id; cat /proc/self/uid_map; ls -n /dev/null"]
    path = user_bundle.write()
    cid = rootless.new_id()
    argv = ["unshare", "-r", rootless.binary, "--root", str(rootless.root), "run", "-b"]
    done = rootless.as_user([*argv, str(path), cid], 30)
    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines[0] == "uid=0(root) gid=0(root)"
    assert lines[1] == f"0 {USER} 1"
    assert lines[2].startswith("crw-rw-rw- 1 65534 65534 1, 3")  # the host's, bound


def test_hooks_that_make_the_stage_an_interpreter_of_its_own(
    rootless: AsUser, user_bundle: Bundle
) -> None:
    """createContainer and startContainer hooks run in the container: galley's stage then
    re-executes the interpreter, which a caller that is not root does without the read-only
    mount root's stage gets (it may not mount)."""
    made = rootless.runtime_dir / "hook-out"
    user_bundle.config["hooks"] = {
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo cc > {made}"]}],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo sc > /tmp/sc"]}],
    }
    user_bundle.config["mounts"].append(
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []}
    )
    user_bundle.config["process"]["args"] = ["cat", "/tmp/sc"]
    done = run(rootless, user_bundle)
    assert (done.returncode, done.stdout) == (0, "sc\n"), done.stderr
    assert made.read_text() == "cc\n"
    assert made.stat().st_uid == USER


PODMAN_PROBE = "id; cat /proc/self/uid_map; ls -n /dev/null; grep CapEff /proc/self/status"


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_rootless_podman_drives_it(
    rootless: AsUser, home: Path, user_bundle: Bundle, subids: None
) -> None:
    """podman run by USER: it makes the user namespace (newuidmap, the ranges granted) and
    runs conmon and the runtime as its root; run, exec with and without a terminal, stop,
    rm. The pause process it leaves to hold the namespace is killed by its pid file."""
    rootfs = home / "rootfs"
    subprocess.run(["cp", "-a", str(user_bundle.rootfs), str(rootfs)], check=True)
    (home / "podman-home").mkdir()
    conf = home / "containers.conf"
    conf.write_text('[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\n')
    for path in (rootfs, home / "podman-home"):
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(path)], check=True)
    work = rootless.runtime_dir
    argv = ["podman", "--root", f"{work}/storage", "--runroot", f"{work}/run"]
    argv += ["--storage-driver", "vfs", "--events-backend", "file", "--runtime", rootless.binary]
    env = f"HOME={home}/podman-home CONTAINERS_CONF={conf} USER=galley-rootless"

    def podman(*args: str) -> subprocess.CompletedProcess[str]:
        return rootless.as_user(["env", *env.split(), *argv, *args], 60)

    try:
        ran = podman("run", "--rm", "--rootfs", str(rootfs), "sh", "-c", PODMAN_PROBE)
        assert ran.returncode == 0, ran.stderr
        lines = [" ".join(line.split()) for line in ran.stdout.splitlines()]
        assert lines[:3] == ["uid=0(root) gid=0(root)", f"0 {USER} 1", f"1 {SUBIDS} 65536"]
        assert lines[3].startswith("crw-rw-rw- 1 65534 65534 1, 3")  # the host's, bound
        started = podman("run", "-d", "--rootfs", str(rootfs), "sleep", "60")
        assert started.returncode == 0, started.stderr
        cid = started.stdout.strip()
        done = podman("exec", cid, "id", "-u")
        assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr
        tty = podman("exec", "-t", cid, "tty")
        assert (tty.returncode, tty.stdout.strip()) == (0, "/dev/pts/0"), tty.stderr
        assert podman("stop", "-t", "0", cid).returncode == 0
        status = podman("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid)
        assert status.stdout.strip() == "exited 137"
        assert podman("rm", cid).returncode == 0
        assert podman("ps", "-aq").stdout == ""
    finally:
        pause = work / "libpod" / "tmp" / "pause.pid"
        if pause.exists():
            os.kill(int(pause.read_text()), signal.SIGKILL)
        subprocess.run(["rm", "-rf", f"{work}/storage", f"{work}/run"], check=False)


def test_a_seccomp_agent_gets_the_notify_fd(rootless: AsUser, user_bundle: Bundle) -> None:
    """listenerPath: the runtime sends the agent the notify fd (galley's P takes it from its
    stage over the socket pair, not pidfd_getfd); the agent closes it, so the notified mkdir
    fails with ENOSYS."""
    agent_path = rootless.runtime_dir / "agent.sock"
    received: list[tuple[bytes, list[int]]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as agent:
        agent.bind(str(agent_path))
        os.chown(agent_path, USER, USER)
        agent.listen(1)
        agent.settimeout(20)

        def accept() -> None:
            conn, _ = agent.accept()
            with conn:
                message, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            received.append((message, fds))
            for fd in fds:
                os.close(fd)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        user_bundle.config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": str(agent_path),
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
        }
        user_bundle.config["mounts"].append(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []}
        )
        user_bundle.config["process"]["args"] = ["mkdir", "/tmp/x"]
        done = run(rootless, user_bundle)
        thread.join(20)
    assert done.returncode == 1
    assert "Function not implemented" in done.stderr
    [(message, fds)] = received
    state = json.loads(message)
    assert state["fds"] == ["seccompFd"] and len(fds) == 1
    assert state["pid"] == state["state"]["pid"] > 0


def test_a_tracer_in_the_container_cannot_lift_the_filter(
    rootless: AsUser, user_bundle: Bundle
) -> None:
    """A rootless runtime may not give the trampoline's file to an id the container's user
    namespace leaves unmapped (test_escape_userns), so a container process holding
    CAP_SYS_PTRACE there can write into a created init's memory: galley loads the late
    filter before the trampoline's execve then. Zeroing its length changes nothing."""
    out = user_bundle.rootfs / "out"
    out.mkdir()
    os.chown(out, USER, USER)
    user_bundle.config["root"]["readonly"] = False
    tracer_under_filter(user_bundle.config, ["sh", "-c", f"({SHOW}) > /out/shown"])
    cid = rootless.new_id()
    created = rootless("create", "-b", str(user_bundle.write()), cid)
    assert created.returncode == 0, created.stderr
    attempt = rootless("exec", cid, "sh", "-c", ZERO_IT)
    assert attempt.stdout.endswith("done\n"), attempt.stdout + attempt.stderr
    assert rootless("start", cid).returncode == 0
    for _ in range(100):
        if "Seccomp:" in ((out / "shown").read_text() if (out / "shown").exists() else ""):
            break
        time.sleep(0.05)
    shown = (out / "shown").read_text()
    assert "Linux" not in shown and "Seccomp:\t2" in shown, shown


def test_additional_groups_are_refused(rootless: AsUser, user_bundle: Bundle) -> None:
    user_bundle.config["process"]["user"]["additionalGids"] = [0]
    done = run(rootless, user_bundle)
    assert done.returncode == 1
    assert "cannot set any additional groups in a rootless container" in done.stderr
    assert not any(rootless.root.glob("*/state.json"))


def test_an_exec_with_additional_groups_is_refused(galley: AsUser, user_bundle: Bundle) -> None:
    user_bundle.config["process"]["args"] = ["sleep", "30"]
    cid = galley.new_id()
    assert galley("run", "-d", "-b", str(user_bundle.write()), cid).returncode == 0
    done = galley("exec", "--additional-gids", "0", cid, "id")
    assert done.returncode == 255
    assert "cannot set any additional groups in a rootless container" in done.stderr
    assert galley("exec", cid, "true").returncode == 0


def test_oom_score_adj(rootless: AsUser, user_bundle: Bundle) -> None:
    """A user may raise its processes' oom_score_adj: the container's and an exec's get it
    (galley's stage writes its own: its P may not open the /proc files of a non-dumpable
    process)."""
    user_bundle.config["process"]["oomScoreAdj"] = 500
    user_bundle.config["process"]["args"] = ["sh", "-c", "cat /proc/self/oom_score_adj; sleep 30"]
    cid = rootless.new_id()
    assert rootless("run", "-d", "-b", str(user_bundle.write()), cid).returncode == 0
    done = rootless("exec", cid, "cat", "/proc/self/oom_score_adj")
    assert (done.returncode, done.stdout) == (0, "500\n"), done.stderr
    pid = json.loads(rootless("state", cid, check=True).stdout)["pid"]
    assert Path(f"/proc/{pid}/oom_score_adj").read_text() == "500\n"


@pytest.fixture(params=["every hierarchy", "v1 hierarchies only"])
def delegated(request: pytest.FixtureRequest, parent: str) -> Iterator[str]:
    """parent in every hierarchy, given to USER as systemd's Delegate= gives a user's service
    its subtree (a v1 cpuset gets the root's cpus and mems first); or, as runc's own
    rootless tests give it, in the v1 hierarchies alone, not a hybrid host's cgroup2 one.
    The runtime is to start in its leaf `runtime` (cgroup v2 lets a cgroup with processes
    of its own enable no controllers for its children), and the cgroup2 root passes memory
    and pids down, as systemd's does."""
    layout = detect()
    mounts = layout.mount_points()
    if request.param != "every hierarchy":
        if layout.unified is None or not layout.v1:
            pytest.skip("not a hybrid host")
        mounts.remove(layout.unified.mount)
    enabled = []
    if layout.unified is not None and layout.unified.mount in mounts:
        root = Path(layout.unified.mount)
        available = set((root / "cgroup.controllers").read_text().split())
        passed = set((root / "cgroup.subtree_control").read_text().split())
        enabled = sorted({"memory", "pids"} & available - passed)
        if enabled:
            (root / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in enabled))
    for mount in mounts:
        top = Path(mount) / parent.lstrip("/")
        for directory in (top, top / "runtime"):
            directory.mkdir()
            for name in ("cpuset.cpus", "cpuset.mems"):
                # v1 starts a cpuset empty; v2 has none at its root, and an empty one inherits
                if (directory / name).exists() and (Path(mount) / name).exists():
                    (directory / name).write_text((Path(mount) / name).read_text())
            for path in (directory, *directory.iterdir()):
                os.chown(path, USER, USER)
    yield parent
    if enabled:
        remove_everywhere(parent, layout)
        (root / "cgroup.subtree_control").write_text(" ".join(f"-{c}" for c in enabled))


RUNC_LOCKED_REMOUNT = "flags: 0x1021: operation not permitted"  # MS_REMOUNT|MS_BIND|MS_RDONLY


def test_a_delegated_cgroup_takes_its_limits(
    rootless: AsUser, user_bundle: Bundle, delegated: str
) -> None:
    """A cgroupsPath in a subtree the user was given: the container's cgroup is made there
    and takes its limits. The runtime starts in the subtree (root moves it there first, as
    systemd starts a delegated service in its own): cgroup v2 lets a process move another
    only below a cgroup whose cgroup.procs it may write, common to both."""
    config = user_bundle.config
    config["linux"]["cgroupsPath"] = f"{delegated}/c1"
    config["linux"]["resources"] = {"memory": {"limit": 104857600}, "pids": {"limit": 50}}
    config["mounts"].append(
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
    )
    config["process"]["args"] = ["sh", "-c", f"{MEMORY_LIMIT}; {PIDS_MAX}"]
    leaf = f"{delegated}/runtime/cgroup.procs"
    procs = [f"{mount}{leaf}" for mount in detect().mount_points()]
    procs = [path for path in procs if os.path.exists(path)]
    move = "".join(f"echo $$ > {path}; " for path in procs)
    runtime = shlex.join([rootless.binary, "--root", str(rootless.root)])
    cid = rootless.new_id()
    run_it = f"run -b {user_bundle.write()} {cid}"
    done = as_root_first(
        rootless, ["sh", "-c", f"{move}exec {shlex.join(AS_USER)} {runtime} {run_it}"]
    )
    if rootless.binary == RUNTIMES.get("runc") and RUNC_LOCKED_REMOUNT in done.stderr:
        # On a cgroup v2 host the cgroup mount falls back to a bind of c1 (cgroup2 on the
        # host's /sys/fs/cgroup, bound in, is EBUSY), which runc 1.1.5 remounts read-only
        # without the flags the user namespace locked (the device machine, session 38)
        pytest.skip("runc 1.1.5 drops the bind's locked nosuid/nodev/noexec on remount")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["104857600", "50"]  # what its own cgroup says


def test_an_idmapped_mount_needs_root(galley: AsUser, user_bundle: Bundle, home: Path) -> None:
    """The kernel lets only the host's root idmap a host filesystem; runc 1.1.5 knows no
    idmapped mounts (it drops the option), so galley alone is asked."""
    user_bundle.config["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": str(home), "options": ["rbind", "idmap"]}
    )
    done = run(galley, user_bundle)
    assert done.returncode == 1
    assert "an idmapped mount needs root" in done.stderr
    assert len(done.stderr.splitlines()) == 1
