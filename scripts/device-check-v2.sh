#!/usr/bin/env bash
# The cgroup-v2 check, for a pure cgroup-v2 host (the device machine lent to some sessions):
# a container with v2 resources through galley-runc, read back from inside, then the OCI tests.
#   scripts/device-check-v2.sh [BUSYBOX] [WHEEL_DIR]
# The device machine has python3 (and pytest) but no busybox or runc: the caller carries a static
# busybox, and runc beside it (docs/testing.md, "The pure cgroup-v2 check").
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
busybox=${1:-/bin/busybox}
wheels=${2:-.whl}
echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup)  kernel: $(uname -r)  python: $(python3 -V)"
[ -x /bin/busybox ] || install -m 0755 "$busybox" /bin/busybox
# runc (and crun) from the carried folder, where the machine has none: the runc comparisons
# in tests/oci run then, instead of skipping (session 38 found seven of runc's v2 ways so)
carry=$(dirname "$busybox")
if ! command -v runc >/dev/null && [ -x "$carry/runc" ]; then
  scripts/device-bench.sh 0 "$carry" >/dev/null && echo "runc: $(runc --version | head -1)"
fi

work=$(mktemp -d /tmp/galley-v2.XXXXXX)
trap 'bin/galley-runc --root "$work/state" delete --force v2check >/dev/null 2>&1; rm -rf "$work"' EXIT
python3 -IS - "$work/bundle" <<'PY'
import json, sys
sys.path.insert(0, "src")
from galley.fixtures.busybox import make_bundle
bundle = make_bundle(sys.argv[1], ["sh", "-c",
    "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max; "
    "mknod /tmp/sda b 8 0 && (head -c1 /tmp/sda >/dev/null 2>&1 && echo dev-open-allowed || echo dev-open-denied)"])
config = json.loads((bundle / "config.json").read_text())
config["linux"]["resources"] = {
    "devices": [{"allow": False, "access": "rwm"}],
    "memory": {"limit": 67108864}, "pids": {"limit": 42},
    "cpu": {"quota": 50000, "period": 100000},
}
config["process"]["capabilities"] = {k: ["CAP_MKNOD", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}
config["root"]["readonly"] = False
(bundle / "config.json").write_text(json.dumps(config))
PY
out=$(bin/galley-runc --root "$work/state" run --bundle "$work/bundle" v2check 2>&1)
echo "$out"
expected=$'67108864\n42\n50000 100000\ndev-open-denied'
if [ "$out" = "$expected" ]; then echo "V2 CONTAINER CHECK: PASS"; else echo "V2 CONTAINER CHECK: FAIL"; fi
scripts/device-check-rdt.sh  # Intel RDT for real, where the CPU has it (else it says SKIP)

# pytest: from the carried wheels, else the device's own (its image has pytest and
# pytest-timeout). The cgroup tests first, so a time limit still leaves their results.
if ls "$wheels"/pytest-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/galley-site "$wheels"/*.whl 2>&1 | tail -2
fi
if PYTHONPATH=/tmp/galley-site python3 -c 'import pytest' 2>/dev/null; then
  tests() {
    PYTHONPATH=/tmp/galley-site:src timeout "$1" python3 -m pytest -q -p no:cacheprovider \
      -o addopts="" --timeout 120 -rfEs --tb=short "${@:2}" 2>&1
  }
  first=(tests/oci/test_cgroups_v2.py tests/oci/test_cgroups_v2_controllers.py
         tests/oci/test_cgroups_bpf.py tests/oci/test_cgroups_runtime.py
         tests/oci/test_pure_v2_host.py tests/oci/test_rootless.py tests/oci/test_resctrl.py)
  tests "${PYTEST_FIRST_S:-150}" "${first[@]}"
  deselect=()
  for f in "${first[@]}"; do deselect+=(--ignore "$f"); done
  tests "${PYTEST_REST_S:-240}" tests/oci "${deselect[@]}"
else
  echo "no pytest: tests/oci not run"
fi
