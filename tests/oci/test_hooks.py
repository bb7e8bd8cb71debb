"""hooks.py: state on stdin, argv/env, failure and timeout semantics per phase."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from galley.errors import FailedPrecondition
from galley.oci.hooks import go_signal_text, run_hooks, run_hooks_warn
from galley.oci.spec import Hook, State

STATE: State = {"ociVersion": "1.0.2", "id": "h1", "status": "created", "pid": 42, "bundle": "/b"}


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_state_on_stdin_args_and_env(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook: Hook = {
        "path": script(tmp_path, "h", f'cat > {out}.json; echo "$0 $1 $2 $FOO $HOME" > {out}\n'),
        "args": ["myname", "one", "two"],
        "env": ["FOO=bar"],
    }
    run_hooks([hook], STATE)
    assert json.loads(Path(f"{out}.json").read_text()) == STATE
    # a script's $0 is its path (the kernel drops argv[0]); env is the whole environment
    assert out.read_text().split() == [hook["path"], "one", "two", "bar"]


def test_zero_pid_and_empty_annotations_are_left_out(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    hook: Hook = {"path": script(tmp_path, "h", f"cat > {out}\n")}
    stopped: State = {**STATE, "status": "stopped", "pid": 0, "annotations": {}}
    run_hooks_warn([hook], stopped, pytest.fail)
    assert json.loads(out.read_text()) == {
        "ociVersion": "1.0.2",
        "id": "h1",
        "status": "stopped",
        "bundle": "/b",
    }


def test_argv0_is_passed(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    hook: Hook = {"path": "/bin/busybox", "args": ["sh", "-c", f"echo $0 > {out}"]}
    run_hooks([hook], STATE)
    assert out.read_text() == "sh\n"


def test_hooks_run_in_order_and_stop_at_first_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hooks: list[Hook] = [
        {"path": script(tmp_path, "a", f"echo a >> {log}\n")},
        {"path": script(tmp_path, "b", f"echo b >> {log}; echo oops >&2; exit 3\n")},
        {"path": script(tmp_path, "c", f"echo c >> {log}\n")},
    ]
    with pytest.raises(FailedPrecondition) as err:
        run_hooks(hooks, STATE)
    assert str(err.value) == (  # runc's words, the hook's index and all it printed
        "error running hook #1: error running hook: exit status 3, stdout: , stderr: oops\n"
    )
    assert log.read_text().split() == ["a", "b"]


def test_timeout_kills_the_hook(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    pid_file = tmp_path / "child.pid"
    body = f"sleep 5 & echo $! > {pid_file}; wait; touch {marker}\n"
    hook: Hook = {"path": script(tmp_path, "slow", body), "timeout": 1}
    t0 = time.monotonic()
    with pytest.raises(FailedPrecondition) as err:
        run_hooks([hook], STATE)
    assert str(err.value) == "error running hook #0: hook ran past specified timeout of 1.0s"
    assert time.monotonic() - t0 < 3
    time.sleep(0.1)
    assert not marker.exists()
    child = int(pid_file.read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


def test_missing_hook_binary(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition) as err:
        run_hooks([{"path": "/nonexistent/h"}], STATE)
    assert str(err.value) == (
        "error running hook #0: fork/exec /nonexistent/h: no such file or directory"
    )


def test_hooks_run_in_the_directory_given(tmp_path: Path) -> None:
    seen = tmp_path / "pwd"
    run_hooks([{"path": "/bin/sh", "args": ["sh", "-c", f"pwd -P > {seen}"]}], STATE, cwd="/usr")
    assert seen.read_text().strip() == "/usr"


def test_a_missing_directory_is_named_not_the_hook(tmp_path: Path) -> None:
    """A bundle removed before `start`: the error is the directory's, not /bin/true's."""
    gone = tmp_path / "gone"
    with pytest.raises(FailedPrecondition) as err:
        run_hooks([{"path": "/bin/true"}], STATE, cwd=str(gone))
    assert str(err.value) == f"error running hook #0: chdir {gone}: no such file or directory"


def test_warn_only_phases_run_every_hook(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hooks: list[Hook] = [
        {"path": script(tmp_path, "bad", "echo out; exit 1\n")},
        {"path": script(tmp_path, "good", f"echo ran >> {log}\n")},
    ]
    reported: list[str] = []
    failures = run_hooks_warn(hooks, STATE, reported.append)
    assert (
        failures
        == reported
        == ["error running hook #0: error running hook: exit status 1, stdout: out\n, stderr: "]
    )
    assert log.read_text() == "ran\n"


def test_a_hook_killed_by_a_signal_is_worded_as_go_words_it(tmp_path: Path) -> None:
    hook: Hook = {"path": script(tmp_path, "segv", "kill -SEGV $$\n")}
    with pytest.raises(FailedPrecondition) as err:
        run_hooks([hook], STATE)
    assert "error running hook: signal: segmentation fault, stdout: " in str(err.value)


def test_a_hook_that_dumps_core_says_so_as_go_does(tmp_path: Path) -> None:
    """runc quotes Go's ProcessState: "signal: segmentation fault (core dumped)" when the
    kernel reports a core (Python's returncode alone drops that)."""
    body = f"ulimit -c unlimited; cd {tmp_path}; kill -SEGV $$\n"
    path = script(tmp_path, "segv-with-core", body)
    proc = subprocess.Popen([path])
    _, status = os.waitpid(proc.pid, 0)
    proc.returncode = 0  # reaped above
    if not os.WCOREDUMP(status):
        pytest.skip("this kernel's core_pattern dumps no core here")
    with pytest.raises(FailedPrecondition) as err:
        run_hooks([{"path": path}], STATE)
    assert "error running hook: signal: segmentation fault (core dumped), stdout: " in str(
        err.value
    )


@pytest.mark.parametrize(
    ("number", "text"),
    [(9, "killed"), (15, "terminated"), (29, "I/O possible"), (24, "CPU time limit exceeded"),
     (1, "hangup"), (34, "signal 34"), (0, "signal 0")],
)  # fmt: skip
def test_go_signal_text(number: int, text: str) -> None:
    assert go_signal_text(number) == text


def test_hook_that_ignores_stdin(tmp_path: Path) -> None:
    run_hooks([{"path": script(tmp_path, "quiet", "exit 0\n")}], STATE)
    run_hooks(None, STATE)


def test_env_absent_inherits_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLEY_HOOK_TEST", "inherited")
    out = tmp_path / "env"
    run_hooks([{"path": script(tmp_path, "e", f"echo $GALLEY_HOOK_TEST > {out}\n")}], STATE)
    assert out.read_text() == "inherited\n"
    run_hooks(
        [{"path": script(tmp_path, "e2", f"echo x$GALLEY_HOOK_TEST > {out}\n"), "env": []}],
        STATE,
    )
    assert out.read_text() == "x\n"
