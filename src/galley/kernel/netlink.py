"""rtnetlink (NETLINK_ROUTE): the few requests a runtime makes of network interfaces.

Find an interface by name, list its addresses, move it into another network namespace under a
new name, add an address, set it up or down. Each request waits for the kernel's answer and
raises OSError with the kernel's errno when it refuses. A socket answers for the network
namespace it was made in (`Netlink.inside` makes one in another namespace).
"""

from __future__ import annotations

import ipaddress
import posix
import socket
import struct
from dataclasses import dataclass

from galley.kernel import ns

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_NET_NS_FD = 28
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
# The address flags that say how an address was configured, which a copy keeps.
_KEPT_FLAGS = 0x02 | 0x100 | 0x200 | 0x400  # NODAD, MANAGETEMPADDR, NOPREFIXROUTE, MCAUTOJOIN
_COPIED_ATTRS = (IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST)

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change mask
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, index
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_ERRNO = struct.Struct("=i")


def _attr(kind: int, data: bytes) -> bytes:
    length = _ATTR.size + len(data)
    return _ATTR.pack(length, kind) + data + b"\0" * (-length % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    """A message's attributes by type (the nested/byte-order bits masked off)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _name(name: str) -> bytes:
    return _attr(IFLA_IFNAME, name.encode() + b"\0")


@dataclass(frozen=True)
class Address:
    """An interface address as the kernel reported it, ready to be added elsewhere."""

    family: int
    prefix_len: int
    flags: int
    scope: int
    attrs: tuple[tuple[int, bytes], ...]

    def __str__(self) -> str:
        raw = dict(self.attrs).get(IFA_LOCAL) or dict(self.attrs).get(IFA_ADDRESS, b"")
        return f"{ipaddress.ip_address(raw)}/{self.prefix_len}" if raw else "?"


@dataclass(frozen=True)
class Link:
    """An interface: its index and hardware address in its network namespace."""

    index: int
    mac: bytes


class Netlink:
    """A NETLINK_ROUTE socket in the calling thread's network namespace."""

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self._sock.bind((0, 0))
        self._sequence = 0

    @classmethod
    def inside(cls, netns_fd: int) -> Netlink:
        """A socket in the network namespace netns_fd refers to: the calling thread joins it
        for the socket() call and goes back to its own."""
        own = posix.open("/proc/thread-self/ns/net", posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            ns.setns(netns_fd, ns.CLONE_NEWNET)
            try:
                return cls()
            finally:
                ns.setns(own, ns.CLONE_NEWNET)
        finally:
            posix.close(own)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _exchange(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; its replies (type, payload) until the ack, the error or DONE."""
        self._sequence += 1
        sequence = self._sequence
        header = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, sequence, 0)
        self._sock.send(header + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, reply, reply_flags, seq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise OSError(71, "rtnetlink: malformed reply")  # EPROTO
                payload = data[offset + _HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if seq != sequence:
                    continue
                if reply_flags & NLM_F_DUMP_INTR:  # the table changed during the dump
                    raise InterruptedError(4, "rtnetlink: dump interrupted")
                if reply in (NLMSG_ERROR, NLMSG_DONE):
                    (error,) = _ERRNO.unpack_from(payload) if len(payload) >= 4 else (0,)
                    if error:
                        raise OSError(-error, posix.strerror(-error))
                    return replies
                replies.append((reply, payload))
                if not flags & (NLM_F_ACK | NLM_F_DUMP):
                    return replies

    def link(self, name: str = "", index: int = 0) -> Link:
        """The interface called name, or with index (ENODEV when there is none)."""
        request = _IFINFO.pack(0, 0, index, 0, 0) + (_name(name) if name else b"")
        replies = self._exchange(RTM_GETLINK, 0, request)
        if not replies:
            raise OSError(19, posix.strerror(19))
        payload = replies[0][1]
        _, _, found, _, _ = _IFINFO.unpack_from(payload)
        return Link(int(found), _attrs(payload[_IFINFO.size :]).get(IFLA_ADDRESS, b""))

    def addresses(self, index: int) -> list[Address]:
        """The addresses of interface index, IPv4 and IPv6 (the dump is taken again when the
        kernel says a change interrupted it)."""
        for _ in range(9):
            try:
                return self._addresses(index)
            except InterruptedError:
                continue
        return self._addresses(index)

    def _addresses(self, index: int) -> list[Address]:
        found = []
        request = _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for kind, payload in self._exchange(RTM_GETADDR, NLM_F_DUMP, request):
            family, prefix_len, flags, scope, owner = _IFADDR.unpack_from(payload)
            if kind != RTM_NEWADDR or owner != index:
                continue
            attrs = _attrs(payload[_IFADDR.size :])
            if IFA_FLAGS in attrs:
                flags = _ERRNO.unpack(attrs[IFA_FLAGS][:4])[0] & 0xFFFFFFFF
            copied = tuple((k, attrs[k]) for k in _COPIED_ATTRS if k in attrs)
            found.append(Address(family, prefix_len, flags, scope, copied))
        return found

    def move_link(self, index: int, netns_fd: int, name: str) -> None:
        """Move interface index into the network namespace netns_fd refers to, called name
        there: one request, so that it is never seen elsewhere under either name."""
        body = _IFINFO.pack(0, 0, index, 0, 0) + _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
        self._exchange(RTM_NEWLINK, NLM_F_ACK, body + _name(name))

    def add_address(self, index: int, address: Address) -> None:
        """Give interface index a copy of address (its configuration flags kept)."""
        flags = address.flags & _KEPT_FLAGS
        body = _IFADDR.pack(address.family, address.prefix_len, flags & 0xFF, address.scope, index)
        body += b"".join(_attr(k, v) for k, v in address.attrs)
        body += _attr(IFA_FLAGS, struct.pack("=I", flags))
        self._exchange(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def set_link_up(self, index: int, up: bool) -> None:
        """Set interface index up (ip link set up) or down."""
        body = _IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP)
        self._exchange(RTM_NEWLINK, NLM_F_ACK, body)
