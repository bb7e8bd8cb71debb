"""Lifecycle hooks: run each hook of a phase with the container state as JSON on stdin.

Runtime-spec semantics, by phase:

    phase            runs in / when                                   a failure...
    prestart         runtime ns, after create's setup (deprecated)    fails create
    createRuntime    runtime ns, after the namespaces exist           fails create
    createContainer  container mount ns, before pivot_root            fails create
    startContainer   container ns, just before the user's execve      fails start
    poststart        runtime ns, after start                          fails start (and
                                                                      destroys the container)
    poststop         runtime ns, at delete                            is logged (level
                                                                      error), as by runc

A hook is `path` executed with `args` as its argv (args[0] is argv[0], as execv) and `env` as
its whole environment. Without `env`, a hook inherits what runc's would: in the runtime's
namespaces, the runtime's environment; in the container's (createContainer, startContainer),
the process's `env` (runc's init has taken it as its own by then; startContainer's also has the
HOME the process gets). The runtime's hooks run in the bundle directory, where runc's create,
run and start work, but poststop at a `delete`, in the caller's; `timeout` seconds
(optional, > 0) bounds it: on expiry the hook is killed. A failure is worded as runc words
it, down to the hook's index in its phase and what it printed.
"""

from __future__ import annotations

import posix

from galley.errors import DeadlineExceeded, FailedPrecondition, reason_text
from galley.kernel import pathnames
from galley.oci.jsonfast import dumps_go

TYPE_CHECKING = False  # typing (via galley.oci.spec) costs ~8 ms to import; mypy knows this
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from galley.oci.spec import Hook, State


def _argv(hook: Hook) -> list[str]:
    args = list(hook.get("args") or [])
    return args if args else [hook["path"]]


def _environment(hook: Hook, inherit: dict[str, str] | None) -> dict[str, str] | None:
    """hook.env as the whole environment; without the key, inherit (None: ours)."""
    if "env" not in hook or hook["env"] is None:
        return inherit
    return dict(e.split("=", 1) for e in hook["env"] if "=" in e)


def run_hook(
    hook: Hook,
    state_json: bytes,
    index: int,
    *,
    cwd: str | None = None,
    inherit: dict[str, str] | None = None,
) -> None:
    """Run one hook, the index-th of its phase, in cwd (None: ours), with inherit as its
    environment when it has no `env` (None: ours); FailedPrecondition (DeadlineExceeded
    when it runs past its timeout) in runc's words, which tools match: "error running hook
    #1: error running hook: exit status 3, stdout: ..., stderr: ...", with what it
    printed."""
    import subprocess  # noqa: PLC0415 - lazy: most commands run no hook

    path = hook["path"]
    timeout = hook.get("timeout")
    failed = f"error running hook #{index}"

    class HookProcess(subprocess.Popen[bytes]):
        """Popen that keeps the raw wait status: returncode drops the core-dump flag,
        which Go's wording ("signal: aborted (core dumped)") shows."""

        wait_status = 0

        def _handle_exitstatus(self, sts: int, *args: object) -> None:
            self.wait_status = sts
            super()._handle_exitstatus(sts, *args)  # type: ignore[misc]

    try:
        proc = HookProcess(
            _argv(hook),
            executable=path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environment(hook, inherit),
            cwd=cwd,
            close_fds=True,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as e:
        if cwd is not None and not pathnames.isdir(cwd):  # not the hook's program: its directory
            raise FailedPrecondition(f"{failed}: chdir {cwd}: {reason_text(e)}") from None
        raise FailedPrecondition(f"{failed}: fork/exec {path}: {reason_text(e)}") from None
    try:
        out, err = proc.communicate(state_json, timeout=timeout or None)
    except subprocess.TimeoutExpired:
        posix.killpg(proc.pid, 9)  # SIGKILL (subprocess has imported signal; we need not)
        proc.wait()
        raise DeadlineExceeded(
            f"{failed}: hook ran past specified timeout of {timeout:.1f}s"
        ) from None
    if proc.returncode != 0:
        raise FailedPrecondition(
            f"{failed}: error running hook: "
            f"{exit_text(proc.returncode, core_dumped=posix.WCOREDUMP(proc.wait_status))}, "
            f"stdout: {out.decode(errors='replace')}, stderr: {err.decode(errors='replace')}"
        )


def exit_text(returncode: int, *, core_dumped: bool = False) -> str:
    """How Go words a child's end ("exit status 3", "signal: killed", "signal: segmentation
    fault (core dumped)"): runc's hook errors quote it."""
    if returncode >= 0:
        return f"exit status {returncode}"
    return f"signal: {go_signal_text(-returncode)}" + (" (core dumped)" if core_dumped else "")


def go_signal_text(number: int) -> str:
    """The C library's name for a signal as Go words it: "killed", "segmentation fault",
    "I/O possible" (a leading acronym keeps its case); "signal 34" past the classic ones."""
    import _signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` costs ~4 ms

    text: str | None = _signal.strsignal(number) if 0 < number < 32 else None
    if not text:
        return f"signal {number}"
    first = text.split()[0]
    return text if first.isupper() else text[:1].lower() + text[1:]


def _stdin(state: State) -> bytes:
    """The state as a hook reads it: a zero pid (stopped, or not known yet) and empty
    annotations left out, as runc's omitempty fields leave them; the annotations (a Go map
    there) in the order of their keys."""
    given = {k: v for k, v in state.items() if v or k not in OMIT_EMPTY}
    if "annotations" in given:
        given["annotations"] = dict(sorted(state["annotations"].items()))
    return dumps_go(given).encode()


OMIT_EMPTY = frozenset({"pid", "annotations"})


def run_hooks(
    hooks: Sequence[Hook] | None,
    state: State,
    *,
    cwd: str | None = None,
    inherit: dict[str, str] | None = None,
) -> None:
    """Run the hooks of one phase in order (cwd, inherit: as run_hook's); the first failure
    raises (FailedPrecondition)."""
    if not hooks:
        return
    state_json = _stdin(state)
    for index, hook in enumerate(hooks):
        try:
            run_hook(hook, state_json, index, cwd=cwd, inherit=inherit)
        except DeadlineExceeded as e:
            raise FailedPrecondition(str(e)) from None


def run_create_hooks(
    hooks: Sequence[Hook] | None,
    state: State,
    *,
    cwd: str | None = None,
    inherit: dict[str, str] | None = None,
) -> None:
    """prestart, createRuntime and createContainer: run_hooks, a failure worded as runc words
    its container init's ("error during container init: error running hook #0: ...")."""
    try:
        run_hooks(hooks, state, cwd=cwd, inherit=inherit)
    except FailedPrecondition as e:
        raise FailedPrecondition(f"error during container init: {e}") from None


def run_hooks_warn(
    hooks: Sequence[Hook] | None,
    state: State,
    report: Callable[[str], None],
    *,
    cwd: str | None = None,
) -> list[str]:
    """Run every hook of a warn-only phase (poststop) in cwd (None: ours); each failure goes
    to report (the command's log, at level error, as runc logs it) and they are returned."""
    if not hooks:
        return []
    state_json = _stdin(state)
    failures = []
    for index, hook in enumerate(hooks):
        try:
            run_hook(hook, state_json, index, cwd=cwd)
        except (FailedPrecondition, DeadlineExceeded) as e:
            failures.append(str(e))
            report(str(e))
    return failures
