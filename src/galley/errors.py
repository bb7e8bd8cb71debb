"""The errors galley raises, defined once for every layer.

    GalleyError
    ├── NotFound            (LookupError)   the named object does not exist
    ├── AlreadyExists                        an object with that id/name exists
    ├── InvalidArgument     (ValueError)    the caller's input is malformed or contradictory
    ├── FailedPrecondition                   the object is in the wrong state for the call
    ├── Unavailable                          a peer (registry, runtime, plugin) cannot be reached
    ├── DeadlineExceeded    (TimeoutError)  an operation ran past its deadline
    ├── PermissionDenied    (PermissionError)
    └── Internal                             a bug or an unexpected kernel/peer answer

No module here imports gRPC: the CRI layer maps these to status codes in one place. Messages
name the kind of object and its id, e.g. "container 'abc' is running; stop it first".
"""

from __future__ import annotations

import posix


class GalleyError(Exception):
    """Base of every error galley raises on purpose."""


class NotFound(GalleyError, LookupError):
    """The named object does not exist."""


class AlreadyExists(GalleyError):
    """An object with that id or name exists already."""


class InvalidArgument(GalleyError, ValueError):
    """The caller's input is malformed or contradictory."""


class FailedPrecondition(GalleyError):
    """The object is in the wrong state for the requested operation."""


class Unavailable(GalleyError):
    """A peer (registry, runtime, plugin) cannot be reached right now."""


class DeadlineExceeded(GalleyError, TimeoutError):
    """An operation ran past its deadline."""


class PermissionDenied(GalleyError, PermissionError):
    """The caller may not do this."""


class Internal(GalleyError):
    """A bug, or an answer from the kernel or a peer that galley cannot explain."""


_GO_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
    '"': '\\"', "\\": "\\\\",
}  # fmt: skip


def go_quote(text: str) -> str:
    """text as Go's strconv.Quote writes it: printable characters as they are (non-ASCII
    ones too), the C escapes, \\xHH for the other ASCII controls and for a byte that is no
    UTF-8 (a surrogate here, as Python decodes argv and paths), \\uHHHH or \\UHHHHHHHH
    beyond. (JSON's escapes differ: a hook's ESC byte read \\u001b where logrus has \\x1b.)"""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = []
    for char in text:
        code = ord(char)
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80 or 0xDC80 <= code <= 0xDCFF:  # ASCII, or surrogateescape's byte
            out.append(f"\\x{code & 0xFF:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def go_error_text(number: int) -> str:
    """The C library's text for an errno as Go, and so runc, words it: a lower-case first
    letter ("no such file or directory"), for messages that tools match against runc's."""
    text = posix.strerror(number)
    return text[:1].lower() + text[1:]


def os_error_text(err: OSError) -> str:
    """An OSError in plain words, for a message that names its own context: the call and
    the path as galley's kernel layer records them, then the reason as Go words it
    ("openat2 etc/passwd: not a directory"), never Python's "[Errno 20] ..." form."""
    words = err.strerror
    if not words:
        return str(err)
    if err.errno and words.endswith(posix.strerror(err.errno)):
        words = words[: -len(posix.strerror(err.errno))] + go_error_text(err.errno)
    call, _, reason = words.rpartition(": ")
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None and str(p) not in call]
    head = " ".join([call, *paths] if call else paths)
    return f"{head}: {reason}" if head else reason


def reason_text(exc: BaseException) -> str:
    """Why exc happened, for a message that names the file or peer itself: an OSError's
    reason as Go words it ("no such file or directory"), without its path or Python's
    "[Errno 2]"; any other exception's own text."""
    if isinstance(exc, OSError) and exc.errno:
        return go_error_text(exc.errno)
    return str(exc)
