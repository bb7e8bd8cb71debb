"""hooks.py: state on stdin, argv/env, failure and timeout semantics per phase."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from galley.errors import FailedPrecondition
from galley.oci.hooks import run_hooks, run_hooks_warn
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
    run_hooks([hook], STATE, "createRuntime")
    assert json.loads(Path(f"{out}.json").read_text()) == STATE
    # a script's $0 is its path (the kernel drops argv[0]); env is the whole environment
    assert out.read_text().split() == [hook["path"], "one", "two", "bar"]


def test_zero_pid_and_empty_annotations_are_left_out(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    hook: Hook = {"path": script(tmp_path, "h", f"cat > {out}\n")}
    stopped: State = {**STATE, "status": "stopped", "pid": 0, "annotations": {}}
    run_hooks_warn([hook], stopped, "poststop")
    assert json.loads(out.read_text()) == {
        "ociVersion": "1.0.2",
        "id": "h1",
        "status": "stopped",
        "bundle": "/b",
    }


def test_argv0_is_passed(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    hook: Hook = {"path": "/bin/busybox", "args": ["sh", "-c", f"echo $0 > {out}"]}
    run_hooks([hook], STATE, "prestart")
    assert out.read_text() == "sh\n"


def test_hooks_run_in_order_and_stop_at_first_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hooks: list[Hook] = [
        {"path": script(tmp_path, "a", f"echo a >> {log}\n")},
        {"path": script(tmp_path, "b", f"echo b >> {log}; echo oops >&2; exit 3\n")},
        {"path": script(tmp_path, "c", f"echo c >> {log}\n")},
    ]
    with pytest.raises(FailedPrecondition) as err:
        run_hooks(hooks, STATE, "prestart")
    msg = str(err.value)
    assert msg.startswith(f"prestart hook {hooks[1]['path']}: exit status 3")
    assert "oops" in msg
    assert log.read_text().split() == ["a", "b"]


def test_timeout_kills_the_hook(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    pid_file = tmp_path / "child.pid"
    body = f"sleep 5 & echo $! > {pid_file}; wait; touch {marker}\n"
    hook: Hook = {"path": script(tmp_path, "slow", body), "timeout": 1}
    t0 = time.monotonic()
    with pytest.raises(FailedPrecondition, match=r"createContainer hook .*timed out after 1s"):
        run_hooks([hook], STATE, "createContainer")
    assert time.monotonic() - t0 < 3
    time.sleep(0.1)
    assert not marker.exists()
    child = int(pid_file.read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


def test_missing_hook_binary(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match=r"startContainer hook /nonexistent/h: "):
        run_hooks([{"path": "/nonexistent/h"}], STATE, "startContainer")


def test_warn_only_phases_run_every_hook(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    hooks: list[Hook] = [
        {"path": script(tmp_path, "bad", "exit 1\n")},
        {"path": script(tmp_path, "good", f"echo ran >> {log}\n")},
    ]
    failures = run_hooks_warn(hooks, STATE, "poststop")
    assert len(failures) == 1
    assert "poststop hook" in failures[0]
    assert log.read_text() == "ran\n"
    assert "warning: poststop hook" in capfd.readouterr().err


def test_hook_that_ignores_stdin(tmp_path: Path) -> None:
    run_hooks([{"path": script(tmp_path, "quiet", "exit 0\n")}], STATE, "poststart")
    run_hooks(None, STATE, "poststart")


def test_env_absent_inherits_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLEY_HOOK_TEST", "inherited")
    out = tmp_path / "env"
    run_hooks(
        [{"path": script(tmp_path, "e", f"echo $GALLEY_HOOK_TEST > {out}\n")}], STATE, "poststop"
    )
    assert out.read_text() == "inherited\n"
    run_hooks(
        [{"path": script(tmp_path, "e2", f"echo x$GALLEY_HOOK_TEST > {out}\n"), "env": []}],
        STATE,
        "poststop",
    )
    assert out.read_text() == "x\n"
