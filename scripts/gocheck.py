"""Compare galley-runc's Go-style readings with Go's own, on many random texts.

galley-runc reads what runc reads as runc, a Go program, reads it: integers, booleans and
durations as strconv and time do, byte sizes as docker/go-units, signal names as
strings.ToUpper and x/sys/unix, error quoting as strconv.Quote, what it prints as JSON as
json.Marshal writes strings (the same bytes: `marshal`), the bundle path as filepath.Abs
cleans it (`clean`), a log line's time zone for a $TZ as
Go's time package resolves it (`zone`: every zone file, POSIX rules, no zone), a document
that is no JSON as a json.Decoder words it, and config.json, exec's --process file and
update's --resources file as encoding/json decodes them into the runtime-spec's Go types.
scripts/gocheck/main.go prints Go's reading of each text; this script draws the texts, reads
each with galley's code too, and prints where the two differ (exit status 1 if anywhere).

    .venv/bin/python scripts/gocheck.py --seed 1 -n 20000        # every check
    .venv/bin/python scripts/gocheck.py --only spec               # one of CHECKS

Needs Go and the Go packages runc is built with (not part of scripts/setup.sh: the suite
never needs Go):

    apt-get install golang-go golang-github-docker-go-units-dev golang-golang-x-sys-dev \\
        golang-github-opencontainers-specs-dev

Differences left on purpose are not counted: the signal names galley takes beyond Go's
table (SIGIOT, SIGCLD, SIGPOLL, SIGRTMIN, SIGRTMAX), a size past 2^63-1 bytes (galley refuses
it, Go's int64 wraps), and in the spec check the values galley's validation refuses beyond
their type (it reports only where Go refuses a shape galley takes, or the reverse for a
value of the right type).
"""

from __future__ import annotations

import argparse
import ast
import copy
import io
import json
import os
import posix
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from galley.errors import GalleyError, go_quote
from galley.fixtures.busybox import default_config
from galley.kernel import pathnames
from galley.oci import gojson, jsonfast
from galley.oci.commands import gosyntax
from galley.oci.commands.args import parse_signal, parse_size
from galley.oci.validate import check_process, validate
from galley.oci.validate_resources import check_resources

HERE = Path(__file__).resolve().parent
GALLEY_ONLY_SIGNALS = {"SIGIOT", "SIGCLD", "SIGPOLL", "SIGRTMIN", "SIGRTMAX"}


def build(work: Path) -> Path:
    """scripts/gocheck built in GOPATH mode against Debian's Go packages."""
    binary = work / "gocheck"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{work}/gopath:/usr/share/gocode",
        "GOCACHE": str(work / "cache"),
    }
    command = ["go", "build", "-o", str(binary), "."]
    subprocess.run(command, cwd=HERE / "gocheck", env=env, check=True)
    return binary


def go(binary: Path, reading: str, lines: list[str]) -> list[str]:
    """Go's reading of each line (one output line per input line); reading may carry its
    argument ("decode spec")."""
    text = "\n".join(lines) + "\n" if lines else ""
    command = [str(binary), *reading.split()]
    done = subprocess.run(command, input=text, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def unquoted(line: str) -> str:
    return str(ast.literal_eval(line)) if line.startswith('"') else line


# --- the texts ---------------------------------------------------------------------------


def numbers(rnd: random.Random, count: int) -> list[str]:
    """Integers, booleans and durations: digits, signs, prefixes, underscores, units, edges."""
    pieces = [*"0123456789" * 3, *"+-_xXoObB.eE tTfF", "ns", "us", "µs", "ms", "s", "m", "h"]
    pieces += ["9223372036854775807", "9223372036854775808", "18446744073709551616"]
    pieces += ["\u00b2", "\u0661"]  # digits to str.isdigit(), not to Go
    texts = ["", "0", "-0", "0x", "08", "0_7", "1__0", "2562047h", "2562048h"]
    texts += ["9223372036854775807ns", "9223372036854775808ns", "-9223372036854775808ns"]
    for _ in range(count):
        texts.append("".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 6))))
    return texts


def sizes(rnd: random.Random, count: int) -> list[str]:
    pieces = [*"0123456789" * 4, *". kKmMgGtTpPiIbBxe-+_", "\u212a", "é", "1" * 30, "9" * 400]
    texts = ["-1", " -1", "1 g", "1.5.5", "1i", "1kib", "8191.99p", "8192p"]
    for _ in range(count):
        texts.append("".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 6))))
    return texts


QUOTABLE = ["a", '"', "\\", "\t", "\n", "\x1b", "\x7f", "é", "\u00a0", "\u200b", "\U0001f600"]
QUOTABLE += ["\U000e0001", "\udcff"]  # a tag character; a byte that is no UTF-8
# What Go's JSON encoder escapes otherwise than Python's: HTML's characters, JavaScript's line
# separators, \b and \f; NUL and the last code point.
MARSHALABLE = [*QUOTABLE, "<", ">", "&", "\u2028", "\u2029", "\b", "\f", "\x00", "\U0010ffff", "/"]


def drawn_texts(rnd: random.Random, count: int, pieces: list[str]) -> list[str]:
    return ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8))) for _ in range(count)]


def signal_names(rnd: random.Random, count: int) -> list[str]:
    names = ["HUP", "INT", "KILL", "USR1", "TERM", "STOP", "TSTP", "STKFLT", "CHLD", "IOT"]
    names += ["CLD", "POLL", "PWR", "RTMIN", "RTMAX", "RTMIN+1", "_DFL", "_IGN", "NSIG", "STKSZ"]
    texts = []
    for _ in range(count):
        if rnd.random() < 0.5:
            name = "".join(c.lower() if rnd.random() < 0.3 else c for c in rnd.choice(names))
            prefix = rnd.choice(["", "SIG", "sig", "\u017fig", "s\u0131g", " "])
            name = name.replace("ST", "\ufb06") if rnd.random() < 0.1 else name
            texts.append(prefix + name + rnd.choice(["", "", " ", "1"]))
        else:
            digits = "".join(rnd.choice("0123456789_") for _ in range(rnd.randint(0, 21)))
            texts.append(rnd.choice(["", "+", "-", " "]) + digits + rnd.choice(["", "", "x"]))
    return texts


def broken_documents(rnd: random.Random, count: int) -> list[str]:
    """A config.json broken a few bytes at a time: cut short, bytes dropped, doubled or
    replaced by JSON's own punctuation and odd bytes; some kept whole."""
    text = json.dumps(full_config(), indent=rnd.choice([None, 1]))
    pieces = [*'{}[]:,"\\ \t\n', "tru", "nul", "-", "0", "01", "1.", "1e", "\\u12", "\x01"]
    pieces += ["é", "\ufeff"]
    texts = ["", " ", "{", '{"a"', '{"a":', "[1,]", "nan", "\ufeff{}", "{} x", "[1] ]"]
    for _ in range(count):
        broken = text
        for _ in range(rnd.randint(0, 3)):
            at = rnd.randrange(len(broken) + 1)
            cut = rnd.choice([0, 1, 1, 2])
            broken = broken[:at] + rnd.choice(["", *pieces]) + broken[at + cut :]
        if rnd.random() < 0.1:
            broken = broken[: rnd.randrange(len(broken) + 1)]
        texts.append(broken)
    return texts


def galley_syntax(text: str) -> str:
    words = gojson.syntax_error(text.encode("utf-8", "surrogateescape"))
    return "ok" if words is None else f"E {words}"


def syntax_agrees(text: str, theirs: str, ours: str) -> bool:
    """Alike, but for bytes after the value: runc's Decoder ignores them, galley refuses."""
    return unquoted(theirs) == ours or (theirs == "ok" and ours.endswith("after top-level value"))


# --- galley's readings, in gocheck's words -------------------------------------------------


def galley_numbers(text: str) -> str:
    out = []
    readers: list[Callable[[], object]] = [
        lambda: gosyntax.parse_int(text, 0),
        lambda: gosyntax.parse_int(text, 10),
        lambda: gosyntax.parse_uint(text, 10),
    ]
    for read in readers:
        try:
            out.append(str(read()))
        except gosyntax.OutOfRange:
            out.append("range")
        except ValueError:
            out.append("syntax")
    try:
        out.append("true" if gosyntax.parse_bool(text) else "false")
    except ValueError:
        out.append("syntax")
    try:
        out.append(str(round(gosyntax.parse_duration(text) * 1e9)))
    except ValueError:
        out.append("syntax")
    return "|".join(out)


def numbers_agree(text: str, theirs: str, ours: str) -> bool:
    *go_ints, go_duration = theirs.split("|")
    *our_ints, our_duration = ours.split("|")
    if go_ints != our_ints:
        return False
    if "syntax" in (go_duration, our_duration):
        return go_duration == our_duration
    return abs(int(go_duration) - int(our_duration)) <= max(2, abs(int(go_duration)) >> 40)


def galley_size(text: str) -> str:
    try:
        return str(parse_size(text))
    except GalleyError as e:
        return f"E {e}"


def size_agrees(text: str, theirs: str, ours: str) -> bool:
    if ours.endswith("is more than 2^63-1 bytes") and not theirs.startswith('"'):
        return int(theirs) < 0  # Go's int64 wrapped: galley refuses on purpose
    return unquoted(theirs) == ours


def galley_signal(text: str) -> str:
    try:
        return str(parse_signal(text))
    except GalleyError:
        return "unknown"


def signal_agrees(text: str, theirs: str, ours: str) -> bool:
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    return theirs == ours or name in GALLEY_ONLY_SIGNALS


# --- config.json: every field of the runtime-spec's Go types, given the wrong shape -------

WRONG: dict[str, list[object]] = {
    "string": [5, True, [], {}],
    "bool": ["x", 1, [], {}],
    "array": ["x", 5, {}, True],
    "object": ["x", 5, [], True],
    "map": ["x", 5, [], True],
}
LIMITS: dict[str, list[object]] = {
    "uint": [-1, 2**64],
    "uint8": [-1, 256],
    "uint16": [-1, 65536],
    "uint32": [-1, 2**32],
    "uint64": [-1, 2**64],
    "int": [2**63, -(2**63) - 1],
    "int32": [2**31, -(2**31) - 1],
    "int64": [2**63],
}


def full_config() -> dict[str, Any]:
    """A config with one valid entry in every array of objects, so that each member gets its
    turn: a bundle's, plus resources, hooks, seccomp and the other platforms' sections."""
    doc: dict[str, Any] = copy.deepcopy(default_config(["true"]))
    linux = doc["linux"]
    linux["devices"] = [{"type": "c", "path": "/dev/x", "major": 1, "minor": 3, "fileMode": 438}]
    device = {"major": 8, "minor": 0}
    linux["resources"] = {
        "devices": [{"allow": False, "access": "rwm", "type": "c", "major": 1, "minor": 3}],
        "memory": {"limit": 10**8, "swap": 2 * 10**8, "swappiness": 10},
        "cpu": {"shares": 100, "quota": 1000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 10},
        "blockIO": {
            "weight": 500,
            "weightDevice": [{**device, "weight": 500}],
            **{f"throttle{k}Device": [{**device, "rate": 1}] for k in ("ReadBps", "WriteIOPS")},
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
        "rdma": {"mlx5_0": {"hcaHandles": 1, "hcaObjects": 1}},
        "unified": {"memory.high": "max"},
    }
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {
                "names": ["getcwd"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1,
                "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    linux["personality"] = {"domain": "LINUX"}
    doc["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    doc["process"]["consoleSize"] = {"height": 10, "width": 10}
    hook = {"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}
    doc["hooks"] = {k: [hook] for k in ("prestart", "createRuntime", "poststart", "poststop")}
    doc["annotations"] = {"a": "b"}
    doc["solaris"] = {"anet": [{"linkname": "l"}], "cappedCPU": {"ncpus": "1"}}
    doc["windows"] = {
        "layerFolders": ["a"],
        "devices": [{"id": "x", "idType": "y"}],
        "resources": {"memory": {"limit": 1}, "cpu": {"count": 1}, "storage": {"iops": 1}},
        "network": {"endpointList": ["e"]},
    }
    doc["vm"] = {"hypervisor": {"path": "/h"}, "kernel": {"path": "/k"}, "image": {"path": "/i"}}
    doc["zos"] = {"devices": [{"path": "/dev/z", "type": "c", "major": 1, "minor": 1}]}
    return doc


def steps(path: str) -> Iterator[str | int]:
    """The keys and indexes of a schema path: "a.b[].c{}" -> a, b, 0, c, "k"."""
    for part in path.split("."):
        name = part.split("[")[0].split("{")[0]
        if name:
            yield name
        for mark in part[len(name) :].replace("]", "").replace("}", ""):
            yield 0 if mark == "[" else "k"


def put(doc: dict[str, Any], path: str, value: object) -> None:
    """Set path in doc to value, making the containers on the way where they are missing."""
    keys = list(steps(path))
    node: Any = doc
    for key, after in zip(keys, [*keys[1:], None], strict=True):
        if after is None:
            if isinstance(node, list) and not node:
                node.append(value)
            else:
                node[key] = value
            return
        fresh: Any = [] if after == 0 else {}
        if isinstance(node, list):
            if not node:
                node.append(fresh)
        elif not isinstance(node.get(key), type(fresh)):
            node[key] = fresh
        node = node[key]


def validator(kind: str) -> Callable[[str], str]:
    """galley's reading of a document of kind (see DOCUMENTS): "ok", or "E <its error>"."""
    checks: dict[str, Callable[[object], object]] = {
        "spec": validate,
        "process": lambda doc: check_process("process", doc),
        "resources": lambda doc: check_resources("resources", doc),
    }
    check = checks[kind]

    def read(document: str) -> str:
        try:
            check(jsonfast.load_stream(io.BytesIO(document.encode()), kind))
        except (GalleyError, ValueError) as e:
            return f"E {e}"
        return "ok"

    return read


# Each document runc decodes into a runtime-spec Go type: a config.json, an exec --process
# file, an update --resources file. Their bases: valid, with one entry in every array.
DOCUMENTS: dict[str, Callable[[], Any]] = {
    "spec": full_config,
    "process": lambda: full_config()["process"],
    "resources": lambda: full_config()["linux"]["resources"],
}


def check_documents(binary: Path, kind: str) -> int:
    """Every field of kind's Go type given each wrong shape: where Go's decoder refuses the
    document and galley's validation takes it (or ends in an exception)."""
    schema = go(binary, f"schema {kind}", [])
    base = DOCUMENTS[kind]()
    ours = validator(kind)
    assert go(binary, f"decode {kind}", [json.dumps(base)]) == ["ok"], f"Go refuses the base {kind}"
    assert ours(json.dumps(base)) == "ok", f"galley refuses the base {kind}"
    cases: list[tuple[str, object, dict[str, Any]]] = []
    for line in schema:
        path, shape = line.split("\t")
        numeric = ["x", True, 1.5, [], {}, *LIMITS[shape]] if shape in LIMITS else []
        for value in (WRONG.get(shape) or numeric) if path else []:  # "": the document itself
            doc = copy.deepcopy(base)
            put(doc, path, value)
            cases.append((path, value, doc))
    decoded = go(binary, f"decode {kind}", [json.dumps(doc) for _, _, doc in cases])
    differ = 0
    for (path, value, doc), theirs in zip(cases, decoded, strict=True):
        our = crashing(ours, json.dumps(doc))
        if our.startswith("crash") or (theirs.startswith("E") and our == "ok"):
            differ += 1
            why = theirs[2:90]
            print(f"{kind}: {path} = {json.dumps(value)}: Go refuses ({why}), galley: {our:.60}")
    print(f"{kind}: {len(cases)} wrong shapes of {len(schema)} fields, {differ} taken by galley")
    return differ


def absolute_paths(rnd: random.Random, count: int) -> list[str]:
    """Absolute paths of slashes, dots, dot-dots and names (a bundle as --bundle may give it)."""
    pieces = ["/", "/", "//", ".", "..", "a", "b.", "...", "é"]
    return [
        "/" + "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 7))) for _ in range(count)
    ]


def go_quoted(read: Callable[[str], str]) -> Callable[[str], str]:
    """read, its result quoted as Go's strconv.Quote prints it."""
    return lambda text: go_quote(read(text))


def zone_names(rnd: random.Random, count: int) -> list[str | None]:
    """$TZ values: zone files by name (some with the leading colon, some by absolute path),
    POSIX rules, names of no zone, directories, the empty and the unset value."""
    root = "/usr/share/zoneinfo"
    files = sorted(
        f"{directory}/{name}"[len(root) + 1 :]
        for directory, _, names in os.walk(root)
        for name in names
    )
    drawn: list[str | None] = [None, "", "UTC", ":", "Local", "localtime", "America", "posix"]
    drawn += [
        "IST-5:30",
        "EST5EDT",
        "UTC0",
        "<+03>-3",
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "Nowhere/Town",
    ]
    drawn += ["../zoneinfo/UTC", "/etc/localtime", "/nonexistent", "/usr/share/zoneinfo"]
    for name in rnd.sample(files, min(count, len(files))):
        drawn.append(rnd.choice([name, f":{name}", f"{root}/{name}", f":{root}/{name}"]))
    return drawn


def check_zones(binary: Path, zones: list[str | None]) -> int:
    """The zone a log line's time ends with, for each $TZ: Go's (a process each) and
    galley's (cli.log_time, after tzset)."""
    from galley.oci.cli import log_time  # noqa: PLC0415 - the only check that needs it

    differ = 0
    for tz in zones:
        env = {k: v for k, v in os.environ.items() if k != "TZ"}
        if tz is not None:
            env["TZ"] = tz
        theirs = subprocess.run(
            [str(binary), "zone"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        with environment_tz(tz):
            ours = log_time()[len("2006-01-02T15:04:05") :]
        if ours != theirs:
            differ += 1
            print(f"zone: TZ={tz!r}: Go {theirs!r}, galley {ours!r}")
    print(f"zone: {len(zones)} $TZ values, {differ} read otherwise")
    return differ


@contextmanager
def environment_tz(tz: str | None) -> Iterator[None]:
    """$TZ set (None: unset) for the C library (tzset) and for galley's reading of the
    environment (posix.environ, which os.environ does not update); then restored."""
    saved = os.environ.get("TZ")
    _set_tz(tz)
    try:
        yield
    finally:
        _set_tz(saved)


def _set_tz(value: str | None) -> None:
    if value is None:
        os.environ.pop("TZ", None)
        posix.environ.pop(b"TZ", None)
    else:
        os.environ["TZ"] = value
        posix.environ[b"TZ"] = os.fsencode(value)
    time.tzset()


def crashing(read: Callable[[str], str], text: str) -> str:
    """read(text), or the exception it ended in (a difference whatever Go says)."""
    try:
        return read(text)
    except Exception as e:  # any exception is a finding
        return f"crash {type(e).__name__}: {e}"


def check_texts(
    binary: Path,
    name: str,
    texts: list[str],
    ours: Callable[[str], str],
    agree: Callable[[str, str, str], bool] = lambda _t, theirs, ours: theirs == ours,
) -> int:
    theirs = go(binary, name, [go_quote(t) for t in texts])
    differ = 0
    for text, their, our in zip(texts, theirs, (crashing(ours, t) for t in texts), strict=True):
        if not agree(text, their, our):
            differ += 1
            if differ <= 20:
                print(f"{name}: {text!r:.60}: Go {their!r:.100}, galley {our!r:.100}")
    print(f"{name}: {len(texts)} texts, {differ} read otherwise")
    return differ


CHECKS = (
    "strconv",
    "size",
    "quote",
    "marshal",
    "clean",
    "zone",
    "signal",
    "syntax",
    "spec",
    "process",
    "resources",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-n", type=int, default=20000, help="texts per check")
    parser.add_argument("--only", choices=CHECKS)
    args = parser.parse_args()
    rnd = random.Random(f"gocheck-{args.seed}")
    with tempfile.TemporaryDirectory(prefix="gocheck.") as work:
        binary = build(Path(work))
        runs: dict[str, Callable[[], int]] = {
            "strconv": lambda: check_texts(
                binary, "strconv", numbers(rnd, args.n), galley_numbers, numbers_agree
            ),
            "size": lambda: check_texts(
                binary, "size", sizes(rnd, args.n), galley_size, size_agrees
            ),
            "quote": lambda: check_texts(
                binary, "quote", drawn_texts(rnd, args.n, QUOTABLE), go_quote
            ),
            "marshal": lambda: check_texts(
                binary, "marshal", drawn_texts(rnd, args.n, MARSHALABLE), jsonfast.dumps_go
            ),
            "clean": lambda: check_texts(
                binary, "clean", absolute_paths(rnd, args.n), go_quoted(pathnames.go_abspath)
            ),
            "zone": lambda: check_zones(binary, zone_names(rnd, args.n // 40)),
            "signal": lambda: check_texts(
                binary, "signal", signal_names(rnd, args.n), galley_signal, signal_agrees
            ),
            "syntax": lambda: check_texts(
                binary, "syntax", broken_documents(rnd, args.n // 4), galley_syntax, syntax_agrees
            ),
            **{kind: partial(check_documents, binary, kind) for kind in DOCUMENTS},
        }
        differ = sum(runs[name]() for name in CHECKS if args.only in (None, name))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
