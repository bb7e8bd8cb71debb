"""Runs galley.oci.rootfs.setup_rootfs in fresh namespaces (unshare(1)), then a shell inside.

The child process is `unshare --mount [--pid --fork] [--net] ... python -c RUNNER`: the runner
builds the root with setup_rootfs and execs busybox `sh -c SCRIPT` inside it, so what the test
reads on stdout is what a container process sees. The namespaces die with the process: nothing
is left mounted on the host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO

FAILED = 97  # the runner's exit status when setup_rootfs raised
LEAKED = 96  # ... when it returned but left an fd open

RUNNER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from galley.oci.rootfs import apply_sysctl, setup_rootfs
spec = json.loads(sys.argv[2])
def dump_mounts():
    if sys.argv[6]:
        with open("/proc/self/mountinfo") as src, open(sys.argv[6], "w") as dst:
            dst.write(src.read())
exec(sys.argv[8])  # the test's prelude: patches that simulate a racing process
fds_before = sorted(os.listdir("/proc/self/fd"))
try:
    setup_rootfs(spec, sys.argv[3], no_pivot=sys.argv[4] == "1",
                 console_path=sys.argv[7] or None, before_pivot=dump_mounts)
    apply_sysctl(spec)  # again, as the init stage does: /proc/sys is read-only by now
except Exception as err:
    dump_mounts()
    print(f"{type(err).__name__}: {err}", file=sys.stderr)
    sys.exit(97)
fds_after = sorted(os.listdir("/proc/self/fd"))
if fds_after != fds_before:
    print(f"setup_rootfs leaked fds: {fds_before} -> {fds_after}", file=sys.stderr)
    sys.exit(96)
os.execv("/bin/sh", ["sh", "-c", sys.argv[5]])
"""


def run_in_rootfs(
    bundle: Path,
    config: dict[str, Any],
    script: str,
    *,
    unshare: tuple[str, ...] = ("--pid", "--fork", "--net", "--ipc", "--uts"),
    no_pivot: bool = False,
    mounts_file: str = "",
    console: str = "",
    timeout: float = 30,
    prelude: str = "",
) -> subprocess.CompletedProcess[str]:
    """setup_rootfs(config) for bundle in new namespaces, then `sh -c script` in the root.

    mounts_file receives the mount table as it is just before pivot_root (or at a failure).
    """
    kinds = {ns.get("type") for ns in config.get("linux", {}).get("namespaces", [])}
    if "cgroup" in kinds and "--cgroup" not in unshare:
        unshare = (*unshare, "--cgroup")  # as the spec says: setup_rootfs trusts it
    args = [
        "unshare",
        "--mount",
        *unshare,
        "--kill-child",
        sys.executable,
        "-I",
        "-S",
        "-c",
        RUNNER,
        str(REPO / "src"),
        json.dumps(config),
        str(bundle),
        "1" if no_pivot else "0",
        script,
        mounts_file,
        console,
        prelude,
    ]
    if "--fork" not in unshare:
        args.remove("--kill-child")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def host_mounts() -> list[str]:
    """The host's mount table, as lines of /proc/self/mountinfo minus the ids."""
    with open("/proc/self/mountinfo") as mountinfo:
        return sorted(" ".join(line.split()[3:]) for line in mountinfo)


def mountinfo(text: str) -> dict[str, dict[str, str]]:
    """Parse mountinfo lines: mount point -> {fstype, source, options, super, optional}."""
    table: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields, sep, rest = line.partition(" - ")
        if not sep:
            continue
        parts, tail = fields.split(), rest.split()
        table[parts[4]] = {
            "root": parts[3],
            "options": parts[5],
            "optional": " ".join(parts[6:]),
            "fstype": tail[0],
            "source": tail[1],
            "super": tail[2] if len(tail) > 2 else "",
        }
    return table
