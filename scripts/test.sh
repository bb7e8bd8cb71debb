#!/usr/bin/env bash
# Run the whole test suite (as root): lint, types, then pytest. Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
.venv/bin/ruff check src tests bench scripts bin/galley-runc
.venv/bin/ruff format --check src tests bench scripts bin/galley-runc
.venv/bin/mypy
/usr/bin/python3 -IS src/galley/codecache.py >/dev/null  # the tests run galley-runc as installed
exec .venv/bin/pytest "$@"
