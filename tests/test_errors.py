"""galley.errors: errno and OSError texts in the words runc (Go) uses."""

from __future__ import annotations

import errno

import pytest

from galley.errors import go_error_text, go_quote, os_error_text, reason_text


def test_go_error_text() -> None:
    assert go_error_text(errno.ENOENT) == "no such file or directory"
    assert go_error_text(errno.EROFS) == "read-only file system"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("x", '"x"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("é\t\n", '"é\\t\\n"'),  # printable non-ASCII as it is
        ("\x1b[31m\x7f", '"\\x1b[31m\\x7f"'),
        ("\u00a0\u200b", '"\\u00a0\\u200b"'),  # a space other than ASCII's, a format char
        ("\U0001f600\U000e0001", '"\U0001f600\\U000e0001"'),  # an emoji prints; a tag not
        (b"1\xff".decode(errors="surrogateescape"), '"1\\xff"'),  # a byte that is no UTF-8
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    """As Go's strconv.Quote (checked with go 1.19's), which runc's %q messages use."""
    assert go_quote(text) == quoted


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
