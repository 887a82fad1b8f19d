"""The Synapse peer itself: it starts, registers users, and a nio client can log in."""

from __future__ import annotations

import nio
import pytest

from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


async def test_registered_user_logs_in_with_password(synapse_server: SynapseServer) -> None:
    user = synapse_server.register("alice")
    assert user.user_id.endswith(":" + synapse_server.server_name)
    client = nio.AsyncClient(synapse_server.url, user.user_id)
    try:
        response = await client.login(user.password)
        assert isinstance(response, nio.LoginResponse), response
        assert response.user_id == user.user_id
        who = await client.whoami()
        assert isinstance(who, nio.WhoamiResponse) and who.user_id == user.user_id
    finally:
        await client.close()


async def test_wrong_password_is_refused(synapse_server: SynapseServer) -> None:
    user = synapse_server.register("bob")
    client = nio.AsyncClient(synapse_server.url, user.user_id)
    try:
        response = await client.login("not-the-password")
        assert isinstance(response, nio.LoginError)
        assert response.status_code == "M_FORBIDDEN"
    finally:
        await client.close()
