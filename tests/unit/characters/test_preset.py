"""SillyTavern Chat Completion presets to our settings and back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.characters import PresetError, export_preset, parse_preset
from bot.fields import REGISTRY

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
        # the empty nsfw prompt: unset when we have the setting, else left out
        **({"auxiliary_prompt": None} if "auxiliary_prompt" in KNOWN else {}),
    }
    assert set(result.not_supported) == {
        name for name in result.values if name not in REGISTRY.by_name
    }
    assert "temperature" not in result.not_supported
    # connection keys and ST-only options are ignored, and listed
    assert "proxy_password" in result.ignored and "chat_completion_source" in result.ignored
    assert "openai_model" in result.ignored and "min_p" in result.ignored
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
        ({"seed": -1}, "seed", None),
        ({"top_k": 0}, "top_k", None),
        ({"reasoning_effort": "auto"}, "reasoning_effort", None),
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
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a Chat Completion preset"),
        (b'{"foo": 1}', "not a Chat Completion preset"),
        (b'{"spec": "chara_card_v2", "data": {}}', "character card"),
        (json.dumps(st_preset(temperature="hot")).encode(), "`temperature` must be a number"),
        (json.dumps(st_preset(temperature=True)).encode(), "`temperature` must be a number"),
        (json.dumps(st_preset(openai_max_tokens=1.5)).encode(), "must be a whole number"),
        (json.dumps(st_preset(stop="END")).encode(), "`stop` must be a list of strings"),
        (json.dumps(st_preset(stop=["a"] * 17)).encode(), "more than 16"),
        (json.dumps(st_preset(prompts={})).encode(), "`prompts` must be a list"),
        (
            json.dumps(st_preset(prompts=[{"identifier": "main", "content": 5}])).encode(),
            "`main` prompt must be text",
        ),
        (b'{"temperature": Infinity}', "not valid JSON"),
        (b"[" * 10_000, "nested too deeply"),
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
        "auxiliary_prompt": None,
        "post_history_prompt": "Short answers.",
        "model": "ignored-here",
    }
    exported = json.loads(export_preset(values))
    assert exported["temperature"] == 0.7 and exported["openai_max_tokens"] == 512
    identifiers = [p["identifier"] for p in exported["prompts"]]
    assert {"main", "nsfw", "jailbreak", "chatHistory", "dialogueExamples"} <= set(identifiers)
    back = parse_preset(json.dumps(exported), KNOWN).values
    expected = {k: v for k, v in values.items() if k != "model" and (k in KNOWN or v)}
    expected["stop"] = ["END"]
    assert back == expected


def test_unset_settings_are_left_out_and_the_seed_is_minus_one() -> None:
    exported = json.loads(export_preset({"temperature": None, "seed": None}))
    assert "temperature" not in exported and exported["seed"] == -1
    assert parse_preset(json.dumps(exported), KNOWN).values["seed"] is None


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
    # a setting we have is unset by an empty prompt
    with_all = MAIN_ONLY | {"auxiliary_prompt", "post_history_prompt"}
    result = parse_preset(json.dumps(st_preset(prompts=prompts)), with_all)
    assert result.values["post_history_prompt"] is None and result.not_supported == ()


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
