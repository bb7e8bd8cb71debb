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
after a move puts the interface back, down, under its host name and with its addresses: a
failed create leaves nothing changed.
"""

from __future__ import annotations

import errno
import os
from functools import partial

from galley.errors import FailedPrecondition
from galley.kernel.netlink import RT_SCOPE_UNIVERSE, Address, Netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from galley.oci.spec import NetDevice
    from galley.oci.stage import Rollback

FIELD = "linux.netDevices"


def move_in(devices: dict[str, NetDevice], pid: int, rollback: Rollback) -> None:
    """Move devices (host name -> {"name": name inside}) into process pid's network namespace;
    rollback puts them back if create fails later."""
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    sockets: list[Netlink] = []

    def release() -> None:
        for sock in sockets:
            sock.close()
        os.close(target)
        os.close(home)

    rollback.add(release)  # after the moves back (newest first)
    if os.fstat(target).st_ino == os.fstat(home).st_ino:
        raise FailedPrecondition(f"{FIELD}: the container has the host's network namespace")
    host = Netlink()
    sockets.append(host)
    inside = Netlink.inside(target)
    sockets.append(inside)
    for host_name, device in devices.items():
        name = device.get("name") or host_name
        field = f"{FIELD}.{host_name}"
        index, addresses = _find(host, host_name, field)
        # The kernel moves first and renames after: a name taken inside would leave the
        # interface there under its host name. So that is checked first; and the way back
        # is set before the move, which may fail half done.
        if _exists(inside, name):
            why = f"the container's network namespace has an interface called {name!r}"
            raise FailedPrecondition(f"{field}: {why}")
        rollback.add(partial(_move_back, inside, home, name, host_name, addresses))
        try:
            host.move_link(index, target, name)
        except OSError as e:
            why = f"cannot move it into the container's network namespace: {e.strerror}"
            raise FailedPrecondition(f"{field}: {why}") from None
        _readdress(inside, name, addresses, field)


def _exists(sock: Netlink, name: str) -> bool:
    try:
        sock.link_index(name)
    except OSError as e:
        if e.errno == errno.ENODEV:
            return False
        raise
    return True


def _find(host: Netlink, host_name: str, field: str) -> tuple[int, list[Address]]:
    """The host interface's index and global addresses (those a move must carry)."""
    try:
        index = host.link_index(host_name)
    except OSError as e:
        if e.errno == errno.ENODEV:
            why = f"the host has no network interface {host_name!r}"
            raise FailedPrecondition(f"{field}: {why}") from None
        raise FailedPrecondition(f"{field}: {e.strerror}") from None
    return index, [a for a in host.addresses(index) if a.scope == RT_SCOPE_UNIVERSE]


def _readdress(inside: Netlink, name: str, addresses: list[Address], field: str) -> None:
    """The moved interface's addresses again, and up."""
    index = inside.link_index(name)
    for address in addresses:
        try:
            inside.add_address(index, address)
        except OSError as e:
            why = f"cannot add its address {address}: {e.strerror}"
            raise FailedPrecondition(f"{field}: {why}") from None
    inside.set_link_up(index, True)


def _move_back(
    inside: Netlink, home: int, name: str, host_name: str, addresses: list[Address]
) -> None:
    """Undo a move, if the interface is inside (under either name): down, back under its
    host name, its addresses again."""
    for candidate in dict.fromkeys((name, host_name)):
        try:
            index = inside.link_index(candidate)
            break
        except OSError:
            continue
    else:
        return  # never moved
    inside.set_link_up(index, False)
    inside.move_link(index, home, host_name)
    with Netlink() as host:
        index = host.link_index(host_name)
        for address in addresses:
            host.add_address(index, address)
