"""`python -m bot` and the `chatbot` command: the CLI, imported here so that a Ctrl-C
while its modules load (a second or so) ends it quietly, as one later does."""

import sys

# How a shell reports a command ended by Ctrl-C (128 + SIGINT), as the CLI returns it.
INTERRUPTED = 130


def main() -> int:
    try:
        from bot.cli import main as cli

        return cli()
    except KeyboardInterrupt:
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
