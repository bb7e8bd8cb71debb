"""Argument parsing shared by the commands: container ids, bundles, signals, byte sizes."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub: the C module under signal
import posix

from galley.errors import FailedPrecondition, InvalidArgument, go_quote, reason_text
from galley.oci.commands.options import PROG, Args, ArgumentCount
from galley.oci.state import validate_id

_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_SIZE_EXTRAS = {"", "i", "b", "ib"}  # after the unit, or alone


def container_id(command: str, args: Args) -> str:
    """The validated container id, or runc's error when it is missing, empty or malformed."""
    cid = args.container_id
    if not isinstance(cid, str):
        raise ArgumentCount(f'{PROG}: "{command}" requires exactly 1 argument(s)')
    if not cid:  # given, but "": no usage error in runc, and exec's status 255
        raise InvalidArgument("container id cannot be empty")
    return validate_id(cid)


def check_bundle(bundle: str) -> None:
    """A bundle that cannot be entered fails in runc's words, which changes into it before it
    reads or writes config.json ("chdir /x: no such file or directory"). Called once that
    failed: it costs a stat."""
    try:
        mode = posix.stat(bundle).st_mode
    except OSError as err:
        raise InvalidArgument(f"chdir {bundle}: {reason_text(err)}") from None
    if mode & 0o170000 != 0o040000:
        raise InvalidArgument(f"chdir {bundle}: not a directory")


def preserved_fds(args: Args) -> int:
    """--preserve-fds: runc's is a signed int, and a negative count keeps no fds."""
    return max(int(args.preserve_fds or 0), 0)


def parse_signal(text: str) -> int:
    """A signal number from a name (KILL, SIGKILL, sigkill) or a number, as `runc kill` takes it.
    Any number Go's strconv.Atoi reads (a sign, ASCII digits) is taken as it is, 0 too (`runc
    kill ID 0` checks that the container's init is alive): one that is no signal is for
    kill(2) to refuse (is_signal).

    The names come from `_signal`, the C module under `signal` that the interpreter loads at
    start: the signal module itself would cost `kill` ~2 ms (it builds enums).
    """
    digits = text[1:] if text[:1] in {"+", "-"} else text
    if digits.isascii() and digits.isdigit() and -(2**63) <= int(text) < 2**63:
        return int(text)
    name = text.upper() if text.isascii() else "".join(map(_go_upper, text))
    name = name if name.startswith("SIG") else "SIG" + name
    number = getattr(_signal, name, None) if not name.startswith("SIG_") else None
    if not isinstance(number, int):
        raise _unknown_signal(text)
    return number


def _go_upper(char: str) -> str:
    """char upper-cased as Go's strings.ToUpper does it: one character for one (Unicode's
    simple mapping), so the ligature U+FB06 stays, where Python's upper() gives "ST" (a
    long s, U+017F, is an S in both)."""
    upper = char.upper()
    return upper if len(upper) == 1 else char


def is_signal(number: int) -> bool:
    """Whether kill(2) takes number as a signal (0 included), rather than refuse it (EINVAL)."""
    return 0 <= number < int(_signal.NSIG)


def _unknown_signal(text: str) -> InvalidArgument:
    return InvalidArgument(f"unknown signal {go_quote(text)}")  # runc's %q


def parse_size(text: str) -> int:
    """A byte size as runc's update flags read it: "-1" (unlimited), or what docker/go-units'
    RAMInBytes takes (the version runc 1.1 is built with): ASCII digits in one or more
    groups joined by dots, one space at most, then at most a unit of k, m, g, t or p (any
    case, powers of 1024), an i and a b ("64M", "1 GiB", "2kb", "100B", "1.5k"). The number
    is read as a float, so "1.2.3" has the form and still fails, in strconv's words."""
    if text == "-1":
        return -1
    digits = text[: len(text) - len(text.lstrip("0123456789."))]
    suffix = text[len(digits) :].removeprefix(" ")
    unit = suffix[:1].lower() if suffix[:1].lower() in _SIZE_UNITS else ""
    extras = suffix[len(unit) :].lower()
    if not all(digits.split(".")) or not suffix.isascii() or extras not in _SIZE_EXTRAS:
        raise InvalidArgument(f"invalid size: '{text}'")
    from galley.oci.commands import gosyntax  # noqa: PLC0415 - update only

    number = float(digits) if digits.count(".") <= 1 else None
    if number is None or number == float("inf"):  # no float, or past float64's range
        error = gosyntax.Unreadable() if number is None else gosyntax.OutOfRange()
        raise InvalidArgument(gosyntax.strconv_words("ParseFloat", digits, error))
    size = int(number * _SIZE_UNITS.get(unit, 1))
    if size >= 2**63:  # runc's int64 wraps to a negative limit, which the kernel refuses
        raise InvalidArgument(f"invalid size: '{text}' is more than 2^63-1 bytes")
    return size


def check_console_socket(console_socket: str | None, *, detach: bool) -> None:
    """run and exec in the foreground wait for the process (and relay its pty themselves):
    a console socket is refused there, as runc refuses it."""
    if console_socket and not detach:
        raise FailedPrecondition(
            "cannot use console socket if galley-runc will not detach or allocate tty"
        )
