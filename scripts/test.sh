#!/usr/bin/env bash
# Set up everything the tests need (venv, test peers) and run lint, types and tests.
# Extra arguments go to pytest: ./scripts/test.sh -k store -x
set -euo pipefail
EXTRAS=test source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
scripts/install-peers.sh
echo "== ruff"
.venv/bin/ruff check bot tests migrations bench
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest -p no:cacheprovider "$@"
