"""Lifecycle hooks: run each hook of a phase with the container state as JSON on stdin.

Runtime-spec semantics, by phase:

    phase            runs in / when                                   a failure...
    prestart         runtime ns, after create's setup (deprecated)    fails create
    createRuntime    runtime ns, after the namespaces exist           fails create
    createContainer  container mount ns, before pivot_root            fails create
    startContainer   container ns, just before the user's execve      fails start
    poststart        runtime ns, after start                          fails start (and
                                                                      destroys the container)
    poststop         runtime ns, at delete                            only warns

A hook is `path` executed with `args` as its argv (args[0] is argv[0], as execv) and `env` as
its whole environment (without `env`, ours is passed on, as runc does); `timeout` seconds
(optional, > 0) bounds it: on expiry the hook is killed.
"""

from __future__ import annotations

import os
import sys

from galley.errors import DeadlineExceeded, FailedPrecondition
from galley.oci.jsonfast import dumps

TYPE_CHECKING = False  # typing (via galley.oci.spec) costs ~8 ms to import; mypy knows this
if TYPE_CHECKING:
    from collections.abc import Sequence

    from galley.oci.spec import Hook, State


def _argv(hook: Hook) -> list[str]:
    args = list(hook.get("args") or [])
    return args if args else [hook["path"]]


def _environment(hook: Hook) -> dict[str, str] | None:
    """hook.env as the whole environment; without the key, ours is inherited (as runc)."""
    if "env" not in hook or hook["env"] is None:
        return None
    return dict(e.split("=", 1) for e in hook["env"] if "=" in e)


def run_hook(hook: Hook, state_json: bytes, phase: str) -> None:
    """Run one hook; FailedPrecondition naming the phase and the path if it fails or times out."""
    import subprocess  # noqa: PLC0415 - lazy: most commands run no hook

    path = hook["path"]
    timeout = hook.get("timeout")
    try:
        proc = subprocess.Popen(
            _argv(hook),
            executable=path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environment(hook),
            close_fds=True,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as e:
        raise FailedPrecondition(f"{phase} hook {path}: {e.strerror or e}") from None
    try:
        out, err = proc.communicate(state_json, timeout=timeout or None)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # SIGKILL (subprocess has imported signal; we need not)
        proc.wait()
        raise DeadlineExceeded(f"{phase} hook {path}: timed out after {timeout}s") from None
    if proc.returncode != 0:
        detail = (err or out).decode(errors="replace").strip().replace("\n", " ")
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        raise FailedPrecondition(
            f"{phase} hook {path}: {how}" + (f", stdout/stderr: {detail}" if detail else "")
        )


def _stdin(state: State) -> bytes:
    """The state as a hook reads it: a zero pid (stopped, or not known yet) and empty
    annotations left out, as runc's omitempty fields leave them."""
    return dumps({k: v for k, v in state.items() if v or k not in OMIT_EMPTY}).encode()


OMIT_EMPTY = frozenset({"pid", "annotations"})


def run_hooks(hooks: Sequence[Hook] | None, state: State, phase: str) -> None:
    """Run the hooks of one phase in order; the first failure raises (FailedPrecondition)."""
    if not hooks:
        return
    state_json = _stdin(state)
    for hook in hooks:
        try:
            run_hook(hook, state_json, phase)
        except DeadlineExceeded as e:
            raise FailedPrecondition(str(e)) from None


def run_hooks_warn(hooks: Sequence[Hook] | None, state: State, phase: str) -> list[str]:
    """Run every hook of a warn-only phase (poststop); return and print the failures."""
    if not hooks:
        return []
    state_json = _stdin(state)
    failures = []
    for hook in hooks:
        try:
            run_hook(hook, state_json, phase)
        except (FailedPrecondition, DeadlineExceeded) as e:
            failures.append(str(e))
            os.write(sys.stderr.fileno(), f"warning: {e}\n".encode())
    return failures
