"""/character import|show|clear|export and /preset import|export."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from bot.characters import (
    MAX_JSON_BYTES,
    MAX_PNG_BYTES,
    Card,
    CardError,
    PresetError,
    avatar_png,
    card_from_json,
    export_json,
    export_png,
    export_preset,
    greetings,
    image_too_large,
    macros_for,
    not_used,
    parse_preset,
    read_card,
    settings_kind,
    unknown_logic,
)
from bot.characters.preset import CARD_NOT_PRESET, MAX_PRESET_BYTES, POST_HISTORY_OFF
from bot.commands.parse import CommandError
from bot.commands.router import accessible
from bot.commands.scopes import own_value_note, room_left_note, scope_of, scope_place
from bot.commands.spec import CommandContext
from bot.connection import cleaner_here, secret_check, shown_here
from bot.fields import PARAMS, REGISTRY, FieldError, Kind
from bot.store import Store, StoredCharacter
from bot.types import Attachment, ChannelRef, Greeting, Persona, Platform, Reply, ReplyFile, Scope
from bot.types.files import Downloads, display_name, too_slow
from bot.types.limits import MAX_PIXELS
from bot.types.secrets import held_secret
from bot.types.text import literal, quoted, shorten, shown_name

log = logging.getLogger("bot.commands")

FORMATS = ("png", "json")
_EXCERPT = 300

# The registry's parameters by kind: what a preset may give under their own names.
_PARAM_KINDS = {f.name: f.kind.value for f in PARAMS}


def _how_to_attach(ctx: CommandContext, path: str) -> str:
    p = ctx.prefix
    if ctx.ref.platform is Platform.MATRIX:
        return f"Reply `{p}{path}` to the message with the file, or send it as the file's caption."
    if ctx.ref.platform is Platform.CONSOLE:
        return f"Give the file's path: {p}{path} <path>."
    return f"Attach the file to the command's `file` option: {p}{path}."


def _import_step(ctx: CommandContext, path: str) -> str:
    """How to run `path` on a file sent already, as _how_to_attach says it."""
    p = ctx.prefix
    if ctx.ref.platform is Platform.MATRIX:
        return f"reply `{p}{path}` to it (or send it again with that as its caption)"
    if ctx.ref.platform is Platform.CONSOLE:
        return f"give its path: {p}{path} <path>"
    return f"use {p}{path} with the file in its `file` option"


# What settings_kind tells apart: how it is named (one, several), and what importing
# it does here.
_SENT: dict[str, tuple[str, str, str]] = {
    "character": ("character card", "character cards", "make {it} {character}"),
    "preset": (
        "Chat Completion preset",
        "Chat Completion presets",
        "set {samplers} from {it}",
    ),
}


def sent_alone(ctx: CommandContext, kinds: Sequence[str], *, others: bool = False) -> str:
    """What to tell someone whose message was SillyTavern files alone, with no question
    (`kinds`: what each is, "character" or "preset"), or those files among `others`
    that went to the model without them: not sent to the model; how to import them, to
    those who may; how to ask about them instead."""
    many = len(kinds) > 1
    distinct = list(dict.fromkeys(kinds))
    named = " and ".join(_SENT[kind][many] for kind in distinct)
    it = "them" if many else "it"
    if others:
        first = (
            f"The SillyTavern {named} among your files {'were' if many else 'was'} not sent "
            "to the model, only the other files."
        )
    else:
        first = (
            f"{'Those are' if many else 'That is a'} SillyTavern {named}, so I did not send "
            f"{it} to the model."
        )
    lines = [first]
    for kind in distinct:
        path = f"{kind} import"
        if isinstance(accessible(ctx.table, tuple(path.split()), ctx), Reply):
            continue  # not theirs to import: said no more of
        one = "one" if kinds.count(kind) > 1 else "it"
        place = ctx.ref.place
        does = _SENT[kind][2].format(
            it=one,
            character=place.whose("character"),
            samplers=place.whose("samplers and prompts"),
        )
        lines.append(f"To {does}, {_import_step(ctx, path)}.")
    if others:
        lines.append(f"To ask me about {it} too, reply to your message with your question.")
    else:
        lines.append(f"To ask me about {it} instead, reply to {it} with your question.")
    return "\n".join(lines)


async def _file_bytes(ctx: CommandContext, args: dict[str, Any], path: str, limit: int) -> bytes:
    """The attached file's bytes (at most `limit`); CommandError says what to do instead."""
    file = args.get("file")
    if not isinstance(file, Attachment) or file.fetch is None:
        raise CommandError(f"No file came with the command. {_how_to_attach(ctx, path)}")
    shown = display_name(file.filename)  # as any refused file is named: no key in it
    too_large = f"{shown} is too large (the limit is {limit // 1024:,} KB)."
    if file.size > limit:
        raise CommandError(too_large)
    try:
        async with Downloads().one():  # as a chat message's files: a stalled CDN held it
            data = await file.fetch(limit)
    except TimeoutError:  # the platform's own timeout, or the download's time
        log.info("downloading %s took too long", shown)
        raise CommandError(too_slow(shown, "imported nothing")) from None
    except Exception as err:  # the platform's download error, whatever its type
        # As the reply names it: one line (a name's line break had forged a log line).
        log.info("could not fetch %s: %s", shown, type(err).__name__)
        raise CommandError(f"Could not download {shown}; try again.") from None
    if len(data) > limit:
        raise CommandError(too_large)
    return data


async def stored_card(stored: StoredCharacter, prefix: str) -> Card:
    """A stored card read back (V3 JSON and image), off the event loop; CommandError
    when it cannot be (stored before the import refused what it cannot read back)."""
    try:
        return await asyncio.to_thread(card_from_json, stored.card, stored.image)
    except CardError as err:
        raise CommandError(
            f"The character stored here cannot be read back ({err}). Import it again, or "
            f"remove it with {prefix}character clear."
        ) from None


async def character_import(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    data = await _file_bytes(ctx, args, "character import", MAX_PNG_BYTES)
    try:
        card = await asyncio.to_thread(read_card, data)
        text = (await asyncio.to_thread(export_json, card, compact=True)).decode("utf-8")
    except CardError as err:
        raise CommandError(str(err)) from None
    if len(text) > MAX_JSON_BYTES:  # as stored: the limit reading it back holds to
        raise CommandError("That card is too large to store; use one with a smaller lorebook.")
    # Its name is shown as it came wherever the character is (a webhook's or a Matrix
    # profile's name, every reply naming it, its messages' rows), uncleaned: a name
    # holding a key or this channel's password is refused, as a setting holding one is.
    holds_secret = await secret_check(ctx.store, ctx.ref)
    if any(holds_secret(name) for name in (card.name, card.nickname) if name):
        raise CommandError(
            held_secret(
                "card's name",
                ctx.prefix,
                instead="give the character another name in the card and import it again.",
            )
        )
    scope = scope_of(args)
    await ctx.store.set_character(ctx.ref, scope, ctx.actor, card.display_name, text, card.image)
    lines = [f"Character set for {scope_place(scope, ctx.ref.place)}: {_title(card)}."]
    if card.image is None and await asyncio.to_thread(image_too_large, data):
        lines.append(
            f"Its image is too large to use (over {MAX_PIXELS // 1_000_000} megapixels), so "
            "it was not kept: the character has no picture here, and an export carries a "
            "plain one."
        )
    if unused := not_used(card):
        # The card's lorebook acts otherwise than it would in SillyTavern: said, not silent.
        lines.append("Not done here as SillyTavern does: " + "; ".join(unused) + ".")
    if unknown := unknown_logic(card):
        entries = "1 lorebook entry" if unknown == 1 else f"{unknown:,} lorebook entries"
        lines.append(
            f"Never brought in by their keys, as in SillyTavern: {entries} whose "
            "`selectiveLogic` is none of 0 (AND ANY), 1 (NOT ALL), 2 (NOT ANY) and 3 (AND ALL)."
        )
    answering = await ctx.store.character(ctx.ref)
    here = answering is not None and answering.scope is scope
    if scope is Scope.SERVER:
        lines.append("Channels with a character of their own keep it.")
        # The greeting goes where the card answers: not into this channel's history
        # spoken by a character (or none) that is not the one answering here.
        if answering is None:
            lines.append(
                f"{ctx.prefix}character none is in force in this channel, so no greeting "
                f"was posted here ({ctx.prefix}character clear lets it answer here)."
            )
        elif not here:
            lines.append(
                f"This channel keeps its own, {literal(answering.name)}, so no greeting "
                "was posted here."
            )
    # Posted as the character's answers: cleaned as answers are (a card can carry a key).
    texts = (
        await shown_here(ctx.store, ctx.ref, greetings(card, ctx.actor.display_name))
        if here
        else []
    )
    greeting = None
    if texts:
        answer_id = await ctx.store.add_greetings(ctx.ref, card.display_name, texts)
        greeting = Greeting(texts[0], card.display_name, answer_id, len(texts))
        if len(texts) > 1:
            # Named by its command: on Matrix nothing on the greeting says how to swipe.
            lines.append(
                f"Its greeting has {len(texts)} versions: {ctx.prefix}swipe next shows the others."
            )
    lines.append(
        f"Earlier messages stay in the history; {ctx.prefix}reset before the import starts fresh."
    )
    return Reply("\n".join(lines), greeting=greeting)


async def character_show(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    stored = await ctx.store.character(ctx.ref)
    if stored is None and ctx.ref.has_server and await ctx.store.character_turned_off(ctx.ref):
        return Reply(
            f"No character answers here: {ctx.prefix}character none is in force in this "
            f"channel. {ctx.prefix}character clear lets the server's answer again."
        )
    if stored is None:
        who = "Set" if ctx.is_admin else "An admin sets"
        return Reply(
            f"No character here. {who} one with {ctx.prefix}character import "
            "(a Character Card V1, V2 or V3, PNG or JSON)."
        )
    card = await stored_card(stored, ctx.prefix)
    where = f"set for {scope_place(stored.scope, ctx.ref.place)}"
    lines = [f"Character: {_title(card)} ({where})."]
    # The card's own words, each on one line (a newline in a tag could forge a line of
    # the bot's): cleaned as its greetings are (a card can carry a key), then shown as
    # text (a card from a public site makes no link, mention or heading in this list).
    shown: list[str] = []
    creator, version = shown_name(card.creator), shown_name(card.character_version)
    if creator or version:
        by = f"By {shorten(creator, _EXCERPT)}" if creator else ""
        v = f"version {shorten(version, 40)}" if version else ""
        shown.append(", ".join(p for p in (by, v) if p) + ".")
    tags = [shorten(t, 40) for t in map(shown_name, card.tags[:20]) if t]
    if tags:
        shown.append("Tags: " + ", ".join(tags))
    # Their macros replaced, as SillyTavern shows a card's creator's notes
    # (script.js select_selected_character: substituteParams) and as the model reads
    # the description: {{char}} is who speaks, {{user}} whoever asked.
    macros = macros_for(card, ctx.actor.display_name)
    for label, own in (("", card.description), ("Creator's notes: ", card.creator_notes)):
        text = " ".join(macros(own).split())
        if text:
            shown.append(label + text[:_EXCERPT] + ("…" if len(text) > _EXCERPT else ""))
    if shown:
        lines += map(literal, await shown_here(ctx.store, ctx.ref, shown))
    count = len(greetings(card, ctx.actor.display_name))
    entries = len(card.character_book.entries) if card.character_book else 0
    lines.append(
        f"Greetings: {count}. Lorebook entries: {entries}. "
        f"Image: {'yes' if stored.has_image else 'no'}."
    )
    return Reply("\n".join(lines))


def _title(card: Card) -> str:
    """The card's name, and the V3 nickname it speaks as ({{char}}) when it has one."""
    if card.nickname and card.nickname != card.name:
        return f"{literal(card.name)} (speaking as {literal(card.nickname)})"
    return literal(card.name)


async def character_clear(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    scope = scope_of(args)
    name = await ctx.store.clear_character(ctx.ref, scope, ctx.actor)
    after = await ctx.store.character(ctx.ref)
    server = ""
    if after is not None and after.scope is Scope.SERVER:
        server = f"The server's character, {literal(after.name)}, answers here"
    if name is None:
        if server and scope is Scope.CHANNEL:
            return Reply(
                f"No character was set for this channel. {server}; "
                f"{ctx.prefix}character none turns it off in this channel.",
                ok=False,
            )
        return Reply(f"No character was set for {scope_place(scope, ctx.ref.place)}.", ok=False)
    if not name:  # the channel's `none`
        if not ctx.ref.has_server:
            return Reply(f"{ctx.prefix}character none is lifted; no character was set here.")
        again = "This channel follows the server's character again."
        return Reply(again + (f" {server}." if server else ""))
    return Reply(
        f"Removed {literal(name)} from {scope_place(scope, ctx.ref.place)}."
        + (f" {server} now." if server else "")
    )


async def character_none(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    before = await ctx.store.character(ctx.ref)
    await ctx.store.no_character(ctx.ref, ctx.actor)
    p = ctx.prefix
    if before is not None and before.scope is Scope.SERVER:
        return Reply(
            f"The server's character, {literal(before.name)}, no longer answers here; "
            f"{p}character clear undoes this."
        )
    # The channel's own card is replaced by "none": said, as it is gone for good.
    here = ctx.ref.place
    removed = f"Removed {literal(before.name)} from this {here}. " if before else ""
    if not ctx.ref.has_server:
        return Reply(f"{removed}No character answers here.")
    return Reply(
        f"{removed}No character answers here, even if the server sets one; "
        f"{p}character clear lets the server's answer again."
    )


async def character_export(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    stored = await ctx.store.character(ctx.ref, with_image=True)
    if stored is None:
        return Reply(f"No character here to export. Set one with {ctx.prefix}character import.")
    card = await stored_card(stored, ctx.prefix)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in card.name)[:60] or "character"
    # Anyone here may export it (on Matrix the file is the room's): no text of it holds
    # this channel's key or proxy password, in any form (a card can carry either).
    clean, cleaned = _noting(await cleaner_here(ctx.store, ctx.ref, shapes=False))
    if args.get("format") == "json":
        data = await asyncio.to_thread(export_json, card, clean)
        file = ReplyFile(f"{stem}.json", "application/json", data)
    else:
        data = await asyncio.to_thread(export_png, card, clean)
        file = ReplyFile(f"{stem}.png", "image/png", data)
    shown = literal(card.display_name)
    said = f"{shown} as a Character Card V3 ({len(data):,} bytes)."
    if cleaned:
        own = ctx.ref.place.whose("key or proxy password", capital=True)
        said += f" {own} in it is written as ****."
    return Reply(said, file=file)


def _noting(clean: Callable[[str], str]) -> tuple[Callable[[str], str], list[str]]:
    """`clean`, and a list that gets an item each time it changes a text."""
    changed: list[str] = []

    def noted(text: str) -> str:
        out = clean(text)
        if out != text:
            changed.append(out)
        return out

    return noted, changed


async def preset_import(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    data = await _file_bytes(ctx, args, "preset import", MAX_PRESET_BYTES)
    if settings_kind(data) == "character":  # a card's PNG too, or a V1 card's JSON
        raise CommandError(CARD_NOT_PRESET)
    try:
        preset = parse_preset(data, REGISTRY.by_name, _PARAM_KINDS)
    except PresetError as err:
        raise CommandError(str(err)) from None
    changes: dict[str, object] = {}
    named: list[str] = []
    shown: list[str] = []
    refused: list[str] = []
    partly: list[str] = []  # lists kept in part: what was left out
    sent_in_part: list[str] = []  # lists some sources are sent only the start of
    config = await ctx.store.effective_config(ctx.ref)
    holds_secret = await secret_check(ctx.store, ctx.ref)
    for name, value in preset.values.items():
        if name in preset.not_supported:
            continue
        field = REGISTRY.by_name[name]
        if field.kind is Kind.LIST and isinstance(value, list):
            fit, left_out = field.fitting(value)
            if left_out and not fit:
                refused.append(
                    f"{name}: none of its strings has at most {field.max_item_chars} characters"
                )
                continue
            value = fit or value  # only empty strings: `check` refuses them, saying so
            if left_out:
                partly.append(
                    f"{name}, {len(fit)} of its {len(fit) + left_out} strings (this bot "
                    f"takes the first {field.max_items} of at most {field.max_item_chars} "
                    "characters each)"
                )
        try:
            checked = None if value is None else field.check(value)
        except FieldError as err:
            refused.append(str(err).rstrip("."))
            continue
        # Kept in the clear and sent with every request: as a typed prompt would be (a
        # list's strings, stop strings, each as /params checks the one typed).
        texts = checked if isinstance(checked, list | tuple) else [checked]
        if any(isinstance(text, str) and holds_secret(text) for text in texts):
            here = ctx.ref.place
            refused.append(f"{name} holds what looks like a key or this {here}'s password")
            continue
        changes[field.key] = checked
        named.append(name)
        if cut := field.sent_in_part(checked):  # more stop strings than OpenAI takes
            sent_in_part.append(cut)
        if name != POST_HISTORY_OFF:  # said with the prompts it switches off, below
            shown.append(f"{name}={_short(field.show(checked))}")
    scope = scope_of(args)
    if changes:
        await ctx.store.update_config(ctx.ref, scope, ctx.actor, changes, action="preset import")
    said = f"Preset applied to {scope_place(scope, ctx.ref.place)}: " + (
        ", ".join(shown) or "nothing to set"
    )
    lines = [said if said.endswith((".", "!", "?", "…")) else said + "."]
    # As /params says after the same change: what still wins here, and an answer's
    # length that leaves the conversation little of the context.
    if own := own_value_note(config, scope, *named):
        lines.append(own.strip())
    if {"max_tokens", "context"} & set(named):
        after = await ctx.store.effective_config(ctx.ref)
        if room := room_left_note(after, ctx):
            lines.append(room.strip())
    if partly:
        lines.append("Kept in part: " + "; ".join(partly) + ".")
    lines += sent_in_part  # as /params says it after the same change
    if refused:
        lines.append("Not applied: " + "; ".join(refused) + ".")
    if preset.disabled:
        off = ", ".join(preset.disabled)
        lines.append(f"Off in the preset's prompt order (or missing from it), so none here: {off}.")
    if preset.values.get(POST_HISTORY_OFF) is True and POST_HISTORY_OFF in changes:
        lines.append(
            "Its post-history instructions are switched off: a character's are not sent "
            "either, as in SillyTavern."
        )
    if preset.placed:
        # Set as its text, but not sent where (or as whom) SillyTavern would send it.
        lines.append(
            "Placed as this bot places them, not as in SillyTavern (there: "
            + "; ".join(preset.placed)
            + "). Here the system prompt goes first, the auxiliary prompt before the chat "
            "and the post-history instructions after it, each as system, and a card's own "
            "prompts replace the first and the last."
        )
    if preset.markers_off:
        lines.append(
            "Sent here all the same (this bot has no switch for them), though the preset's "
            "prompt order switches them off (or leaves them out): "
            + ", ".join(preset.markers_off)
            + "."
        )
    if preset.not_supported:
        lines.append("Not supported here: " + ", ".join(preset.not_supported) + ".")
    if preset.not_sent:
        names = [quoted(name, 60) for name in preset.not_sent[:10]]
        more = f" and {len(preset.not_sent) - 10} more" if len(preset.not_sent) > 10 else ""
        lines.append(
            "Not sent here (only the main, auxiliary and post-history prompts are): its "
            f"prompts {', '.join(names)}{more}."
        )
    if preset.connection:
        # Where requests would go first (a proxy, its password); a preset names a model
        # for every source it knows, which say nothing each.
        models = [k for k in preset.connection if k.endswith("_model")]
        named = [quoted(k, 40) for k in preset.connection if k not in models]
        if len(named) > 10:
            named[10:] = [f"{len(named) - 10} more"]
        if models:
            named.append(f"a model for {len(models)} source{'s' * (len(models) != 1)}")
        p = ctx.prefix
        lines.append(
            f"Not taken: its connection settings ({', '.join(named)}). A preset never "
            f"changes where {ctx.ref.place.whose('requests and keys')} go: {p}source, "
            f"{p}proxy set "
            f"and {p}model do."
        )
    if preset.ignored:
        # The file's own keys, quoted: one line each, short, shown as typed (no formatting).
        ignored = [quoted(key, 40) for key in preset.ignored]
        more = f" … and {len(ignored) - 30} more" if len(ignored) > 30 else ""
        lines.append("Ignored: " + ", ".join(ignored[:30]) + more + ".")
    # The file's own words are quoted (its prompts' names, its keys): a key in them is
    # not (on Matrix this reply is the room's to read).
    (said,) = await shown_here(ctx.store, ctx.ref, ["\n".join(lines)])
    return Reply(said, ok=bool(changes) or not refused)


def _short(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= 40 else one[:39] + "…"


async def preset_export(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    # What someone set (here, the server or the operator). Samplers no one set are left
    # out, so they stay defaults where the preset is imported; the seed and the prompts
    # go as SillyTavern writes them unset (-1, empty), which an import stores as off.
    chosen = {n: v for n, v in config.values.items() if config.origins.get(n) != "default"}
    # Its prompts and stop strings cleaned as /settings shows them.
    clean, cleaned = _noting(await cleaner_here(ctx.store, ctx.ref))
    for name, value in chosen.items():
        if isinstance(value, str):
            chosen[name] = clean(value)
        elif isinstance(value, list | tuple):
            chosen[name] = [clean(v) if isinstance(v, str) else v for v in value]
    data = export_preset(chosen, _PARAM_KINDS)
    file = ReplyFile("preset.json", "application/json", data)
    here = ctx.ref.place
    said = f"This {here}'s settings as a SillyTavern Chat Completion preset."
    if cleaned:
        said += f" What looks like a key or this {here}'s password in it is written as ****."
    return Reply(said, file=file)


async def persona(store: Store, ref: ChannelRef, *, avatar: bool = False) -> Persona | None:
    """Who answers in this channel when a card is set; `avatar`: with a small square PNG
    of the card's image (read and scaled only then)."""
    stored = await store.character(ref)
    if stored is None:
        return None
    version = f"{stored.scope.value}:{stored.updated_at.isoformat()}"
    image = None
    if avatar and stored.has_image:
        full = await store.character(ref, with_image=True)
        image = await asyncio.to_thread(avatar_png, full.image if full else None)
    return Persona(stored.name, image, version)
