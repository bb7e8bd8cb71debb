"""SCMP_ACT_NOTIFY: hand the filter's listener fd to the seccomp agent at listenerPath.

init stage: fd = SeccompFilter.load()  ── reports fd's number over the sync pipe ──┐
runtime process (create): forward_listener(filt, Channel.take(...), state)  ◄──────┘
    Channel.take copies the fd out of the init (galley.oci.channel), then one message
    on a unix stream socket: containerProcessState JSON + the fd as SCM_RIGHTS
    (runtime-spec "seccomp" / listenerPath).
"""

from __future__ import annotations

import json
import posix

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import unixsock
from galley.oci.seccomp import SeccompFilter

_FIELD = "linux.seccomp"


def forward_listener(filt: SeccompFilter, fd: int, state: dict[str, object]) -> None:
    """From the runtime process: send fd, its copy of the notify fd `load()` returned in the
    container's init (galley.oci.channel.Channel.take), to the agent at listenerPath, as runc
    does during create; close it."""
    try:
        send_listener(filt, fd, state)
    finally:
        posix.close(fd)


def send_listener(filt: SeccompFilter, notify_fd: int, state: dict[str, object]) -> None:
    """Send the notify fd to the seccomp agent at listenerPath (runtime-spec's protocol):
    one message with containerProcessState JSON and the fd as SCM_RIGHTS."""
    if filt.listener_path is None:
        raise InvalidArgument(f"{_FIELD}.listenerPath: no listener to send the notify fd to")
    message = {
        "ociVersion": state.get("ociVersion", "1.2.0"),
        "fds": ["seccompFd"],
        "pid": state.get("pid", 0),
        "metadata": filt.listener_metadata,
        "state": state,
    }
    sock = unixsock.unix()
    try:
        try:
            sock.connect(filt.listener_path)
        except OSError as e:  # runc's words
            raise FailedPrecondition(
                f"{_FIELD}.listenerPath: failed to connect with seccomp agent at "
                f"{filt.listener_path}: {os_error_text(e)}"
            ) from None
        try:
            unixsock.send_fds(sock, json.dumps(message).encode(), [notify_fd])
        except OSError as e:
            raise FailedPrecondition(
                f"{_FIELD}.listenerPath: sending the notify fd to {filt.listener_path}: "
                f"{os_error_text(e)}"
            ) from None
    finally:
        sock.close()
