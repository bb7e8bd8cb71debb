"""A small command-line parser for runc's syntax, declared as tables (argparse costs ~9 ms a start).

    galley-runc [global options] COMMAND [options] ARGS...

Options take their value as `--name value`, `--name=value` or `-n value`; flags take none.
Options may come anywhere among the positionals, except for commands with a trailing
command line (`exec`, `ps`): there, parsing stops at the first positional after the container id
is seen and everything after it belongs to that command line (`--` ends options too). After
a positional, a word that begins with "-" but names no option of the command is a positional
too, as runc's parser has it (`runc kill ID -9` sends signal -9, which kill(2) refuses);
before any, it is an unknown flag.
"""

from __future__ import annotations

from galley.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from typing import Any

FLAG, STR, INT, LIST, INTLIST = "flag", "str", "int", "list", "intlist"
PROG = "galley-runc"


class UsageError(InvalidArgument):
    """The command line itself is wrong (an unknown flag, a missing argument): runc exits 1
    for it whatever the command, with no "<command> failed" prefix."""


class ArgumentCount(UsageError):
    """Too few or too many arguments: runc's words, `galley-runc: "kill" requires a minimum
    of 1 argument(s)`."""


class Option:
    """One option: its spellings (e.g. "-b,--bundle"), kind, default and help."""

    __slots__ = ("choices", "default", "dest", "help", "kind", "names")

    def __init__(
        self,
        names: str,
        help_text: str,
        kind: str = FLAG,
        default: object = None,
        choices: tuple[str, ...] = (),
    ) -> None:
        self.names = tuple(names.split(","))
        self.dest = max(self.names, key=len).lstrip("-").replace("-", "_")
        self.help = help_text
        self.kind = kind
        self.choices = choices
        if kind == FLAG:
            self.default: object = False
        elif kind in {LIST, INTLIST}:
            self.default = []
        else:
            self.default = default


class Syntax:
    """What a command takes: options, named positionals (the first `required` of them must
    be given, the others get None), a rest. The rest begins after the positionals, without
    a `--` that ends them (`exec ID -- ls`), unless raw: the global options pass the command
    its arguments as given (`state -- -a` names a container "-a")."""

    __slots__ = ("options", "positionals", "raw", "required", "rest")

    def __init__(
        self,
        options: list[Option],
        positionals: tuple[str, ...] = (),
        rest: str | None = None,
        required: int | None = None,
        *,
        raw: bool = False,
    ) -> None:
        self.options = options
        self.positionals = positionals
        self.rest = rest
        self.required = len(positionals) if required is None else required
        self.raw = raw


class Args:
    """The parsed arguments, as attributes named after each option's long name."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only reached for names never set
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value


def _convert(option: Option, name: str, text: str) -> object:
    if option.choices and text not in option.choices:
        allowed = ", ".join(option.choices)
        raise InvalidArgument(f"{name}: invalid value {text!r} (choose from {allowed})")
    if option.kind in {INT, INTLIST}:
        try:
            return int(text)
        except ValueError:  # Go's flag package's words
            flag = "-" + name.lstrip("-")
            raise UsageError(f'invalid value "{text}" for flag {flag}: parse error') from None
    return text


def parse(command: str, syntax: Syntax, argv: list[str], args: Args) -> Args:
    """Parse one command's argv into args (which may already hold the global options)."""
    by_name = {name: opt for opt in syntax.options for name in opt.names}
    for opt in syntax.options:
        value = opt.default
        setattr(args, opt.dest, list(value) if isinstance(value, list) else value)
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if syntax.rest is not None and len(positionals) >= len(syntax.positionals):
            positionals.extend(argv[i:] if arg == "--" and not syntax.raw else argv[i - 1 :])
            break
        if arg == "--":
            positionals.extend(argv[i:])
            break
        if arg in {"-h", "--help"}:
            args.help = True
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        name, eq, value = arg.partition("=")
        option = by_name.get(name)
        if option is None and positionals:
            positionals.append(arg)
            continue
        if option is None:  # Go's flag package names it with one dash
            raise UsageError(f"flag provided but not defined: -{name.lstrip('-')}")
        if option.kind == FLAG:
            setattr(args, option.dest, True)
            continue
        if not eq:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: -{name.lstrip('-')}")
            value = argv[i]
            i += 1
        converted = _convert(option, name, value)
        if option.kind in {LIST, INTLIST}:
            getattr(args, option.dest).append(converted)
        else:
            setattr(args, option.dest, converted)
    return _assign(command, syntax, positionals, args)


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
    """Help for one command."""
    pos = " ".join(f"<{p.replace('_', '-')}>" for p in syntax.positionals)
    rest = f" [{syntax.rest.replace('_', '-')}...]" if syntax.rest else ""
    lines = [f"usage: galley-runc {command} [options] {pos}{rest}".rstrip(), "", help_text, ""]
    for opt in syntax.options:
        spelled = ", ".join(opt.names) + ("" if opt.kind == FLAG else " value")
        lines.append(f"  {spelled:<28} {opt.help}")
    return "\n".join(lines) + "\n"
