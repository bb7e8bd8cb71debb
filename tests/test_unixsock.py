"""galley.kernel.unixsock: unix sockets and SCM_RIGHTS on _socket, without the socket module."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from galley.kernel import unixsock
from tests.conftest import fresh_python


def test_descriptors_cross_a_listening_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    listener = unixsock.listening(path)
    client = unixsock.unix()
    read_end, write_end = os.pipe()
    try:
        client.connect(path)
        unixsock.send_fds(client, b"/dev/ptmx", [read_end, write_end])
        conn = unixsock.accept(listener)
        data, fds = unixsock.recv_fds(conn, 1024, 4)
        assert data == b"/dev/ptmx" and len(fds) == 2
        assert all(not os.get_inheritable(fd) for fd in fds)  # MSG_CMSG_CLOEXEC
        os.write(fds[1], b"through")
        assert os.read(read_end, 16) == b"through"
        client.close()
        assert unixsock.recv_fds(conn, 1024, 4) == (b"", [])  # the end of the stream
        for fd in fds:
            os.close(fd)
        conn.close()
    finally:
        for fd in (read_end, write_end):
            os.close(fd)
        listener.close()


def test_what_the_socket_module_sends_arrives() -> None:
    """The wire format is the kernel's: the socket module's send_fds reaches recv_fds, and
    send_fds reaches socket.recv_fds (as a console socket's other side uses it)."""
    ours, theirs = unixsock.pair()
    mine = socket.socket(fileno=os.dup(theirs.fileno()))
    theirs.close()
    try:
        socket.send_fds(mine, [b"a"], [0])
        data, fds = unixsock.recv_fds(ours, 16, 1)
        assert data == b"a" and len(fds) == 1
        assert os.path.sameopenfile(fds[0], 0)
        os.close(fds[0])
        unixsock.send_fds(ours, b"b", [1])
        data, received, _, _ = socket.recv_fds(mine, 16, 1)
        assert data == b"b" and os.path.sameopenfile(received[0], 1)
        os.close(received[0])
    finally:
        mine.close()
        ours.close()


def test_it_does_not_import_the_socket_module() -> None:
    script = "import sys\nimport galley.kernel.unixsock\nprint('socket' in sys.modules)\n"
    assert fresh_python(script).strip() == "False"


def test_the_create_stage_loads_it_only_to_clone_binds() -> None:
    """_socket costs the create stage ~0.3 ms on the critical path of every create: of what
    the stage imports (galley.oci.init's run_stage), only the bind cloner of a container with
    a user namespace needs it, and imports it when it is made."""
    script = (
        "import sys\n"
        "import galley.kernel.mount, galley.kernel.net\n"
        "from galley.oci import capabilities, identity, init, namespaces, rlimits, trampoline\n"
        "import galley.oci.rootfs, galley.oci.hosttrees\n"
        "print('_socket' in sys.modules)\n"
    )
    assert fresh_python(script).strip() == "False"
