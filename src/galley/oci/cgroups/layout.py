"""Which cgroup hierarchies this host mounts, and where: v1, hybrid or pure v2.

    CgroupLayout
    ├── mode        "v1" (only v1 hierarchies), "hybrid" (v1 hierarchies plus a cgroup2 mount,
    │               e.g. /sys/fs/cgroup/unified), or "v2" (one cgroup2 mount, no v1 controllers)
    ├── v1          controller name ("memory", "cpu", "name=systemd", ...) → Hierarchy
    └── unified     the cgroup2 Hierarchy, or None

A Hierarchy knows its mount point, the cgroup path the mount shows as its root (the fourth
mountinfo field: "/" unless the mount was made inside a cgroup namespace or by bind), and the
controllers bound to it. A cgroup path P of a hierarchy lives in the directory
mount + (P - root). The layout is read from /proc/self/mountinfo; tests can point `detect` at
another mountinfo text to exercise a pure-v2 layout on a hybrid machine.
"""

from __future__ import annotations

from galley.kernel import pathnames

TYPE_CHECKING = False  # typing costs galley-runc ~3 ms a command; mypy knows this name
if TYPE_CHECKING:
    from typing import Literal

    Mode = Literal["v1", "hybrid", "v2"]


class Hierarchy:
    """One mounted cgroup hierarchy: where it is and which controllers it carries (a plain
    value class: importing dataclasses would cost every galley-runc create several ms)."""

    __slots__ = ("controllers", "mount", "root")

    def __init__(self, mount: str, root: str, controllers: frozenset[str]) -> None:
        self.mount = mount
        self.root = root
        self.controllers = controllers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (self.mount, self.root, self.controllers) == (
            other.mount,
            other.root,
            other.controllers,
        )

    def __hash__(self) -> int:
        return hash((self.mount, self.root, self.controllers))

    def __repr__(self) -> str:
        return (
            f"Hierarchy(mount={self.mount!r}, root={self.root!r}, controllers={self.controllers!r})"
        )

    def directory(self, cgroup_path: str) -> str:
        """The directory of the cgroup path (as /proc/<pid>/cgroup names it) in this mount."""
        path = "/" + cgroup_path.strip("/")
        root = self.root.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root) :] or "/"
        return pathnames.normpath(self.mount + "/" + path.lstrip("/"))


class CgroupLayout:
    """The cgroup mounts of this host."""

    __slots__ = ("mode", "unified", "v1")

    def __init__(
        self, mode: Mode, v1: dict[str, Hierarchy] | None = None, unified: Hierarchy | None = None
    ) -> None:
        self.mode: Mode = mode
        self.v1 = v1 if v1 is not None else {}
        self.unified = unified

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CgroupLayout):
            return NotImplemented
        return (self.mode, self.v1, self.unified) == (other.mode, other.v1, other.unified)

    __hash__ = None  # type: ignore[assignment]  # holds a dict: unhashable

    def __repr__(self) -> str:
        return f"CgroupLayout(mode={self.mode!r}, v1={self.v1!r}, unified={self.unified!r})"

    def unified_controllers(self) -> frozenset[str]:
        """Controllers the cgroup2 mount offers (empty without one)."""
        return self.unified.controllers if self.unified is not None else frozenset()

    def mount_points(self) -> list[str]:
        """Every hierarchy's mount point, the cgroup2 mount's too, each once, sorted."""
        mounts = {h.mount for h in self.v1.values()}
        if self.unified is not None:
            mounts.add(self.unified.mount)
        return sorted(mounts)


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal \\ooo."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _v2_controllers(mount: str) -> frozenset[str]:
    try:
        return frozenset(pathnames.read_text(pathnames.join(mount, "cgroup.controllers")).split())
    except OSError:
        return frozenset()


CANONICAL = "/sys/fs/cgroup"  # where a host mounts its cgroup hierarchies


def _rank(hierarchy: Hierarchy) -> tuple[bool, bool]:
    """How surely a mount of a hierarchy is the host's own: under /sys/fs/cgroup, then showing
    the hierarchy's root (a container's mounts show its own cgroup)."""
    mount = hierarchy.mount
    return mount == CANONICAL or mount.startswith(CANONICAL + "/"), hierarchy.root == "/"


def parse_mountinfo(text: str) -> CgroupLayout:
    """Build the layout from mountinfo text. Mounts hidden by a later mount on their path or
    on a parent of it are left out. Of the visible mounts of one hierarchy, the one most
    surely the host's wins (_rank): a container built in this mount namespace because it has
    none of its own mounts its cgroups here too, under its rootfs. Among mounts of one rank,
    later ones win."""
    v1: dict[str, Hierarchy] = {}
    unified: Hierarchy | None = None
    for fstype, options, root, mount in visible_mounts(text):
        if fstype == "cgroup2":
            candidate = Hierarchy(mount, root, frozenset())
            if unified is None or _rank(candidate) >= _rank(unified):
                unified = Hierarchy(mount, root, _v2_controllers(mount))
        else:
            names = {o for o in options if o.startswith("name=")}
            known = {o for o in options if o in V1_CONTROLLERS}
            hierarchy = Hierarchy(mount, root, frozenset(known | names))
            for name in known | names:
                if name not in v1 or _rank(hierarchy) >= _rank(v1[name]):
                    v1[name] = hierarchy
    if any(name in V1_CONTROLLERS for name in v1):
        return CgroupLayout("hybrid" if unified is not None else "v1", v1, unified)
    return CgroupLayout("v2", {}, unified)


def visible_mounts(
    text: str, fstypes: frozenset[str] | set[str] = frozenset({"cgroup", "cgroup2"})
) -> list[tuple[str, list[str], str, str]]:
    """(fstype, options, root, mount point) of each mount of these types (the cgroup ones
    unless told) that no later mount covers, in mountinfo's order."""
    found: list[tuple[str, list[str], str, str]] = []
    covered: set[str] = set()  # mount points of the mounts after the one at hand
    for line in reversed(text.splitlines()):
        fields = line.split()
        if " - " not in line or len(fields) < 10:
            continue
        mount = _unescape(fields[4])
        sep = fields.index("-")
        fstype = fields[sep + 1]
        if fstype in fstypes and not _under_any(mount, covered):
            found.append((fstype, fields[sep + 3].split(","), _unescape(fields[3]), mount))
        if mount != "/":  # "/" may be listed anywhere (after a pivot_root): never a cover
            covered.add(mount)
    found.reverse()
    return found


def _under_any(path: str, mount_points: set[str]) -> bool:
    """Whether path is one of mount_points or lies under one of them."""
    while True:
        if path in mount_points:
            return True
        if path in {"/", ""}:
            return False
        path = path.rsplit("/", 1)[0] or "/"


V1_CONTROLLERS = frozenset(
    {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "hugetlb",
        "net_cls",
        "net_prio",
        "perf_event",
        "rdma",
        "misc",
    }
)

_cached: CgroupLayout | None = None


def detect(mountinfo: str = "/proc/self/mountinfo") -> CgroupLayout:
    """The cgroup layout of this process's mount namespace (cached for the default path)."""
    global _cached  # noqa: PLW0603 - mountinfo is read once per process on the hot path
    if mountinfo == "/proc/self/mountinfo" and _cached is not None:
        return _cached
    layout = parse_mountinfo(pathnames.read_text(mountinfo, "surrogateescape"))
    if mountinfo == "/proc/self/mountinfo":
        _cached = layout
    return layout


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """The cgroup paths of a process: v1 controller name → path, and "" → the cgroup2 path."""
    paths: dict[str, str] = {}
    for line in pathnames.read_text(f"/proc/{pid}/cgroup", "surrogateescape").splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:
            paths[""] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths
