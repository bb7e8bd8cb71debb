"""linux.netDevices (runtime-spec 1.3): host network interfaces moved into the container.

`create` moves each listed interface from galley-runc's network namespace into the
container's (its own or one joined by path) once the init stage has entered it, and before
the stage runs any hook or anything of the container's. The move and the rename (`name`, else
the host's name) are one request. The kernel drops an interface's addresses when it leaves a
namespace; its global ones (scope universe, IPv4 and IPv6) are added again inside, as runc
1.3 does, and the interface is set up. MTU and hardware address travel with it.

Once the container exists, the interface is the network namespace's: `delete` leaves it
there, and when that namespace goes the kernel moves physical interfaces back to the host's
first namespace and destroys virtual ones (veth, macvlan), as with runc. A `create` that fails
after a move puts the interface back under its host name, with its addresses, but down (its
routes and link-local addresses are gone).
"""

from __future__ import annotations

import errno
import posix
from functools import partial

from galley.errors import FailedPrecondition
from galley.kernel.netlink import IFA_F_PERMANENT, RT_SCOPE_UNIVERSE, Address, Link, Netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from galley.oci.spec import NetDevice
    from galley.oci.stage import Rollback

FIELD = "linux.netDevices"


def move_in(devices: dict[str, NetDevice], pid: int, rollback: Rollback) -> Callable[[], None]:
    """Move devices (host name -> {"name": name inside}) into process pid's network namespace;
    rollback puts them back if create fails later. Returns what closes the sockets and
    namespace fds once create has succeeded."""
    target = posix.open(f"/proc/{pid}/ns/net", posix.O_RDONLY | posix.O_CLOEXEC)
    home = posix.open("/proc/thread-self/ns/net", posix.O_RDONLY | posix.O_CLOEXEC)
    sockets: list[Netlink] = []
    fds = [target, home]

    def release() -> None:  # once: by the rollback, or after a create that succeeded
        while sockets:
            sockets.pop().close()
        while fds:
            posix.close(fds.pop())

    rollback.add(release)  # after the moves back (newest first)
    if posix.fstat(target).st_ino == posix.fstat(home).st_ino:
        raise FailedPrecondition(f"{FIELD}: the container has the host's network namespace")
    host = Netlink()
    sockets.append(host)
    inside = Netlink.inside(target)
    sockets.append(inside)
    for host_name, device in devices.items():
        name = device.get("name") or host_name
        field = f"{FIELD}.{host_name}"
        link, addresses = _find(host, host_name, field)
        # The kernel moves first and renames after: a name taken inside would leave the
        # interface there under its host name. So that is checked first.
        if _exists(inside, name):
            why = f'the container\'s network namespace has an interface called "{name}"'
            raise FailedPrecondition(f"{field}: {why}")
        try:
            host.move_link(link.index, target, name)
        except OSError as e:
            stranded = _stranded(host, inside, link, host_name)  # moved, the rename refused
            if stranded is not None:
                rollback.add(partial(_move_back, inside, home, stranded, host_name, addresses))
            why = f"cannot move it into the container's network namespace: {e.strerror}"
            raise FailedPrecondition(f"{field}: {why}") from None
        moved = inside.link(name)
        if moved.mac != link.mac:  # another interface took the name meanwhile
            raise FailedPrecondition(f'{field}: "{name}" in the container is not the one moved')
        rollback.add(partial(_move_back, inside, home, moved.index, host_name, addresses))
        _readdress(inside, moved.index, addresses, field)
    return release


def _exists(sock: Netlink, name: str) -> bool:
    try:
        sock.link(name)
    except OSError as e:
        if e.errno == errno.ENODEV:
            return False
        raise
    return True


def _find(host: Netlink, host_name: str, field: str) -> tuple[Link, list[Address]]:
    """The host interface, and the addresses a move must carry: the global, permanent ones
    (a dynamic address's lifetime is not the interface's; runc 1.3 takes the same)."""
    try:
        link = host.link(host_name)
    except OSError as e:
        if e.errno == errno.ENODEV:
            why = f'the host has no network interface "{host_name}"'
            raise FailedPrecondition(f"{field}: {why}") from None
        raise FailedPrecondition(f"{field}: {e.strerror}") from None
    kept = [
        a
        for a in host.addresses(link.index)
        if a.scope == RT_SCOPE_UNIVERSE and a.flags & IFA_F_PERMANENT
    ]
    return link, kept


def _stranded(host: Netlink, inside: Netlink, link: Link, host_name: str) -> int | None:
    """After a failed move: the interface's index in the container's namespace if the kernel
    moved it there (it has left the host, and the one inside has its hardware address)."""
    try:
        if host.link(index=link.index).mac == link.mac:
            return None  # never left
    except OSError:
        pass
    try:
        found = inside.link(host_name)
    except OSError:
        return None
    return found.index if found.mac == link.mac else None


def _readdress(inside: Netlink, index: int, addresses: list[Address], field: str) -> None:
    """The moved interface's addresses again, and up."""
    for address in addresses:
        try:
            inside.add_address(index, address)
        except OSError as e:
            why = f"cannot add its address {address}: {e.strerror}"
            raise FailedPrecondition(f"{field}: {why}") from None
    inside.set_link_up(index, True)


def _move_back(
    inside: Netlink, home: int, index: int, host_name: str, addresses: list[Address]
) -> None:
    """Undo a move: down, back under its host name, its addresses again (routes and
    link-local addresses are the kernel's to make again)."""
    inside.set_link_up(index, False)
    inside.move_link(index, home, host_name)
    with Netlink() as host:
        back = host.link(host_name).index
        for address in addresses:
            host.add_address(back, address)
