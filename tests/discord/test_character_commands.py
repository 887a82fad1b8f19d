"""/character on Discord (simcord): the card as an attachment option (type 11), the
greeting posted by the character's webhook, the export as a file on the reply.

simcord refuses buttons on every webhook (Discord allows them on webhooks a bot created),
so the greeting's swipe buttons are checked on the loopback fake (test_persona.py)."""

from __future__ import annotations

import base64
import json

import discord
import pytest

from bot.characters import read_card
from bot.core import Core
from tests.discord.conftest import World
from tests.discord.helpers import reply_text
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
