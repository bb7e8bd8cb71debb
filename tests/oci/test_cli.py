"""galley-runc's command line without real containers: errors, ids, list, spec, features, logs.

A "fake" container here is a state directory whose init is a `sleep` started by the test: it is
enough for state, list, ps, kill and delete, and for comparing output shapes with runc.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from galley.oci import state as st
from galley.oci.cgroups.layout import detect
from galley.oci.validate import validate
from tests.conftest import GALLEY_RUNC, fresh_python
from tests.oci.conftest import RUNC, Bundle, Runtime

RUNC_STATE_KEYS = ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"]


@pytest.fixture
def fake(runtime: Runtime, tmp_path: Path) -> Iterator[st.ContainerState]:
    """A running 'container' (a sleep) recorded under the runtime's --root, poststop hooked."""
    proc = subprocess.Popen(["sleep", "60"])
    marker = tmp_path / "poststop.json"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncat > {marker}\n")
    hook.chmod(0o755)
    cid = runtime.new_id()
    st.reserve(str(runtime.root), cid)
    start = st.process_start_time(proc.pid)
    assert start is not None
    state = st.ContainerState(
        root=str(runtime.root),
        id=cid,
        bundle=str(tmp_path),
        rootfs=str(tmp_path / "rootfs"),
        pid=proc.pid,
        start_time=start,
        created=st.now_rfc3339(),
        config={"ociVersion": "1.0.2", "hooks": {"poststop": [{"path": str(hook)}]}},
    )
    state.save()
    yield state
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "command",
    [
        ["state"],
        ["kill"],
        ["start"],
        ["pause"],
        ["resume"],
        ["ps"],
        ["delete"],
        ["events", "--stats"],
    ],
)
def test_missing_container(any_runtime: Runtime, command: list[str]) -> None:
    result = any_runtime(*command, "nosuch")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert result.stdout == ""


def test_delete_force_of_missing_container_succeeds(any_runtime: Runtime) -> None:
    result = any_runtime("delete", "--force", "nosuch")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("bad", ["a/b", "..", "a b"])
def test_invalid_id(any_runtime: Runtime, bad: str) -> None:
    result = any_runtime("state", bad)
    assert result.returncode == 1
    assert "invalid container ID format" in result.stderr


def test_list_empty(any_runtime: Runtime) -> None:
    table = any_runtime("list", check=True).stdout
    assert table.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert any_runtime("list", "--format", "json", check=True).stdout.strip() == "null"
    assert any_runtime("list", "-q", check=True).stdout == ""


def test_an_unknown_format_is_refused_in_runcs_words(any_runtime: Runtime, bundle: Bundle) -> None:
    """runc checks list's and ps's --format once it has the containers, says "invalid format
    option" and prints no usage; `list -q` never looks at it. galley-runc refused it while
    parsing, in argparse's words, with the usage on stdout."""
    result = any_runtime("list", "--format", "yaml")
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert 'msg="invalid format option"' in result.stderr
    assert any_runtime("list", "-q", "--format", "yaml").returncode == 0
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = any_runtime.detached(bundle)
    result = any_runtime("ps", "--format", "yaml", cid)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert 'msg="invalid format option"' in result.stderr


def test_spec_writes_a_valid_config(any_runtime: Runtime, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    any_runtime("spec", "--bundle", str(bundle), check=True)
    config = json.loads((bundle / "config.json").read_text())
    validate(config)
    assert config["process"]["args"] == ["sh"]
    again = any_runtime("spec", "--bundle", str(bundle))
    assert again.returncode == 1
    assert "config.json exists" in again.stderr


def test_an_os_error_is_one_line_in_plain_words(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The path, then the reason in Go's (runc's) words; never Python's "[Errno 2] ..."."""
    missing = tmp_path / "missing"
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    for args, words in [
        (["spec", "--bundle", str(missing)], f"chdir {missing}"),
        (["exec", "--process", str(missing), cid], f"exec failed: {missing}"),
        (["update", "-r", str(missing), cid], f"update: {missing}"),
    ]:
        result = runtime(*args)
        assert result.returncode == (255 if args[0] == "exec" else 1)
        assert f"{words}: no such file or directory" in result.stderr, result.stderr
        assert "Errno" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_spec_rootless_and_cwd(any_runtime: Runtime, tmp_path: Path) -> None:
    """runc's rootless spec: the caller's own ids mapped, the host's network (so /sys is a
    bind of the host's), no uid=/gid= mount options, no resources. galley kept a network
    namespace, sysfs and devpts' gid=5 (unmapped for a user who is not root)."""
    any_runtime("spec", "--rootless", check=True, cwd=tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    linux = config["linux"]
    kinds = [ns["type"] for ns in linux["namespaces"]]
    assert kinds[-1] == "user" and "network" not in kinds
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    sys_mount = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert (sys_mount["type"], sys_mount["source"]) == ("none", "/sys")
    assert sys_mount["options"] == ["rbind", "nosuid", "noexec", "nodev", "ro"]
    options = [o for m in config["mounts"] for o in m.get("options", [])]
    assert not [o for o in options if o.startswith(("uid=", "gid="))]
    assert "resources" not in linux


def test_features(runtime: Runtime) -> None:
    doc = json.loads(runtime("features", check=True).stdout)
    assert doc["ociVersionMin"] == "1.0.0"
    assert doc["ociVersionMax"].startswith("1.3")
    assert set(doc["hooks"]) >= {"prestart", "createRuntime", "poststop"}
    assert "rbind" in doc["mountOptions"]
    linux = doc["linux"]
    assert set(linux["namespaces"]) == {
        "cgroup",
        "ipc",
        "mount",
        "network",
        "pid",
        "time",
        "user",
        "uts",
    }
    assert "CAP_SYS_ADMIN" in linux["capabilities"]
    assert linux["mountExtensions"] == {"idmap": {"enabled": True}}
    assert "MPOL_WEIGHTED_INTERLEAVE" in linux["memoryPolicy"]["modes"]
    assert "MPOL_F_STATIC_NODES" in linux["memoryPolicy"]["flags"]
    assert linux["netDevices"] == {"enabled": True}
    assert "SCMP_ACT_ERRNO" in linux["seccomp"]["actions"]
    # what galley implements, whatever this host has (features-linux.md)
    assert linux["apparmor"] == linux["selinux"] == {"enabled": True}
    assert linux["intelRdt"] == {"enabled": True, "schemata": True}  # test_resctrl
    assert linux["cgroup"] == {
        "v1": True,
        "v2": True,
        "systemd": False,
        "systemdUser": False,
        "rdma": True,  # linux.resources.rdma, test_cgroups_v1 and test_cgroups_v2
    }


def test_log_file_json_and_text(runtime: Runtime, tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    result = runtime("--log", str(log), "--log-format", "json", "state", "nosuch")
    assert result.returncode == 1
    assert result.stderr.strip() == 'container "nosuch" does not exist'
    entry = json.loads(log.read_text())
    assert entry["level"] == "error"
    assert entry["msg"] == 'container "nosuch" does not exist'
    assert entry["time"].endswith("Z")
    plain = runtime("state", "nosuch")
    assert plain.stderr.startswith('time="')
    assert 'level=error msg="container \\"nosuch\\" does not exist"' in plain.stderr


@pytest.mark.parametrize("command", [["list"], ["state", "nosuch"]])
def test_a_log_file_that_cannot_be_opened_fails_first(
    any_runtime: Runtime, tmp_path: Path, command: list[str]
) -> None:
    """runc opens --log before any command; galley opened it at its first line, so `list`
    succeeded and `run` crashed (traceback) after creating the container."""
    log = tmp_path / "missing" / "x.log"
    result = any_runtime("--log", str(log), *command)
    assert result.returncode == 1
    assert result.stderr.endswith(f'level=error msg="open {log}: no such file or directory"\n')


def test_a_log_line_that_cannot_be_written_is_said_on_stderr(any_runtime: Runtime) -> None:
    """A log that opens but takes no line (a full disk): runc says so on stderr and goes on;
    galley ended in a traceback."""
    result = any_runtime("--log", "/dev/full", "state", "nosuch")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Failed to write to log, write /dev/full: no space left on device"
    assert "does not exist" in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_message_with_a_byte_that_is_no_utf8_is_said_as_it_came(
    any_runtime: Runtime, tmp_path: Path
) -> None:
    """With --log the message goes to stderr too: a bundle path with a byte that is no UTF-8
    ended galley's in a traceback (UnicodeEncodeError); runc writes the byte as it came, and
    U+FFFD in the JSON log."""
    log = tmp_path / "log.json"
    argv = [any_runtime.binary.encode(), b"--root", str(any_runtime.root).encode()]
    argv += [b"--log", str(log).encode(), b"--log-format", b"json"]
    argv += [b"create", b"--bundle", b"/nonexist\xff", b"x"]
    done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    assert done.returncode == 1
    assert done.stderr.endswith(b" create failed: chdir /nonexist\xff: no such file or directory\n")
    assert b"Traceback" not in done.stderr
    assert (
        "chdir /nonexist\ufffd: no such file" in json.loads(log.read_text().splitlines()[-1])["msg"]
    )


@pytest.mark.root
def test_a_log_line_that_cannot_be_said_on_stderr_fails_nothing(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """Without --log, on a stderr that takes nothing (a full disk, a pipe nobody reads): runc
    goes on. galley's debug line after create raised, so `run` ended in a traceback (exit
    120) and left its container created, never started."""
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    argv = [any_runtime.binary, "--root", str(any_runtime.root), "--debug", "run"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*argv, "-b", str(bundle.write()), cid],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=full,
            timeout=30,
            check=False,
        )
    assert result.returncode == 0
    assert any_runtime("state", cid).returncode == 1  # run ran it and deleted it


@pytest.mark.root
@pytest.mark.parametrize("reader", [["head", "-c", "1"], ["cat"]])
def test_a_log_fifo_stays_open_for_the_command(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path, reader: list[str]
) -> None:
    """--log a FIFO: runc holds it open for the whole command. galley opened it for each
    line: a reader saw its end once the first open closed, and the next open, with no reader
    left, blocked `run` forever (its container created). A reader gone is said on stderr."""
    fifo = tmp_path / "log"
    os.mkfifo(fifo)
    out = tmp_path / "read"
    with open(out, "wb") as sink:
        reading = subprocess.Popen([*reader, str(fifo)], stdout=sink)
    try:
        cid = any_runtime.new_id()
        result = any_runtime("--debug", "--log", str(fifo), "run", "-b", str(bundle.write()), cid)
        reading.wait(timeout=10)
    finally:
        if reading.poll() is None:
            reading.kill()
            reading.wait()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if reader == ["cat"]:
        assert "level=debug" in out.read_text()


def test_run_with_a_log_file_that_cannot_be_opened_creates_nothing(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    cid = any_runtime.new_id()
    log = f"file:{tmp_path}/x.log"  # crun's syntax: a relative path to runc and galley
    bundle.config["process"]["args"] = ["sleep", "30"]
    any_runtime.created.append(cid)  # deleted afterwards, should one be left
    result = any_runtime(
        "--log", log, "run", "-d", "--bundle", str(bundle.write()), cid, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr
    assert any_runtime("state", cid).returncode == 1


def test_version_help_and_usage_errors(runtime: Runtime) -> None:
    assert "galley-runc version" in runtime("--version", check=True).stdout
    assert "create" in runtime("--help", check=True).stdout
    missing = runtime("state")
    assert missing.returncode == 1
    assert "requires exactly 1 argument(s)" in missing.stderr
    assert runtime("kill", "--bogus-flag", "x").returncode == 1


def test_state_command_stays_light(tmp_path: Path) -> None:
    """`state` imports neither launch nor validation code, nor the cgroup warm-up (only
    create, run and exec start it), and starts fast."""
    cmd = ["/usr/bin/python3", "-IS", "-X", "importtime", GALLEY_RUNC, "--root", str(tmp_path)]
    result = subprocess.run([*cmd, "state", "x"], capture_output=True, text=True, check=False)
    ours = (
        "galley.oci.launch",
        "galley.oci.validate",
        "galley.oci.cgroups",
        "galley.oci.cgroupwarm",
    )
    for heavy in (*ours, "subprocess", "argparse", "dataclasses", "typing"):
        assert f" {heavy}\n" not in result.stderr, heavy
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-IS", GALLEY_RUNC, "--version"], check=True, capture_output=True
    )
    assert time.monotonic() - t0 < 1.0


@pytest.mark.root
def test_delete_command_stays_light(runtime: Runtime, bundle: Bundle) -> None:
    """`delete` of a container with its own mount namespace (every ordinary one) loads no
    ctypes layer, and no cgroup manager: the cgroup, empty, goes by the paths state.json
    saved (galley.oci.cgroups.record.remove_idle)."""
    pid_file = runtime.root.parent / "init.pid"
    cid = runtime.detached(bundle, "create", pid_file=pid_file)
    runtime("start", cid, check=True)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while st.process_start_time(pid) is not None:  # None once a zombie, or gone
        assert time.monotonic() < deadline, "the container's `true` did not exit"
        time.sleep(0.005)
    directories = st.ContainerState.load(str(runtime.root), cid).cgroup_manager().paths.values()
    assert directories and all(os.path.isdir(d) for d in directories)
    cmd = ["/usr/bin/python3", "-IS", "-X", "importtime", GALLEY_RUNC, "--root", str(runtime.root)]
    result = subprocess.run([*cmd, "delete", cid], capture_output=True, text=True, check=True)
    heavy = ("galley.kernel.ffi", "_ctypes", "galley.oci.launch", "galley.oci.cgroups.factory")
    for module in (*heavy, "galley.oci.cgroups.v1", "galley.oci.cgroups.v2"):
        assert f" {module}\n" not in result.stderr, module
    assert runtime("state", cid).returncode == 1
    assert not any(os.path.exists(d) for d in directories)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_error_stays_light(runtime: Runtime, log_format: str) -> None:
    """containerd asks `state` and `delete` of containers that are gone, with --log-format
    json: the error line costs no json package (re and enum, ~10 ms)."""
    log = runtime.root.parent / f"log.{log_format}"
    cmd = ["/usr/bin/python3", "-IS", "-X", "importtime", GALLEY_RUNC, "--root", str(runtime.root)]
    cmd += ["--log", str(log), "--log-format", log_format, "state", "gone"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.endswith('\ncontainer "gone" does not exist\n')
    for heavy in ("json", "re", "enum"):
        assert f" {heavy}\n" not in result.stderr, heavy
    line = log.read_text()
    if log_format == "json":
        assert json.loads(line) == {
            "level": "error",
            "msg": 'container "gone" does not exist',
            "time": ANY,
        }
    else:
        assert line.endswith(' level=error msg="container \\"gone\\" does not exist"\n')


def test_fake_container_state_list_ps(
    any_runtime: Runtime, runtime: Runtime, fake: st.ContainerState
) -> None:
    state = json.loads(runtime("state", fake.id, check=True).stdout)
    assert list(state) == RUNC_STATE_KEYS
    assert state["status"] == "running"
    assert state["pid"] == fake.pid
    assert state["ociVersion"] == st.RUNTIME_OCI_VERSION
    listed = json.loads(runtime("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == [fake.id]
    assert listed[0]["owner"] == "root"
    assert runtime("list", "-q", check=True).stdout == f"{fake.id}\n"
    table = runtime("list", check=True).stdout.splitlines()
    assert table[1].split()[:3] == [fake.id, str(fake.pid), "running"]
    assert json.loads(runtime("ps", "--format", "json", fake.id, check=True).stdout) == [fake.pid]
    ps = runtime("ps", fake.id, check=True).stdout.splitlines()
    assert ps[0].split()[:2] == ["UID", "PID"]
    assert [line.split()[1] for line in ps[1:]] == [str(fake.pid)]


def test_fake_container_created_state(runtime: Runtime, fake: st.ContainerState) -> None:
    os.mkfifo(st.fifo_path(fake.dir))
    assert json.loads(runtime("state", fake.id, check=True).stdout)["status"] == "created"
    started = runtime("pause", fake.id)  # no cgroup here: pause reaches the (missing) manager
    assert started.returncode == 1


def test_fake_container_refusals(runtime: Runtime, fake: st.ContainerState) -> None:
    start = runtime("start", fake.id)
    assert start.returncode == 1
    assert "cannot start an already running container" in start.stderr
    delete = runtime("delete", fake.id)
    assert delete.returncode == 1
    assert f"cannot delete container {fake.id} that is not stopped: running" in delete.stderr
    resume = runtime("resume", fake.id)
    assert resume.returncode == 1
    assert "container not paused" in resume.stderr
    bad = runtime("kill", fake.id, "NOSUCHSIG")
    assert bad.returncode == 1
    assert 'msg="unknown signal \\"NOSUCHSIG\\""' in bad.stderr  # runc's %q, logfmt-quoted
    assert fake.alive()


@pytest.mark.parametrize("sig", ["TERM", "SIGKILL", "9", "sigint"])
def test_fake_container_kill_then_delete(
    runtime: Runtime, fake: st.ContainerState, tmp_path: Path, sig: str
) -> None:
    runtime("kill", fake.id, sig, check=True)
    deadline = time.monotonic() + 5
    while json.loads(runtime("state", fake.id, check=True).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    again = runtime("kill", fake.id)
    assert again.returncode == 1
    assert "container not running" in again.stderr
    runtime("delete", fake.id, check=True)
    assert not Path(fake.dir).exists()
    hook_state = json.loads((tmp_path / "poststop.json").read_text())
    assert hook_state["id"] == fake.id
    assert hook_state["status"] == "stopped"


def test_fake_container_delete_force(
    runtime: Runtime, fake: st.ContainerState, tmp_path: Path
) -> None:
    runtime("delete", "--force", fake.id, check=True)
    assert not fake.alive()
    assert not Path(fake.dir).exists()
    assert (tmp_path / "poststop.json").exists()
    assert runtime("list", "-q", check=True).stdout == ""


def test_fake_container_events_needs_cgroup(runtime: Runtime, fake: st.ContainerState) -> None:
    result = runtime("events", "--stats", "--interval", "bogus", fake.id)
    assert result.returncode == 1
    assert 'invalid value \\"bogus\\" for flag -interval: parse error' in result.stderr
    result = runtime("events", "--stats", "--interval", "-1s", fake.id)
    assert result.returncode == 1
    assert 'msg="duration interval must be greater than 0"' in result.stderr


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_spec_and_features_match_runc_shape(runtime: Runtime, tmp_path: Path) -> None:
    assert RUNC is not None
    docs = {}
    for name, binary in (("galley", runtime.binary), ("runc", RUNC)):
        bundle = tmp_path / name
        bundle.mkdir()
        subprocess.run([binary, "spec", "--bundle", str(bundle)], check=True)
        docs[name] = json.loads((bundle / "config.json").read_text())
    ours, theirs = docs["galley"], docs["runc"]
    assert set(ours) == set(theirs)
    assert [m["destination"] for m in ours["mounts"]] == [
        m["destination"] for m in theirs["mounts"]
    ]
    # with a cgroup namespace on a pure cgroup v2 host only, on both (runc 1.1.5 too: the
    # device machine, session 38)
    assert ours["linux"]["namespaces"] == theirs["linux"]["namespaces"]
    cgroup_namespace = {"type": "cgroup"} in ours["linux"]["namespaces"]
    assert cgroup_namespace == (detect().mode == "v2")
    assert ours["linux"]["maskedPaths"] == theirs["linux"]["maskedPaths"]
    assert ours["process"]["capabilities"] == theirs["process"]["capabilities"]
    features = {}
    for name, binary in (("galley", runtime.binary), ("runc", RUNC)):
        out = subprocess.run([binary, "features"], check=True, capture_output=True, text=True)
        features[name] = json.loads(out.stdout)
    assert set(features["runc"]) <= set(features["galley"])
    assert set(features["runc"]["linux"]) <= set(features["galley"]["linux"])
    assert set(features["runc"]["mountOptions"]) <= set(features["galley"]["mountOptions"])
    assert set(features["runc"]["linux"]["namespaces"]) <= set(
        features["galley"]["linux"]["namespaces"]
    )
    seccomp = "io.github.seccomp.libseccomp.version"  # the same library on both
    assert features["galley"]["annotations"][seccomp] == features["runc"]["annotations"][seccomp]
    assert list(features["galley"]["annotations"]) == sorted(features["galley"]["annotations"])


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
@pytest.mark.parametrize("flags", [[], ["--rootless"]])
def test_spec_writes_runcs_bytes(runtime: Runtime, tmp_path: Path, flags: list[str]) -> None:
    """`spec` writes runc's config.json byte for byte (its fields in runc's order, tabs), the
    ociVersion aside: galley's is the runtime-spec version it implements."""
    assert RUNC is not None
    texts = {}
    for name, binary in (("galley", runtime.binary), ("runc", RUNC)):
        bundle = tmp_path / name
        bundle.mkdir()
        subprocess.run([binary, "spec", *flags, "--bundle", str(bundle)], check=True)
        texts[name] = (bundle / "config.json").read_text()
    theirs = json.loads(texts["runc"])["ociVersion"]
    ours = texts["galley"].replace(
        f'"ociVersion": "{st.RUNTIME_OCI_VERSION}"', f'"ociVersion": "{theirs}"', 1
    )
    assert ours == texts["runc"]


@pytest.mark.parametrize(
    ("tz", "zone"),
    [
        ("Asia/Kolkata", "+05:30"),
        (":America/St_Johns", "-03:30"),  # a leading colon; a negative offset in minutes
        ("/usr/share/zoneinfo/Asia/Tokyo", "+09:00"),
        ("", "Z"),
        ("UTC", "Z"),
        ("IST-5:30", "Z"),  # a POSIX rule: the C library reads it, Go falls back to UTC
        ("Nowhere/Town", "Z"),  # no such zone: UTC
    ],
)
def test_log_lines_carry_the_local_time_as_go_writes_it(
    any_runtime: Runtime, tz: str, zone: str
) -> None:
    """runc's logrus stamps a line with the local time in RFC 3339 ("Z" for a zero offset);
    galley wrote UTC whatever $TZ said."""
    env = {**os.environ, "TZ": tz}
    text = any_runtime("state", "gone", env=env).stderr
    assert re.match(rf'time="\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d{re.escape(zone)}" ', text), text
    log = any_runtime.root.parent / f"log-{any_runtime.root.name}.json"
    any_runtime("--log", str(log), "--log-format", "json", "state", "gone", env=env)
    assert json.loads(log.read_text().splitlines()[-1])["time"].endswith(zone)


def test_log_lines_without_tz_carry_etc_localtimes_zone(any_runtime: Runtime) -> None:
    """Without $TZ, Go (and the C library) read /etc/localtime: here a zone bound over it in
    a mount namespace of the command's own."""
    zone = "/usr/share/zoneinfo/Asia/Kolkata"
    argv = [any_runtime.binary, "--root", str(any_runtime.root), "state", "gone"]
    script = f'mount --bind {zone} /etc/localtime && exec "$@"'
    env = {k: v for k, v in os.environ.items() if k != "TZ"}
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 1
    assert re.match(r'time="[-\dT:]+\+05:30" level=error', result.stderr), result.stderr


def test_debug_log_lines(runtime: Runtime, fake: st.ContainerState, tmp_path: Path) -> None:
    log = tmp_path / "debug.log"
    runtime(
        "--debug", "--log", str(log), "--log-format", "json", "kill", fake.id, "KILL", check=True
    )
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "debug"
    assert f"container_id={fake.id}" in entry["msg"]
    assert "signal=9 " in entry["msg"]


def test_delete_force_clears_a_half_created_container(runtime: Runtime) -> None:
    """A create killed before state.json was written leaves only the reserved directory."""
    st.reserve(str(runtime.root), "half")
    assert runtime("state", "half").returncode == 1
    assert runtime("delete", "half").returncode == 1
    runtime("delete", "--force", "half", check=True)
    assert not (runtime.root / "half").exists()


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["kill", "gone", "NOSUCHSIG"], 1, "does not exist"),  # the container before the signal
        (["nosuchcommand"], 3, "No help topic for 'nosuchcommand'"),  # urfave/cli's status
        (["exec", "gone", "true"], 255, 'msg="exec failed: container '),
        (["exec"], 1, "requires"),  # a usage error: not "exec failed", not 255
        (["state"], 1, "requires exactly 1 argument(s)"),
        (["help", "nosuch"], 3, "No help topic for 'nosuch'"),
        (["state", ""], 1, 'msg="container id cannot be empty"'),  # given: no usage error
        (["exec", "", "true"], 255, 'msg="exec failed: container id cannot be empty"'),
        (["create", "-b", "/nonexistent", "a/b"], 1, "chdir /nonexistent: no such file"),
        (["run", "-b", "/nonexistent", ""], 1, "chdir /nonexistent"),  # the spec, then the id
    ],
)
def test_errors_come_in_runcs_order_with_its_status(
    any_runtime: Runtime, argv: list[str], status: int, message: str
) -> None:
    result = any_runtime(*argv)
    assert (result.returncode, message in result.stderr) == (status, True), result.stderr


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["-debug", "list", "-quiet"], 0, ""),  # Go's flag package: one dash for a long name
        (["--log=", "--log-format=", "list", "--q"], 0, ""),  # "": the defaults
        (["--debug=false", "-v=0", "--help=f", "list"], 0, ""),
        (["--log-format", "JSON", "list"], 1, 'msg="invalid log-format: JSON"'),  # no usage
        (["--debug=yes", "list"], 1, "for -debug: parse error"),
        (["kill", "gone", "--all", "-9"], 1, "flag provided but not defined: -9"),
        (["kill", "gone", "--", "-9"], 1, "does not exist"),
        (["events", "--stats", "--interval=1", "gone"], 1, "for flag -interval: parse error"),
        (["events", "--stats", "--interval=1m", "gone"], 1, "does not exist"),
        (["exec", "-g", "0x10", "gone", "true"], 1, 'ParseInt: parsing \\"0x10\\": invalid'),
        (["exec", "--preserve-fds", "0x1", "gone", "true"], 255, "does not exist"),
        (["update", "--pids-limit", "1" * 20, "gone"], 1, "value out of range"),
    ],
)
def test_go_flag_syntax_as_runc_reads_it(
    any_runtime: Runtime, argv: list[str], status: int, message: str
) -> None:
    """runc's parser is Go's flag package under urfave/cli: a long option after one dash, a
    boolean's value after "=", Go's integer literals and durations; an empty --log or
    --log-format is the default, an unknown format an error without the usage."""
    result = any_runtime(*argv)
    assert (result.returncode, message in result.stderr) == (status, True), result.stderr
    if status == 1 and "log-format" in message:
        assert result.stdout == ""


def test_options_and_a_double_dash_around_a_live_container(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """`delete --force=false` of a running container is refused as without --force; after
    exec's id every word is the program's, a "--" too (runc 1.1 execs it); before the id a
    "--" ends the options."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    assert any_runtime("delete", "--force=false", cid).returncode == 1
    assert any_runtime("exec", cid, "--", "true").returncode == 255
    assert 'exec: \\"--\\": executable file not found' in any_runtime("exec", cid, "--").stderr
    assert any_runtime("exec", "--", cid, "true").returncode == 0
    assert any_runtime("kill", cid, "--", "0").returncode == 0
    assert any_runtime("delete", "-force=t", cid).returncode == 0
    assert any_runtime("state", cid).returncode == 1


def test_ps_pause_and_resume_read_rootless_first(any_runtime: Runtime, bundle: Bundle) -> None:
    """runc's ps, pause and resume read --rootless before anything else: a bad value fails
    them (before the container is looked up), and a rootless cgroup manager is warned of."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    for command in ("ps", "pause", "resume"):
        refused = any_runtime("--rootless", "x", command, "gone")
        assert refused.returncode == 1
        assert 'parsing \\"x\\": invalid syntax' in refused.stderr, refused.stderr
        warned = any_runtime("--rootless", "true", command, cid)
        assert warned.returncode == 0, warned.stderr
        words = f"{command} may fail if you don't have the full access to cgroups"
        assert f'level=warning msg="{Path(any_runtime.binary).name} {words}"' in warned.stderr
    assert any_runtime("--rootless", "false", "pause", cid).stderr == ""
    any_runtime("resume", cid, check=True)


def test_exec_user_is_read_as_gos_atoi_reads_it(any_runtime: Runtime, bundle: Bundle) -> None:
    """--user's numbers as runc's strconv.Atoi reads them: a sign, ASCII digits, nothing
    else (Python's int() took " 1", "1_0" and "\u0661")."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    for text in (" 1", "1_0", "\u0661", "1000:", "0:x"):
        assert any_runtime("exec", "--user", text, cid, "true").returncode == 255, text
    assert any_runtime("exec", "--user", "+0:-0", cid, "true").returncode == 0


def test_preserved_fds_the_caller_did_not_pass_are_refused(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """--preserve-fds 10 with only stdio open: runc cannot stat the fds it was to pass, and
    neither exec nor create goes on (galley-runc passed what it found, nothing)."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    result = any_runtime("exec", "--preserve-fds", "10", cid, "true")
    assert result.returncode == 255
    assert "exec failed: unable to stat preserved-fd " in result.stderr, result.stderr
    other = any_runtime.new_id()
    result = any_runtime("create", "--preserve-fds", "10", "--bundle", str(bundle.path), other)
    assert result.returncode == 1
    assert "unable to stat preserved-fd " in result.stderr, result.stderr
    assert any_runtime("state", other).returncode == 1


@pytest.mark.parametrize("command", ["checkpoint", "restore"])
def test_checkpoint_and_restore_are_refused_plainly(runtime: Runtime, command: str) -> None:
    """runc's commands through CRIU (which cannot run on this kernel): a line saying galley
    lacks them and status 1, as a failed runc checkpoint, not an unknown command's 3."""
    result = runtime(command, "--image-path", "/nonexistent", "c1")
    assert result.returncode == 1
    assert f"{command}: galley-runc does not {command} containers" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["state"], '"state" requires exactly 1 argument(s)'),
        (["kill", "a", "b", "c"], '"kill" requires a maximum of 2 argument(s)'),
        (["ps"], '"ps" requires a minimum of 1 argument(s)'),
        (["state", "--bogus", "x"], "flag provided but not defined: -bogus"),
        (["create", "--preserve-fds", "x", "c"], 'invalid value "x" for flag -preserve-fds'),
        # The value as Go's %q writes it: one line whatever it holds.
        (["update", "--pids-limit", 'a"b\n', "c"], 'invalid value "a\\"b\\n" for flag'),
        (["delete", "--force=\x1b", "c"], 'invalid boolean value "\\x1b" for -force'),
    ],
)
def test_usage_errors_go_to_the_log_with_the_help_on_stdout(
    any_runtime: Runtime, tmp_path: Path, argv: list[str], message: str
) -> None:
    """As runc's: exit 1, "Incorrect Usage" and the command's help on stdout, the error in
    the --log file, where containerd's shim reads a runtime's errors (galley wrote it to
    stderr only)."""
    log = tmp_path / "log.json"
    result = any_runtime("--log", str(log), "--log-format", "json", *argv)
    assert result.returncode == 1
    assert result.stdout.startswith("Incorrect Usage")
    assert argv[0] in result.stdout  # the command's own help
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and message in entry["msg"], entry


def test_exec_errors_read_as_runcs(any_runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    result = any_runtime("exec", cid, "/nosuch")
    assert result.returncode == 255
    assert 'msg="exec failed: unable to start container process: exec: \\"/nosuch\\": ' in (
        result.stderr
    )


@pytest.mark.parametrize("argv", [["help"], ["help", "create"], ["h", "state"]])
def test_help_command(any_runtime: Runtime, argv: list[str]) -> None:
    """urfave/cli's `help [COMMAND]`, which tools and people type to runc."""
    result = any_runtime(*argv)
    assert result.returncode == 0 and result.stderr == ""
    if len(argv) > 1:
        assert f"{argv[1]} " in result.stdout


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["-h"], ""),
        (["--help"], ""),
        (["help"], ""),
        (["list", "-h"], " list"),
        (["state", "--help"], " state"),
        (["help", "create"], " create"),
    ],
)
def test_help_is_laid_out_as_runcs(any_runtime: Runtime, argv: list[str], named: str) -> None:
    """urfave/cli's layout, which runc's own tests read (help.bats): "NAME:", then the
    program (and command) and what it does; USAGE; a command's options long name first,
    with " value" after each spelling of one that takes a value."""
    result = any_runtime(*argv)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "NAME:"
    assert re.fullmatch(rf"   \S*runc{named} - .+", lines[1]), lines[1]
    assert f"\n\nUSAGE:\n   {Path(any_runtime.binary).name}" in result.stdout
    if named == " list":
        assert re.search(r"^   --format value, -f value +\S", result.stdout, re.MULTILINE)
    if not named:
        assert "\nCOMMANDS:\n" in result.stdout and "\nGLOBAL OPTIONS:\n" in result.stdout


def test_a_console_socket_for_a_foreground_process_is_refused(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """run and exec without --detach wait for the process and relay its terminal: runc
    refuses a console socket there, and so does galley-runc (it used to ignore it)."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    sock = str(tmp_path / "console.sock")
    result = any_runtime("exec", "-t", "--console-socket", sock, cid, "true")
    assert result.returncode == 255 and "cannot use console socket" in result.stderr
    bundle.config["process"]["terminal"] = True
    other = any_runtime.new_id()
    result = any_runtime("run", "--console-socket", sock, "-b", str(bundle.write()), other)
    assert result.returncode == 1 and "cannot use console socket" in result.stderr
    assert any_runtime("state", other).returncode == 1


def test_the_log_is_let_go_when_a_command_is_done_in_process(tmp_path: Path) -> None:
    """galley.oci.cli.main in one process (bench/library_worker.py runs every command so)
    holds --log open for a command only: no fd is left behind per command."""
    from galley.oci.cli import main  # noqa: PLC0415

    log = tmp_path / "log.json"
    argv = ["--root", str(tmp_path / "state"), "--log", str(log), "--log-format", "json"]
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        assert main([*argv, "list", "-q"]) == 0
        assert main([*argv, "state", "nothing-here"]) == 1
    assert len(os.listdir("/proc/self/fd")) == before
    assert log.read_text().count('"container \\"nothing-here\\" does not exist"') == 3


def test_the_collector_comes_back_without_a_full_traversal() -> None:
    """A foreground wait turns the collector on again. In galley-runc (collector off since
    the start) what is alive by then is frozen first, so the first collection does not walk
    every object the imports made; a caller that never turned it off keeps its objects
    collectable."""
    script = (
        "import gc\n"
        "from galley.oci.cli import collect_garbage\n"
        "gc.disable()\n"
        "keep = [[] for _ in range(5000)]\n"
        "collect_garbage()\n"
        "print(gc.isenabled(), gc.get_freeze_count() >= 5000)\n"
        "gc.unfreeze()\n"
        "collect_garbage()\n"
        "print(gc.isenabled(), gc.get_freeze_count())\n"
    )
    assert fresh_python(script).split("\n") == ["True True", "True 0", ""]


@pytest.mark.parametrize(
    ("value", "written"),
    [("plain", "plain"), ("a b", '"a b"'), ("", ""), ("x\x1by\x7f", r'"x\x1by\x7f"'),
     ('é\n"q"\\', r'"é\n\"q\"\\"'), ("\x85\u2028", r'"\u0085\u2028"'),
     ("\U0001f600", '"\U0001f600"'), ("\U000e0001", r'"\U000e0001"')],
)  # fmt: skip
def test_a_text_log_value_is_written_as_logrus_writes_it(value: str, written: str) -> None:
    """Bare when logrus leaves it bare, else Go's %q (strconv.Quote)."""
    from galley.oci.cli import logfmt_value  # noqa: PLC0415

    assert logfmt_value(value) == written


@pytest.mark.parametrize("command", [["features"], ["list"], ["--help"]])
def test_output_without_a_reader_ends_as_runc_ends(
    any_runtime: Runtime, command: list[str]
) -> None:
    """What a command prints goes to a pipe whose reader is gone (`galley-runc list | true`):
    killed by SIGPIPE as runc is (a Go program), not a BrokenPipeError traceback and status 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [any_runtime.binary, "--root", str(any_runtime.root), *command],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == -signal.SIGPIPE, result
    assert "Traceback" not in result.stderr, result.stderr


def test_a_usage_error_shows_the_help_before_the_error(any_runtime: Runtime) -> None:
    """On one terminal (or one pipe for both streams) runc's help comes first and its error
    last; galley-runc's help sat in stdout's buffer until exit, after the error."""
    argv = [any_runtime.binary, "--root", str(any_runtime.root), "state"]
    result = subprocess.run(
        argv, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert result.returncode == 1
    assert result.stdout.startswith("Incorrect Usage.")
    assert result.stdout.rstrip().splitlines()[-1].endswith('requires exactly 1 argument(s)"')
