#!/usr/bin/env bash
# Set up (first time) and run the bot: ./scripts/run.sh [chatbot arguments, default: run]
set -euo pipefail
# The console reads and writes files (cards, presets, attachments) where it was started;
# the bot itself runs in the project's folder (its .env and data/).
export CHATBOT_CALLER_DIR="$PWD"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
if [[ ! -f .env ]]; then
    # First run: start from the documented settings with a fresh encryption key.
    key="$(.venv/bin/chatbot keygen 2>/dev/null)"  # its id line is for a key made by hand
    sed "s|^BOT_SECRET_KEYS=.*|BOT_SECRET_KEYS=$key|" .env.example > .env
    chmod 600 .env
    echo "Created .env with a new BOT_SECRET_KEYS. Add DISCORD_TOKEN or the MATRIX_* settings to it." >&2
    if [[ "${1:-}" == keygen && $# -eq 1 ]]; then
        echo "$key"  # the key .env now holds, not a second one
        exit 0
    fi
fi
exec .venv/bin/chatbot "${@:-run}"
