"""The table-driven option parser: runc's spellings, positionals, trailing command lines."""

from __future__ import annotations

import pytest

from galley.errors import InvalidArgument
from galley.oci.cli import parse_args
from galley.oci.commands.args import is_signal, parse_signal, parse_size


def test_global_and_command_options() -> None:
    args = parse_args(
        ["--root", "/r", "--log=/l", "--debug", "create", "-b", "/b", "--no-pivot", "c1"]
    )
    assert (args.root, args.log, args.debug) == ("/r", "/l", True)
    assert (args.command, args.bundle, args.no_pivot, args.container_id) == (
        "create",
        "/b",
        True,
        "c1",
    )
    assert args.pid_file is None
    assert args.preserve_fds == 0


def test_defaults_and_interspersed_options() -> None:
    args = parse_args(["delete", "c1", "--force"])
    assert args.force is True
    assert args.root == "/run/galley-runc"
    assert parse_args(["kill", "c1"]).signal is None
    assert parse_args(["kill", "--all", "c1", "KILL"]).signal == "KILL"


def test_exec_keeps_the_command_line() -> None:
    args = parse_args(
        ["exec", "-e", "A=1", "--env=B=2", "-t", "c1", "sh", "-c", "ls -l", "--cwd", "x"]
    )
    assert args.env == ["A=1", "B=2"]
    assert args.tty is True
    assert args.container_id == "c1"
    assert args.exec_args == ["sh", "-c", "ls -l", "--cwd", "x"]
    assert args.cwd is None
    # After the id every word is the program's, a "--" too: runc 1.1 execs "--" (and fails).
    assert parse_args(["exec", "c1", "--", "ls"]).exec_args == ["--", "ls"]
    assert parse_args(["exec", "--", "c1", "ls", "--", "x"]).exec_args == ["ls", "--", "x"]
    assert parse_args(["exec", "-g", "5", "-g", "6", "c1", "id"]).additional_gids == [5, 6]


def test_ps_passes_its_options_to_ps() -> None:
    args = parse_args(["ps", "--format", "json", "c1", "-o", "pid"])
    assert (args.format, args.container_id, args.ps_args) == ("json", "c1", ["-o", "pid"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "--bogus", "c"], "flag provided but not defined: -bogus"),
        (["create", "--bundle"], "flag needs an argument: -bundle"),
        # Moved before c, --bundle takes it for its value: no id is left (as in runc).
        (["create", "c", "--bundle"], 'galley-runc: "create" requires exactly 1 argument(s)'),
        (["kill", "-all=x", "c"], 'invalid boolean value "x" for -all: parse error'),
        (["kill", "---all", "c"], "bad flag syntax: ---all"),
        (["kill", "-=1", "c"], "bad flag syntax: -=1"),
        (["events", "--interval", "5", "c"], 'invalid value "5" for flag -interval: parse error'),
        (["update", "--pids-limit", "1" * 20, "c"], "for flag -pids-limit: value out of range"),
        (["state", "a", "b"], 'galley-runc: "state" requires exactly 1 argument(s)'),
        (["state"], 'galley-runc: "state" requires exactly 1 argument(s)'),
        (["list", "a"], 'galley-runc: "list" requires exactly 0 argument(s)'),
        (["kill"], 'galley-runc: "kill" requires a minimum of 1 argument(s)'),
        (["kill", "a", "b", "c"], 'galley-runc: "kill" requires a maximum of 2 argument(s)'),
        (["exec"], 'galley-runc: "exec" requires a minimum of 1 argument(s)'),
        (["create", "--preserve-fds", "x", "c"], 'invalid value "x" for flag -preserve-fds'),
        (["nosuchcommand"], "No help topic for 'nosuchcommand'"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_args(argv)
    assert message in str(err.value)


def test_help_and_version() -> None:
    assert parse_args(["--help"]).help is True
    args = parse_args(["create", "--help"])
    assert (args.command, args.help) == ("create", True)
    assert parse_args(["-v"]).version is True
    assert parse_args(["-v=false", "-help=0", "list"]).version is False
    assert parse_args(["state", "-h", "c1"]).help is True


def test_go_flag_spellings() -> None:
    """Go's flag package takes a long name after one dash and a short one after two, a
    boolean's value after "=", and Go's integer literals for an integer flag."""
    args = parse_args(["-debug", "create", "-bundle", "/b", "--b=/c", "-no-pivot", "c1"])
    assert (args.debug, args.bundle, args.no_pivot) == (True, "/c", True)
    args = parse_args(["delete", "--force=false", "c1"])
    assert args.force is False
    assert parse_args(["delete", "-f=T", "c1"]).force is True
    args = parse_args(["exec", "--preserve-fds", "0x10", "-tty=0", "c1", "true"])
    assert (args.preserve_fds, args.tty) == (16, False)
    assert parse_args(["events", "--interval=1m30s", "c1"]).interval == 90.0
    assert parse_args(["update", "--pids-limit", "1_000", "c1"]).pids_limit == 1000


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("KILL", 9),
        ("SIGKILL", 9),
        ("sigterm", 15),
        ("9", 9),
        ("usr1", 10),
        ("RTMAX", 64),
        ("40", 40),
        ("0", 0),
        ("+9", 9),  # numbers as Go's strconv.Atoi reads them; kill(2) judges them (is_signal)
        ("65", 65),
        ("-9", -9),
        ("\u017figkill", 9),  # Go's ToUpper, as Python's, makes the long s an S
    ],
)
def test_signals(text: str, number: int) -> None:
    assert parse_signal(text) == number


def test_what_kill_2_takes_as_a_signal() -> None:
    assert [n for n in (-9, -1, 0, 1, 64, 65, 999) if is_signal(n)] == [0, 1, 64]


@pytest.mark.parametrize(
    "bad",
    # "\ufb06op": Python's upper() makes the ligature "ST" (SIGSTOP); Go's ToUpper keeps it
    ["NOPE", "SIG", "SIG_IGN", "_IGN", "NSIG", "0x9", "9 ", "+", "\u0663", "9" * 20, "\ufb06op"],
)
def test_bad_signals(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown signal"):
        parse_signal(bad)


def test_a_dash_word_after_a_positional_is_a_positional_as_in_runc() -> None:
    assert parse_args(["kill", "c1", "-9"]).signal == "-9"
    # An option after the id is still one, and takes the word after it along (urfave/cli's
    # reordering, even after a boolean): `runc kill c1 -a KILL` signals a container "KILL".
    moved = parse_args(["kill", "c1", "-a", "KILL"])
    assert (moved.all, moved.container_id, moved.signal) == (True, "KILL", "c1")
    with pytest.raises(InvalidArgument, match="flag provided but not defined: -9"):
        parse_args(["kill", "c1", "--all", "-9"])  # moved along with --all
    with pytest.raises(InvalidArgument, match="flag provided but not defined: -9"):
        parse_args(["kill", "-9", "c1"])
    with pytest.raises(InvalidArgument, match='"state" requires exactly 1 argument'):
        parse_args(["state", "c1", "-x"])


def test_a_double_dash_reaches_the_command() -> None:
    """`--` after the command ends its options, not the global ones' (once it was lost there,
    and `state -- -a` read -a as an unknown flag)."""
    assert parse_args(["state", "--", "-a"]).container_id == "-a"
    assert parse_args(["--debug", "kill", "--", "c1", "-9"]).signal == "-9"
    assert parse_args(["kill", "c1", "--", "-9"]).signal == "-9"  # `--` goes before c1
    exec_args = parse_args(["--root", "/r", "exec", "c1", "--", "ls", "--"]).exec_args
    assert exec_args == ["--", "ls", "--"]  # not reordered: all of it the program's


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("64M", 64 << 20),
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("2KiB", 2048),
        ("1.5k", 1536),
        ("-1", -1),
        ("100b", 100),
        ("1 g", 1 << 30),  # go-units takes one space before the unit
        ("1 ", 1),
        ("1i", 1),  # and an "i" without a unit
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_sizes_of_the_form_that_are_no_float() -> None:
    """go-units' form allows "1.5.0", and strconv.ParseFloat refuses it; Python's float()
    failed here with a traceback, and one past float64's range ended in an OverflowError."""
    for text, why in (("1.5.0", "invalid syntax"), ("9" * 400 + "k", "value out of range")):
        with pytest.raises(InvalidArgument) as err:
            parse_size(text)
        digits = text.rstrip("k")
        assert str(err.value) == f'strconv.ParseFloat: parsing "{digits}": {why}'


@pytest.mark.parametrize(
    "bad",
    [
        *("", "x", "12q", "-5", "1e9", "inf", "nan", "1..5m", "9223372036854775808", "8192p"),
        *(" 1", " -1", "1  g", "1.g", ".5g", "1bi", "1\u212a"),  # the Kelvin sign is no k
    ],
)
def test_bad_sizes(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_size(bad)


def test_exec_cgroup_arguments_as_runc_reads_them() -> None:
    from galley.oci.commands.control import sub_cgroups  # noqa: PLC0415

    assert sub_cgroups([]) is None
    assert sub_cgroups(["a/b"]) == {"": "a/b"}
    assert sub_cgroups(["pids,memory:x", "cpu:y"]) == {"pids": "x", "memory": "x", "cpu": "y"}
    for bad in (["a", "b"], ["pids:x", "pids:y"], [":x"], ["a:b:c"]):
        with pytest.raises(InvalidArgument):
            sub_cgroups(bad)
