# Sourced by run.sh and test.sh: make ./.venv with the project installed.
# EXTRAS selects optional dependencies (test.sh asks for "test").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The first interpreter that actually runs and is new enough (a pyenv shim may exist
# for a version that is not installed).
if [[ -z "${PYTHON:-}" ]]; then
    for candidate in python3.11 python3.12 python3.13 python3; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            PYTHON="$candidate"
            break
        fi
    done
fi
if [[ -z "${PYTHON:-}" ]] || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "chatbot needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    echo "Creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
spec="."
[[ -n "${EXTRAS:-}" ]] && spec=".[${EXTRAS}]"
# Reinstall only when pyproject.toml changed since the last install.
stamp=".venv/.installed-${EXTRAS:-base}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    echo "Installing chatbot ($spec) into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
