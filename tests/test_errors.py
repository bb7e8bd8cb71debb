"""galley.errors: errno and OSError texts in the words runc (Go) uses."""

from __future__ import annotations

import errno

import pytest

from galley.errors import go_error_text, os_error_text, reason_text


def test_go_error_text() -> None:
    assert go_error_text(errno.ENOENT) == "no such file or directory"
    assert go_error_text(errno.EROFS) == "read-only file system"


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (OSError(errno.ENOTDIR, "openat2: Not a directory", "etc/passwd"),
         "openat2 etc/passwd: not a directory"),
        (OSError(errno.ENOENT, "No such file or directory", "/x"),
         "/x: no such file or directory"),
        (OSError(errno.EINVAL, "mount tmpfs t on /r/x: Invalid argument", "/r/x"),
         "mount tmpfs t on /r/x: invalid argument"),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"),
         "/a /b: invalid cross-device link"),
        (OSError(errno.EPERM, "write 'x': Operation not permitted"),
         "write 'x': operation not permitted"),
        (OSError("no errno here"), "no errno here"),
    ],
)  # fmt: skip
def test_os_error_text(error: OSError, text: str) -> None:
    assert os_error_text(error) == text
    assert "Errno" not in os_error_text(error)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file", "/x.tar"), "no such file or directory"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
        (ValueError("Expecting value: char 0"), "Expecting value: char 0"),
        (OSError("no errno here"), "no errno here"),
    ],
)
def test_reason_text(error: BaseException, text: str) -> None:
    """The reason alone, for a message that names the file or peer itself."""
    assert reason_text(error) == text
