#!/usr/bin/env bash
# The cgroup-v2 check, for a pure cgroup-v2 host (the device machine lent to some sessions):
# a container with v2 resources through galley-runc, read back from inside, then the OCI tests.
#   scripts/device-check-v2.sh [BUSYBOX] [WHEEL_DIR]
# The device machine has python3 but no busybox, runc or pytest: the caller carries a static
# busybox and pytest's wheels (see docs/device.md).
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
busybox=${1:-/bin/busybox}
wheels=${2:-.whl}
echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup)  kernel: $(uname -r)  python: $(python3 -V)"
[ -x /bin/busybox ] || install -m 0755 "$busybox" /bin/busybox

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

if ls "$wheels"/pytest-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/galley-site "$wheels"/*.whl 2>&1 | tail -2
  PYTHONPATH=/tmp/galley-site:src timeout 90 python3 -m pytest -q -p no:cacheprovider \
    -o addopts="" -rf --tb=line tests/oci 2>&1 | tail -40
fi
