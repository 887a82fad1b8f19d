"""Text as it arrives at the edges: cleaned, checked, or refused with the position named."""

from __future__ import annotations

import pytest

from bot.fields import BY_NAME, FieldError
from bot.types.text import (
    TextError,
    clean_text,
    decimal_hint,
    header_safe,
    normalize_text,
    parse_decimal,
    parse_integer,
    parse_whole_number,
    quoted,
    refuse_controls,
    shorten,
    shown_name,
    unwrapped,
    visible_id,
)
from bot.usage.limits import parse_value


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("hello", "hello"),
        ("be\x00nice", "benice"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("crlf\r\nline", "crlf\nline"),
        ("bell\x07 esc\x1b[31m del\x7f c1\x85", "bell esc[31m del c1"),
        ("caf\udce9", "caf\ufffd"),  # a lone surrogate from undecodable terminal input
        ("emoji 🎉 stays", "emoji 🎉 stays"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
    clean_text(raw).encode("utf-8")  # always encodable


def test_normalize_text_keeps_controls_for_the_caller_to_judge() -> None:
    assert normalize_text("a\r\nb\x00c\udce9") == "a\nb\x00c\ufffd"


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("12\x0034", "control character (U+0000) at position 3"),
        ("\x1b[2J", "control character (U+001B) at position 1"),
        ("gpt\x85", "control character (U+0085) at position 4"),
    ],
)
def test_refuse_controls_names_the_character_and_where(typed: str, said: str) -> None:
    with pytest.raises(TextError, match=r"The id has a ") as err:
        refuse_controls(typed, "id")
    assert said in str(err.value)
    assert "\x00" not in str(err.value) and "\x1b" not in str(err.value)


def test_refuse_controls_lets_tab_newline_and_any_script_through() -> None:
    for typed in ("a\tb", "line\nline", "café ☕ 名前", "@bob:example.org"):
        assert refuse_controls(typed, "id") == typed


@pytest.mark.parametrize(
    "typed",
    [
        "sk-abc123",
        "  sk-abc123\n",
        "\ufeffsk-abc123",
        "sk-abc123\u200b",
        "\u2060sk-abc123\u00ad ",
        '"sk-abc123"',  # pasted from a JSON file or a shell line
        "'sk-abc123' ",
        "`sk-abc123`",
        "\u201csk-abc123\u201d",  # a chat app's curly quotes
        '" sk-abc123 "',
        # Invisible probe: what the one table holds hid from the key rule alone (a key
        # copied from a right-to-left page, a filler, a selector or a tag before it).
        "\u200esk-abc123\u200f",
        "\u2066sk-abc123\u2069",
        "\u061csk-abc123\u202c",
        "\u3164sk-abc123\uffa0",
        "\u2800 sk-abc123",
        "\u034f\ufe0fsk-abc123\u2061",
        "\U000e0001sk-abc123",
    ],
)
def test_header_safe_strips_invisible_edges(typed: str) -> None:
    assert header_safe(typed, "API key") == "sk-abc123"


@pytest.mark.parametrize(
    ("typed", "position", "what"),
    [
        ("sk-abc\u200bdef", 7, "U+200B ZERO WIDTH SPACE"),
        ("sk-abcé", 7, "U+00E9"),
        ("two words", 4, "a space"),
        ("sk-\x01x", 4, "U+0001"),
    ],
)
def test_header_safe_names_the_bad_position(typed: str, position: int, what: str) -> None:
    with pytest.raises(TextError) as err:
        header_safe(typed, "API key")
    assert f"position {position}" in str(err.value) and what in str(err.value)


@pytest.mark.parametrize(
    "typed",
    [
        "\u201cm-small\u201d",
        "\u2018m-small\u2019",
        # Other keyboards' quotes were kept: `/model «m-small»` stored `«m-small»`.
        "\u00abm-small\u00bb",  # French
        "\u00bbm-small\u00ab",  # Danish
        "\u201em-small\u201c",  # German
        "\u201em-small\u201d",  # Polish
        "\u201dm-small\u201d",  # Swedish
        "\u201am-small\u2018",
        "\u300cm-small\u300d",  # Japanese
        "\u300em-small\u300f",
        " \u00ab m-small \u00bb\u200b",
    ],
)
def test_unwrapped_takes_off_the_quotes_of_any_keyboard(typed: str) -> None:
    assert unwrapped(typed) == "m-small"
    assert header_safe(typed.replace("m-small", "sk-abc123"), "API key") == "sk-abc123"


@pytest.mark.parametrize(
    "typed", ["\u00abm-small\u201d", "\u300cm-small\u300f", "\u00abm-small", "\u201em-small\u201e"]
)
def test_unwrapped_keeps_quotes_that_are_no_pair(typed: str) -> None:
    assert unwrapped(typed) == typed


@pytest.mark.parametrize("typed", ['"sk-abc', "sk'abc'", "'sk-abc\"", '""'])
def test_header_safe_keeps_quotes_that_do_not_wrap_the_value(typed: str) -> None:
    assert header_safe(typed, "API key") == typed


def test_header_safe_refuses_empty() -> None:
    with pytest.raises(TextError, match="empty"):
        header_safe(" \u200b ", "API key")


def test_visible_id() -> None:
    assert visible_id(" gpt-4o\u200b ", "model") == "gpt-4o"
    with pytest.raises(TextError, match=r"not valid text \(U\+FFFD\) at position 2"):
        visible_id("a\ufffdb", "model id")  # `a<0xFF>b` read from a pipe
    for bad in ("\u200b", "gpt\u200b4o", "gpt 4o", "gpt\u202e4o"):
        with pytest.raises(TextError):
            visible_id(bad, "model")
    assert visible_id("\u200e\u3164gpt-4o\u2069", "model") == "gpt-4o"


@pytest.mark.parametrize("hidden", ["\u034f", "\ufe0f", "\U000e0100", "\u3164", "\u2800"])
def test_visible_id_refuses_what_shows_nothing_of_any_category(hidden: str) -> None:
    """Invisible probe: a joiner, a selector (Mn), a filler (Lo) or the blank Braille cell
    (So) inside a model id was no format character, so `gpt<U+034F>4o` was taken (and
    shown as gpt4o)."""
    with pytest.raises(TextError, match=f"U\\+{ord(hidden):04X}.* at position 4"):
        visible_id(f"gpt{hidden}4o", "model id")


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ("-7", -7), ("+3", 3), (" 5 ", 5), ("0_1", None), ("١", None), ("4.0", None)],
)
def test_parse_integer_is_ascii_only(text: str, value: int | None) -> None:
    assert parse_integer(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.7", 0.7),
        (".5", 0.5),
        ("1e-3", 0.001),
        ("2", 2.0),
        ("nan", None),
        ("inf", None),
        ("1_0", None),
        ("٠.٥", None),
        ("0x10", None),
        ("1e400", None),  # a float cannot hold it: infinite
        ("1e-400", None),  # nor this: it would be 0, silently
        ("-1e-400", None),
        ("0e-400", 0.0),  # 0 as typed
        ("00.000", 0.0),
        ("1e-320", 1e-320),  # tiny, but not 0
    ],
)
def test_parse_decimal_is_ascii_only_and_finite(text: str, value: float | None) -> None:
    assert parse_decimal(text) == value


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("1e-400", "It is too close to 0 to be told from it."),
        ("1e400", "It is too large."),
        ("0,7", "Write decimals with a dot: 0.7."),
    ],
)
def test_a_number_refused_says_why(typed: str, said: str) -> None:
    with pytest.raises(FieldError) as err:
        BY_NAME["temperature"].parse(typed)
    assert said in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        # A number where a whole one is asked for said "It is too close to 0 to be told
        # from it" of `1e3`.
        ("1e3", "must be a whole number, not `1e3`. Write it in digits: 1000."),
        ("2.5", "must be a whole number, not `2.5`."),
        ("1e30", "must be a whole number, not `1e30`. It is too large."),
    ],
)
def test_a_whole_number_refused_says_why(typed: str, said: str) -> None:
    with pytest.raises(FieldError) as err:
        BY_NAME["max_tokens"].parse(typed)
    assert str(err.value).endswith(said), str(err.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-7", -7),
        ("1,000", 1000),
        ("1 000", 1000),
        ("1\u00a0000", 1000),  # a no-break space, as French text and phones group
        ("1\u202f000", 1000),  # a narrow no-break space
        ("10,000,000", 10_000_000),
        ("-12 345", -12345),
        # Not one reading only, or not grouped by thousands: none.
        ("1.000", None),  # one in English, a thousand in German
        ("1,5", None),
        ("1,00", None),
        ("1,0000", None),
        ("1234,567", None),
        ("1,000 000", None),  # two separators
        ("1_000", None),
        ("\u0661\u0660\u0660", None),
        ("\u2212" + "5", None),
        ("9" * 5000, None),  # past what int() reads: no ValueError
    ],
)
def test_parse_whole_number_takes_thousands_grouped(text: str, value: int | None) -> None:
    assert parse_whole_number(text) == value


@pytest.mark.parametrize(
    ("name", "typed", "said"),
    [
        # `1.000` (German for a thousand) said "Write it in digits: 1.", which set 1.
        ("max_tokens", "1.000", "not `1.000`. If the dot separates thousands, write 1000."),
        ("max_tokens", "1.500", "If the dot separates thousands, write 1500."),
        ("context", "1.000.000", "If the dots separate thousands, write 1000000."),
        # Other scripts' digits and minus signs were refused with no word of why.
        ("max_tokens", "\u0661\u0660\u0660", "Write it with the digits 0-9: 100."),
        ("max_tokens", "\u0661\u066c\u0660\u0660\u0660", "Write it with the digits 0-9: 1000."),
        ("max_tokens", "\uff15", "Write it with the digits 0-9: 5."),
        ("seed", "\u2013" + "1", "Write it with a - sign: -1."),  # an en dash
        ("temperature", "\u2212" + "0.5", "Write it with a - sign: -0.5."),  # a minus sign
        ("temperature", "\u0660\u066b\u0667", "digits 0-9 and a dot for decimals: 0.7."),
        ("temperature", "\u0661", "Write it with the digits 0-9: 1."),
        ("top_p", "\uff10.5", "Write it with the digits 0-9: 0.5."),
        # A decimal option never reads `0,7` as 7, nor `1,000` as a thousand.
        ("temperature", "0,7", "Write decimals with a dot: 0.7."),
        ("temperature", "1,000", "Write decimals with a dot: 1.000."),
    ],
)
def test_a_number_typed_the_way_of_a_locale_says_how_to_write_it(
    name: str, typed: str, said: str
) -> None:
    with pytest.raises(FieldError) as err:
        BY_NAME[name].parse(typed)
    assert str(err.value).endswith(said), str(err.value)


@pytest.mark.parametrize(
    "typed", ["1,000", "1 000", "1\u00a0000", "1\u202f000", "1\u2009000", " 1,000 "]
)
def test_a_whole_number_grouped_by_thousands_is_read_as_limits_read_it(typed: str) -> None:
    """`/params max_tokens 1,000` said "Write decimals with a dot: 1.000." (which then set
    1); /limits set took `1,000` as 1000. Both read it by parse_whole_number."""
    assert BY_NAME["max_tokens"].parse(typed) == 1000
    assert parse_value(typed) == 1000


@pytest.mark.parametrize("typed", ["1,5", "0,7"])
def test_a_decimal_comma_where_a_whole_number_is_asked_for_is_not_offered_as_a_dot(
    typed: str,
) -> None:
    with pytest.raises(FieldError) as err:
        BY_NAME["max_tokens"].parse(typed)
    assert str(err.value).endswith(f"must be a whole number, not `{typed}`."), str(err.value)


def test_shorten() -> None:
    assert shorten("abc", 5) == "abc"
    assert shorten("a" * 100, 10) == "a" * 9 + "…"
    # Phone probe: cut between graphemes, never inside a flag, a family or a letter with
    # its marks (half of one shows as another symbol, or as a box).
    flag, family = "\U0001f1eb\U0001f1f7", "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert shorten("abcdefgh" + flag + "xyz", 10) == "abcdefgh…"
    assert shorten("abcdef" + family + "xyz", 10) == "abcdef…"
    assert shorten("abcdefghe\u0301\u0301xyz", 11) == "abcdefgh…"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\u202eevil\x00", "evil"),  # a right-to-left override and a NUL
        ("Ali\u200bce", "Alice"),  # a zero-width space faking another name
        ("\u2066Bob\u2069 the\n  Builder", "Bob the Builder"),
        ("👩\u200d🚀 Captain", "👩\u200d🚀 Captain"),  # an emoji's joiner stays
        ("Seraphina", "Seraphina"),
        ("Sera\nphina\tthe\r\nBold", "Sera phina the Bold"),  # a newline parts words
    ],
)
def test_shown_name(raw: str, shown: str) -> None:
    assert shown_name(raw) == shown


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("gpt-4", "`gpt-4`"),
        ("@a`b:hs", "``@a`b:hs``"),  # a backtick inside cannot close the span early
        ("a``b`", "``` a``b` ```"),  # nor a run of them; one at an edge gets a space
        ("two\n  lines", "`two lines`"),
        # A control is named: dropped, `/set<NUL>tings` read back as `/settings` in
        # "Unknown command `/settings`", a command that exists.
        ("/set\x00tings", "`/set<U+0000>tings`"),
        ("a\x1b[31mred", "`a<U+001B>[31mred`"),
        ("", "(nothing)"),
        ("x" * 100, "`" + "x" * 59 + "…`"),
        ("\u202e123", "`<U+202E>123`"),  # would turn the rest of the reply around
        ("gpt\u200b4", "`gpt<U+200B>4`"),
        # Invisible probe: what shows nothing of other categories than Cf was shown as
        # nothing, `/set<U+034F>tings` read back as `/settings`.
        ("/set\u034ftings", "`/set<U+034F>tings`"),
        ("gpt\u31644", "`gpt<U+3164>4`"),
        ("gpt\ufe0f4", "`gpt<U+FE0F>4`"),
        # What draws an emoji is kept as typed (`❤<U+FE0F>` was shown for a red heart);
        # the same characters anywhere else stay named.
        ("Luna \u2764\ufe0f", "`Luna \u2764\ufe0f`"),
        (
            "\U0001f468\u200d\U0001f469\u200d\U0001f467",
            "`\U0001f468\u200d\U0001f469\u200d\U0001f467`",
        ),
        ("\U0001f3f3\ufe0f\u200d\U0001f308", "`\U0001f3f3\ufe0f\u200d\U0001f308`"),
        ("\U0001f44b\U0001f3fd\u200d\u2764", "`\U0001f44b\U0001f3fd\u200d\u2764`"),
        ("1\ufe0f\u20e3", "`1\ufe0f\u20e3`"),
        (
            "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
            "`\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f`",
        ),
        ("\u2764\ufe0f\ufe0f", "`\u2764\ufe0f<U+FE0F>`"),
        ("1\ufe0f", "`1<U+FE0F>`"),
        ("a\u200db", "`a<U+200D>b`"),
        ("\u2764\u200da", "`\u2764<U+200D>a`"),
        ("\u2764\U000e0067", "`\u2764<U+E0067>`"),
        # Of the modifier symbols (Sk) only the skin tones draw an emoji: a selector or
        # joiner after a caret, an accent or a backtick only disguises the text.
        ("gpt^\ufe0f4", "`gpt^<U+FE0F>4`"),
        ("x\u00b4\ufe0fy", "`x\u00b4<U+FE0F>y`"),
        ("a`\u200d^b", "``a`<U+200D>^b``"),
        # Tags that spell a text after a flag are no flag: hidden ASCII, named.
        (
            "\U0001f3f4\U000e0068\U000e0069\U000e0020\U000e0078\U000e007f",
            "`\U0001f3f4<U+E0068><U+E0069><U+E0020><U+E0078><U+E007F>`",
        ),
    ],
)
def test_quoted_makes_a_code_span_nothing_typed_can_break(typed: str, shown: str) -> None:
    assert quoted(typed) == shown


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("نیک\u200cنام", "نیک\u200cنام"),  # Persian needs its ZWNJ: without it, another word
        ("क्\u200dष", "क्\u200dष"),
        ("🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", None),  # England
        ("Vic\u200ctor", "Victor"),  # in Latin it would only help fake another name
        # Hostile probe: a joiner was kept anywhere, so `Ad\u200dmin` showed as Admin and
        # a card named only with invisible characters had a blank name.
        ("Ad\u200dmin", "Admin"),
        ("\u200dAlice\u200d", "Alice"),
        ("\u200b\u200d\u2060", ""),
        ("\u200d", ""),
        ("x \u200d\u200d y", "x y"),
        ("🏳\ufe0f\u200d🌈 Pride", None),  # the rainbow flag: its joiner stays
        ("\U0001f468\u200d\U0001f469\u200d\U0001f467", None),  # a family
        ("a\U000e0041\U000e0042b", "ab"),  # tags outside a flag spell hidden text
        ("\u202eevil\u202c", "evil"),
    ],
)
def test_a_name_keeps_the_invisible_characters_its_script_needs(
    name: str, shown: str | None
) -> None:
    assert shown_name(name) == (name if shown is None else shown)


def test_a_hint_writes_back_no_more_than_an_echo() -> None:
    """Hostile probe: a 4,000-character `1.000.000…` came back whole in its hint (two
    Discord pages for one typo); a hint's number is as short as any echo."""
    hint = decimal_hint("1" + ".000" * 1000, whole=True)
    assert hint.startswith(" If the dots separate thousands, write 1000") and len(hint) < 120
    assert len(decimal_hint("0," + "7" * 4000)) < 120


def test_growing_text_reads_what_came_since_any_point() -> None:
    from bot.types.text import Growing

    grown = Growing("ab")
    for piece in ("cde", "", "f", "ghij"):
        grown.add(piece)
    whole = "abcdefghij"
    assert len(grown) == len(whole) and str(grown) == whole
    for start in range(-1, len(whole) + 2):
        assert grown.since(start) == whole[max(start, 0) :], start
    grown.add("k")  # after a whole read: the joined text and the new piece
    assert grown.since(3) == "defghijk" and str(grown) == whole + "k"
    assert str(Growing()) == "" and Growing().since(0) == ""
