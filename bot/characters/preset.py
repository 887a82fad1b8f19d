"""SillyTavern Chat Completion presets to and from our channel settings (by name).

characters may import only types, so values come back under the registry's names,
unchecked for range: the caller validates them through bot.fields.REGISTRY.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bot.characters.card import json_text, parse_json
from bot.characters.model import MAX_NOTE_DEPTH, ROLES, CardError
from bot.types.text import clean_text

MAX_PRESET_BYTES = 1024 * 1024
CARD_NOT_PRESET = "This is a character card, not a preset; use the character import."
MAX_PROMPT_CHARS = 100_000

# Prompt identifiers of the preset → our setting names.
PROMPTS = {"main": "system_prompt", "nsfw": "auxiliary_prompt", "jailbreak": "post_history_prompt"}
# Whether the post-history prompt is switched off in the preset's order (bot.fields).
POST_HISTORY_OFF = "post_history_off"


class PresetError(ValueError):
    """A file refused as a preset; str() is one line naming what is wrong."""


@dataclass(frozen=True, slots=True)
class PresetImport:
    """Settings a preset sets (None: unset it; a prompt's "": none, whatever a wider scope
    sets), those not in our registry yet, keys ignored."""

    values: Mapping[str, object]
    not_supported: tuple[str, ...]  # names in `values` the registry does not have (yet)
    ignored: tuple[str, ...]  # preset keys that map to nothing of ours
    # prompt settings whose text the preset switches off in its prompt order: "" in
    # `values` (none here), as SillyTavern would not send them
    disabled: tuple[str, ...] = ()
    # connection keys the preset gives a value (a proxy URL, its password, a source, a
    # model): never taken, and said so apart from the rest of `ignored`
    connection: tuple[str, ...] = ()
    # the preset's other prompts its order sends (custom ones, enhanceDefinitions), by
    # name: not sent here
    not_sent: tuple[str, ...] = ()
    # how SillyTavern would send each of our three prompts where that is not how they
    # are sent here (in the chat at a depth, as user, on the other side of the chat
    # history, not replaced by a card's): "`main`: in the chat at depth 4, as user"
    placed: tuple[str, ...] = ()
    # the card's sections and the chat history (SillyTavern's markers, by their names
    # there) the preset's order switches off or leaves out: sent here all the same
    markers_off: tuple[str, ...] = ()


# SillyTavern's connection settings in a preset, besides every `*_model`: where requests
# and keys go, and with what.
_CONNECTION = frozenset(
    {
        "chat_completion_source",
        "reverse_proxy",
        "proxy_password",
        "custom_url",
        "custom_include_headers",
        "custom_include_body",
        "custom_exclude_body",
    }
)


def _connection(key: object, value: object) -> bool:
    """A connection setting the preset gives a value."""
    named = isinstance(key, str) and (key in _CONNECTION or key.endswith("_model"))
    return named and value not in (None, "", [], {})


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PresetError(f"The preset's `{key}` must be a number.")
    return float(value)


def _integer(key: str, value: object) -> int:
    number = _number(key, value)
    if not number.is_integer():
        raise PresetError(f"The preset's `{key}` must be a whole number.")
    return int(number)


# A value the preset turns off is kept as the registry's `off` value (bot.fields), not
# unset: imported into a channel, it wins over what the server sets, as it would in
# SillyTavern.


def _top_k(key: str, value: object) -> int:
    number = _integer(key, value)
    return max(0, number)  # SillyTavern's 0 means off


def _seed(key: str, value: object) -> int:
    number = _integer(key, value)
    return number if number >= 0 else -1  # SillyTavern sends a seed only when >= 0


# SillyTavern's Minimum and Maximum as it sends them to OpenAI and custom endpoints
# (openai.js getReasoningEffort): the lowest and the highest keyword.
_ST_EFFORTS = {"min": "low", "max": "high"}


def _effort(key: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > 20:
        raise PresetError(f"The preset's `{key}` must be a reasoning effort such as `medium`.")
    effort = value.strip().lower() or "auto"
    return _ST_EFFORTS.get(effort, effort)


def _stop(key: str, value: object) -> list[str] | None:
    # SillyTavern keeps custom stopping strings as JSON text of a list.
    if isinstance(value, str):
        try:  # the whole file's rule: nesting, NaN and huge numbers refused
            value = parse_json(value, f"preset's `{key}`") if value.strip() else []
        except CardError as err:
            raise PresetError(f"The preset's `{key}` must be a list of strings.") from err
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PresetError(f"The preset's `{key}` must be a list of strings.")
    # As many as it has (SillyTavern takes any number, and sends OpenAI the first 4):
    # the registry keeps those it takes (Field.fitting), and the import says so.
    strings = [clean_text(v) for v in value if v]
    return strings or None


def _text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise PresetError(f"The preset's `{key}` must be text.")
    if len(value) > MAX_PROMPT_CHARS:
        raise PresetError(f"The preset's `{key}` is over {MAX_PROMPT_CHARS:,} characters.")
    return clean_text(value)


_SETTINGS: dict[str, tuple[str, Callable[[str, object], object]]] = {
    "temperature": ("temperature", _number),
    "top_p": ("top_p", _number),
    "top_k": ("top_k", _top_k),
    "frequency_penalty": ("frequency_penalty", _number),
    "presence_penalty": ("presence_penalty", _number),
    "openai_max_tokens": ("max_tokens", _integer),
    "openai_max_context": ("context", _integer),
    "seed": ("seed", _seed),
    "stop": ("stop", _stop),
    "custom_stopping_strings": ("stop", _stop),
    "reasoning_effort": ("reasoning_effort", _effort),
    # Claude's "Assistant Prefill" ("": none). Its `continue_prefill` is our parameter of
    # that name, read under it (_own_names).
    "assistant_prefill": ("assistant_prefill", _text),
    # How a card's world info, scenario and personality are worded.
    "wi_format": ("wi_format", _text),
    "scenario_format": ("scenario_format", _text),
    "personality_format": ("personality_format", _text),
}


def _as_given(key: str, kind: str, value: object) -> object:
    """A setting the preset names as we do, of the registry's `kind` (bot.fields.Kind's
    value): a value of another kind is refused as the preset's own keys' are."""
    if kind == "number":
        return _number(key, value)
    if kind == "integer":
        return _integer(key, value)
    if kind == "switch":
        if not isinstance(value, bool):
            raise PresetError(f"The preset's `{key}` must be true or false.")
        return value
    if kind == "list":
        return _stop(key, value)
    if not isinstance(value, str) or len(value) > 100:
        raise PresetError(f"The preset's `{key}` must be a short text.")
    return value.strip().lower() if kind == "choice" else value


def _own_names(params: Mapping[str, str]) -> frozenset[str]:
    """Sampler settings a preset may give under our own names (ours exported, or a
    parameter SillyTavern names as we do): the ones `_SETTINGS` does not map to."""
    mapped = {name for name, _ in _SETTINGS.values()}
    return frozenset(p for p in params if p not in mapped)


def parse_preset(
    data: bytes | str, known: Collection[str], params: Mapping[str, str] | None = None
) -> PresetImport:
    """The settings a preset sets; names outside `known` (REGISTRY.by_name) are listed
    as not supported when the preset gives them a value. `params` (the registry's
    parameters, name → kind) are also read under their own names, so a parameter added
    to the registry comes and goes with presets. Raises PresetError naming every value
    that is wrong, not only the first."""
    # Connection keys (source, models, URLs, proxy password) are ignored on purpose: a
    # preset must not repoint a channel or carry a secret.
    # Measured before decoding: no encoding makes more characters of a file than bytes.
    if len(data) > MAX_PRESET_BYTES:
        raise PresetError(f"The preset is larger than {MAX_PRESET_BYTES // 1024} KB.")
    if isinstance(data, bytes):
        try:
            data = json_text(data, "preset")
        except CardError as err:
            raise PresetError(str(err)) from err
    try:
        preset = parse_json(data, "preset")
    except CardError as err:
        raise PresetError(str(err)) from err
    if not isinstance(preset, dict):
        raise PresetError(
            "The file is JSON but not a Chat Completion preset. Export one from "
            "SillyTavern's AI Response Configuration panel and send that."
        )
    if "spec" in preset or "data" in preset:
        raise PresetError(CARD_NOT_PRESET)
    params = params or {}
    own = _own_names(params)
    if not any(key in preset for key in (*_SETTINGS, *own, "prompts", *_LEGACY)):
        raise PresetError(
            "The file is JSON but not a Chat Completion preset (no temperature, prompts …). "
            "Export one from SillyTavern's AI Response Configuration panel and send that."
        )
    values: dict[str, object] = {}
    ignored = []
    problems: list[str] = []
    preset = _migrated(preset, problems)
    enabled = _enabled(preset.get("prompt_order"), problems)
    off = _switched_off(enabled)
    disabled: tuple[str, ...] = ()
    for key, value in preset.items():
        if key in _SETTINGS:
            name, convert = _SETTINGS[key]
            if value is not None:
                try:
                    values[name] = convert(key, value)
                except PresetError as err:
                    problems.append(str(err))
        elif key in own:
            if value is not None:  # as the preset's own keys: null is no value
                try:
                    values[key] = _as_given(key, params[key], value)
                except PresetError as err:
                    problems.append(str(err))
        elif key == "prompts":
            found, disabled = _prompts(value, off, problems)
            values.update(found)
        elif key != "prompt_order" and key not in _LEGACY:
            ignored.append(key)
    # A prompt switched off is none here even when the preset has no text for it:
    # SillyTavern sends none, so neither do we (whatever the server's prompt is).
    values.update(dict.fromkeys((PROMPTS[i] for i in PROMPTS if i in off), ""))
    if "prompts" in preset or "prompt_order" in preset:
        # Off, SillyTavern sends no post-history instructions at all, a card's neither;
        # on (empty too), a card's replace it. A preset of samplers alone leaves it be.
        values[POST_HISTORY_OFF] = "jailbreak" in off
    if problems:
        more = f" … and {len(problems) - _SHOWN} more." if len(problems) > _SHOWN else ""
        raise PresetError(" ".join(problems[:_SHOWN]) + more)
    # An empty prompt we have no setting for is no loss: it is neither set nor reported.
    values = {n: v for n, v in values.items() if n in known or v not in (None, "")}
    connection = tuple(sorted(k for k in ignored if _connection(k, preset[k])))
    return PresetImport(
        values,
        tuple(n for n in values if n not in known),
        tuple(sorted((k for k in ignored if k not in connection), key=str)),
        disabled,
        connection,
        _not_sent(preset.get("prompts"), enabled),
        _placed(preset.get("prompts"), enabled, off, values),
        _markers_off(enabled),
    )


_SHOWN = 5  # problems named in one refusal


# A preset of SillyTavern before its prompt manager (mid-2023; its own Default.settings
# until 2024-02) holds its three prompts under these keys. SillyTavern moves each one
# that is not empty into the prompt of that identifier when the preset is loaded, into
# its default prompts when the preset has none (public/scripts/PromptManager.js
# registerPromptManagerMigration, lines 40-62).
_LEGACY = {"main_prompt": "main", "nsfw_prompt": "nsfw", "jailbreak_prompt": "jailbreak"}
# Its default prompts' texts (PromptManager.js chatCompletionDefaultPrompts, line 1813).
_DEFAULT_TEXTS = {
    "main": "Write {{char}}'s next reply in a fictional chat between {{charIfNotGroup}} and "
    "{{user}}.",
    "nsfw": "",
    "jailbreak": "",
}


def _migrated(preset: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """`preset` with its old-style prompts (`_LEGACY`) moved into `prompts` as
    SillyTavern moves them: each given text replaces the content of the first prompt of
    its identifier (one is added where there is none)."""
    legacy = {key: preset[key] for key in _LEGACY if preset.get(key) not in (None, "", False, 0)}
    for key, value in list(legacy.items()):
        if not isinstance(value, str):
            problems.append(f"The preset's `{key}` must be text.")
            del legacy[key]
    if not legacy:
        return preset
    prompts = preset.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        prompts = [{"identifier": i, "content": text} for i, text in _DEFAULT_TEXTS.items()]
    prompts = list(prompts)
    for key, text in legacy.items():
        identifier = _LEGACY[key]
        at = next(
            (
                i
                for i, p in enumerate(prompts)
                if isinstance(p, dict) and p.get("identifier") == identifier
            ),
            None,
        )
        if at is None:
            prompts.append({"identifier": identifier, "content": text})
        else:
            prompts[at] = {**prompts[at], "content": text}
    return {**preset, "prompts": prompts}


# SillyTavern's Chat Completion prompt manager keeps one "global" prompt order, under this
# dummy character id (public/scripts/openai.js: promptOrder {strategy: 'global', dummyId:
# 100001}); 100000 is only PromptManager.js's own default and is not read for chat.
_ORDER_ID = 100001


def _is_order_id(value: object) -> bool:
    # SillyTavern compares String(character_id) with "100001".
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == _ORDER_ID
    return value == str(_ORDER_ID)


def _enabled(prompt_order: object, problems: list[str]) -> dict[str, bool] | None:
    """Each prompt identifier of this `prompt_order` and whether SillyTavern sends it,
    read as PromptManager.js does (getPromptOrderForCharacter, sanitizeServiceSettings,
    getPromptCollection): the first order for character 100001 counts; None (none, or an
    empty one) means SillyTavern's default order (main, nsfw and jailbreak on);
    otherwise a prompt is sent only if its first entry there has `enabled` exactly true,
    so one with `enabled` "true", 1 or absent is off, and one missing from the order
    too. Entries that are not objects are passed over; an order that is not a list,
    which SillyTavern's prompt manager fails on, is refused."""
    if prompt_order is None:
        return None
    if not isinstance(prompt_order, list):
        problems.append("The preset's `prompt_order` must be a list.")
        return None
    chosen = next(
        (o for o in prompt_order if isinstance(o, dict) and _is_order_id(o.get("character_id"))),
        None,
    )
    order = None if chosen is None else chosen.get("order")
    if order is None:
        return None
    if not isinstance(order, list):
        problems.append(
            f"The `order` of the preset's `prompt_order` for character {_ORDER_ID} must be a list."
        )
        return None
    if not order:
        return None
    enabled: dict[str, bool] = {}
    for entry in order:
        identifier = entry.get("identifier") if isinstance(entry, dict) else None
        if isinstance(identifier, str) and identifier not in enabled:
            enabled[identifier] = entry.get("enabled") is True
    return enabled


def _switched_off(enabled: Mapping[str, bool] | None) -> frozenset[str]:
    """Our prompt identifiers SillyTavern would not send (`_enabled`'s order)."""
    if enabled is None:
        return frozenset()
    return frozenset(i for i in PROMPTS if not enabled.get(i, False))


# Identifiers SillyTavern fills itself (markers) or that map to our settings: a prompt of
# another identifier the order sends is text of the preset's own we do not send.
_PLACED = frozenset(
    {
        *PROMPTS,
        "chatHistory",
        "dialogueExamples",
        "worldInfoBefore",
        "worldInfoAfter",
        "charDescription",
        "charPersonality",
        "scenario",
        "personaDescription",
    }
)


def _not_sent(prompts: object, enabled: Mapping[str, bool] | None) -> tuple[str, ...]:
    """The names of the preset's other prompts its order sends (custom prompts,
    enhanceDefinitions), which we do not: said on import, not dropped in silence."""
    if enabled is None or not isinstance(prompts, list):
        return ()
    names: list[str] = []
    for prompt in prompts:
        if not isinstance(prompt, dict):
            continue
        identifier = prompt.get("identifier")
        content = prompt.get("content")
        if (
            isinstance(identifier, str)
            and identifier not in _PLACED
            and enabled.get(identifier, False)
            and not prompt.get("marker")
            and isinstance(content, str)
            and content.strip()
        ):
            name = prompt.get("name")
            names.append(clean_text(name if isinstance(name, str) and name else identifier)[:60])
    return tuple(dict.fromkeys(names))


def _markers_off(enabled: Mapping[str, bool] | None) -> tuple[str, ...]:
    """SillyTavern's names of the markers (the card's sections, the examples, the lore,
    the chat history) the preset's order does not send, which are sent here whatever
    a preset says; in the default order's order. The persona is none here either way."""
    if enabled is None:
        return ()
    return tuple(
        _MARKERS[i]
        for i in _ORDER
        if i in _MARKERS and i != "personaDescription" and not enabled.get(i)
    )


# SillyTavern's prompt manager (PromptManager.js INJECTION_POSITION, script.js): a prompt
# at position 1 is not sent in its place in the order but among the chat messages,
# `injection_depth` (0 to 1000) from the end, as its role.
_ABSOLUTE = 1
# Where ours go relative to the chat history (SillyTavern's default order): before it
# (main, nsfw) or after it (jailbreak).
_AFTER_HISTORY = frozenset({"jailbreak"})
# The prompts a card's own may replace (PromptManager.js overridablePrompts).
_OVERRIDABLE = ("main", "jailbreak")


def _js_integer(value: object) -> int | None:
    """A whole number as JavaScript's `===` compares one with 0, 1, 2 …: a number (1.0 is
    1), never text or true."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) and float(value).is_integer() else None


def _placed(
    prompts: object,
    enabled: Mapping[str, bool] | None,
    off: Collection[str],
    values: Mapping[str, object],
) -> tuple[str, ...]:
    """Our prompts the preset has SillyTavern send otherwise than they are sent here
    (openai.js populateChatCompletion): the system prompt first, the auxiliary prompt
    before the chat history, the post-history instructions after it, each as system,
    and a card's own replacing the first and the last. One line each, by identifier."""
    if not isinstance(prompts, list):
        return ()
    order = list(enabled or ())
    history = order.index("chatHistory") if enabled and enabled.get("chatHistory") else None
    said: list[str] = []
    seen: set[str] = set()
    for prompt in prompts:
        identifier = prompt.get("identifier") if isinstance(prompt, dict) else None
        if not isinstance(identifier, str) or identifier not in PROMPTS or identifier in seen:
            continue
        seen.add(identifier)  # SillyTavern reads the first prompt of an identifier
        if identifier in off or not values.get(PROMPTS[identifier]):
            continue  # not sent there, or nothing to send
        role = prompt.get("role")
        depth = _js_integer(prompt.get("injection_depth"))
        how: list[str] = []
        absolute = _js_integer(prompt.get("injection_position")) == _ABSOLUTE
        if absolute and (role not in ROLES or depth is None or not 0 <= depth <= MAX_NOTE_DEPTH):
            said.append(f"`{identifier}` never (its in-chat depth or role is not one it sends)")
            continue
        if absolute:
            how.append(f"in the chat at depth {depth}")
        elif history is not None and identifier in order:
            after = order.index(identifier) > history
            if after != (identifier in _AFTER_HISTORY):
                how.append(f"{'after' if after else 'before'} the chat history")
        if role in ("user", "assistant"):
            how.append(f"as {role}")
        if identifier in _OVERRIDABLE and prompt.get("forbid_overrides") is True:
            how.append("never replaced by a card's own")
        if how:
            said.append(f"`{identifier}` {', '.join(how)}")
    return tuple(said)


def _prompts(
    prompts: object, off: Collection[str], problems: list[str]
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Our prompt settings from `prompts` ("" for an empty one: SillyTavern sends none),
    and those with text that `off` switches off (left out here: the caller sets them
    to none)."""
    if not isinstance(prompts, list):
        problems.append("The preset's `prompts` must be a list.")
        return {}, ()
    found: dict[str, str] = {}
    disabled: dict[str, None] = {}  # ordered, without repeats
    clashing: set[str] = set()
    for prompt in prompts:
        identifier = prompt.get("identifier") if isinstance(prompt, dict) else None
        if not isinstance(identifier, str) or identifier not in PROMPTS:  # a list: unhashable
            continue
        content = prompt.get("content", "")
        if identifier in off:
            # Never sent, so neither checked nor compared; named if it holds any text.
            if content is not None and (not isinstance(content, str) or content.strip()):
                disabled[PROMPTS[identifier]] = None
            continue
        if content is not None and not isinstance(content, str):
            problems.append(f"The preset's `{identifier}` prompt must be text.")
            continue
        if content and len(content) > MAX_PROMPT_CHARS:
            problems.append(
                f"The preset's `{identifier}` prompt is over {MAX_PROMPT_CHARS:,} characters."
            )
            continue
        text = clean_text(content or "").strip()
        name = PROMPTS[identifier]
        if name not in found:
            found[name] = text
        elif text != found[name] and identifier not in clashing:
            # Two different texts: refused rather than one of them taken without a word.
            clashing.add(identifier)
            problems.append(
                f"The preset has two different `{identifier}` prompts (SillyTavern uses the "
                "first); keep one."
            )
    return found, tuple(n for n in PROMPTS.values() if n in disabled)


# -- export ------------------------------------------------------------------------------

_NAMES = {
    "main": "Main Prompt",
    "nsfw": "Auxiliary Prompt",
    "jailbreak": "Post-History Instructions",
}
_MARKERS = {
    "dialogueExamples": "Chat Examples",
    "chatHistory": "Chat History",
    "worldInfoAfter": "World Info (after)",
    "worldInfoBefore": "World Info (before)",
    "charDescription": "Char Description",
    "charPersonality": "Char Personality",
    "scenario": "Scenario",
    "personaDescription": "Persona Description",
}
# SillyTavern's default prompt order (Default.json), without the disabled enhanceDefinitions.
_ORDER = (
    "main",
    "worldInfoBefore",
    "personaDescription",
    "charDescription",
    "charPersonality",
    "scenario",
    "nsfw",
    "worldInfoAfter",
    "dialogueExamples",
    "chatHistory",
    "jailbreak",
)


def export_preset(values: Mapping[str, object], params: Mapping[str, str] | None = None) -> bytes:
    """A Chat Completion preset SillyTavern imports, from settings by registry name
    (the channel's effective values); unset samplers are left out. `params` SillyTavern
    has no key of its own for go under our names (parse_preset reads them back)."""
    out: dict[str, Any] = {}
    keys = [(key, name) for key, (name, _) in _SETTINGS.items()]
    for key, name in [*keys, *((p, p) for p in sorted(_own_names(params or {})))]:
        value = values.get(name)
        if key == "custom_stopping_strings" or value is None:
            continue
        out[key] = list(value) if isinstance(value, list | tuple) else value
    out["seed"] = out.get("seed", -1)
    prompts: list[dict[str, Any]] = []
    for identifier, label in _NAMES.items():
        content = values.get(PROMPTS[identifier])
        prompts.append(
            {
                "identifier": identifier,
                "name": label,
                "system_prompt": True,
                "role": "system",
                "content": content if isinstance(content, str) else "",
            }
        )
    prompts += [
        {"identifier": identifier, "name": label, "system_prompt": True, "marker": True}
        for identifier, label in _MARKERS.items()
    ]
    out["prompts"] = prompts
    off = values.get(POST_HISTORY_OFF) is True  # a card's post-history instructions too
    order = [
        {"identifier": identifier, "enabled": not (off and identifier == "jailbreak")}
        for identifier in _ORDER
    ]
    # 100000 and 100001: SillyTavern's global orders (without and with a persona)
    out["prompt_order"] = [
        {
            "character_id": 100000,
            "order": [o for o in order if o["identifier"] != "personaDescription"],
        },
        {"character_id": 100001, "order": order},
    ]
    return json.dumps(out, ensure_ascii=False, indent=2).encode("utf-8")
