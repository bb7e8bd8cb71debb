"""Hostile and malformed input found by fuzzing galley-runc (session 7): each used to run a
container it should have refused, hang, exhaust memory or end in a traceback. Each now gets
one line naming what is wrong, exit status 1, and leaves nothing behind — or runs as runc
runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.oci.conftest import Bundle, Runtime, run_bundle

pytestmark = pytest.mark.root


def refused(runtime: Runtime, bundle: Bundle, message: str, *extra: str) -> None:
    res = runtime("run", *extra, "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1, res.stdout
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert runtime("list", "-q").stdout == ""


def test_uid_of_all_ones_is_refused_not_root(runtime: Runtime, bundle: Bundle) -> None:
    """(uid_t)-1 means "leave unchanged" to setresuid: the process stayed root."""
    bundle.config["process"]["user"] = {"uid": 2**32 - 1, "gid": 2**32 - 1}
    bundle.config["process"]["args"] = ["id"]
    refused(runtime, bundle, "process.user.uid: 4294967295: uids and gids must be in range")


def test_exec_user_of_all_ones_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    res = runtime("exec", "--user", "4294967295:4294967295", cid, "id")
    assert res.returncode == 255  # runc's status for a failed exec
    assert "--user: 4294967295: uids and gids must be in range 0-2147483647" in res.stderr
    assert "uid=0" not in res.stdout


def test_update_with_an_empty_device_access_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    """ "" is no access: it became "rwm", every device, on the live container."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    rules = {"devices": [{"allow": True, "type": "a", "access": ""}]}
    res = runtime("update", "-r", "-", cid, input=json.dumps(rules))
    assert res.returncode == 1
    assert "resources.devices[0].access: cannot be empty" in res.stderr, res.stderr


def test_huge_preserve_fds_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    refused(
        runtime, bundle, "--preserve-fds 2147483648: more fds than", "--preserve-fds", "2147483648"
    )


def test_events_interval_must_be_positive(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    for interval in ("0s", "-1s"):
        res = runtime("events", "--interval", interval, cid, timeout=10)
        assert res.returncode == 1
        assert "duration interval must be greater than 0" in res.stderr


def test_an_endless_config_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    config = bundle.write() / "config.json"
    config.unlink()
    config.symlink_to("/dev/zero")
    res = runtime("run", "-b", str(bundle.path), runtime.new_id())
    assert res.returncode == 1
    assert "config.json: larger than 32 MiB" in res.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "JSON specification file config.json not found"),  # runc's words
        ("[]", "config: must be an object, not array"),
        ("process-array", "process: must be an object, not array"),
    ],
    ids=["missing", "array", "process-array"],
)
def test_run_reads_a_bad_config_once_and_refuses_it(
    runtime: Runtime, bundle: Bundle, content: str | None, message: str
) -> None:
    """`run` reads config.json before create (for process.terminal) and hands it over: what
    it does not understand there is create's to refuse, in one line, leaving nothing."""
    if content == "process-array":
        bundle.config["process"] = []
    config = bundle.write() / "config.json"
    if content is None:
        config.unlink()
    elif content == "[]":
        config.write_text(content)
    cid = runtime.new_id()
    res = runtime("run", "-b", str(bundle.path), cid)
    assert res.returncode == 1
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (runtime.root / cid).exists()


def test_deeply_nested_json_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    (bundle.write() / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    res = runtime("run", "-b", str(bundle.path), runtime.new_id())
    assert res.returncode == 1
    assert "config.json: invalid JSON: exceeded max depth" in res.stderr


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{ invalid", "invalid character 'i' looking for beginning of object key string"),
        (b'{"ociVersion": "1.0.2",}', "invalid character '}' looking for beginning of object key"),
        (b'{"ociVersion": tru', "unexpected EOF"),
        (b"\xff\xfe", "invalid character '\u00ff' looking for beginning of value"),
    ],
)
def test_a_config_that_is_no_json_is_refused_in_gos_words(
    any_runtime: Runtime, bundle: Bundle, content: bytes, words: str
) -> None:
    """runc's words are its Go decoder's; galley-runc gave Python's json's ("Expecting
    property name enclosed in double quotes: line 1 column 3 (char 2)")."""
    (bundle.write() / "config.json").write_bytes(content)
    res = any_runtime("run", "-b", str(bundle.path), any_runtime.new_id())
    assert res.returncode == 1
    assert words in res.stderr, res.stderr


def test_exec_process_file_that_is_not_json(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    for content in (b"", b"{nope", b"\xff\xfe"):
        process = tmp_path / "process.json"
        process.write_bytes(content)
        res = runtime("exec", "--process", str(process), cid)
        assert res.returncode == 255
        assert "--process: invalid JSON" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


def test_a_seccomp_filter_too_big_for_the_kernel_fails_create(
    runtime: Runtime, bundle: Bundle
) -> None:
    """It used to fail only at start, in the trampoline, as a container that exited 127."""
    rules = [
        {
            "names": ["write"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}],
        }
        for v in range(100, 4300)
    ]
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    bundle.config["process"]["noNewPrivileges"] = True
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1
    assert "linux.seccomp: the filter compiles to" in res.stderr, res.stderr
    assert "the kernel loads at most 4096" in res.stderr
    assert runtime("list", "-q").stdout == ""


def test_null_pids_limit_is_unset(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["resources"] = {"pids": {"limit": None}}
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [
        ("RLIMIT_FSIZE", 0, "0"),
        ("RLIMIT_FSIZE", 100, "0"),  # busybox counts 512-byte blocks
        ("RLIMIT_FSIZE", 2**63, str(2**63 // 512)),
        ("RLIMIT_FSIZE", 2**64 - 1, "unlimited"),
        ("RLIMIT_DATA", 10 << 20, "10240"),
        ("RLIMIT_AS", 64 << 20, "65536"),
    ],
)
def test_small_and_huge_limits_run_as_under_runc(
    any_runtime: Runtime, bundle: Bundle, kind: str, value: int, shown: str
) -> None:
    """A small RLIMIT_FSIZE refused the trampoline's memfd write (EFBIG), a small
    RLIMIT_DATA or AS failed the stage's own Python (MemoryError): the limits now come in
    two halves, the rest just before execve."""
    bundle.config["process"]["rlimits"] = [{"type": kind, "soft": value, "hard": value}]
    flag = {"RLIMIT_FSIZE": "-f", "RLIMIT_DATA": "-d", "RLIMIT_AS": "-v"}[kind]
    bundle.config["process"]["args"] = ["sh", "-c", f"ulimit {flag}"]
    res = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [shown]


@pytest.mark.parametrize(("value", "shown"), [(1 << 20, "1024"), (10 << 20, "10240")])
def test_a_small_data_limit_with_a_filter_loaded_early_runs_as_under_runc(
    any_runtime: Runtime, bundle: Bundle, value: int, shown: str
) -> None:
    """A filter loaded without noNewPrivileges comes before the user's ids are taken, and the
    rlimits before it (prlimit64 may be refused after): the stage's Python after them is a
    few syscalls, the program found and HOME read before (1 MiB failed with MemoryError)."""
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_DATA", "soft": value, "hard": value}]
    bundle.config["process"]["noNewPrivileges"] = False
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    bundle.config["process"]["args"] = ["sh", "-c", "ulimit -d; id -u"]
    res = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [shown, "1000"]


def test_repeated_cpu_ranges_cost_their_length(runtime: Runtime, bundle: Bundle) -> None:
    """ "0-8191" ten thousand times was 82 million set insertions (5 s)."""
    cpu = min(os.sched_getaffinity(0))
    bundle.config["process"]["execCPUAffinity"] = {"initial": ",".join([f"{cpu}-{cpu}"] * 20000)}
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id(), timeout=20)
    assert res.returncode == 0, res.stderr


def test_nul_in_a_mount_option_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    """The kernel read "mode=755" and dropped the size limit after it."""
    dev = next(m for m in bundle.config["mounts"] if m["destination"] == "/dev")
    dev["options"] = ["nosuid", "mode=755\0", "size=65536k"]
    refused(runtime, bundle, "must not contain a NUL character")


def test_a_memory_limit_too_low_to_start_says_so(runtime: Runtime, bundle: Bundle) -> None:
    """The kernel OOM-kills the stage, which cannot say why: "the init pipe exited"."""
    bundle.config["linux"]["resources"] = {"memory": {"limit": 1}}
    refused(runtime, bundle, "linux.resources.memory.limit 1: too low to start the container")


def test_a_memory_limit_too_low_without_an_oom_killer_says_so_too(
    runtime: Runtime, bundle: Bundle
) -> None:
    """disableOOMKiller with it: the stage, over the limit, waited for memory for ever and
    `run` with it (runc fails to write the limit). The OOM killer is turned off only once
    the stage has exec'd, so the limit is reported as above."""
    bundle.config["linux"]["resources"] = {"memory": {"limit": 4096, "disableOOMKiller": True}}
    refused(runtime, bundle, "linux.resources.memory.limit 4096: too low to start the container")


V1_OOM_CONTROL = Path("/sys/fs/cgroup/memory/memory.oom_control")


@pytest.mark.skipif(not V1_OOM_CONTROL.exists(), reason="no v1 memory hierarchy")
def test_a_container_that_starts_has_its_oom_killer_off(runtime: Runtime, bundle: Bundle) -> None:
    """...and turned off it is, once the stage has exec'd (v1 only: v2 has no such switch)."""
    bundle.config["linux"]["resources"] = {"memory": {"limit": 64 << 20, "disableOOMKiller": True}}
    bundle.config["process"]["args"] = ["grep", "oom_kill_disable", str(V1_OOM_CONTROL)]
    result = runtime("run", "-b", str(bundle.write()), runtime.new_id(), timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "oom_kill_disable 1\n"


def test_an_error_quoting_a_huge_value_keeps_its_ends(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["args"] = ["x" * 100_000]
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1
    assert len(res.stderr) < 5000, len(res.stderr)
    assert "characters left out" in res.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cwd": "/etc/passwd"}, "process.cwd '/etc/passwd': openat2 etc/passwd: not a directory"),
        ({"mount": {"destination": "/x", "type": "tmpfs", "source": "t", "options": ["size=x"]}},
         "mounts[7] '/x': mount tmpfs t on "),
        ({"sysctl": {"net.ipv4.ip_forward": "x"}}, "linux.sysctl 'net.ipv4.ip_forward': "),
        ({"listener": "/nonexistent/agent.sock"},
         "failed to connect with seccomp agent at /nonexistent/agent.sock: "
         "no such file or directory"),
    ],
)  # fmt: skip
def test_a_kernel_refusal_reads_in_plain_words(
    runtime: Runtime, bundle: Bundle, change: dict[str, object], message: str
) -> None:
    """What the kernel refused, named with the field and in words, never Python's
    "[Errno 20] ..." form of the error."""
    if "cwd" in change:
        bundle.config["process"]["cwd"] = change["cwd"]
    if "mount" in change:
        bundle.config["mounts"].append(change["mount"])
    if "sysctl" in change:
        bundle.config.setdefault("linux", {})["sysctl"] = change["sysctl"]
    if "listener" in change:
        bundle.config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": change["listener"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        }
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1, res.stdout
    assert message in res.stderr, res.stderr
    assert "Errno" not in res.stderr, res.stderr


@pytest.mark.parametrize("damage", ["{trunc", "", '{"id": "other", "pid": 1}', "[]"])
def test_a_damaged_state_file_makes_nothing_removed_on_a_guess(
    any_runtime: Runtime, bundle: Bundle, damage: str
) -> None:
    """A running container whose state.json is damaged (a full disk, a hand edit): delete
    --force fails, as runc's, and leaves the directory and the process for a person to look
    at. galley-runc treated it as a create killed before its state and removed the directory,
    leaving the container running, unseen. list says it on stderr and lists the others."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    pid = json.loads(any_runtime("state", cid, check=True).stdout)["pid"]
    state_file = any_runtime.root / cid / "state.json"
    saved = state_file.read_bytes()
    state_file.write_text(damage)
    try:
        res = any_runtime("delete", "--force", cid)
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert state_file.exists()
        os.kill(pid, 0)  # still running
        listed = any_runtime("list", "-q")
        assert (listed.returncode, listed.stdout) == (0, "")
        assert f"load container {cid}" in listed.stderr
        if "galley" in any_runtime.binary:
            assert "corrupt state.json" in res.stderr and "by hand" in res.stderr, res.stderr
    finally:
        state_file.write_bytes(saved)  # for the fixture's delete


SH_PATH = "/sbin:/usr/sbin:/bin:/usr/bin"  # busybox sh's PATH when it has none
NULL_PROBE = "id -u; id -G; echo ${HOME-nohome} ${PATH-nopath}; grep CapEff /proc/self/status"


def test_null_members_read_as_absent(any_runtime: Runtime, bundle: Bundle) -> None:
    """Go's encoding/json leaves a member that reads null at its zero value, so runc takes
    `"env": null` (what Go writes for a nil slice) as no env; galley-runc ended in "'NoneType'
    object is not iterable" (found by mutating configs, session 26)."""
    config = bundle.config
    config["process"].update(args=["/bin/sh", "-c", NULL_PROBE], env=None, rlimits=None)
    config["process"]["user"] = {"uid": None, "gid": None, "additionalGids": None}
    config["process"]["capabilities"] = {"bounding": None, "effective": None}
    for mount in config["mounts"]:
        mount["options"] = None
    config["linux"].update(resources=None, seccomp=None, maskedPaths=None, sysctl=None)
    config.update(hooks=None, annotations=None, hostname=None)
    res = run_bundle(any_runtime, bundle)
    no_caps = "CapEff:\t0000000000000000"
    assert res.stdout.splitlines() == ["0", "0", f"/root {SH_PATH}", no_caps]


def test_nan_even_where_runc_ignores_the_member_is_refused(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """NaN is no JSON: runc's decoder refuses the document wherever it stands; galley-runc
    ran the container (Python's json takes it). A number past float64, valid JSON, runs on
    both, and galley-runc's state.json keeps it (as Infinity, which it reads back)."""
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["x-unknown"] = "VALUE"
    config = bundle.write() / "config.json"
    text = config.read_text()
    config.write_text(text.replace('"VALUE"', "1e999"))
    cid = any_runtime.new_id()
    assert any_runtime.popen("run", "-d", "-b", str(bundle.path), cid).wait(timeout=30) == 0
    assert json.loads(any_runtime("state", cid, check=True).stdout)["status"] == "running"
    any_runtime("delete", "-f", cid, check=True)
    config.write_text(text.replace('"VALUE"', "NaN"))
    res = any_runtime("run", "-b", str(bundle.path), any_runtime.new_id())
    assert res.returncode == 1
    refusals = ("invalid character 'N' looking for beginning of value", "NaN is not a JSON value")
    assert any(refusal in res.stderr for refusal in refusals), res.stderr
    assert any_runtime("list", "-q").stdout.strip() == ""


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ("windows", "x"),
        ("vm", {"kernel": {"path": 5}}),
        ("zos", {"devices": [{"uid": -1}]}),
        ("linux.namespaces.0.path", []),  # empty, but no string
    ],
)
def test_a_section_of_the_wrong_shape_is_refused_even_where_unused(
    any_runtime: Runtime, bundle: Bundle, section: str, value: object
) -> None:
    """runc decodes the whole document into its Go types, other platforms' sections too, and
    fails create on a wrong shape; galley-runc ran these (found comparing its validation with
    Go's decoding of specs-go over every field, session 28)."""
    node: Any = bundle.config  # a dict or, under it, a list
    *parents, last = section.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    run_bundle(any_runtime, bundle, status=1)
    assert any_runtime("list", "-q").stdout.strip() == ""


def test_other_platforms_sections_of_the_right_shape_run(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    bundle.config["vm"] = {"kernel": {"path": "/k"}, "hypervisor": {"path": "/h"}}
    bundle.config["windows"] = {"layerFolders": ["C:\\layer"], "servicing": False}
    run_bundle(any_runtime, bundle)


def test_null_members_of_a_process_file_read_as_absent(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["process"]["args"] = ["sleep", "30"]
    cid = any_runtime.detached(bundle)
    process = {
        "args": ["/bin/sh", "-c", NULL_PROBE],
        "cwd": "/",
        "env": None,
        "user": {"uid": 0, "gid": None, "additionalGids": None},
        "capabilities": None,
        "rlimits": None,
        "terminal": None,
    }
    (tmp_path / "process.json").write_text(json.dumps(process))
    res = any_runtime("exec", "-p", str(tmp_path / "process.json"), cid)
    assert res.returncode == 0, res.stderr
    # Without capabilities of its own an exec gets the container's (the default config's).
    caps = "CapEff:\t0000000020000420"
    assert res.stdout.splitlines() == ["0", "0", f"/root {SH_PATH}", caps]


def test_null_members_of_a_resources_file_change_nothing(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """runc 1.1.5's update panics (a nil pointer) on `"pids": null`; it reads an absent
    member as no change, and so does galley-runc a null one."""
    any_runtime = runtime
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["linux"]["resources"] = {"pids": {"limit": 50}}
    cid = any_runtime.detached(bundle)
    resources = {"pids": None, "memory": {"limit": None, "swap": None}, "cpu": None}
    (tmp_path / "resources.json").write_text(json.dumps(resources))
    res = any_runtime("update", "-r", str(tmp_path / "resources.json"), cid)
    assert res.returncode == 0, res.stderr
    # /sys/fs/cgroup/pids/ on a v1 or hybrid host, the cgroup2 mount itself on a pure v2 one
    read = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
    pids = any_runtime("exec", cid, "sh", "-c", read)
    assert pids.stdout.strip() == "50", pids.stderr


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["X"]}, "architectures"),
        ("seccomp", {"defaultAction": "SCMP_ACT_NOTIFY"}, "seccomp.defaultAction: SCMP_ACT_NOTIFY"),
        ("scheduler", {"policy": "SCHED_OTHER", "priority": 5}, "process.scheduler.priority: "),
        ("personality", {"domain": "LINUX", "flags": ["x"]}, "linux.personality.flags: no"),
    ],
)  # fmt: skip
def test_config_errors_found_by_the_stage_before_are_refused_before_any_hook(
    runtime: Runtime, bundle: Bundle, tmp_path: Path, field: str, value: object, message: str
) -> None:
    """These were found only by the create stage, after the createRuntime hooks had run
    (mutfuzz seed 6): a config that cannot run now runs no hook."""
    section = bundle.config["process"] if field == "scheduler" else bundle.config["linux"]
    section[field] = value
    mark = tmp_path / "hook-ran"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran >> {mark}"]}
    bundle.config["hooks"] = {"createRuntime": [hook], "poststop": [hook]}
    refused(runtime, bundle, message)
    assert not mark.exists()
