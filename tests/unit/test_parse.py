"""The text command parser and option checks, by the shared table."""

from __future__ import annotations

import pytest

from bot.commands import TABLE
from bot.commands.handlers import help_text
from bot.commands.parse import CommandError, asks_secret, parse, plain_prefix
from bot.commands.router import bind, find
from bot.commands.spec import secret_prompt, usage, walk
from bot.types import Platform, SecretValue, typed_as
from bot.usage.limits import LimitError, parse_value


def test_simple_and_subcommand() -> None:
    assert parse("/source claude", TABLE).path == ("source",)
    assert parse("/source claude", TABLE).raw == {"source": "claude"}
    inv = parse("!proxy set http://h:1/v1", TABLE, "!")
    assert inv.path == ("proxy", "set")
    assert inv.raw == {"url": "http://h:1/v1"}


def test_quotes_and_named_options() -> None:
    inv = parse('/model "my model:7b"', TABLE)
    assert inv.raw == {"id": "my model:7b"}
    assert parse("/connect bypass:on", TABLE).raw == {"bypass": "on"}
    assert parse("/connect bypass=off", TABLE).raw == {"bypass": "off"}
    assert parse("/connect bypass: on", TABLE).raw == {"bypass": "on"}  # a space after it
    assert parse("/key set custom scope: server", TABLE).raw == {
        "source": "custom",
        "scope": "server",
    }


@pytest.mark.parametrize(
    ("typed", "raw"),
    [
        # A phone's smart quotes left `carte.png”` to be read as the scope.
        ("/character import \u201cMa carte.png\u201d", {"file": "Ma carte.png"}),
        ("/preset import \u201cpreset 1.json\u201d", {"file": "preset 1.json"}),
        ("/preset import \u201epreset 1.json\u201c", {"file": "preset 1.json"}),  # German
        ("/preset import \u201epreset 1.json\u201d", {"file": "preset 1.json"}),  # Polish
        ("/preset import \u201dpreset 1.json\u201d", {"file": "preset 1.json"}),  # Swedish
        ("/preset import \u2018preset 1.json\u2019", {"file": "preset 1.json"}),
        ("/preset import \u201apreset 1.json\u2018", {"file": "preset 1.json"}),
        ("/preset import \u00abpreset 1.json\u00bb", {"file": "preset 1.json"}),  # French
        ("/preset import \u00bbpreset 1.json\u00ab", {"file": "preset 1.json"}),  # Danish
        ("/preset import \u300cpreset 1.json\u300d", {"file": "preset 1.json"}),
        ("/preset import \u300epreset 1.json\u300f", {"file": "preset 1.json"}),
        ("/preset import \u00ab a\u201cb\u201d \u00bb", {"file": " a\u201cb\u201d "}),
        ("/model id:\u201cmy model:7b\u201d", {"id": "my model:7b"}),
        # Review: inches and the like inside a word are no quote.
        ("/model 12\u201d-screen", {"id": "12\u201d-screen"}),
        ("/model id=\u201cmy model:7b\u201d", {"id": "my model:7b"}),  # as Discord shows it
        ("/model \u00abm-small\u00bb", {"id": "m-small"}),
        ("/character import \u201ca \\\u201d b\u201d", {"file": "a \u201d b"}),
        # An apostrophe inside a word is a letter of it, a phone's (’) as a keyboard's.
        ("/character import don\u2019t.png", {"file": "don\u2019t.png"}),
        ("/character import don't.png", {"file": "don't.png"}),
        ("/character import \u2018don\u2019t stop.png\u2019", {"file": "don\u2019t stop.png"}),
        ("/character import 'it's mine.png'", {"file": "it's mine.png"}),
        ('/model "my model:7b"', {"id": "my model:7b"}),
        ("/model 'my model:7b'", {"id": "my model:7b"}),
    ],
)
def test_typographic_quotes_group_words(typed: str, raw: dict[str, str]) -> None:
    assert parse(typed, TABLE).raw == raw


@pytest.mark.parametrize(
    "typed",
    [
        "/character import \u201cMa carte.png",
        "/character import \u00abMa carte.png\u201d",  # « closes only with »
        "/character import \u300cMa carte.png\u300f",  # 「 only with 」
        "/character import \u201eMa carte.png\u201e",  # „ only with “ or ”
    ],
)
def test_a_typographic_quote_closes_only_with_its_own_closer(typed: str) -> None:
    with pytest.raises(CommandError, match="quote is not closed"):
        parse(typed, TABLE)


def test_text_option_keeps_the_rest_verbatim() -> None:
    inv = parse('/system You are "Bob".  Be  brief.', TABLE)
    assert inv.raw == {"prompt": 'You are "Bob".  Be  brief.'}
    inv = parse("/params stop END, STOP", TABLE)
    assert inv.raw == {"name": "stop", "value": "END, STOP"}


def test_secret_positional_is_wrapped() -> None:
    inv = parse("!key set openai sk-abcdef123456", TABLE, "!")
    assert isinstance(inv.raw["key"], SecretValue)
    assert "sk-abcdef123456" not in repr(inv)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("/modle gpt", "Did you mean `model`?"),
        ("/proxy", "needs one of: set, password, clear, show"),
        ("/proxy sett x", "Did you mean `set`?"),
        ('/model "unclosed', "quote is not closed"),
        ("/source openai server extra", "Too many values"),
        # `id` here is the value typed, not the option: say what is one too many.
        ("/model bad model id", "`bad model id` has a space in it, but `id` takes one word"),
        ("/model gpt 4o", "`gpt 4o` has a space in it, but `id` takes one word"),
        ("/model gpt 4o scope:server", "`gpt 4o` has a space in it"),
        ("/key-set custom", "Did you mean `/key set`?"),
        ("/models_list", "Did you mean `/models list`?"),
        ("/", "Empty command"),
        # The same option twice: said, not the last one silently winning.
        ("/model gpt-4o id:fake-model", "`id` is given twice"),
        ("/connect bypass:on bypass:off", "`bypass` is given twice"),
        ("/reply mode always mode:mention", "`mode` is given twice"),
        ("/key set custom scope:channel scope:server", "`scope` is given twice"),
    ],
)
def test_bad_input_says_what_to_do(text: str, fragment: str) -> None:
    with pytest.raises(CommandError, match=None) as err:
        parse(text, TABLE)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("/source gpt", "not a valid source"),
        ("/source claud", "Did you mean `claude`?"),
        ("/connect bypass:maybe", "must be on or off"),
        ("/model", "Missing `id`"),
        ("/connect bypass:", "needs a value (on, off or default)"),
        # A file or text option says what it wants, not "(a value)".
        ("/character import file:''", "`file:` needs a value: the card"),
        ("/params nope 1", "is not a valid name"),
    ],
)
def test_bind_rejects_bad_values(text: str, fragment: str) -> None:
    inv = parse(text, TABLE)
    command = find(TABLE, inv.path)
    assert command is not None
    with pytest.raises(CommandError) as err:
        bind(command, inv, "/")
    assert fragment in str(err.value)


def test_bind_coerces() -> None:
    inv = parse("/connect bypass:ON", TABLE)
    command = find(TABLE, inv.path)
    assert command is not None
    assert bind(command, inv, "/") == {"bypass": True}


def test_secret_rejects_spaces_and_empty() -> None:
    command = find(TABLE, ("key", "set"))
    assert command is not None
    inv = parse("/key set openai", TABLE)
    inv.raw["key"] = SecretValue("two words")
    with pytest.raises(CommandError):
        bind(command, inv, "/")
    inv.raw["key"] = SecretValue("   ")
    with pytest.raises(CommandError):
        bind(command, inv, "/")


@pytest.mark.parametrize(
    "text",
    [
        "/key set custom FirstHalfSecretAAAA SecondHalfSecretBBBB",
        "/key set custom FirstHalfSecretAAAA SecondHalfSecretBBBB ThirdPartCCCC",
        "/proxy set http://127.0.0.1:1/v1 PwFirstPartXX SecondHalfSecretBBBB",
        "/proxy password FirstHalfSecretAAAA SecondHalfSecretBBBB scope:server",
    ],
)
def test_a_secret_pasted_with_a_space_is_refused_whole_and_never_quoted(text: str) -> None:
    """The part after the space used to be quoted back as "not a valid scope"."""
    inv = parse(text, TABLE)
    command = find(TABLE, inv.path)
    assert command is not None
    with pytest.raises(CommandError) as err:
        bind(command, inv, "/")
    assert "has a space at position" in str(err.value), err.value
    for piece in ("FirstHalf", "SecondHalf", "ThirdPart", "PwFirst"):
        assert piece not in str(err.value)


def test_a_secret_on_the_line_still_takes_a_scope_after_it() -> None:
    for text in ("/key set custom 'sk-abc123' server", "/key set custom sk-abc123 scope:server"):
        inv = parse(text, TABLE)
        assert inv.raw["scope"] == "server", text
        assert isinstance(inv.raw["key"], SecretValue)
        assert inv.raw["key"].reveal() == "sk-abc123", text


def test_a_fullwidth_prefix_is_the_prefix() -> None:
    assert plain_prefix("\uff0fmodel x", "/") == "/model x"
    assert plain_prefix(" \ufeff\uff01key set claude", "!") == "!key set claude"
    assert plain_prefix("\uff0fmodel x", "!") == "\uff0fmodel x"  # not this platform's
    assert plain_prefix("a \uff0f b", "/") == "a \uff0f b"  # only at the start
    assert plain_prefix("\uff01\uff01\uff01\u597d", "!") == "\uff01\uff01\uff01\u597d"  # a sentence
    assert parse("\uff0fsource claude", TABLE).raw == {"source": "claude"}


def test_a_command_typed_in_fullwidth_letters_is_the_command() -> None:
    """A CJK keyboard in fullwidth mode types all of it so: `！ｐｒｏｘｙ　ｐａｓｓｗｏｒｄ …`
    went to the model as chat, with the password pasted after it."""
    typed = "！ｐｒｏｘｙ　ｐａｓｓｗｏｒｄ　3f9c2a7e5b1d4c8a"
    assert plain_prefix(typed, "!") == "!proxy password 3f9c2a7e5b1d4c8a"
    inv = parse(plain_prefix(typed, "!"), TABLE, "!")
    assert inv.path == ("proxy", "password")
    assert inv.raw["password"].reveal() == "3f9c2a7e5b1d4c8a"
    assert plain_prefix("!ｍｏｄｅｌ　ｇｐｔ－４ｏ", "!") == "!model gpt-4o"
    assert plain_prefix("／ｈｅｌｐ", "/") == "/help"
    # A command typed in ASCII keeps what follows as typed (a prompt's own punctuation).
    assert plain_prefix("!system 你好！（简洁）", "!") == "!system 你好！（简洁）"
    # Only the words typed all in fullwidth: free text, a path and a password from the
    # first word with anything else on stay as typed.
    for typed, read in [
        (
            "！ｓｙｓｔｅｍ　あなたは「ＡＩ」です。（はい）",
            "!system あなたは「ＡＩ」です。（はい）",
        ),
        ("／ａｔｔａｃｈ　報告書（２０２４）.pdf", "/attach 報告書（２０２４）.pdf"),
        ("！ｐｒｏｘｙ　ｐａｓｓｗｏｒｄ　パスワード＃１", "!proxy password パスワード＃１"),
    ]:
        assert plain_prefix(typed, typed[0].translate({0xFF01: "!", 0xFF0F: "/"})) == read


@pytest.mark.parametrize("said", ["！Ａさん、おはよう", "！ＯＫです", "／ＯＫです"])
def test_a_sentence_after_a_fullwidth_mark_is_no_command(said: str) -> None:
    """Japanese chat starting `！Ａさん` was read as the command `!aさん`."""
    assert plain_prefix(said, "!") == said and plain_prefix(said, "/") == said


@pytest.mark.parametrize("word", ["!нет", "!кек", "!да", "!привет"])
def test_words_of_other_scripts_ask_for_no_secret(word: str) -> None:
    """`нет` ("no") read through look-alikes is `het`, a typo of `set` (a subcommand
    that asks for a key): the sender's next message was dropped as a secret."""
    assert not asks_secret(word, TABLE, "!")


@pytest.mark.parametrize("typed", ["!кеу set custom hunter2hunter2", "!ｋеу", "!Кеу set"])
def test_a_look_alike_of_a_secret_command_is_refused_as_one(typed: str) -> None:
    """Cyrillic `кеу` for `key`: not run, but its line is held back as a key's would be,
    and the refusal names the command meant."""
    text = plain_prefix(typed, "!")
    assert asks_secret(text, TABLE, "!")
    with pytest.raises(CommandError) as err:
        parse(text, TABLE, "!")
    assert "Did you mean `key`?" in str(err.value)


@pytest.mark.parametrize(
    "hidden",
    [
        *["\u200b", "\ufeff", "\u202e", "\u200f", "\u2066", " \u200d "],
        # Invisible probe: the Arabic letter mark, a filler, the blank Braille cell, a
        # selector, a tag, an invisible operator, the combining grapheme joiner.
        *["\u061c", "\u3164", "\u2800", "\ufe0f", "\U000e0001", "\u2061", "\u034f"],
        # A no-break space (a phone's keyboard after a full stop), the ideographic one a
        # CJK keyboard types, a thin space: blanks, not invisible, but as much before it.
        *["\u00a0", "\u3000", "\u2009"],
    ],
)
def test_what_hides_before_a_command_is_taken_off(hidden: str) -> None:
    """`<ZWSP>!key set …` read as chat would have sent the key to the model."""
    assert plain_prefix(f"{hidden}!key set openai sk-x", "!") == "!key set openai sk-x"
    assert plain_prefix(f"{hidden}hello", "!") == f"{hidden}hello"  # chat stays as typed
    # MATRIX_COMMAND_PREFIX may be up to 3 characters.
    assert plain_prefix(f"{hidden}!!key set openai sk-x", "!!") == "!!key set openai sk-x"


@pytest.mark.parametrize(
    "text",
    [
        "/model sk-proj-Q7wErTyUiOpAsDfGhJkLzXcVbNm1234567890abcd",
        "/params stop sk-proj-Q7wErTyUiOpAsDfGhJkLzXcVbNm1234567890abcd",
        "/params temperature sk-ant-api03-Q7wErTyUiOpAsDfGhJk",
        "/system You are nice. sk-proj-Q7wErTyUiOpAsDfGhJkLzXcVbNm12345",
        "/proxy set sk-proj-Q7wErTyUiOpAsDfGhJkLzXcVbNm1234567890abcd",
        "/access allow user sk-proj-Q7wErTyUiOpAsDfGhJkLzXcVbNm1234",
        "/key set sk-proj-Q7wErTyUiOpAsDfGhJkLzXcVbNm1234 openai",  # the key before the source
    ],
)
def test_a_key_in_a_value_that_is_not_a_secret_is_refused_unseen(text: str) -> None:
    """A key pasted into `/model` was echoed, stored, shown in /settings to every member
    and sent to the endpoint as the model id."""
    inv = parse(text, TABLE)
    command = find(TABLE, inv.path)
    assert command is not None
    with pytest.raises(CommandError) as err:
        bind(command, inv, "/")
    assert "looks like a key or password" in str(err.value) and "/key set" in str(err.value)
    assert "Q7wErTy" not in str(err.value)


def test_model_ids_with_sk_inside_a_word_are_no_keys() -> None:
    inv = parse("/model mask-rcnn-resnet50-fpn-coco-2017-v2", TABLE)
    command = find(TABLE, inv.path)
    assert command is not None
    assert bind(command, inv, "/")["id"] == "mask-rcnn-resnet50-fpn-coco-2017-v2"


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("!key set custom", True),  # the key left out
        ("!key", True),  # no subcommand: one of them asks
        ("!key custom", True),  # none of its subcommands' names
        ("!kye set custom", True),  # a typo of the command
        ("!key-set custom", True),
        ("!password", True),  # a subcommand's name alone
        ("!proxy set http://127.0.0.1:4000", False),  # the password is optional
        ("!key clear custom", False),
        ("!model gpt-4o", False),
        ("!settings", False),
        ("!", False),
        # Review: asking a command's usage asks for no secret; the sender's next word
        # ("thanks") was taken out of the room as the key the command lacked.
        ("!key help", False),
        ("!key set ?", False),
        ("!proxy password --help", False),
        ("!proxy -h", False),
    ],
)
def test_which_commands_ask_for_a_secret(text: str, asks: bool) -> None:
    """A front-end that refused one of these takes what the sender sends next on its own
    for the secret, never for chat (the console's next line, Matrix's next message)."""
    assert asks_secret(text, TABLE, "!") is asks


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # A number typed with spaces between its thousands: `000` was taken for the
        # scope ("`000` is not a valid scope").
        ("/limits set tokens_per_user_day 1 000", "`1 000` has a space in it"),
        ("/limits set tokens_per_user_day 12 500 000 server", "without (12500000)"),
        ("/limits set tokens_per_user_day 1 000 scope:server", "with commas (1,000)"),
        ("/limits set tokens_per_user_day 1 000 000", "commas (1,000,000)"),
    ],
)
def test_a_number_with_spaces_between_its_thousands_says_so(text: str, said: str) -> None:
    with pytest.raises(CommandError) as err:
        parse(text, TABLE)
    assert said in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("/limits set tokens_per_user_day 1 00", "`1 00` has a space in it, but `value`"),
        ("/limits set tokens_per_user_day off 000", "`off 000` has a space in it, but"),
        ("/limits set tokens_per_user_day 5 server", None),
        ("/limits set tokens_per_user_day 1,000 server", None),
    ],
)
def test_a_number_without_whole_groups_is_one_word_too_many(
    text: str, fragment: str | None
) -> None:
    command = find(TABLE, ("limits",))
    assert command is not None
    if fragment is None:
        assert bind(command, parse(text, TABLE), "/")["scope"] == "server"
        return
    with pytest.raises(CommandError) as err:
        bind(command, parse(text, TABLE), "/")
    assert fragment in str(err.value)


@pytest.mark.parametrize("typed", ["/key set custom", "/key set Custom", "/key set CUSTOM "])
def test_the_private_prompt_names_the_source_as_typed_in_any_case(typed: str) -> None:
    """`/key set Custom` asked for "API key (input hidden)", naming no source."""
    inv = parse(typed, TABLE)
    command = find(TABLE, inv.path)
    assert command is not None
    [secret] = [o for o in command.options if o.secret]
    assert secret_prompt(secret, inv.raw).startswith("custom ")


def test_a_proxy_url_longer_than_a_channel_keeps_is_refused_as_typed() -> None:
    """It passed the command, the endpoint policy (a name lookup perhaps) and failed only
    in the store, as `proxy_url takes at most …`."""
    inv = parse("/proxy set https://h.example/" + "a" * 1_990, TABLE)
    command = find(TABLE, inv.path)
    assert command is not None
    with pytest.raises(CommandError, match=r"`url` is too long \(2,008 > 2,000 characters\)"):
        bind(command, inv, "/")


@pytest.mark.parametrize(
    "model",
    ["sqlcoder:7b", "solar:latest", "stable:3b", "sage:1b", "state:x", "openrouter:auto", "kid:7b"],
)
def test_a_model_id_with_a_tag_is_no_misspelt_option(model: str) -> None:
    """Review of the misspelt-option check: `sqlcoder:7b` (an Ollama model) was refused
    as "`/model` has no option `sqlcoder`. Did you mean `scope:`?"."""
    assert parse(f"/model {model}", TABLE).raw == {"id": model}


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("/connect bypas:on", "bypass"),
        ("/model m scpe:server", "scope"),
        ("/models list filtr:4o", "filter"),
    ],
)
def test_a_misspelt_option_is_named(typed: str, meant: str) -> None:
    with pytest.raises(CommandError, match=f"Did you mean `{meant}:`"):
        parse(typed, TABLE)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("/reply always", "/reply mode always"), ("/models on", "/models external on")],
)
def test_a_value_typed_without_its_subcommand_names_it(typed: str, meant: str) -> None:
    """New-user probe: `/reply always` was "`/reply` has no `always`. Choose one of: mode."
    without the line that does it."""
    with pytest.raises(CommandError, match=f"Did you mean `{meant}`"):
        parse(typed, TABLE)
    with pytest.raises(CommandError) as refused:  # two subcommands take it: none named
        parse("/key openai", TABLE)
    assert "Did you mean" not in str(refused.value)


def test_an_options_name_typed_for_its_subcommand_names_the_subcommand() -> None:
    """`/proxy url http://…` (the panel's "Proxy URL", or `/proxy set <url>`'s option) was
    "`/proxy` has no `url`. Choose one of: …", with no word of `set`. Named now; where the
    subcommand takes a secret, its usage line is shown, not what was typed after it."""
    with pytest.raises(CommandError) as refused:
        parse("/proxy url http://127.0.0.1:4000/v1 hunter2", TABLE)
    said = str(refused.value)
    assert "Did you mean /proxy set <url> [password]?" in said, said
    assert "hunter2" not in said and "127.0.0.1" not in said
    with pytest.raises(CommandError, match=r"Did you mean `/models list gpt`\?"):
        parse("/models filter gpt", TABLE)


@pytest.mark.parametrize("platform", list(Platform))
def test_the_table_says_each_platforms_word_for_where_people_chat(platform: Platform) -> None:
    """Platform.place, the one place the word is chosen: "room" on Matrix, "channel"
    elsewhere, in every help text and choice the table shows; `{place}` never shows."""
    other = "channel" if platform is Platform.MATRIX else "room"
    shown = help_text(TABLE, "!", platform=platform)
    assert f"Forget this {platform.place}'s conversation history." in shown
    assert other not in shown.lower() and "{" not in shown
    for _, command in walk(TABLE):
        for opt in command.options:
            said = opt.help_on(platform)
            assert "{" not in said and f" {other}" not in f" {said}", said
    usage = find(TABLE, ("usage",))
    assert usage is not None
    scope = usage.options[0]
    servers = ("server",) if platform.has_servers else ()  # offered where its help says it
    assert scope.shown_choices(platform) == ("me", platform.place, *servers)


@pytest.mark.parametrize("platform", list(Platform))
def test_default_is_said_to_take_the_servers_value_only_where_there_are_servers(
    platform: Platform,
) -> None:
    """Matrix probe: `!model` alone said "`default`: the server's or the operator's" in a
    room, where there is no server (the reply to `!model default` then said "the
    operator's"); so did `!help`, `!system` and a refused limit."""
    follows = "the server's or the operator's" if platform is Platform.DISCORD else "the operator's"
    shown = help_text(TABLE, "!", platform=platform)
    assert f"`default`: {follows})" in shown and "{" not in shown
    model = find(TABLE, ("model",))
    assert model is not None
    with pytest.raises(CommandError) as refused:
        bind(model, parse("!model", TABLE, "!", platform=platform), "!", platform=platform)
    assert f"model id (`default`: {follows})" in str(refused.value), refused.value
    with pytest.raises(LimitError) as refused_limit:
        parse_value("-1", platform)
    assert str(refused_limit.value).endswith(f"`default` ({follows}).")
    if platform is not Platform.DISCORD:
        for _, command in walk(TABLE):
            for opt in command.options:
                assert "server's or" not in opt.help_on(platform), opt.help_on(platform)
            assert "server's or" not in command.help_on(platform), command.help_on(platform)


@pytest.mark.parametrize("platform", list(Platform))
def test_a_help_text_speaks_of_servers_only_where_there_are_servers(platform: Platform) -> None:
    """Matrix probe: `!help` in a room said "(or server)", "even if the server has one",
    "yours, this room's or the server's": a room has no server."""
    texts = [
        text
        for _, command in walk(TABLE)
        for text in (command.help_on(platform), *(o.help_on(platform) for o in command.options))
    ]
    assert not [t for t in texts if "{" in t]  # every part said, none left as written
    speaks = [t for t in texts if "server" in t]
    if platform.has_servers:
        assert "me (non-admins' default), channel (admins' default), server" in speaks
        assert "Apply a preset's samplers and prompts to this channel (or server)." in speaks
    else:
        assert speaks == [], speaks


_ACCESS_KINDS = {
    Platform.DISCORD: ("user", "role"),
    Platform.MATRIX: ("user", "level"),
    Platform.CONSOLE: ("user",),
}


@pytest.mark.parametrize("platform", list(Platform))
def test_access_lists_each_action_and_kind_only_where_it_exists(platform: Platform) -> None:
    """A new Discord admin found `level` (Matrix's) among /access's kinds, and Matrix's
    `!help` offered `role`; admin and unadmin are a server's. One rule says both
    (Option.choices_on, Platform.has): listed and in the usage line only where they
    exist, still taken elsewhere (the command says why they do nothing there)."""
    access = find(TABLE, ("access",))
    assert access is not None
    action, kind = access.options[0], access.options[1]
    acts = ("list", "allow", "deny", "remove")
    if platform.has_servers:
        acts += ("admin", "unadmin")
    assert action.shown_choices(platform) == acts
    assert kind.shown_choices(platform) == _ACCESS_KINDS[platform]
    line = usage(("access",), access, "!", server=platform.has_servers, platform=platform)
    assert f"[kind:{'|'.join(_ACCESS_KINDS[platform])}]" in line, line
    for typed in ("!access allow level 50", "!access allow role 42", "!access admin role 42"):
        args = bind(access, parse(typed, TABLE, "!", platform=platform), "!", platform=platform)
        assert (args["action"], args["kind"]) == tuple(typed.split()[1:3]), typed


@pytest.mark.parametrize("platform", list(Platform))
@pytest.mark.parametrize("typed", ["room", "channel", "ROOM"])
def test_the_scope_is_taken_in_either_platforms_word(platform: Platform, typed: str) -> None:
    for line, path in ((f"/usage {typed}", ("usage",)), (f"/model x scope:{typed}", ("model",))):
        inv = parse(line, TABLE, platform=platform)
        command = find(TABLE, path)
        assert command is not None
        args = bind(command, inv, "/", server=True, platform=platform)
        assert args["scope"] == "channel", line  # Scope.CHANNEL, however it was typed


def test_a_bad_scope_is_refused_in_the_platforms_words() -> None:
    command = find(TABLE, ("usage",))
    assert command is not None
    inv = parse("!usage scope:rooms", TABLE, "!", platform=Platform.MATRIX)
    with pytest.raises(CommandError, match=r"Did you mean `room`\? Choose one of: me, room\."):
        bind(command, inv, "!", server=False, platform=Platform.MATRIX)
    with pytest.raises(CommandError, match=r"\[scope:me\|room\]"):
        parse("!help usage", TABLE, "!", platform=Platform.MATRIX)
    with pytest.raises(CommandError, match=r"\[scope:me\|channel\|server\]"):
        parse("/help usage", TABLE, platform=Platform.DISCORD)


@pytest.mark.parametrize(
    ("platform", "typed", "meant"),
    [(Platform.DISCORD, "rооm", "channel"), (Platform.MATRIX, "сhannel", "room")],
)
def test_a_look_alike_of_either_platforms_word_is_suggested_in_this_ones(
    platform: Platform, typed: str, meant: str
) -> None:
    """Cyrillic о or с in the other platform's word for the place (either is taken when
    spelled right): the refusal suggests it as this platform says it."""
    command = find(TABLE, ("usage",))
    assert command is not None
    inv = parse(f"/usage {typed}", TABLE, platform=platform)
    with pytest.raises(CommandError, match=f"not a valid scope. Did you mean `{meant}`\\?"):
        bind(command, inv, "/", server=False, platform=platform)


@pytest.mark.parametrize(
    ("typed", "named", "source"),
    [
        ("/source lmstudio", "`lmstudio`", "custom"),
        ("/source lm studio", "`lm studio`", "custom"),
        ("/source OpenAI Compatible", "`OpenAI Compatible`", "custom"),
        ('/source "LM Studio" server', "`LM Studio`", "custom"),
        ("/source llama.cpp", "`llama.cpp`", "custom"),
        ("/key set ollama", "`ollama`", "custom"),
        ("/source anthropic", "`anthropic`", "claude"),
        ("/source MistralAI", "`MistralAI`", "mistral"),
    ],
)
def test_a_source_named_as_people_call_it_says_which_source_it_is(
    typed: str, named: str, source: str
) -> None:
    """SillyTavern's "Custom (OpenAI-compatible)", and the servers the README names for
    it: `/source lm studio` was "`lm` is not a valid source", `/source OpenAI Compatible`
    "`Compatible` is not a valid scope". Refused still (nothing changes), with the source."""
    with pytest.raises(CommandError) as refused:
        inv = parse(typed, TABLE)
        command = find(TABLE, inv.path)
        assert command is not None
        bind(command, inv, "/", secrets_later=True)
    said = str(refused.value)
    assert said.startswith(f"{named} is not a source here: "), said
    assert f"the `{source}` source." in said, said
    assert ("/proxy set <url>" in said) is (source == "custom"), said


def test_a_source_and_a_scope_are_still_two_values() -> None:
    assert parse("/source openai server", TABLE).raw == {"source": "openai", "scope": "server"}


@pytest.mark.parametrize(
    ("platform", "prefix", "said"),
    [
        (Platform.DISCORD, "/", "/limits action:set name:<name> value:<v>"),
        (Platform.MATRIX, "!", "!limits set <name> <v>"),
        (Platform.CONSOLE, "/", "/limits set <name> <v>"),
    ],
)
def test_a_hint_is_written_in_the_platforms_form(
    platform: Platform, prefix: str, said: str
) -> None:
    """quotas wrote /limits' Discord hint by hand; one helper writes any command's: on
    Discord each value in its named option, elsewhere in order after the command."""
    values = (("action", "set"), ("name", "<name>"), ("value", "<v>"))
    assert typed_as(("limits",), values, platform, prefix) == said
