"""SillyTavern Chat Completion presets to our settings and back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.characters import PresetError, export_preset, parse_preset
from bot.fields import BY_NAME, PARAMS, REGISTRY

KNOWN = REGISTRY.by_name


def st_preset(**changes: Any) -> dict[str, Any]:
    """Shaped like SillyTavern's default/content/presets/openai/Default.json."""
    preset: dict[str, Any] = {
        "chat_completion_source": "openai",
        "openai_model": "gpt-4-turbo",
        "claude_model": "claude-3-5-sonnet-20240620",
        "reverse_proxy": "https://proxy.example/v1",
        "proxy_password": "hunter2",
        "temperature": 0.9,
        "frequency_penalty": 0.2,
        "presence_penalty": 0.1,
        "top_p": 0.95,
        "top_k": 40,
        "top_a": 0,
        "min_p": 0,
        "repetition_penalty": 1,
        "openai_max_context": 16384,
        "openai_max_tokens": 600,
        "wrap_in_quotes": False,
        "names_behavior": 0,
        "new_chat_prompt": "[Start a new Chat]",
        "wi_format": "{0}",
        "stream_openai": True,
        "seed": 42,
        "n": 1,
        "reasoning_effort": "high",
        "prompts": [
            {
                "name": "Main Prompt",
                "system_prompt": True,
                "role": "system",
                "content": "Write {{char}}'s next reply.",
                "identifier": "main",
            },
            {"name": "Auxiliary Prompt", "role": "system", "content": "", "identifier": "nsfw"},
            {"identifier": "dialogueExamples", "name": "Chat Examples", "marker": True},
            {
                "name": "Post-History Instructions",
                "role": "system",
                "content": "Stay brief.",
                "identifier": "jailbreak",
            },
        ],
        "prompt_order": [{"character_id": 100000, "order": []}],
    }
    preset.update(changes)
    return preset


def _parse(**changes: Any) -> Any:
    return parse_preset(json.dumps(st_preset(**changes)).encode(), KNOWN)


def test_a_sillytavern_preset_maps_to_our_settings() -> None:
    result = _parse()
    assert result.values == {
        "temperature": 0.9,
        "frequency_penalty": 0.2,
        "presence_penalty": 0.1,
        "top_p": 0.95,
        "top_k": 40,
        "context": 16384,
        "max_tokens": 600,
        "seed": 42,
        "reasoning_effort": "high",
        "system_prompt": "Write {{char}}'s next reply.",
        "post_history_prompt": "Stay brief.",
        "post_history_off": False,  # its order sends it: a card's replace it
        "wi_format": "{0}",
        # the empty nsfw prompt: none when we have the setting (SillyTavern sends none)
        **({"auxiliary_prompt": ""} if "auxiliary_prompt" in KNOWN else {}),
    }
    assert set(result.not_supported) == {
        name for name in result.values if name not in REGISTRY.by_name
    }
    assert "temperature" not in result.not_supported
    # connection keys given a value are never taken, and listed apart; ST-only options
    # are ignored, and listed
    assert {"proxy_password", "reverse_proxy", "chat_completion_source"} <= set(result.connection)
    assert "openai_model" in result.connection and "min_p" in result.ignored
    assert not set(result.connection) & set(result.ignored)
    assert "prompts" not in result.ignored and "temperature" not in result.ignored
    assert list(result.ignored) == sorted(result.ignored)


def test_supported_values_pass_the_registry() -> None:
    result = _parse(stop=["\nUser:", "END"])
    for name, value in result.values.items():
        if name in REGISTRY.by_name and value is not None:
            REGISTRY.by_name[name].check(value)
    assert result.values["stop"] == ["\nUser:", "END"]


@pytest.mark.parametrize(
    ("changes", "name", "value"),
    [
        # Off as SillyTavern's values say, kept as the registry's `off` value: imported
        # into a channel, it wins over the server's value (cards probe).
        ({"seed": -1}, "seed", -1),
        ({"seed": -7}, "seed", -1),
        ({"top_k": 0}, "top_k", 0),
        ({"reasoning_effort": "auto"}, "reasoning_effort", "auto"),
        ({"reasoning_effort": ""}, "reasoning_effort", "auto"),
        # Minimum and Maximum: what SillyTavern sends OpenAI for them (a preset saved
        # with either had its effort refused as "must be one of: auto, minimal …").
        ({"reasoning_effort": "min"}, "reasoning_effort", "low"),
        ({"reasoning_effort": "max"}, "reasoning_effort", "high"),
        ({"openai_max_tokens": 300.0}, "max_tokens", 300),
        ({"custom_stopping_strings": '["###", "\\nBob:"]'}, "stop", ["###", "\nBob:"]),
        ({"stop": []}, "stop", None),
    ],
)
def test_sillytavern_conventions(changes: dict[str, Any], name: str, value: object) -> None:
    assert _parse(**changes).values[name] == value


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "not valid JSON"),
        (b'{"temperature": "\xc3\xa9\xe9"}', "not UTF-8 text (bad byte at offset 19)"),
        (b'{"temperature": "\xe9"}', "must be a number"),  # Windows-1252: read
        (b"[]", "not a Chat Completion preset"),
        (b'{"foo": 1}', "not a Chat Completion preset"),
        (b'{"spec": "chara_card_v2", "data": {}}', "character card"),
        (json.dumps(st_preset(temperature="hot")).encode(), "`temperature` must be a number"),
        (json.dumps(st_preset(temperature=True)).encode(), "`temperature` must be a number"),
        (json.dumps(st_preset(openai_max_tokens=1.5)).encode(), "must be a whole number"),
        (json.dumps(st_preset(stop="END")).encode(), "`stop` must be a list of strings"),
        (json.dumps(st_preset(prompts={})).encode(), "`prompts` must be a list"),
        (
            json.dumps(st_preset(prompts=[{"identifier": "main", "content": 5}])).encode(),
            "`main` prompt must be text",
        ),
        (b'{"temperature": Infinity}', "not valid JSON"),
        # Silently 0 before: /params refuses the same value.
        (b'{"temperature": 1e-400}', "a number out of range (1e-400)"),
        (b'{"temperature": 0.7, "top_p": 2e-330}', "a number out of range (2e-330)"),
        (b"[" * 10_000, "nested too deeply"),
        # The stop strings are JSON text inside the JSON: held to the same rule (a
        # RecursionError escaped /preset import).
        (
            json.dumps(st_preset(custom_stopping_strings="[" * 5000 + "]" * 5000)).encode(),
            "`custom_stopping_strings` must be a list of strings",
        ),
        (
            json.dumps(st_preset(custom_stopping_strings='["a", NaN]')).encode(),
            "`custom_stopping_strings` must be a list of strings",
        ),
        (b" " * (1024 * 1024 + 1), "larger than"),
    ],
)
def test_refusals_name_the_problem(data: bytes, says: str) -> None:
    with pytest.raises(PresetError) as caught:
        parse_preset(data, KNOWN)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_export_then_import_gives_the_same_settings() -> None:
    values = {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.0,
        "max_tokens": 512,
        "context": 8192,
        "seed": 7,
        "stop": ("END",),
        "reasoning_effort": "low",
        "system_prompt": "Be {{char}}.",
        "auxiliary_prompt": "",
        "post_history_prompt": "Short answers.",
        "model": "ignored-here",
    }
    exported = json.loads(export_preset(values))
    assert exported["temperature"] == 0.7 and exported["openai_max_tokens"] == 512
    identifiers = [p["identifier"] for p in exported["prompts"]]
    assert {"main", "nsfw", "jailbreak", "chatHistory", "dialogueExamples"} <= set(identifiers)
    back = parse_preset(json.dumps(exported), KNOWN).values
    expected = {k: v for k, v in values.items() if k != "model"}
    expected["stop"] = ["END"]
    assert back == {**expected, "post_history_off": False}
    # Switched off (a card's too), it goes out off in the order and comes back so.
    off = json.loads(export_preset({**values, "post_history_off": True}))
    assert parse_preset(json.dumps(off), KNOWN).values["post_history_off"] is True


def test_unset_settings_are_left_out_and_the_seed_is_minus_one() -> None:
    exported = json.loads(export_preset({"temperature": None, "seed": None}))
    assert "temperature" not in exported and exported["seed"] == -1
    assert parse_preset(json.dumps(exported), KNOWN).values["seed"] == -1  # off, as in ST


# Only main has a setting here, as when the registry has no auxiliary or post-history prompt.
MAIN_ONLY = frozenset(KNOWN) - {"auxiliary_prompt", "post_history_prompt"}


def _prompt(identifier: str, content: object) -> dict[str, Any]:
    return {"identifier": identifier, "role": "system", "content": content}


def test_empty_prompts_without_a_setting_are_not_reported() -> None:
    # SillyTavern's Default.json: nsfw and jailbreak are there, empty.
    prompts = [_prompt("main", "Hi {{user}}."), _prompt("nsfw", ""), _prompt("jailbreak", None)]
    result = parse_preset(json.dumps(st_preset(prompts=prompts)), MAIN_ONLY)
    assert result.not_supported == ()
    assert result.values["system_prompt"] == "Hi {{user}}."
    assert "auxiliary_prompt" not in result.values and "post_history_prompt" not in result.values
    prompts[1] = _prompt("nsfw", "  Be vivid. ")
    result = parse_preset(json.dumps(st_preset(prompts=prompts)), MAIN_ONLY)
    assert result.not_supported == ("auxiliary_prompt",)
    # a setting we have is none here by an empty prompt (SillyTavern sends none)
    with_all = MAIN_ONLY | {"auxiliary_prompt", "post_history_prompt"}
    result = parse_preset(json.dumps(st_preset(prompts=prompts)), with_all)
    assert result.values["post_history_prompt"] == "" and result.not_supported == ()


def test_every_problem_is_named_not_only_the_first() -> None:
    prompts = [_prompt("main", 5), _prompt("jailbreak", ["x"])]
    data = st_preset(temperature="hot", openai_max_tokens=1.5, prompts=prompts)
    with pytest.raises(PresetError) as caught:
        parse_preset(json.dumps(data), KNOWN)
    said = str(caught.value)
    assert "\n" not in said
    for problem in (
        "`temperature` must be a number",
        "`openai_max_tokens` must be a whole number",
        "`main` prompt must be text",
        "`jailbreak` prompt must be text",
    ):
        assert problem in said, problem


def test_a_long_list_of_problems_is_cut() -> None:
    prompts = [_prompt("main", n) for n in range(1000)]
    with pytest.raises(PresetError) as caught:
        parse_preset(json.dumps(st_preset(prompts=prompts)), KNOWN)
    assert str(caught.value).endswith("… and 995 more.") and len(str(caught.value)) < 400


def test_two_different_main_prompts_are_refused_not_one_taken_silently() -> None:
    prompts = [_prompt("main", "First."), _prompt("main", "Second."), _prompt("main", "Third.")]
    with pytest.raises(PresetError) as caught:
        parse_preset(json.dumps(st_preset(prompts=prompts)), KNOWN)
    assert str(caught.value) == (
        "The preset has two different `main` prompts (SillyTavern uses the first); keep one."
    )
    # the same text twice is no question
    prompts = [_prompt("main", "Same."), _prompt("main", " Same.")]
    assert parse_preset(json.dumps(st_preset(prompts=prompts)), KNOWN).values["system_prompt"] == (
        "Same."
    )


def test_odd_prompt_entries_are_skipped() -> None:
    prompts = [{"identifier": []}, {"identifier": {"a": 1}}, "main", _prompt("main", "Kept.")]
    result = parse_preset(json.dumps(st_preset(prompts=prompts)), KNOWN)
    assert result.values["system_prompt"] == "Kept."


# -- prompt_order: what SillyTavern would send ------------------------------------------

_TEXTS = [
    _prompt("main", "Be {{char}}."),
    _prompt("nsfw", "Be vivid."),
    _prompt("jailbreak", "Go."),
]
PROMPT_NAMES = {
    "main": "system_prompt",
    "nsfw": "auxiliary_prompt",
    "jailbreak": "post_history_prompt",
}
# As when the registry has all three prompt settings (today it may lack the last two).
WITH_ALL = frozenset(KNOWN) | set(PROMPT_NAMES.values())


def _order(*switches: tuple[str, object], character_id: object = 100001) -> dict[str, Any]:
    return {
        "character_id": character_id,
        "order": [{"identifier": i, "enabled": on} for i, on in switches],
    }


ALL_ON = (("main", True), ("chatHistory", True), ("nsfw", True), ("jailbreak", True))


def _with_order(
    prompt_order: object, prompts: list[Any] | None = None, known: Any = WITH_ALL
) -> Any:
    data = st_preset(prompts=_TEXTS if prompts is None else prompts, prompt_order=prompt_order)
    return parse_preset(json.dumps(data), known)


def test_a_prompt_switched_off_in_sillytaverns_order_is_none_and_named() -> None:
    # SillyTavern's chat reads the order of character 100001; 100000's is not used.
    on_in_100000 = _order(*ALL_ON, character_id=100000)
    jailbreak_off = _order(("main", True), ("nsfw", True), ("jailbreak", False))
    result = _with_order([on_in_100000, jailbreak_off])
    assert result.values["post_history_prompt"] == ""
    assert result.disabled == ("post_history_prompt",)
    assert result.values["system_prompt"] == "Be {{char}}."
    assert result.values["auxiliary_prompt"] == "Be vivid."
    assert "prompt_order" not in result.ignored and result.not_supported == ()
    # with today's registry: named as switched off, not as a setting we lack
    result = _with_order([on_in_100000, jailbreak_off], known=KNOWN)
    assert result.disabled == ("post_history_prompt",)
    assert "post_history_prompt" not in result.not_supported
    assert result.values.get("post_history_prompt") in (None, "")


def test_a_main_prompt_switched_off_is_none() -> None:
    # SillyTavern then sends an empty main prompt (getPromptCollection).
    result = _with_order(
        [_order(("main", False), ("nsfw", True), ("jailbreak", True))], known=KNOWN
    )
    assert result.values["system_prompt"] == "" and result.disabled == ("system_prompt",)


def test_prompts_switched_on_are_imported() -> None:
    expected = {
        "system_prompt": "Be {{char}}.",
        "auxiliary_prompt": "Be vivid.",
        "post_history_prompt": "Go.",
    }
    jailbreak_off_in_100000 = _order(("jailbreak", False), character_id=100000)
    for prompt_order in (
        [_order(*ALL_ON)],
        [_order(*ALL_ON, character_id="100001")],  # SillyTavern compares String(id)
        [jailbreak_off_in_100000],  # no order for 100001: SillyTavern's default, all on
        [_order()],  # an empty order: the default too
        [{"character_id": 100001}],
        [{"character_id": 100001, "order": None}],
        None,
    ):
        result = _with_order(prompt_order)
        assert {n: result.values[n] for n in expected} == expected, prompt_order
        assert result.disabled == (), prompt_order


def test_a_prompt_missing_from_the_order_is_off_and_the_first_entry_decides() -> None:
    result = _with_order([_order(("main", True), ("jailbreak", False), ("jailbreak", True))])
    assert result.values["system_prompt"] == "Be {{char}}."
    assert result.values["auxiliary_prompt"] == "" and result.values["post_history_prompt"] == ""
    assert result.disabled == ("auxiliary_prompt", "post_history_prompt")
    # the first order for 100001 counts, as in SillyTavern
    result = _with_order([_order(("main", False)), _order(*ALL_ON)])
    assert result.disabled == ("system_prompt", "auxiliary_prompt", "post_history_prompt")


def test_a_switched_off_prompt_is_neither_checked_nor_kept() -> None:
    # Text SillyTavern never sends is not refused: two different texts, or not text at all.
    prompts = [_prompt("main", "Kept."), _prompt("jailbreak", "A."), _prompt("jailbreak", "B.")]
    prompts.append(_prompt("nsfw", 5))
    result = _with_order([_order(("main", True))], prompts)
    assert result.values["system_prompt"] == "Kept."
    assert result.disabled == ("auxiliary_prompt", "post_history_prompt")
    # an empty prompt switched off is none without a word; one the preset lacks, none too
    result = _with_order([_order(("main", True))], [_prompt("main", "Kept."), _prompt("nsfw", "")])
    assert result.disabled == () and result.values["auxiliary_prompt"] == ""
    assert result.values["post_history_prompt"] == ""


def test_a_switched_off_prompt_without_a_setting_is_named_not_unsupported() -> None:
    data = st_preset(prompts=_TEXTS, prompt_order=[_order(("main", True), ("nsfw", True))])
    result = parse_preset(json.dumps(data), MAIN_ONLY)
    assert result.not_supported == ("auxiliary_prompt",)
    assert result.disabled == ("post_history_prompt",)
    assert "post_history_prompt" not in result.values


@pytest.mark.parametrize(
    ("prompt_order", "disabled"),
    [
        # SillyTavern sends a prompt only when `enabled` is exactly true
        ([_order(("main", True), ("nsfw", "true"), ("jailbreak", "false"))], ("nsfw", "jailbreak")),
        ([_order(("main", 1), ("nsfw", None), ("jailbreak", True))], ("main", "nsfw")),
        # entries that are not objects are passed over
        ([1, "x", None, [], _order(("main", True))], ("nsfw", "jailbreak")),
        ([1, 2, 3], ()),  # no order for 100001: the default
        ([{"character_id": True, "order": []}, {"character_id": [1]}], ()),
        ([{"character_id": 100001, "order": [1, 2, "main", None]}], ("main", "nsfw", "jailbreak")),
        ([{"character_id": 100001, "order": [{"identifier": ["main"], "enabled": True}]}], "all"),
        # huge, still a file under 1 MB
        ([0] * 100_000 + [_order(("main", True), ("nsfw", True))], ("jailbreak",)),
        ([{"character_id": 100001, "order": [7] * 100_000 + [{"identifier": "main"}]}], "all"),
        ([_order(*ALL_ON[:1] * 20_000, ("jailbreak", True))], ("nsfw",)),
    ],
)
def test_odd_prompt_orders_are_read_as_sillytavern_reads_them(
    prompt_order: list[Any], disabled: tuple[str, ...] | str
) -> None:
    off = tuple(PROMPT_NAMES) if disabled == "all" else disabled
    result = _with_order(prompt_order)
    assert result.disabled == tuple(PROMPT_NAMES[i] for i in off)
    for identifier, name in PROMPT_NAMES.items():
        assert (result.values[name] == "") == (identifier in off), name


@pytest.mark.parametrize(
    ("prompt_order", "says"),
    [
        ("[]", "The preset's `prompt_order` must be a list."),
        ({"100001": []}, "The preset's `prompt_order` must be a list."),
        (
            [{"character_id": 100001, "order": "main"}],
            "The `order` of the preset's `prompt_order` for character 100001 must be a list.",
        ),
        (
            [{"character_id": "100001", "order": {"main": True}}],
            "The `order` of the preset's `prompt_order` for character 100001 must be a list.",
        ),
    ],
)
def test_a_prompt_order_sillytavern_cannot_read_is_refused(prompt_order: object, says: str) -> None:
    with pytest.raises(PresetError) as caught:
        _with_order(prompt_order)
    assert str(caught.value) == says


def test_an_exported_preset_has_every_prompt_switched_on() -> None:
    values = {"system_prompt": "Hi.", "auxiliary_prompt": "Vivid.", "post_history_prompt": "Go."}
    exported = json.loads(export_preset(values))
    for order in exported["prompt_order"]:
        assert all(entry["enabled"] is True for entry in order["order"])
    result = parse_preset(json.dumps(exported), WITH_ALL)
    assert result.disabled == () and {n: result.values[n] for n in values} == values
    assert result.placed == ()  # placed as SillyTavern's default order places them


# In SillyTavern's default order: main and nsfw before the chat history, jailbreak after.
DEFAULT_PLACES = (
    ("main", True),
    ("scenario", True),
    ("nsfw", True),
    ("chatHistory", True),
    ("jailbreak", True),
)


def _placed(prompts: list[Any], *order: tuple[str, object]) -> tuple[str, ...]:
    result = _with_order([_order(*(order or DEFAULT_PLACES))], prompts)
    return tuple(result.placed)


def test_a_prompt_sillytavern_sends_elsewhere_or_as_another_role_is_named() -> None:
    """Features probe: a preset whose main prompt SillyTavern sends in the chat at depth
    4 as user (injection_position 1) was imported as the system prompt with no word of
    it; so was a jailbreak moved above the chat history, or one a card may not replace."""
    assert _placed(_TEXTS) == ()
    assert st_preset()["prompts"][0]["role"] == "system"
    assert parse_preset(json.dumps(st_preset()), KNOWN).placed == ()  # no order: default
    moved = [
        {**_TEXTS[0], "role": "user", "injection_position": 1, "injection_depth": 4.0},
        {**_TEXTS[1], "role": "assistant"},
        {**_TEXTS[2], "forbid_overrides": True},
    ]
    assert _placed(moved) == (
        "`main` in the chat at depth 4, as user",
        "`nsfw` as assistant",
        "`jailbreak` never replaced by a card's own",
    )
    swapped = (("main", True), ("jailbreak", True), ("chatHistory", True), ("nsfw", True))
    assert _placed(_TEXTS, *swapped) == (
        "`nsfw` after the chat history",
        "`jailbreak` before the chat history",
    )
    # never sent in the chat: no role SillyTavern sends, or a depth it never reaches
    for odd in ({"role": "narrator"}, {"injection_depth": 1001}, {"injection_depth": "2"}):
        prompts = [{**_TEXTS[0], "injection_position": 1, "injection_depth": 2, **odd}]
        assert _placed(prompts) == (
            "`main` never (its in-chat depth or role is not one it sends)",
        ), odd


def test_only_a_prompt_sent_is_named_for_its_place() -> None:
    absolute = {"injection_position": 1, "injection_depth": 0, "role": "user"}
    # empty, switched off, or not position 1 as SillyTavern compares it (=== 1)
    empty = [{**_prompt("main", ""), **absolute}]
    assert _placed(empty) == ()
    off = [{**_TEXTS[0], **absolute}]
    assert _placed(off, ("main", False), ("chatHistory", True)) == ()
    for position in ("1", True):
        prompts = [{**_TEXTS[0], "injection_position": position, "injection_depth": 0}]
        assert _placed(prompts) == (), position
    # forbid_overrides means nothing for nsfw (a card has no prompt of its own for it)
    assert _placed([{**_TEXTS[1], "forbid_overrides": True}]) == ()
    # the first prompt of an identifier is the one SillyTavern reads
    assert _placed([_TEXTS[0], {**_TEXTS[0], **absolute}]) == ()


def test_a_parameter_under_its_own_name_follows_the_preset_rules() -> None:
    """Review: a value of the wrong kind was only "not applied" (the preset's own keys
    refuse the whole file), 2048.0 was no whole number, and null unset the setting."""
    params = {f.name: f.kind.value for f in PARAMS}
    with pytest.raises(PresetError, match="`thinking_budget` must be a number"):
        parse_preset(json.dumps({"temperature": 0.5, "thinking_budget": "2048"}), BY_NAME, params)
    taken = parse_preset(
        json.dumps({"thinking_budget": 2048.0, "vision": None, "reasoning": True}),
        BY_NAME,
        params,
    )
    assert dict(taken.values) == {"thinking_budget": 2048, "reasoning": True}
    with pytest.raises(PresetError, match="`reasoning` must be true or false"):
        parse_preset(json.dumps({"temperature": 1, "reasoning": "yes"}), BY_NAME, params)


# SillyTavern's own Default.settings before its prompt manager (shipped until 2024-02):
# its three prompts under main_prompt, nsfw_prompt and jailbreak_prompt.
OLD_DEFAULT: dict[str, Any] = {
    "temperature": 0.9,
    "frequency_penalty": 0.7,
    "presence_penalty": 0.7,
    "openai_max_context": 4095,
    "openai_max_tokens": 300,
    "nsfw_toggle": True,
    "enhance_definitions": False,
    "wrap_in_quotes": False,
    "names_in_completion": False,
    "nsfw_first": False,
    "main_prompt": "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}.",
    "nsfw_prompt": "NSFW/Smut is allowed.",
    "jailbreak_prompt": "[System note: stay in character.]",
    "jailbreak_system": False,
}


def test_an_old_presets_prompts_are_its_prompts_as_sillytavern_moves_them() -> None:
    """Conformance probe: a preset from before SillyTavern's prompt manager was applied
    with its three prompts "Ignored"; SillyTavern moves them into main, nsfw and
    jailbreak when it loads the preset (PromptManager.js registerPromptManagerMigration)."""
    result = parse_preset(json.dumps(OLD_DEFAULT), KNOWN)
    assert result.values["system_prompt"] == OLD_DEFAULT["main_prompt"]
    assert result.values["auxiliary_prompt"] == "NSFW/Smut is allowed."
    assert result.values["post_history_prompt"] == "[System note: stay in character.]"
    assert not {"main_prompt", "nsfw_prompt", "jailbreak_prompt"} & set(result.ignored)
    assert "nsfw_toggle" in result.ignored  # SillyTavern no longer reads it either
    # Only the texts given: the others are SillyTavern's default prompts'.
    result = parse_preset(json.dumps({"temperature": 1, "jailbreak_prompt": "Go."}), KNOWN)
    assert result.values["system_prompt"] == (
        "Write {{char}}'s next reply in a fictional chat between {{charIfNotGroup}} and {{user}}."
    )
    assert (result.values["auxiliary_prompt"], result.values["post_history_prompt"]) == ("", "Go.")
    # Empty ones move nothing: the preset's own prompts stand.
    result = _parse(main_prompt="", jailbreak_prompt=None)
    assert result.values["system_prompt"] == "Write {{char}}'s next reply."
    assert "main_prompt" not in result.ignored


def test_an_old_prompt_replaces_the_first_of_its_identifier_and_the_order_still_counts() -> None:
    # A preset saved while SillyTavern moved to its prompt manager holds both forms.
    prompts = [
        {"identifier": "main", "content": "New main."},
        {"identifier": "nsfw", "content": "New aux."},
    ]
    order = [_order(("main", True), ("nsfw", True), ("jailbreak", False))]
    result = parse_preset(
        json.dumps(
            {
                **st_preset(prompts=prompts, prompt_order=order),
                "main_prompt": "Old main.",
                "jailbreak_prompt": "Old jailbreak.",
            }
        ),
        KNOWN,
    )
    assert (result.values["system_prompt"], result.values["auxiliary_prompt"]) == (
        "Old main.",
        "New aux.",
    )
    assert result.values["post_history_prompt"] == ""  # switched off in its order
    assert result.disabled == ("post_history_prompt",)


def test_an_old_prompt_that_is_not_text_is_refused() -> None:
    with pytest.raises(PresetError) as refused:
        parse_preset(json.dumps({**OLD_DEFAULT, "main_prompt": ["Be brief."]}), KNOWN)
    assert str(refused.value) == "The preset's `main_prompt` must be text."
