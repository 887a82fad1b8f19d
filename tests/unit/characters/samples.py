"""Cards shaped like real exports (SillyTavern, chub-style V3) and PNG builders."""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
import zlib
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

# A V2 card as SillyTavern exports it: V1 fields duplicated at the top, ST extensions,
# a lorebook converted from a World Info file (ST keeps its own fields in extensions).
V2_CARD: dict[str, Any] = {
    "name": "Seraphina",
    "description": "{{char}} is a guardian of the forest.",
    "personality": "kind, protective",
    "scenario": "{{user}} wakes up in {{char}}'s glade.",
    "first_mes": "*{{char}} kneels beside {{user}}.* You're awake.",
    "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I am {{char}}.",
    "creatorcomment": "Old notes",
    "avatar": "none",
    "chat": "Seraphina - 2024-9-1 @12h 00m 00s 000ms",
    "talkativeness": "0.5",
    "fav": False,
    "tags": ["fantasy", "guardian"],
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Seraphina",
        "description": "{{char}} is a guardian of the forest.",
        "personality": "kind, protective",
        "scenario": "{{user}} wakes up in {{char}}'s glade.",
        "first_mes": "*{{char}} kneels beside {{user}}.* You're awake.",
        "mes_example": (
            "<START>\n{{user}}: Who are you?\n{{char}}: I am {{char}}.\n"
            "<START>\n<USER>: Where am I?\n<BOT>: In my glade.\nIt is safe here."
        ),
        "creator_notes": "Made for testing.",
        "system_prompt": "{{original}} Stay in character as {{char}}.",
        "post_history_instructions": "Reply as {{char}} in under 100 words.",
        "tags": ["fantasy", "guardian"],
        "creator": "tester",
        "character_version": "1.2",
        "alternate_greetings": ["Hello, {{user}}.", "*{{char}} smiles.*"],
        "extensions": {
            "talkativeness": "0.5",
            "fav": False,
            "world": "Glade",
            "depth_prompt": {"prompt": "", "depth": 4, "role": "system"},
        },
        "group_only_greetings": [],
        "character_book": {
            "name": "Glade",
            "scan_depth": 2,
            "token_budget": 500,
            "recursive_scanning": False,
            "extensions": {},
            "entries": [
                {
                    "id": 0,
                    "keys": ["glade", "clearing"],
                    "secondary_keys": [],
                    "comment": "The glade",
                    "content": "The glade is hidden by old magic.",
                    "constant": False,
                    "selective": True,
                    "insertion_order": 100,
                    "enabled": True,
                    "position": "before_char",
                    "extensions": {
                        "position": 0,
                        "exclude_recursion": False,
                        "probability": 100,
                        "useProbability": True,
                        "depth": 4,
                        "selectiveLogic": 0,
                        "group": "",
                    },
                },
            ],
        },
    },
}

# A V3 card with the V3 fields (nickname, assets, source, dates, multilingual notes).
V3_CARD: dict[str, Any] = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        "name": "Captain Aurelia Voss",
        "nickname": "Aurelia",
        "description": "{{char}} commands the airship *Meridian*.",
        "personality": "",
        "scenario": "",
        "first_mes": "Welcome aboard, {{user}}.",
        "mes_example": "",
        "creator_notes": "V3 card.",
        "creator_notes_multilingual": {"en": "V3 card.", "fr": "Carte V3."},
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": [],
        "group_only_greetings": ["Crew, to stations!"],
        "tags": ["steampunk"],
        "creator": "someone",
        "character_version": "3",
        "extensions": {"chub": {"id": 12345, "full_path": "someone/aurelia"}},
        "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
        "source": ["https://example.org/aurelia"],
        "creation_date": 1717000000,
        "modification_date": 1717000500,
        "character_book": {
            "extensions": {},
            "entries": [
                {
                    "keys": ["/merid[iy]an/i"],
                    "content": "The Meridian is a brass airship.",
                    "extensions": {},
                    "enabled": True,
                    "insertion_order": 5,
                    "use_regex": True,
                    "constant": False,
                },
            ],
        },
    },
}


def v2() -> dict[str, Any]:
    return copy.deepcopy(V2_CARD)


def v3() -> dict[str, Any]:
    return copy.deepcopy(V3_CARD)


def b64(card: dict[str, Any] | str) -> str:
    text = card if isinstance(card, str) else json.dumps(card)
    return base64.b64encode(text.encode()).decode()


def png_with(texts: dict[str, str], size: tuple[int, int] = (32, 48)) -> bytes:
    """A real image written by Pillow with these tEXt chunks (not our writer)."""
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I4s", len(data), kind) + data + struct.pack(">I", crc)


def insert_before_iend(png: bytes, *chunks: bytes) -> bytes:
    return png[:-12] + b"".join(chunks) + png[-12:]
