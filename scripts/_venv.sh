# Sourced by run.sh and test.sh: make ./.venv with the project installed.
# EXTRAS selects optional dependencies (test.sh asks for "test").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$(command -v python3.12 || command -v python3.11 || command -v python3 || true)}"
if [[ -z "$PYTHON" ]] || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
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
