"""The peers themselves, over raw httpx: the facts the provider tests rely on.

When a provider test fails, these say whether the peer or our code moved.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.peers.litellm import LiteLLMPeer
from tests.peers.llamacpp import LlamaCppPeer

# trust_env=False: never route loopback traffic through a proxy from the environment.
TIMEOUT = httpx.Timeout(30.0)


def sse_payloads(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]


@pytest.mark.litellm
async def test_litellm_peer_contract(litellm_peer: LiteLLMPeer) -> None:
    auth = {"Authorization": f"Bearer {litellm_peer.master_key}"}
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        for base in (litellm_peer.url_v1, litellm_peer.url):  # both serve /models
            r = await client.get(f"{base}/models", headers=auth)
            assert r.status_code == 200
            assert {m["id"] for m in r.json()["data"]} == set(litellm_peer.models)
        r = await client.get(
            f"{litellm_peer.url_v1}/models", headers={"Authorization": "Bearer sk-x"}
        )
        assert r.status_code == 401  # our custom auth: a real deployment's answer
        assert r.json()["error"]["type"] == "auth_error"
        r = await client.get(f"{litellm_peer.url_v1}/models")
        assert r.status_code == 401
        body = {
            "model": litellm_peer.rate_limited_model,
            "messages": [{"role": "user", "content": "hi"}],
        }
        r = await client.post(f"{litellm_peer.url_v1}/chat/completions", json=body, headers=auth)
        assert r.status_code == 429
        body["model"] = litellm_peer.model
        body["stream"] = True
        r = await client.post(f"{litellm_peer.url_v1}/chat/completions", json=body, headers=auth)
        assert r.status_code == 200
        payloads = sse_payloads(r.text)
        assert payloads[-1] == "[DONE]"
        chunks = [json.loads(p) for p in payloads[:-1]]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == litellm_peer.mock_text


@pytest.mark.llamacpp
async def test_llamacpp_peer_contract(llamacpp_peer: LlamaCppPeer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        r = await client.get(f"{llamacpp_peer.url}/models")
        assert r.status_code == 404  # only /v1 exists: what the auto-/v1 tests need
        r = await client.get(f"{llamacpp_peer.url_v1}/models")
        assert r.status_code == 200
        assert [m["id"] for m in r.json()["data"]] == [llamacpp_peer.model]
        body = {
            "model": llamacpp_peer.model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
            "temperature": 0.0,
            "stream": True,
        }
        r = await client.post(f"{llamacpp_peer.url_v1}/chat/completions", json=body)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        payloads = sse_payloads(r.text)
        assert payloads[-1] == "[DONE]"
        chunks = [json.loads(p) for p in payloads[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert any(c["choices"][0].get("finish_reason") for c in chunks if c["choices"])
