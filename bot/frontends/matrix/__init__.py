"""Matrix front-end on matrix-nio: `!` commands from the command table, E2EE, streamed edits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.core import Core
from bot.frontends import FrontendError
from bot.types import SecretValue


@dataclass(frozen=True, slots=True)
class MatrixOptions:
    homeserver: str
    user_id: str
    password: SecretValue
    access_token: SecretValue
    store_dir: Path  # device id, sync token and crypto store live here
    device_name: str = "chat-completion-bot"
    e2ee: bool = True
    trust_devices: Literal["unverified", "verified"] = "unverified"
    admin_power_level: int = 50
    allowed_inviters: tuple[str, ...] = ()


async def run_matrix(core: Core, options: MatrixOptions) -> None:
    """Log in and sync until cancelled; FrontendError when it cannot run."""
    from bot.frontends.matrix.client import start

    if not options.homeserver or not options.user_id:
        raise FrontendError("set MATRIX_HOMESERVER and MATRIX_USER_ID to run on Matrix.")
    await start(core, options)
