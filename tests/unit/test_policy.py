"""The endpoint policy: which URLs users may point the bot at (no real DNS lookups)."""

from __future__ import annotations

import pytest

from bot.providers.policy import EndpointPolicy, EndpointRefused

DNS = {
    "api.example.com": ["93.184.216.34"],
    "v6.example.com": ["2606:4700::6810:84e5"],
    "intranet.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.216.34", "192.168.0.7"],
    "metadata.example.com": ["169.254.169.254"],
    "scoped.example.com": ["fe80::1%eth0"],
}
lookups: list[str] = []


async def fake_resolver(host: str, port: int) -> list[str]:
    lookups.append(host)
    if host not in DNS:
        raise OSError("no such host")
    return DNS[host]


def policy(allow_private: bool) -> EndpointPolicy:
    return EndpointPolicy(allow_private=allow_private, resolver=fake_resolver)


PUBLIC = [
    ("https://api.example.com/v1", "https://api.example.com/v1"),
    ("https://api.example.com/v1/", "https://api.example.com/v1"),
    ("  http://api.example.com:8080/v1  ", "http://api.example.com:8080/v1"),
    ("https://v6.example.com", "https://v6.example.com"),
    ("http://93.184.216.34/v1", "http://93.184.216.34/v1"),
    ("http://[2606:4700::6810:84e5]:443/v1", "http://[2606:4700::6810:84e5]:443/v1"),
]

# (url, words the message must contain) — refused unless private endpoints are allowed.
PRIVATE = [
    ("http://127.0.0.1:8080/v1", "loopback"),
    ("http://localhost:1234/v1", "loopback"),
    ("http://api.localhost/v1", "loopback"),
    ("http://2130706433/v1", "loopback"),  # decimal 127.0.0.1
    ("http://0177.0.0.1/v1", "loopback"),  # octal
    ("http://0x7f.0.0.1/v1", "loopback"),  # hex
    ("http://0x7f000001/v1", "loopback"),
    ("http://127.1/v1", "loopback"),
    ("http://[::1]:8080/v1", "loopback"),
    ("http://[::ffff:127.0.0.1]/v1", "loopback"),
    ("http://0.0.0.0:80/", "loopback"),
    ("http://10.0.0.5/v1", "private-network"),
    ("http://172.16.3.4/v1", "private-network"),
    ("http://192.168.1.20:5000/v1", "private-network"),
    ("http://100.64.0.1/v1", "private-network"),  # carrier-grade NAT
    ("http://[fd12:3456::1]/v1", "private-network"),
    ("http://intranet.example.com/v1", "private-network"),
    ("http://mixed.example.com/v1", "private-network"),  # one bad address is enough
]

ALWAYS = [
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/v1",
    "http://metadata.example.com/",
    "http://scoped.example.com/",
    "http://100.100.100.200/",
    "http://[fd00:ec2::254]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://0xa9fea9fe/",  # hex 169.254.169.254
]

MALFORMED = [
    ("", "empty"),
    ("   ", "empty"),
    ("ftp://api.example.com/v1", "http://"),
    ("file:///etc/passwd", "http://"),
    ("api.example.com/v1", "http://"),
    ("https://user:secret@api.example.com/v1", "password"),
    ("https://token@api.example.com/v1", "password"),
    ("https://api.example.com/v1?key=x", "query"),
    ("https://api.example.com/v1#frag", "fragment"),
    ("https://api example.com/v1", "spaces"),
    ("https://api.example.com:99999/v1", "valid URL"),
    ("https:///v1", "no host"),
    ("https://nowhere.invalid/v1", "could not be resolved"),
]


@pytest.mark.parametrize(("url", "normalised"), PUBLIC)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_public_urls_pass(url: str, normalised: str, allow_private: bool) -> None:
    assert await policy(allow_private).check(url) == normalised


@pytest.mark.parametrize(("url", "what"), PRIVATE)
async def test_private_refused_by_default(url: str, what: str) -> None:
    with pytest.raises(EndpointRefused) as info:
        await policy(False).check(url)
    message = str(info.value)
    assert what in message
    assert "ALLOW_PRIVATE_ENDPOINTS" in message


@pytest.mark.parametrize(("url", "what"), PRIVATE)
async def test_private_allowed_when_operator_allows(url: str, what: str) -> None:
    assert await policy(True).check(url) == url.strip().rstrip("/")


@pytest.mark.parametrize("url", ALWAYS)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_link_local_and_metadata_always_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(EndpointRefused, match="never contacts"):
        await policy(allow_private).check(url)


@pytest.mark.parametrize(("url", "what"), MALFORMED)
async def test_malformed_urls_refused(url: str, what: str) -> None:
    with pytest.raises(EndpointRefused, match=what):
        await policy(True).check(url)


async def test_literals_never_hit_the_resolver() -> None:
    lookups.clear()
    for url in ("http://2130706433/", "http://[::1]/", "http://localhost/", "http://10.0.0.1/"):
        await policy(True).check(url)
    assert lookups == []


async def test_credentials_never_echoed() -> None:
    with pytest.raises(EndpointRefused) as info:
        await policy(True).check("https://bob:hunter2pass@api.example.com/v1")
    assert "hunter2pass" not in str(info.value)
