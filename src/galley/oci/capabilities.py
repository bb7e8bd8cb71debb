"""process.capabilities → the five capability sets of the container process, in runc's order.

    bounding drop (every capability not listed; needs CAP_SETPCAP, so effective is first
    re-raised from permitted: after a uid switch with keepcaps the kernel empties effective)
        → capset effective / permitted / inheritable
        → ambient: clear, then raise each listed one (it must be permitted and inheritable;
          others are skipped quietly, as runc does)

Unknown names, and names above the kernel's CAP_LAST_CAP, are ignored with a warning (runc 1.1):
the warnings collect in WARNINGS (and go to `logging` when loaded; the init stage cannot import).
Always call apply_capabilities, even with no capabilities configured: the sets are then emptied.
"""

from __future__ import annotations

import sys

from galley.errors import FailedPrecondition, os_error_text
from galley.kernel import caps as kcaps

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from collections.abc import Callable

    from galley.oci.spec import Capabilities

ALL_CAPABILITIES: tuple[str, ...] = kcaps.CAPABILITY_NAMES

SET_NAMES = ("bounding", "effective", "inheritable", "permitted", "ambient")


WARNINGS: list[str] = []


def warn(message: str, *args: object) -> None:
    """Record a warning in WARNINGS, and log it when `logging` is already loaded.

    Nothing is imported here: after pivot_root the init stage cannot import from the host.
    """
    text = message % args
    WARNINGS.append(text)
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).warning(text)


def unavailable(names: set[str]) -> set[str]:
    """Of these names, those this process cannot grant: no capability the running kernel
    knows (past cap_last_cap, or none at all), or one missing from its own bounding set. A
    runtime in a restricted environment (this test VM has no CAP_SYS_RESOURCE) cannot give
    what it lacks, and the runtime-spec says not to fail for it: warn. Only the names asked
    for are looked up (a prctl each)."""
    last = kcaps.last_cap()
    missing = set()
    for name in names:
        number = kcaps.CAPABILITY_NUMBERS.get(name)
        if number is None or number > last or not kcaps.bounding_has(number):
            missing.add(name)
    return missing


def unknown_capabilities(caps: Capabilities) -> list[str]:
    """The names in any set that this process cannot grant (unavailable), sorted."""
    names = {name for set_name in SET_NAMES for name in caps.get(set_name) or []}  # type: ignore[attr-defined]
    return sorted(unavailable(names))


def warn_unknown(caps: Capabilities, warning: Callable[[str], None]) -> None:
    """runc's warning for the names unknown_capabilities finds, which the stage drops: from
    the runtime process (P), for create and exec, which cannot hear the stage's."""
    unknown = unknown_capabilities(caps)
    if unknown:
        warning(f"ignoring unknown or unavailable capabilities: [{' '.join(unknown)}]")


def resolve(caps: Capabilities) -> dict[str, int]:
    """Each set of caps as a bit mask; unknown or unavailable names are warned about and dropped."""
    sets: dict[str, list[str]] = {name: caps.get(name) or [] for name in SET_NAMES}  # type: ignore[misc]
    unknown = unavailable({name for names in sets.values() for name in names})
    masks = {
        set_name: kcaps.mask_of([name for name in names if name not in unknown])
        for set_name, names in sets.items()
    }
    if unknown:
        warn("ignoring unknown or unavailable capabilities: %s", sorted(unknown))
    return masks


def apply_capabilities(caps: Capabilities) -> None:
    """Drop the bounding set, set effective/permitted/inheritable, raise ambient."""
    masks = resolve(caps)
    current = kcaps.capget()
    _capset(kcaps.CapSets(current.permitted, current.permitted, current.inheritable), "restore")
    drop_bounding(masks["bounding"])
    target = kcaps.CapSets(masks["effective"], masks["permitted"], masks["inheritable"])
    _capset(target, "set")
    _raise_ambient(masks["ambient"], target.permitted & target.inheritable)


def drop_bounding(keep: int) -> None:
    """Remove every capability not in the mask keep from the bounding set."""
    for cap in range(kcaps.last_cap() + 1):
        if keep >> cap & 1:
            continue
        try:
            kcaps.bounding_drop(cap)  # dropping one already dropped is fine
        except OSError as e:
            raise FailedPrecondition(f"process.capabilities.bounding: {os_error_text(e)}") from None


def _capset(sets: kcaps.CapSets, step: str) -> None:
    try:
        kcaps.capset(sets)
    except OSError as e:
        missing = kcaps.names_of(sets.effective & ~sets.permitted)
        hint = f" (effective {missing} not in permitted)" if missing else ""
        raise FailedPrecondition(
            f"process.capabilities ({step}): {os_error_text(e)}{hint}"
        ) from None


def _raise_ambient(mask: int, allowed: int) -> None:
    """Raise the ambient caps; those not both permitted and inheritable are skipped quietly, as
    runc 1.1 does (the default `runc spec` config lists ambient caps without inheritable ones)."""
    try:
        kcaps.ambient_clear()
    except OSError as e:
        warn("cannot clear ambient capabilities: %s", e)
        return
    for cap in range(kcaps.last_cap() + 1):
        if not mask >> cap & 1:
            continue
        name = kcaps.CAPABILITY_NAMES[cap]
        if not allowed >> cap & 1:
            WARNINGS.append(f"ambient capability {name} is not permitted and inheritable; skipped")
            continue
        try:
            kcaps.ambient_raise(cap)
        except OSError as e:
            warn("cannot raise ambient capability %s: %s", name, e)
