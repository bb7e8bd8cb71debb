#!/usr/bin/env bash
# Speed on the device machine (a pure cgroup-v2 host, lent to some sessions): what it lacks is
# installed from the carried folder, the code cache is built for its python3, each runtime's
# bare start is timed, then bench_runtime runs.
#   scripts/device-bench.sh [RUNS] [CARRY]      (RUNS 0: install and build the cache only)
# CARRY (default .devcarry) holds busybox, libseccomp.so.2, runc, crun and crun's libraries
# in lib/ (docs/testing.md, "The pure cgroup-v2 check"). Nothing the machine has is replaced.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
runs=${1:-40}
carry=${2:-.devcarry}
libdir=/usr/lib/x86_64-linux-gnu

echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup)  kernel: $(uname -r)  python: $(/usr/bin/python3 -V)  cpus: $(nproc)"
[ -x /bin/busybox ] || install -m 0755 "$carry/busybox" /bin/busybox
for lib in "$carry/libseccomp.so.2" "$carry"/lib/*.so*; do
  [ -e "$lib" ] && [ ! -e "$libdir/$(basename "$lib")" ] && cp "$lib" "$libdir/"
done
ldconfig
for tool in runc crun; do
  command -v "$tool" >/dev/null || install -m 0755 "$carry/$tool" "/usr/local/bin/$tool"
done
/usr/bin/python3 -IS src/galley/codecache.py
[ "$runs" -gt 0 ] || exit 0

# The start alone: interleaved, 40 rounds, medians in ms.
/usr/bin/python3 -IS - <<'PY'
import statistics, subprocess, time
commands = {
    "python3 -IS -c pass": ["/usr/bin/python3", "-IS", "-c", "pass"],
    "galley-runc --version": ["bin/galley-runc", "--version"],
    "runc --version": ["runc", "--version"],
    "crun --version": ["crun", "--version"],
}
times = {name: [] for name in commands}
for _ in range(40):
    for name, argv in commands.items():
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=False)
        times[name].append((time.perf_counter() - start) * 1000)
for name, samples in times.items():
    print(f"start: {name:24} median {statistics.median(samples):6.2f} ms")
PY

# Where a `run`'s imports go, for reading afterwards (one run, the main process's imports).
work=$(mktemp -d /tmp/galley-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 -IS - "$work/bundle" <<'PY'
import sys
sys.path.insert(0, "src")
from galley.fixtures.busybox import make_bundle
make_bundle(sys.argv[1], ["true"])
PY
for _ in 1 2 3; do bin/galley-runc --root "$work/state" run --bundle "$work/bundle" warm; done
/usr/bin/python3 -ISXutf8 -X importtime bin/galley-runc --root "$work/state" run \
  --bundle "$work/bundle" importtime 2>"$work/importtime" || echo "importtime run failed"
sort -t'|' -k2 -n -r "$work/importtime" | head -25

PYTHONPATH=src:. /usr/bin/python3 -m bench.bench_runtime -n "$runs"
