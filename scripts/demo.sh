#!/usr/bin/env bash
# The main job, until the CRI server exists: build a busybox bundle offline from Debian's
# busybox-static and run a container from it with galley-runc, showing its output.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/galley-demo.XXXXXX)
trap 'galley-runc delete --force galley-demo >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$repo/.venv/bin/python" - "$work/bundle" <<'PY'
import json, sys
from galley.fixtures.busybox import make_bundle
bundle = make_bundle(sys.argv[1], ["sh", "-c", "echo hello from a galley container; "
                                   "echo hostname=$(hostname) pid=$$ uid=$(id -u); ls /"])
config = json.loads((bundle / "config.json").read_text())
config["hostname"] = "galley-demo"
(bundle / "config.json").write_text(json.dumps(config, indent=2))
PY
echo "+ galley-runc run --bundle $work/bundle galley-demo"
galley-runc run --bundle "$work/bundle" galley-demo
