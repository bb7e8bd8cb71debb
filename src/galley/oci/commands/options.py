"""A small command-line parser for runc's syntax, declared as tables (argparse costs ~9 ms a start).

    galley-runc [global options] COMMAND [options] ARGS...

It reads a command line as runc 1.1's parser does: urfave/cli v1 on Go's flag package.

- An option is `-name` or `--name` (either, for long names and short), with its value as
  the next word or after `=`; a boolean takes `=true`, `=false` or another of Go's
  ParseBool words, and no separate value. `--` ends the options.
- Options stop at the first word that is not one (Go's flag package), but a command first
  moves every word naming one of its options, with the word after it, in front of the
  others, and a `--` in front of what is left (urfave/cli's reordering): `kill ID --all
  KILL` is `kill --all KILL ID`, and `kill ID -- -1` is `kill -- ID -1`. A word that
  begins with "-" but names no option of the command stays where it is, so after a
  positional it is a positional (`runc kill ID -9` sends -9, which kill(2) refuses), and
  before any it is an unknown flag.
- The global options, and commands with a trailing command line (`exec`, `ps`), are not
  reordered: everything after the container id belongs to that command line, a `--` too.
- Every command has `-h`/`--help`.
"""

from __future__ import annotations

from galley.errors import InvalidArgument, go_quote

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from typing import Any

FLAG, STR, INT, LIST, INTLIST, DURATION = "flag", "str", "int", "list", "intlist", "duration"
PROG = "galley-runc"


class UsageError(InvalidArgument):
    """The command line itself is wrong (an unknown flag, a missing argument): runc exits 1
    for it whatever the command, with no "<command> failed" prefix."""


class ArgumentCount(UsageError):
    """Too few or too many arguments: runc's words, `galley-runc: "kill" requires a minimum
    of 1 argument(s)`."""


class Option:
    """One option: its spellings (e.g. "-b,--bundle"), kind, default and help."""

    __slots__ = ("default", "dest", "help", "kind", "names")

    def __init__(
        self, names: str, help_text: str, kind: str = FLAG, default: object = None
    ) -> None:
        self.names = tuple(names.split(","))
        self.dest = max(self.names, key=len).lstrip("-").replace("-", "_")
        self.help = help_text
        self.kind = kind
        if kind == FLAG:
            self.default: object = False
        elif kind in {LIST, INTLIST}:
            self.default = []
        else:
            self.default = default


class Syntax:
    """What a command takes: options, named positionals (the first `required` of them must
    be given, the others get None), a rest: the words after the positionals, as given (a
    `--` among them too). A syntax with a rest is not reordered (see the module's doc)."""

    __slots__ = ("options", "positionals", "required", "rest")

    def __init__(
        self,
        options: list[Option],
        positionals: tuple[str, ...] = (),
        rest: str | None = None,
        required: int | None = None,
    ) -> None:
        self.options = options
        self.positionals = positionals
        self.rest = rest
        self.required = len(positionals) if required is None else required


class Args:
    """The parsed arguments, as attributes named after each option's long name."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only reached for names never set
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value


HELP = Option("-h,--help", "show help")  # urfave/cli gives every command one


def _convert(option: Option, name: str, text: str) -> object:
    """An option's value as Go's flag package reads it for the option's kind."""
    if option.kind in {STR, LIST}:
        return text
    from galley.oci.commands import gosyntax  # noqa: PLC0415 - only for these kinds

    try:
        if option.kind == FLAG:
            return gosyntax.parse_bool(text)
        if option.kind == DURATION:
            return gosyntax.parse_duration(text)
        # urfave's IntFlag reads Go's literals (0x10, 0o17, 1_000); its Int64SliceFlag
        # decimal digits alone, and says so in strconv's words.
        return gosyntax.parse_int(text, 0 if option.kind == INT else 10)
    except ValueError as e:
        if option.kind == FLAG:
            raise UsageError(
                f"invalid boolean value {go_quote(text)} for -{name}: parse error"
            ) from None
        if option.kind == INTLIST:
            reason = gosyntax.strconv_words("ParseInt", text, e)
        else:
            reason = "value out of range" if isinstance(e, gosyntax.OutOfRange) else "parse error"
        raise UsageError(f"invalid value {go_quote(text)} for flag -{name}: {reason}") from None


def _is_option(by_name: dict[str, Option], word: str) -> bool:
    """Whether word names an option (urfave/cli's test when it reorders: one or two leading
    dashes dropped twice over, and anything from "=" on)."""
    if word == "-" or not word.startswith("-"):
        return False
    name = word[2:] if word.startswith("--") else word
    name = name.removeprefix("-")
    return name.split("=", 1)[0] in by_name


def _reorder(by_name: dict[str, Option], argv: list[str]) -> list[str]:
    """urfave/cli v1's reordering: the words naming options, each with the word after it
    unless that names an option too (after a boolean as well), moved before the others; a
    `--` (not taken as a value) goes before the others, and the words after it stay."""
    moved: list[str] = []
    kept: list[str] = []
    value_next = False
    for i, word in enumerate(argv):
        if value_next and not _is_option(by_name, word):
            moved.append(word)
            value_next = False
        elif word == "--":
            kept = ["--", *kept, *argv[i + 1 :]]
            break
        elif _is_option(by_name, word):
            moved.append(word)
            value_next = "=" not in word
        else:
            kept.append(word)
    return moved + kept


def parse(command: str, syntax: Syntax, argv: list[str], args: Args) -> Args:
    """Parse one command's argv into args (which may already hold the global options)."""
    by_name = {name.lstrip("-"): opt for opt in (HELP, *syntax.options) for name in opt.names}
    for opt in (HELP, *syntax.options):
        value = opt.default
        setattr(args, opt.dest, list(value) if isinstance(value, list) else value)
    words = argv if syntax.rest is not None else _reorder(by_name, argv)
    i = 0
    while i < len(words):  # Go's flag.FlagSet.Parse
        word = words[i]
        if len(word) < 2 or word[0] != "-":
            break  # the first positional
        i += 1
        if word == "--":
            break
        name = word[2:] if word[1] == "-" else word[1:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {word}")
        name, eq, value = name.partition("=")
        option = by_name.get(name)
        if option is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if option.kind == FLAG:
            setattr(args, option.dest, _convert(option, name, value) if eq else True)
            continue
        if not eq:
            if i >= len(words):
                raise UsageError(f"flag needs an argument: -{name}")
            value = words[i]
            i += 1
        converted = _convert(option, name, value)
        if option.kind in {LIST, INTLIST}:
            getattr(args, option.dest).append(converted)
        else:
            setattr(args, option.dest, converted)
    return _assign(command, syntax, words[i:], args)


def _assign(command: str, syntax: Syntax, positionals: list[str], args: Args) -> Args:
    names = syntax.positionals
    if not getattr(args, "help", False):
        _check_count(command, syntax, len(positionals))
    for i, name in enumerate(names):
        setattr(args, name, positionals[i] if i < len(positionals) else None)
    if syntax.rest:
        setattr(args, syntax.rest, positionals[len(names) :])
    return args


def _check_count(command: str, syntax: Syntax, given: int) -> None:
    """ArgumentCount in runc's words: "exactly N" where the count is fixed, else "a minimum
    of N" or "a maximum of N"."""
    most = None if syntax.rest else len(syntax.positionals)
    fixed = most == syntax.required
    if given < syntax.required:
        wanted = f"exactly {syntax.required}" if fixed else f"a minimum of {syntax.required}"
    elif most is not None and given > most:
        wanted = f"exactly {most}" if fixed else f"a maximum of {most}"
    else:
        return
    raise ArgumentCount(f'{PROG}: "{command}" requires {wanted} argument(s)')


def usage(command: str, syntax: Syntax, help_text: str) -> str:
    """Help for one command, laid out as runc's (urfave/cli's NAME, USAGE and OPTIONS)."""
    pos = " ".join(f"<{p.replace('_', '-')}>" for p in syntax.positionals)
    rest = f" [{syntax.rest.replace('_', '-')}...]" if syntax.rest else ""
    lines = ["NAME:", f"   {PROG} {command} - {help_text}", "", "USAGE:"]
    lines.append(f"   {PROG} {command} [command options] {pos}{rest}".rstrip())
    if syntax.options:
        lines += ["", "OPTIONS:", *option_lines(syntax.options)]
    return "\n".join(lines) + "\n"


def option_lines(options: list[Option]) -> list[str]:
    """Options as urfave/cli lists them: every spelling, the long one first, " value" after
    each of one that takes a value, and the help in a column two spaces past the longest."""
    spelled = [
        ", ".join(name + ("" if opt.kind == FLAG else " value") for name in _long_first(opt))
        for opt in options
    ]
    width = max(map(len, spelled), default=0) + 2
    return [f"   {names:<{width}}{opt.help}" for names, opt in zip(spelled, options, strict=True)]


def _long_first(option: Option) -> list[str]:
    return sorted(option.names, key=lambda name: not name.startswith("--"))
