#!/usr/bin/env bash
# The test registry: Debian's docker-registry, plain HTTP on a free 127.0.0.1 port.
#   eval "$(scripts/test-registry.sh start)"   starts it; prints export lines (GALLEY_TEST_REGISTRY...)
#   scripts/test-registry.sh stop              kills the PID that start printed, removes its files
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python="$repo/.venv/bin/python"
[ -x "$python" ] || python=python3
case "${1:-}" in
  start)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/galley-registry.XXXXXX")
    PYTHONPATH="$repo/src" "$python" -m galley.fixtures.registry start "$dir"
    ;;
  stop)
    if [ -n "${GALLEY_TEST_REGISTRY_PID:-}" ]; then
      PYTHONPATH="$repo/src" "$python" -m galley.fixtures.registry stop "$GALLEY_TEST_REGISTRY_PID"
    fi
    case "${GALLEY_TEST_REGISTRY_DIR:-}" in
      "${TMPDIR:-/tmp}"/galley-registry.*) rm -rf -- "$GALLEY_TEST_REGISTRY_DIR" ;;
    esac
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
