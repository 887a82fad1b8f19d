"""The one command table. Discord, Matrix and the console all build their commands from it."""

from __future__ import annotations

from bot.commands import characters as ch
from bot.commands import endpoint as e
from bot.commands import handlers as h
from bot.commands import quotas, usage_report
from bot.commands.spec import DEFAULT, SCOPE, SOURCES, Command, Kind, Option
from bot.fields import PARAM_NAMES
from bot.types import SERVERS, ReplyMode
from bot.types.text import MODEL_ID_CHARS, PROXY_URL_CHARS, SYSTEM_PROMPT_CHARS
from bot.usage.access import KINDS_ON

REPLY_MODES = tuple(m.value for m in ReplyMode)

_source_opt = Option("source", Kind.CHOICE, "which source", choices=SOURCES)


def _file_opt(help: str) -> Option:
    # Optional in the table: Matrix takes the file from the message replied to.
    return Option("file", Kind.FILE, help, required=False)


TABLE: tuple[Command, ...] = (
    Command(
        "source",
        "Choose the chat completion source for this {place}, then run the status check.",
        (
            Option(
                "source",
                Kind.CHOICE,
                "which source (`default`: {follows})",
                choices=(*SOURCES, DEFAULT),
            ),
            SCOPE,
        ),
        slow=True,
        handler=e.set_source,
    ),
    Command(
        "key",
        "Store or remove an API key (encrypted at rest).",
        subcommands=(
            Command(
                "set",
                "Store the API key for a source (encrypted, never shown back).",
                (_source_opt, Option("key", Kind.SECRET, "the API key"), SCOPE),
                handler=e.key_set,
            ),
            Command(
                "clear",
                "Remove the stored API key for a source.",
                (_source_opt, SCOPE),
                handler=e.key_clear,
            ),
        ),
    ),
    Command(
        "proxy",
        "Reverse proxy or custom endpoint URL and its password.",
        subcommands=(
            Command(
                "set",
                "Set the URL (the endpoint for custom; a reverse proxy otherwise).",
                (
                    Option(
                        "url",
                        Kind.STRING,
                        "http(s) URL, e.g. http://host:1234/v1",
                        max_length=PROXY_URL_CHARS,
                    ),
                    Option(
                        "password",
                        Kind.SECRET,
                        "the proxy password",
                        required=False,
                        refused=e.url_rest,
                    ),
                    SCOPE,
                ),
                slow=True,
                handler=e.proxy_set,
            ),
            Command(
                "password",
                "Set the proxy password (TabbyAPI's key; encrypted, never shown back).",
                (Option("password", Kind.SECRET, "the proxy password"), SCOPE),
                slow=True,
                handler=e.proxy_password,
            ),
            Command(
                "clear",
                "Remove the URL, its proxy password and custom key.",
                (SCOPE,),
                handler=e.proxy_clear,
            ),
            # What /settings shows everyone: the URL and whether a password is set.
            Command(
                "show",
                "Show the URL in use (after /v1 correction).",
                admin=False,
                handler=e.proxy_show,
            ),
        ),
    ),
    Command(
        "connect",
        "Run the status check now; optionally set 'bypass API status check'.",
        (
            Option(
                "bypass",
                Kind.SWITCH,
                "on: chat even when the check fails; default: {follows}",
                required=False,
            ),
            SCOPE,
        ),
        slow=True,
        handler=e.connect,
    ),
    Command(
        "models",
        "List models.",
        subcommands=(
            Command(
                "list",
                "Models known for this {place}'s source.",
                (
                    Option(
                        "filter",
                        Kind.STRING,
                        "only ids containing this text",
                        required=False,
                        max_length=100,
                    ),
                ),
                admin=False,
                handler=e.models_list,
            ),
            Command(
                "external",
                "Fetch the models the endpoint reports and offer them (off: built-in list).",
                (
                    Option(
                        "state",
                        Kind.SWITCH,
                        "on (if left out), off, or default: {follows}",
                        required=False,
                    ),
                    SCOPE,
                ),
                slow=True,
                handler=e.models_external,
            ),
        ),
    ),
    Command(
        "model",
        "Choose the model that answers in this {place}.",
        (
            Option(
                "id",
                Kind.STRING,
                "model id (`default`: {follows})",
                autocomplete="models",
                max_length=MODEL_ID_CHARS,
            ),
            SCOPE,
        ),
        handler=e.set_model,
    ),
    Command(
        "settings",
        "Show this {place}'s configuration (keys only as set/unset).",
        admin=False,
        handler=h.show_settings,
    ),
    Command(
        "system",
        "Set the system prompt (`none`: none, `default`: {follows}); alone: show it.",
        (
            Option(
                "prompt",
                Kind.TEXT,
                "the system prompt",
                required=False,
                max_length=SYSTEM_PROMPT_CHARS,
            ),
            SCOPE,
        ),
        handler=h.set_system,
    ),
    Command(
        "prompts",
        "SillyTavern's prompts, Claude's prefill and a card's formats; alone: show them.",
        (
            Option("name", Kind.CHOICE, "which prompt", required=False, choices=tuple(h.PROMPTS)),
            Option(
                "text",
                Kind.TEXT,
                "the prompt, `none` (none here) or `default` ({follows})",
                required=False,
                max_length=SYSTEM_PROMPT_CHARS,
            ),
            SCOPE,
        ),
        handler=h.set_prompt,
    ),
    Command(
        "params",
        "Show or set generation parameters (`default` removes the {place}'s value).",
        (
            Option("name", Kind.CHOICE, "which parameter", required=False, choices=PARAM_NAMES),
            Option("value", Kind.TEXT, "new value, or `default`", required=False, max_length=500),
            SCOPE,
        ),
        handler=h.set_param,
    ),
    Command(
        "reply",
        "When the bot answers.",
        subcommands=(
            Command(
                "mode",
                "mention: when mentioned or replied to; always: every message.",
                (
                    Option(
                        "mode",
                        Kind.CHOICE,
                        "mention, always, or default ({follows})",
                        choices=(*REPLY_MODES, DEFAULT),
                    ),
                    SCOPE,
                ),
                handler=h.set_reply_mode,
            ),
        ),
    ),
    Command(
        "character",
        "A SillyTavern character card that answers in this {place}{server: (or server)}.",
        subcommands=(
            Command(
                "import",
                "Set the character from a Character Card V1-V3 (PNG or JSON).",
                (_file_opt("the card (PNG or JSON)"), SCOPE),
                slow=True,
                ordered=True,  # its greeting goes into the conversation
                handler=ch.character_import,
            ),
            Command(
                "show", "Show the character answering here.", admin=False, handler=ch.character_show
            ),
            Command(
                "clear",
                "Remove the character{server: (the server's, if any, answers again)}.",
                (SCOPE,),
                handler=ch.character_clear,
            ),
            Command(
                "none",
                "No character in this {place}{server:, even if the server has one}.",
                handler=ch.character_none,
            ),
            Command(
                "export",
                "The character as a V3 card SillyTavern imports (PNG or JSON).",
                (
                    Option(
                        "format",
                        Kind.CHOICE,
                        "png (default) or json",
                        required=False,
                        choices=ch.FORMATS,
                    ),
                ),
                admin=False,
                slow=True,
                handler=ch.character_export,
            ),
        ),
    ),
    Command(
        "preset",
        "SillyTavern Chat Completion presets.",
        subcommands=(
            Command(
                "import",
                "Apply a preset's samplers and prompts to this {place}{server: (or server)}.",
                (_file_opt("the preset (JSON)"), SCOPE),
                handler=ch.preset_import,
            ),
            Command(
                "export",
                "This {place}'s settings as a preset (JSON).",
                handler=ch.preset_export,
            ),
        ),
    ),
    Command(
        "regenerate",
        "Another answer to the last question (the old one is kept: swipe back to it).",
        admin=False,
        private=False,
        slow=True,
        control=True,
    ),
    Command(
        "continue",
        "Continue the last answer where it stopped.",
        admin=False,
        private=False,
        slow=True,
        control=True,
    ),
    Command(
        "retry",
        "Ask the last question again after an error.",
        admin=False,
        private=False,
        slow=True,
        control=True,
    ),
    Command(
        "swipe",
        "Show another of the answers to the last question.",
        (Option("direction", Kind.CHOICE, "next or prev", choices=("next", "prev")),),
        admin=False,
        private=False,
        control=True,
    ),
    Command("stop", "Stop the answer being written now.", admin=False, control=True),
    Command("reset", "Forget this {place}'s conversation history.", ordered=True, handler=h.reset),
    Command(
        "usage",
        "Tokens used (and estimated cost): yours or this {place}'s{server: (or the server's)}.",
        (
            Option(
                "scope",
                Kind.CHOICE,
                "me (non-admins' default), {place} (admins' default){server:, server}",
                required=False,
                choices=usage_report.SCOPES,
                choices_on=((SERVERS, SERVERS),),
            ),
            Option(
                "period",
                Kind.CHOICE,
                "day (today), week (default: 7 days) or month (30 days)",
                required=False,
                choices=usage_report.PERIODS,
            ),
        ),
        admin=False,
        handler=usage_report.show_usage,
    ),
    Command(
        "limits",
        "Quotas here and your allowance; admins: set <name> <value|off|default>.",
        (
            Option("action", Kind.CHOICE, "show (default) or set", False, quotas.LIMIT_ACTIONS),
            Option("name", Kind.CHOICE, "which limit", False, quotas.LIMIT_NAMES),
            Option("value", Kind.STRING, "a whole number, off or default", False, max_length=40),
            SCOPE,
        ),
        admin=False,
        handler=quotas.show_limits,
    ),
    Command(
        "access",
        "Who may chat here: list, allow/deny/remove a user{discord: or role}"
        "{matrix: or power level}{server:; which roles administer the bot (admin)}.",
        (
            Option(
                "action",
                Kind.CHOICE,
                "list, allow, deny or remove{server:; admin or unadmin a role (server admins)}",
                False,
                quotas.ACTS,
                choices_on=tuple((a, SERVERS) for a in quotas.ADMIN_ACTS),
            ),
            Option(
                "kind",
                Kind.CHOICE,
                "user{discord: or role}{matrix: or level}",
                False,
                quotas.ACCESS_KINDS,
                choices_on=tuple((k.value, p) for k, p in KINDS_ON.items()),
            ),
            Option(
                "id",
                Kind.STRING,
                "user id{discord: or role name or id}{matrix: or power level}",
                False,
                autocomplete="roles",  # the server's role names, once the kind is role
                max_length=300,
                is_name=True,
            ),
            SCOPE,
        ),
        handler=quotas.access,
    ),
    Command(
        "help",
        "How to connect each source, and every command.",
        (Option("topic", Kind.CHOICE, "a source", required=False, choices=SOURCES),),
        admin=False,
        handler=h.show_help,
    ),
)
