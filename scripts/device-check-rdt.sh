#!/usr/bin/env bash
# linux.intelRdt on real hardware (galley.oci.resctrl), where the CPU allocates L3 cache: the
# tests run it on a fake resctrl tree only (tests/oci/test_resctrl.py). Run as root from the
# checkout (scripts/device-check-v2.sh calls it); prints "RDT CHECK: PASS", "FAIL" with what
# differed, or "SKIP" with why.
#
# resctrl is mounted in a mount namespace of this script's own, so the host's mount table
# is left as it was. A resctrl filesystem is one per kernel, though: groups made while it is
# mounted go when it is unmounted, and a host that has it mounted already is checked there.
# GALLEY_RDT_MOUNT and GALLEY_RDT_RUNTIME stand in a fake resctrl tree and a runtime that
# uses it (tests/oci/test_resctrl.py checks this script so): no kernel checks, no mount.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
runtime=${GALLEY_RDT_RUNTIME:-bin/galley-runc}
mnt=${GALLEY_RDT_MOUNT:-}
if [ -z "$mnt" ]; then
  if ! grep -qw resctrl /proc/filesystems; then echo "RDT CHECK: SKIP (no resctrl in this kernel)"; exit 0; fi
  if ! grep -qwE 'cat_l3|rdt_a' /proc/cpuinfo; then echo "RDT CHECK: SKIP (the CPU has no cache allocation)"; exit 0; fi
  if [ -z "${GALLEY_RDT_INNER:-}" ]; then
    GALLEY_RDT_INNER=1 unshare --mount --propagation private "$repo/scripts/device-check-rdt.sh" \
      || echo "RDT CHECK: SKIP (unshare --mount failed)"
    exit 0
  fi
  if grep -q " - resctrl " /proc/self/mountinfo; then
    echo "the host mounts resctrl already: its groups and CLOSIDs are shared with this check"
  else
    mount -t resctrl resctrl /sys/fs/resctrl || { echo "RDT CHECK: SKIP (mount -t resctrl failed)"; exit 0; }
  fi
  # mountinfo: "<id> <parent> <dev> <root> <mount point> <options> [optional...] - <type> ..."
  mnt=$(awk -F ' - ' '{split($1, a, " "); split($2, b, " ")} b[1] == "resctrl" {print a[5]}' \
    /proc/self/mountinfo | tail -1)
fi
[ -d "$mnt/info/L3" ] || { echo "RDT CHECK: SKIP (no info/L3: CDP on, or no L3 allocation)"; exit 0; }
echo "resctrl at $mnt: $(ls "$mnt/info" | tr '\n' ' ')"

work=$(mktemp -d /tmp/galley-rdt.XXXXXX)
cid=rdtcheck$$
rt() { "$runtime" --root "$work/state" "$@"; }
trap 'rt delete --force "$cid" >/dev/null 2>&1; rm -rf "$work"' EXIT
# The smallest mask (and bandwidth) the CPU takes, in every domain of the default group's lines.
schema=$(python3 -IS - "$mnt" "$work/bundle" <<'PY'
import json, os, sys
sys.path.insert(0, "src")
from galley.fixtures.busybox import make_bundle
mnt, dest = sys.argv[1:]
def domains(resource):
    line = next(l.strip() for l in open(f"{mnt}/schemata") if l.strip().startswith(resource + ":"))
    return [item.split("=")[0] for item in line.partition(":")[2].split(";")]
def info(resource, name):
    return int(open(f"{mnt}/info/{resource}/{name}").read())
mask = (1 << max(info("L3", "min_cbm_bits"), 1)) - 1
rdt = {"l3CacheSchema": "L3:" + ";".join(f"{d}={mask:x}" for d in domains("L3")),
       "enableMonitoring": os.path.isdir(f"{mnt}/info/L3_MON")}
if os.path.isdir(f"{mnt}/info/MB"):
    least = info("MB", "min_bandwidth")
    rdt["memBwSchema"] = "MB:" + ";".join(f"{d}={least}" for d in domains("MB"))
bundle = make_bundle(dest, ["sleep", "60"])
config = json.loads((bundle / "config.json").read_text())
config["linux"]["intelRdt"] = rdt
(bundle / "config.json").write_text(json.dumps(config))
print(rdt["l3CacheSchema"], rdt.get("memBwSchema", ""))
PY
)
read -r schema mb_schema <<<"$schema"
echo "schemas: $schema $mb_schema"
problems=()
rt run --detach --bundle "$work/bundle" "$cid" </dev/null >/dev/null 2>"$work/err" \
  || problems+=("run failed: $(cat "$work/err")")
pid=$(rt state "$cid" 2>/dev/null | python3 -IS -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
group="$mnt/$cid"
grep -qx "$pid" "$group/tasks" 2>/dev/null || problems+=("init $pid not in $group/tasks")
[ -d "$mnt/info/L3_MON" ] && ! grep -qx "$pid" "$group/mon_groups/$cid/tasks" 2>/dev/null \
  && problems+=("init $pid not in its monitoring group")
python3 -IS - "$group/schemata" "$mnt" "$schema" $mb_schema <<'PY' || problems+=("schemata: $(cat "$group/schemata" 2>&1)")
import sys
schemata, mnt, *wanted = sys.argv[1:]
lines = {l.strip().partition(":")[0]: l.strip() for l in open(schemata) if ":" in l}
def parse(line, base):
    return {d: int(v, base) for d, v in (i.split("=") for i in line.partition(":")[2].split(";"))}
for line in wanted:
    resource = line.partition(":")[0]
    base, step = (16, 1) if resource != "MB" else (10, int(open(f"{mnt}/info/MB/bandwidth_gran").read()))
    want = {d: -(-v // step) * step for d, v in parse(line, base).items()}
    if resource not in lines or parse(lines[resource], base) != want:
        sys.exit(1)
PY
rt exec --detach --pid-file "$work/exec.pid" "$cid" sleep 60 </dev/null >/dev/null 2>&1 \
  || problems+=("exec failed")
exec_pid=$(cat "$work/exec.pid" 2>/dev/null)
grep -qx "$exec_pid" "$group/tasks" 2>/dev/null || problems+=("exec'd $exec_pid not in $group/tasks")
[ -d "$mnt/info/L3_MON" ] && ! grep -qx "$exec_pid" "$group/mon_groups/$cid/tasks" 2>/dev/null \
  && problems+=("exec'd $exec_pid not in its monitoring group")
stats=$(rt events --stats "$cid" 2>&1)
own=$(grep -o 'L3:.*' "$group/schemata" | head -1)
echo "$stats" | grep -qF "\"l3_cache_schema\":\"$own\"" || problems+=("events --stats: $stats")
echo "intel_rdt: $(echo "$stats" | python3 -IS -c 'import json,sys; print(json.load(sys.stdin)["data"]["intel_rdt"])')"
rt delete --force "$cid" || problems+=("delete failed")
[ -d "$group" ] && problems+=("$group left after delete")
if [ ${#problems[@]} -eq 0 ]; then
  echo "RDT CHECK: PASS"
else
  printf 'RDT CHECK: FAIL: %s\n' "${problems[@]}"
fi
exit 0
