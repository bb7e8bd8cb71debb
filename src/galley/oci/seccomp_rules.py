"""What the runtime spec forbids of SCMP_ACT_NOTIFY, beyond the seccomp fields' types.

One check for two callers: the validator (galley.oci.validate_linux), which refuses a
config before any hook runs, and the filter's compiler (galley.oci.seccomp), a library
entry point that guards its own input.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Mapping


def notify_misuse(seccomp: Mapping[str, object]) -> tuple[str, str] | None:
    """(the field under linux.seccomp, what is wrong) for a misuse of SCMP_ACT_NOTIFY: as
    the default action, for the write syscall (the agent could not be told), or without a
    listenerPath. None when there is none."""
    if seccomp.get("defaultAction") == "SCMP_ACT_NOTIFY":
        return ".defaultAction", "SCMP_ACT_NOTIFY cannot be the default"
    rules = seccomp.get("syscalls") or []
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict) or rule.get("action") != "SCMP_ACT_NOTIFY":
            continue
        if "write" in (rule.get("names") or []):
            return f".syscalls[{i}]", "SCMP_ACT_NOTIFY cannot be used for the write syscall"
        if not seccomp.get("listenerPath"):
            return ".listenerPath", "SCMP_ACT_NOTIFY needs a listenerPath"
    return None
