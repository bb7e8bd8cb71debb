#!/usr/bin/env bash
# Set galley up on a fresh Debian 12 machine (as root) and run the main job.
#   scripts/setup.sh            install everything, then run scripts/demo.sh
#   scripts/setup.sh --no-demo  install only
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

packages=(
  python3 python3-venv python3-dev gcc            # the interpreter galley runs on, and builds
  runc crun containerd podman docker.io           # peer runtimes and tools written for runc
  containernetworking-plugins iproute2            # CNI plugins and netns tools
  docker-registry apache2-utils openssl           # the test registry, htpasswd, test CA
  busybox-static catatonit                        # offline test images, pause binary
  libseccomp2 pigz zstd skopeo umoci              # seccomp, fast decompression, image tools
  strace                                          # tests watch what galley-runc's launcher does
  time                                            # bench_memory: a command's peak memory
  uidmap                                          # newuidmap/newgidmap: rootless id maps
  locales tzdata                                  # tests: an ISO-8859-1 locale, time zones
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # The daemons these packages bring (containerd, dockerd) are not started: the tests start
  # private ones. Without an init system's policy, invoke-rc.d would start them.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# Debian's python3 (what a node has), in a virtualenv for the CLI's and the daemon's packages.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"

# galley-runc's modules compiled into one file, read by the interpreter galley-runc runs on
# (galley.codecache): a module edited later is simply imported the usual way.
/usr/bin/python3 -IS src/galley/codecache.py >/dev/null

# The project's commands on PATH. galley-runc runs on the system interpreter with -I -S.
ln -sf "$repo/bin/galley-runc" /usr/local/bin/galley-runc
ln -sf "$repo/.venv/bin/galley" /usr/local/bin/galley

if [ "${1:-}" != "--no-demo" ]; then
  exec "$repo/scripts/demo.sh"
fi
