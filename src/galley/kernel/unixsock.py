"""Unix sockets and SCM_RIGHTS on the interpreter's C module, _socket.

The socket module costs 7-11 ms to import here (it builds enums and imports selectors), more
than the rest of a `galley-runc exec`'s Python; _socket is ~0.3 ms and has every call a
runtime needs: connect, bind, listen, accept, send and sendmsg/recvmsg with descriptors.
Its sockets are made close-on-exec, as the socket module's are.
"""

from __future__ import annotations

import _socket
import sys

AF_UNIX: int = _socket.AF_UNIX
SOCK_STREAM: int = _socket.SOCK_STREAM
SOCK_DGRAM: int = _socket.SOCK_DGRAM
SOCK_SEQPACKET: int = _socket.SOCK_SEQPACKET
_FD_SIZE = 4  # a C int in an SCM_RIGHTS payload

Socket = _socket.socket


def unix(kind: int = SOCK_STREAM) -> Socket:
    """A new unix socket of kind (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET)."""
    return _socket.socket(AF_UNIX, kind)


def pair(kind: int = SOCK_STREAM) -> tuple[Socket, Socket]:
    """socketpair(2): two connected unix sockets."""
    return _socket.socketpair(AF_UNIX, kind)


def listening(path: str, backlog: int = 1) -> Socket:
    """A stream socket bound at path and listening."""
    sock = unix()
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def accept(listener: Socket) -> Socket:
    """The next connection on listener (accept4 with SOCK_CLOEXEC)."""
    fd, _ = listener._accept()  # type: ignore[attr-defined]  # what socket.accept wraps
    return _socket.socket(fileno=fd)


def send_fds(sock: Socket, data: bytes, fds: list[int]) -> None:
    """One message of data with fds as SCM_RIGHTS."""
    payload = b"".join(fd.to_bytes(_FD_SIZE, sys.byteorder) for fd in fds)
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, payload)])


def recv_fds(sock: Socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """One message (at most size bytes) and the descriptors it carried (at most max_fds,
    close-on-exec); b"" at the end of a stream."""
    space = _socket.CMSG_SPACE(max_fds * _FD_SIZE)
    data, ancillary, _flags, _address = sock.recvmsg(size, space, _socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            whole = len(payload) - len(payload) % _FD_SIZE
            fds += [
                int.from_bytes(payload[at : at + _FD_SIZE], sys.byteorder, signed=True)
                for at in range(0, whole, _FD_SIZE)
            ]
    return data, fds
