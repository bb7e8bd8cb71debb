"""Device access rules: runc's defaults, normalisation, and the v1 devices.allow/deny files.

The rules a container gets are, in order: linux.resources.devices as the spec lists them,
then runc's always-allowed devices (mknod of anything; null, zero, full, random, urandom, tty,
ptmx, /dev/pts/*, tun). Later rules win. As runc's, a linux.devices entry only makes the node:
access to it is what linux.resources.devices allows (an orchestrator that exposes a device
adds the rule), and an entry at the path of a default node (say /dev/null) drops that
default's rule. What the list leaves on v1's model (plan: a default and its exceptions) is
written to devices.deny/devices.allow on v1, and compiled to an eBPF program on v2
(galley.oci.cgroups.bpfdevices), so that a list means the same on both, as in runc.
"""

from __future__ import annotations

from galley.errors import InvalidArgument
from galley.oci.cgroups.manager import write
from galley.oci.cgroups.record import read

TYPE_CHECKING = False  # typing and dataclasses cost galley-runc ms per command; mypy knows this
if TYPE_CHECKING:
    from galley.oci.spec import DeviceRule, Spec

    _Exceptions = dict[tuple[str, int, int], str]  # (type, major, minor) -> access; -1: "*"


class Rule:
    """One normalised rule: type a|c|b, major/minor (-1 = any), access from r, w, m.

    A frozen value, written out rather than a dataclass: `delete` and `state` load the rules
    of every container's cgroup, and importing dataclasses costs several ms.
    """

    __slots__ = ("access", "allow", "major", "minor", "type")
    allow: bool
    type: str
    major: int
    minor: int
    access: str

    def __init__(self, allow: bool, type: str, major: int, minor: int, access: str) -> None:
        for name, value in zip(
            ("allow", "type", "major", "minor", "access"),
            (allow, type, major, minor, access),
            strict=True,
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Rule is frozen: cannot set {name!r}")

    def _key(self) -> tuple[bool, str, int, int, str]:
        return (self.allow, self.type, self.major, self.minor, self.access)

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, Rule) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Rule(allow={!r}, type={!r}, major={!r}, minor={!r}, access={!r})".format(
            *self._key()
        )

    def cgroup_text(self) -> str:
        """The line v1's devices.allow and devices.deny take ("c 1:3 rwm", or "a")."""
        if self.type == "a" and self.major == -1 and self.minor == -1 and self.access == "rwm":
            return "a"
        major = "*" if self.major == -1 else str(self.major)
        minor = "*" if self.minor == -1 else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def to_json(self) -> dict[str, object]:
        """The rule as OCI's DeviceRule JSON."""
        return {
            "allow": self.allow,
            "type": self.type,
            "major": self.major,
            "minor": self.minor,
            "access": self.access,
        }


def normalise(rule: DeviceRule | dict[str, object], where: str) -> Rule:
    """A spec DeviceRule as a Rule; errors name the field."""
    kind = str(rule.get("type") or "a")
    if kind not in {"a", "b", "c"}:
        raise InvalidArgument(f'{where}.type: unknown device type "{kind}"')
    access = str(rule.get("access") or "")
    if not access or set(access) - set("rwm"):  # empty is no access, never "rwm"
        raise InvalidArgument(f'{where}.access: invalid device access "{access}"')
    access = "".join(c for c in "rwm" if c in access)

    def number(key: str) -> int:
        value = rule.get(key)
        return -1 if value is None else int(str(value))

    return Rule(bool(rule.get("allow", False)), kind, number("major"), number("minor"), access)


def _allow(kind: str, major: int, minor: int, access: str = "rwm") -> Rule:
    return Rule(True, kind, major, minor, access)


# The defaults that are device nodes, by path: a linux.devices entry there replaces the node
# and drops the rule ("the spec one takes priority", runc says).
_DEFAULT_NODES = {
    "/dev/null": (1, 3),
    "/dev/random": (1, 8),
    "/dev/full": (1, 7),
    "/dev/tty": (5, 0),
    "/dev/zero": (1, 5),
    "/dev/urandom": (1, 9),
}
DEFAULT_ALLOWED = (
    _allow("c", -1, -1, "m"),
    _allow("b", -1, -1, "m"),
    *(_allow("c", major, minor) for major, minor in _DEFAULT_NODES.values()),
    _allow("c", 136, -1),  # /dev/pts/*
    _allow("c", 5, 2),  # /dev/ptmx
    _allow("c", 10, 200),  # /dev/net/tun
)


def implied_rules(spec: Spec) -> list[Rule]:
    """Rules runc adds after the spec's: its default allowlist, less the defaults whose node
    linux.devices replaces. linux.devices adds none of its own."""
    listed = {device.get("path") for device in spec.get("linux", {}).get("devices") or []}
    dropped = {number for path, number in _DEFAULT_NODES.items() if path in listed}
    return [
        rule
        for rule in DEFAULT_ALLOWED
        if not (rule.type == "c" and (rule.major, rule.minor) in dropped)
    ]


def effective_rules(resources: list[DeviceRule], implied: list[Rule]) -> list[Rule]:
    """The spec's rules followed by the implied ones, normalised."""
    spec_rules = [normalise(r, f"linux.resources.devices[{i}]") for i, r in enumerate(resources)]
    return spec_rules + implied


def write_v1(directory: str, rules: list[Rule]) -> None:
    """Program a v1 devices cgroup with what the rules leave in the end (plan).

    A cgroup that already denies by default and is to go on doing so (an `update` of a
    running container: containerd passes the whole linux.resources, its device rules
    included) gets only the differences: the exceptions to add, then the access to take
    away. Starting over ("a" to devices.deny clears every exception) would leave the
    container without /dev/null for a moment, and a process opening it then fails. Otherwise
    the default is written ("a" to devices.allow or devices.deny, which also clears the
    exceptions), then each exception.

    runc starts every container from "deny all" (its rule list always ends in allow rules),
    so a spec without a leading deny-all rule still gets only what the rules allow.
    """
    default_allow, exceptions = plan(rules)
    wanted = {(r.type, r.major, r.minor): r.access for r in exceptions}
    _program_v1(directory, default_allow, wanted)


def restore_v1(directory: str, listing: str) -> None:
    """Put back what devices.list said before (galley.oci.cgroups.undo)."""
    default_allow, listed = _parse_list(listing)
    _program_v1(directory, default_allow, listed or {})


def _program_v1(directory: str, default_allow: bool, wanted: _Exceptions) -> None:
    listed = None if default_allow else listed_v1(directory)
    if listed is None:
        write(directory, "devices.allow" if default_allow else "devices.deny", "a")
        for key, access in wanted.items():
            rule = Rule(not default_allow, *key, access)
            write(directory, "devices.allow" if rule.allow else "devices.deny", rule.cgroup_text())
        return
    for key, access in wanted.items():
        added = "".join(c for c in access if c not in listed.get(key, ""))
        if added:
            write(directory, "devices.allow", Rule(True, *key, added).cgroup_text())
    for key, held in listed.items():
        taken = "".join(c for c in held if c not in wanted.get(key, ""))
        if taken:
            write(directory, "devices.deny", Rule(False, *key, taken).cgroup_text())


def listed_v1(directory: str) -> _Exceptions | None:
    """The exceptions a v1 devices cgroup that denies by default allows, from devices.list
    ("c 1:3 rwm", "c 136:* rwm" lines). None when it allows by default (the kernel then
    lists "a *:* rwm" and not the exceptions it denies) or there is no list to read."""
    try:
        return _parse_list(read(directory, "devices.list"))[1]
    except OSError:
        return None


def _parse_list(listing: str) -> tuple[bool, _Exceptions | None]:
    """devices.list's text as (whether the default is allow, the exceptions it lists)."""
    listed: _Exceptions = {}
    for line in listing.splitlines():
        kind, numbers, access = line.split()
        if kind == "a":
            return True, None
        major, minor = (-1 if n == "*" else int(n) for n in numbers.split(":"))
        listed[(kind, major, minor)] = access
    return False, listed


def plan(rules: list[Rule]) -> tuple[bool, list[Rule]]:
    """The rules played in order ("later rules win") on v1's model: (whether the default is
    allow, the exceptions to it). A list v1 cannot express is refused, in runc's words. v1
    writes the result to the cgroup's files; v2 compiles it (galley.oci.cgroups.bpfdevices),
    so that a rule list means the same on both, as runc's emulator makes it mean.

    The kernel keeps a default and exceptions by exact (type, major, minor) with their
    access. A rule of type "a" resets both, whatever its numbers and access. A rule against
    the default adds an exception. A deny agreeing with a deny default takes its access from
    the exceptions it covers ("deny c *:*" after "allow c 10:229": the kernel, fed the rules
    one by one, would remove only an exception of exactly c *:*, and leave 10:229 open). An
    allow agreeing with an allow default takes access from an exception of exactly its
    numbers only, as the kernel and runc do: runc's trailing defaults ("allow c *:* m", "allow
    c 136:* rwm") after a spec's "allow a" must not take back the spec's denies. One that
    only cuts into an exception ("deny c 10:229" after "allow c *:*", "deny c 1:*" after
    "allow c *:3") would need a hole in it: refused ("cannot punch hole"), where runc refuses
    the first kind and lets the second through.
    """
    default_allow = False
    exceptions: dict[tuple[str, int, int], str] = {}
    for rule in rules:
        if rule.type == "a":  # the kernel reads any "a ..." line as all devices
            default_allow, exceptions = rule.allow, {}
            continue
        key = (rule.type, rule.major, rule.minor)
        if rule.allow != default_allow:
            held = exceptions.get(key, "")
            exceptions[key] = "".join(c for c in "rwm" if c in held or c in rule.access)
            continue
        for (kind, major, minor), held in list(exceptions.items()):
            if kind != rule.type or not set(held) & set(rule.access):
                continue
            if not (_overlaps(rule.major, major) and _overlaps(rule.minor, minor)):
                continue
            if rule.major in (-1, major) and rule.minor in (-1, minor):  # covers it
                if rule.allow and (rule.major, rule.minor) != (major, minor):
                    continue  # an allow default's allow: the exact exception only
                left = "".join(c for c in held if c not in rule.access)
                if left:
                    exceptions[(kind, major, minor)] = left
                else:
                    del exceptions[(kind, major, minor)]
                continue
            hole = Rule(rule.allow, rule.type, rule.major, rule.minor, rule.access)
            whole = Rule(not rule.allow, kind, major, minor, held)
            raise InvalidArgument(
                f"linux.resources.devices: rule [{hole.cgroup_text()}] ("
                f"{'allow' if rule.allow else 'deny'}) not supported by devices cgroup v1 "
                f"(cannot punch hole in existing wildcard rule [{whole.cgroup_text()}])"
            )
    listed = [Rule(not default_allow, *key, access) for key, access in exceptions.items()]
    return default_allow, listed


def _overlaps(number: int, other: int) -> bool:
    """Whether two major (or minor) numbers, -1 for any, can name the same device."""
    return number == other or -1 in (number, other)
