#!/usr/bin/env bash
# The main job, until the CRI server exists: an image built offline from Debian's busybox-static
# is imported into a galley store, unpacked into overlayfs snapshots, mounted as a bundle's rootfs
# and run by galley-runc (see scripts/demo.py).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
trap 'galley-runc delete --force galley-demo >/dev/null 2>&1 || true' EXIT
exec "$repo/.venv/bin/python" "$repo/scripts/demo.py"
