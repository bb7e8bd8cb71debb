#!/usr/bin/env python3
"""Argument fuzzer: random command lines, as runc callers write them, under runc and galley-runc.

seqfuzz.py draws which commands reach a container; their command lines are few and well
formed. This draws the command lines themselves. The flags come from runc's own `--help`
(so a flag runc has and galley-runc lacks shows up), each written in one of the forms runc's
parser takes (`--name value`, `--name=value`, `-n value`, Go's `-name value`, a boolean's
`--name=false`), before the container's id or after it, with a value from VALUES: in range,
out of it, malformed, empty, a path that is relative, missing or not a directory. Global
options, unknown options, a missing value and odd ids (empty, `..`, a slash, a dash word,
non-ASCII, long) are drawn too. Each case makes a container (create, or run -d) and runs
three to seven drawn command lines on it, from `random.Random(f"argfuzz-{seed}-{case}")`,
under both runtimes, each with its own bundles, --root, cgroupsPath and working directory.

After each command line it records the exit status, the shape of stdout (empty, text of n
lines, a JSON object's keys, a JSON array's length) and the status of both containers it may
have made. A case differs when, at some step:

- the exit statuses differ, or the containers' statuses;
- both succeeded and stdout's shapes differ;
- galley-runc's stderr shows Python's words (mutfuzz.PYTHONISMS) or a traceback;

or when, after the case's containers are deleted, the runtimes leave different files in their
working directories (a relative --pid-file or --log, `spec`'s config.json), a state directory
or a cgroup. Error wording is printed, not compared.

    python scripts/argfuzz.py --seed 1 -n 100 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/argfuzz.py --seed 1 --case 17 ...          # replay one case, every step
    python scripts/argfuzz.py --rootless 62117 --seed 1 -n 100 ...   # both as that uid

--rootless UID runs both runtimes as that uid (seqfuzz's rootless bundles, state
directories and Container), in working directories it owns, without ps and kill --all.

Left out: checkpoint and restore (CRIU; galley-runc refuses both outright), `--help` and
`--version` (their text is each runtime's own), `events` without `--stats` (it streams until
the container ends). Needs root and runc; everything a case makes is removed after it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutfuzz import PYTHONISMS  # scripts/ is not a package
from seqfuzz import ROOTLESS, Container, Runner, compare_runtimes, fuzz_parser, write_bundle
from seqfuzz import Case as SeqCase

from galley.fixtures.processes import cgroup_mounts  # seqfuzz put src/ on the path

COMMANDS = [
    "create",
    "delete",
    "events",
    "exec",
    "features",
    "kill",
    "list",
    "pause",
    "ps",
    "resume",
    "run",
    "spec",
    "start",
    "state",
    "update",
]
# --rootless leaves out ps and kill --all: runc 1.1.5 fails both on a container it could make
# no cgroup for, where galley-runc finds the init's descendants (docs/history.md, session 24).
ROOTLESS_SKIPPED = ("ps",)
# Global options not drawn: --root is the fuzzer's, --help and --version print each
# runtime's own text.
GLOBAL_LEFT_OUT = {"root", "help", "version"}

# Placeholders, filled per runtime: {W} its working directory, {B} the long-running bundle,
# {L} another (for a second container), {S} a short one (its init exits 3), {ID} the case's
# container, {ID2} a second id.
# Not 2^63-1: runc 1.1's update wraps it to -2^63 for memory-swap and fails (argfuzz seed 3).
NUMBERS = ["0", "-1", "100", "100M", "abc", "", "9223372036854775808", "18446744073709551616"]
NUMBERS += ["1.5", "1g", "200000000", "1024k"]
CPUSETS = ["0", "0-1", "x", "", "99", "0,", "1-0"]
VALUES: dict[str, list[str]] = {
    "bundle": ["{B}", "{S}", "s", "{W}/nonexistent", "", "{W}/file"],
    "console-socket": ["{W}/nosock", "{W}/file", "", "rel-sock"],
    "pid-file": ["{W}/pid", "pid-rel", "{W}/nodir/pid", "", "{W}", "{W}/file"],
    # Not 1-4: runc 1.1 passes its own fds 3-6 for a count the caller did not pass, where
    # galley-runc refuses (docs/history.md, session 27).
    "preserve-fds": ["0", "-1", "x", "100000", "10", ""],
    "cwd": ["/", "/tmp", "rel", "", "/nonexistent", "/bin/sh"],
    "env": ["A=1", "A", "=x", "", "PATH=", "A=1=2", "é=☃"],
    "user": ["0", "1000:1000", "0:0:0", "abc", "", ":", "1000:", "-1", "4294967295", "65534"],
    "additional-gids": ["1", "1,2", "x", "", "-1", "4294967295", "1,,2"],
    "process": ["{S}/process.json", "{S}/bad-process.json", "{W}/none.json", "-", "", "{W}"],
    "process-label": ["", "system_u:system_r:container_t:s0"],
    "apparmor": ["", "unconfined", "nonexistent-profile"],
    "cap": ["CAP_NET_ADMIN", "NET_ADMIN", "CAP_BOGUS", "", "cap_sys_admin", "CAP_ALL"],
    "cgroup": ["", "memory:sub", "sub", "x:y", ":", "memory:/abs", "/"],
    "format": ["json", "table", "xml", "", "JSON"],
    "interval": ["1s", "x", "0", "-1s", "100ms", "1", ""],
    "resources": ["{S}/resources.json", "{S}/bad-resources.json", "-", "{W}/none.json", ""],
    "cpuset-cpus": CPUSETS,
    "cpuset-mems": CPUSETS,
    "l3-cache-schema": ["", "L3:0=f"],
    "mem-bw-schema": ["", "MB:0=100"],
    "log": ["{W}/log", "log-rel", "", "{W}/nodir/log", "/dev/null", "{W}"],
    "log-format": ["text", "json", "xml", ""],
    "criu": ["criu", "/nonexistent"],
    "rootless": ["true", "false", "auto", "x", ""],
}
# Not drawn: SIGRTMIN, SIGRTMAX, SIGIOT, SIGCLD, SIGPOLL, which galley-runc takes and runc's
# Go table (one name for each of 1-31) does not (docs/history.md, session 22).
SIGNALS = ["KILL", "9", "0", "SIGUSR1", "TERM", "FOO", "99", "-9", "+9", "SIGRTMIN+1"]
SIGNALS += ["RTMIN+1", "sigkill", "kill", "SIGPWR", "64", "", "1.0", "SIGUNUSED"]
PROGRAMS = [["true"], ["sh", "-c", "exit 3"], ["/nonexistent"], [], ["--", "true"], ["-x"]]
IDS = ["{ID}", "{ID2}", "nope", "", "..", "a/b", "x" * 300, "-x", "a b", "é", ".", "{ID}/"]


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # the long name first, then its short aliases
    takes_value: bool


@cache
def flags(runc: str, command: str | None) -> list[Flag]:
    """The options runc's `--help` lists for command (None: the global ones)."""
    argv = [runc, "--help"] if command is None else [runc, command, "--help"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    found = []
    for line in text.partition("OPTIONS:")[2].splitlines():  # none: no OPTIONS section
        spec = line.strip().split("  ", 1)[0]  # "--bundle value, -b value"
        if not spec.startswith("--"):
            continue
        forms = [form.split()[0] for form in spec.split(", ")]
        names = tuple(form.lstrip("-") for form in forms)
        if (command is None and names[0] in GLOBAL_LEFT_OUT) or names[0] == "help":
            continue
        found.append(Flag(names, " value" in spec))
    return found


def written(rnd: random.Random, flag: Flag) -> list[str]:
    """flag in one of the forms runc's parser takes, with a drawn value."""
    name = rnd.choice(flag.names) if rnd.random() < 0.4 else flag.names[0]
    dashes = "--" if len(name) > 1 and rnd.random() < 0.85 else "-"
    if not flag.takes_value:
        return [dashes + name + rnd.choice(["", "", "", "=true", "=false", "=x"])]
    value = rnd.choice(VALUES.get(flag.names[0], NUMBERS))
    if rnd.random() < 0.2:
        return [f"{dashes}{name}={value}"]
    return [dashes + name, value]


@dataclass
class Case:
    first: str  # "create" or "run-d": how the case's container is made
    lines: list[list[str]]  # the command lines, with placeholders


def draw_line(rnd: random.Random, runc: str) -> list[str]:
    """One command line, with placeholders. Its bundle is never {B} for create and run: the
    case's container runs in {B}'s cgroup, and a second container in a non-empty cgroup is
    one galley-runc refuses where runc 1.1 warns (docs/history.md, session 13): they get {L},
    a long-running bundle with a cgroup of its own (or, for a `run` in the foreground, {S})."""
    command = rnd.choice([c for c in COMMANDS if not (ROOTLESS and c in ROOTLESS_SKIPPED)])
    drawable = [f for f in flags(runc, command) if not (ROOTLESS and f.names[0] == "all")]
    options: list[str] = []
    for flag in rnd.sample(drawable, k=min(len(drawable), 3)):
        if rnd.random() < 0.45:
            options += written(rnd, flag)
    if command == "events" and "--stats" not in options:
        options.append("--stats")
    if rnd.random() < 0.05:
        options.insert(rnd.randint(0, len(options)), rnd.choice(["--bogus", "-Z", "--bogus=1"]))
    ident = "{ID2}" if command in ("create", "run") else "{ID}"
    if rnd.random() < 0.15:
        ident = rnd.choice(IDS)
    positionals = [ident] if command not in ("list", "spec", "features") else []
    if command == "kill" and rnd.random() < 0.8:
        positionals.append(rnd.choice(SIGNALS))
    if command == "exec":
        positionals += rnd.choice(PROGRAMS)
    if command in {"create", "run"}:  # the second container's long bundle: {L}
        options = [option.replace("{B}", "{L}") for option in options]
    detached = {f"{dashes}{name}{value}" for dashes in ("-", "--") for name in ("d", "detach")
                for value in ("", "=true")}  # fmt: skip
    if command == "run" and not detached & set(options):
        options = [option.replace("{L}", "{S}") for option in options]
    if command == "exec" and not detached & set(options):
        options = [option for option in options if not is_tty_flag(option)]
    after = rnd.randint(0, len(options)) if rnd.random() < 0.2 else len(options)
    if after < len(options) and options[after - 1 : after] and written_value(options, after):
        after += 1  # not between an option and its value
    line = [command, *options[:after], *positionals[:1], *options[after:], *positionals[1:]]
    if rnd.random() < 0.03 and options and not positionals:
        line.pop()  # a value missing at the end
    globals_ = [w for f in rnd.sample(flags(runc, None), k=2) for w in written(rnd, f)]
    return [*globals_, *line] if rnd.random() < 0.25 else line


def is_tty_flag(word: str) -> bool:
    """Whether word is exec's -t/--tty in any spelling. Not drawn in the foreground: runc 1.1
    then needs a terminal of its own (it fails opening /dev/tty, and the fuzzer has none),
    where galley-runc relays the pty (docs/history.md, session 15)."""
    return word.lstrip("-").split("=", 1)[0] in {"t", "tty"} and word.startswith("-")


def written_value(options: list[str], index: int) -> bool:
    """Whether options[index] is the value of the option before it."""
    before = options[index - 1]
    return before.startswith("-") and "=" not in before and not options[index].startswith("-")


def draw(seed: int, number: int) -> Case:
    rnd = random.Random(f"argfuzz-{seed}-{number}")
    first = rnd.choice(["create", "run-d"])
    return Case(first, [draw_line(rnd, RUNC[0]) for _ in range(rnd.randint(3, 7))])


RUNC: list[str] = []  # set by main: the runc whose --help gives the flags


@dataclass
class Step:
    line: str
    status: int | str
    after: str  # both containers' statuses once settled
    shape: str  # stdout's
    error: str  # stderr's last line
    python: bool = False  # galley-runc's stderr shows Python's words


def shape(out: str) -> str:
    text = out.strip()
    if not text:
        return "empty"
    try:
        document = json.loads(text)
    except ValueError:
        return f"text of {len(text.splitlines())} lines"
    if isinstance(document, dict):
        return "object " + ",".join(sorted(document))
    if isinstance(document, list):
        return f"array of {len(document)}"
    return type(document).__name__


def fill(words: list[str], places: dict[str, str]) -> list[str]:
    return [re.sub(r"\{(\w+)\}", lambda m: places[m[1]], word) for word in words]


def prepare(work: Path, tag: str) -> dict[str, str]:
    """The runtime's working directory: the two long bundles, the short one (also as `s`),
    a file; each bundle with a cgroup of its own."""
    work.mkdir()
    cgroup = f"/argfuzz-{tag}"
    write_bundle(work / "long", SeqCase(["sleep", "1000"], True, []), cgroup + "-long")
    write_bundle(work / "long2", SeqCase(["sleep", "1000"], True, []), cgroup + "-long2")
    write_bundle(work / "s", SeqCase(["sh", "-c", "exit 3"], True, []), cgroup + "-short")
    (work / "file").write_text("not a directory\n")
    if ROOTLESS:  # the user's own working directory
        for path in (work, work / "file"):
            os.chown(path, ROOTLESS[0], -1)
    return {"W": str(work), "B": str(work / "long"), "L": str(work / "long2"), "S": str(work / "s")}


def run_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[Step]:
    name = Path(runtime).name
    here = work / name
    places = prepare(here, f"{tag}-{name}")
    places |= {"ID": "af", "ID2": "af2"}
    root = work / f"root-{name}"
    before = {p.name for p in here.iterdir()}
    main, second = Container(runner, runtime, root, "af"), Container(runner, runtime, root, "af2")
    make = ["create"] if case.first == "create" else ["run", "-d"]
    main(*make, "--bundle", places["B"], "af")
    steps = []
    try:
        for words in case.lines:
            code, out, err = main.spawn(*fill(words, places), cwd=here).result(10)
            lines = err.strip().splitlines()
            after = f"{main.settled()}/{second.status()}"
            python = bool(PYTHONISMS.search(err)) and "galley" in name
            steps.append(
                Step(" ".join(words), code, after, shape(out), lines[-1] if lines else "", python)
            )
    finally:
        steps.append(clean_up(runner, runtime, root=root, here=here, before=before, tag=tag))
    return steps


def clean_up(
    runner: Runner, runtime: str, *, root: Path, here: Path, before: set[str], tag: str
) -> Step:
    """Every container of the case deleted; what is left then, as a step of its own."""
    listed = Container(runner, runtime, root, "")("list", "-q")[1].split()
    for cid in {"af", "af2", *listed}:
        container = Container(runner, runtime, root, cid)
        container("resume", cid)
        container("delete", "-f", cid)
    left = sorted(f"file {p.name}" for p in here.iterdir() if p.name not in before)
    if root.is_dir():
        left += [f"state {p.name}" for p in root.iterdir()]
    name = Path(runtime).name
    for directory in (d for m in cgroup_mounts() for d in Path(m).glob(f"argfuzz-{tag}-{name}-*")):
        left.append(f"cgroup {directory.parent.name}/{directory.name.rsplit('-', 1)[1]}")
        try:
            directory.rmdir()
        except OSError as error:
            print(f"cannot remove {directory}: {error}", file=sys.stderr)
    return Step("(afterwards)", 0, ", ".join(left) or "nothing left", "", "")


def differing(runc: list[Step], galley: list[Step]) -> list[int]:
    return [
        i
        for i, (a, b) in enumerate(zip(runc, galley, strict=True))
        if a.status != b.status
        or a.after != b.after
        or (a.status == 0 and b.status == 0 and a.shape != b.shape)
        or b.python
    ]


def report(number: int, case: Case, runc: list[Step], galley: list[Step], every: bool) -> None:
    print(f"== case {number} ({case.first})")
    for i in range(len(runc)) if every else differing(runc, galley):
        print(f"  {i} {runc[i].line}")
        for who, step in (("runc", runc[i]), ("galley", galley[i])):
            print(f"     {who:<6} {step.status!s:>7} -> {step.after:<18} {step.shape}")
            if step.error:
                print(f"            {step.error[:160]}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    runc = args[args.index("--runc") + 1] if "--runc" in args else "/usr/sbin/runc"
    RUNC.append(os.path.abspath(runc))
    parser = fuzz_parser((__doc__ or "").split("\n", maxsplit=1)[0])
    parser.add_argument("--rootless", type=int, metavar="UID", help="both runtimes as this uid")
    options = parser.parse_args(argv)
    if options.rootless is not None:
        ROOTLESS.append(options.rootless)
    return compare_runtimes(
        options, Runner(), draw=draw, run_case=run_case, differing=differing, report=report
    )


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("argfuzz needs root")
    shutil.which("runc") or sys.exit("argfuzz needs runc")
    sys.exit(main())
