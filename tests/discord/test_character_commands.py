"""/character on Discord (simcord): the card as an attachment option (type 11), the
greeting posted by the character's webhook, the export as a file on the reply.

simcord refuses buttons on every webhook (Discord allows them on webhooks a bot created),
so the greeting's swipe buttons are checked on the loopback fake (test_persona.py)."""

from __future__ import annotations

import base64
import json

import discord
import pytest
import simcord

from bot.characters import read_card
from bot.conversation.pacing import stale_note
from bot.core import Core
from tests.discord.conftest import World
from tests.discord.helpers import ref_of, reply_text
from tests.integration.test_characters import CARD
from tests.unit.characters.samples import png_with

pytestmark = pytest.mark.simcord(settle_timeout=30)


async def test_import_by_attachment_greets_and_export_attaches_the_card(
    world: World, core: Core
) -> None:
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    result = await world.admin.slash(world.channel, "character import", file=("aurelia.png", image))
    assert (
        "Character set for this channel: Captain Aurelia Voss (speaking as Aurelia)."
        in reply_text(result)
    )
    [greeting] = [m for m in world.channel.history() if m.webhook_id is not None]
    assert greeting.content == "Welcome aboard, Ada." and greeting.author.name == "Aurelia"

    refused = await world.member.slash(
        world.channel, "character import", file=("aurelia.png", image)
    )
    assert "Only admins" in reply_text(refused)

    bad = await world.admin.slash(world.channel, "character import", file=("x.png", b"nope"))
    assert "Character set" not in reply_text(bad)

    exported = await world.member.slash(world.channel, "character export")
    assert exported.response is not None
    [card] = exported.response.attachments
    assert card.filename == "Captain_Aurelia_Voss.png"
    assert read_card(await card.read()).display_name == "Aurelia"


async def test_a_greeting_the_bot_may_not_post_is_said_to_the_importer(
    world: World, core: Core
) -> None:
    """Without Send Messages (nor Manage Webhooks, which would post it as the character)
    the import said "Its greeting has 3 versions: swipe to see the others." and the
    channel showed nothing, with no word why."""
    me = world.guild.me
    assert me is not None
    denied = discord.PermissionOverwrite(send_messages=False, manage_webhooks=False)
    room = world.guild.create_text_channel("quiet", overwrites={me: denied})
    await world.env.settle()
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    result = await world.admin.slash(room, "character import", file=("aurelia.png", image))
    said = reply_text(result)
    assert "Character set for this channel" in said
    assert (
        "I could not post the greeting here: I'm missing the Send Messages permission there."
        in said
    )
    assert all(f.ephemeral for f in result.followups)
    assert room.history() == []


async def test_a_greeting_swiped_to_whose_edit_is_refused_follows_called_a_greeting(
    simcord_env: simcord.Env, core: Core
) -> None:
    """▶ on a greeting while Discord refuses edits (a 429 that did not end, say): the
    greeting swiped to went into the old message, refused, and nothing said so. Now it
    follows in a message of its own, whose note says what it is: a greeting, not an
    answer."""
    env = simcord_env
    dora = env.create_user("dora")
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    await dora.slash("character import", file=("aurelia.png", image))
    [greeting] = dora.dm_channel.history()
    path = f"/channels/{dora.dm_channel.id}/messages/*"
    env.inject_error("PATCH", path, status=400, code=50035, times=None)
    await dora.click(greeting, custom_id=greeting.components[0].children[2].custom_id)
    old, new = dora.dm_channel.history()
    assert old.id == greeting.id and old.content == "**Aurelia**\nWelcome aboard, dora."
    note = stale_note("greeting")
    assert new.content == f"⚠️ {note}\n\nAnother stowaway, dora?", new.content
    assert "greeting above" in note and "answer" not in note


async def test_a_character_in_a_dm_speaks_with_its_name_in_bold(
    simcord_env: simcord.Env, core: Core
) -> None:
    """A DM has no webhook: a character imported there greeted, swiped and answered as
    the bot's plain messages, with no name, so nothing said the character was speaking
    (a server channel without Manage Webhooks starts each with the name in bold)."""
    env = simcord_env
    assert env.bot.user is not None
    dora = env.create_user("dora")
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    result = await dora.slash("character import", file=("aurelia.png", image))
    assert "Character set for this DM: Captain Aurelia Voss" in reply_text(result)
    [greeting] = dora.dm_channel.history()
    assert greeting.content == "**Aurelia**\nWelcome aboard, dora.", greeting.content
    await dora.click(greeting, custom_id=greeting.components[0].children[2].custom_id)
    [swiped] = dora.dm_channel.history()
    assert swiped.content.startswith("**Aurelia**\n"), swiped.content
    assert swiped.content != greeting.content
    await dora.send_dm("hi in private")
    answer = dora.dm_channel.history()[-1]
    assert answer.content == "**Aurelia**\nHello there!", answer.content
    await dora.slash("regenerate")
    answer = dora.dm_channel.history()[-1]
    assert answer.content == "**Aurelia**\nHello there!", answer.content
    # Its name is no part of what the model reads back.
    stored = await core.store.history(ref_of(dora.dm_channel, None), 10)
    assert stored and all("**Aurelia**" not in m.content for m in stored), stored
