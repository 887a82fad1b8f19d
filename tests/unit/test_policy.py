"""The endpoint policy: which URLs users may point the bot at (no real DNS lookups)."""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.providers.policy import EndpointPolicy, EndpointRefused, server_of

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
    # Saved with the address that was checked, as a dotted quad every parser reads alike.
    ("http://1572395042/v1", "http://93.184.216.34/v1"),
    # IPv6 forms carrying a public IPv4 address: 6to4, NAT64 (as DNS64 answers for an
    # IPv4-only host on an IPv6-only network) and its local-use prefix.
    ("http://[2002:5db8:d822::1]/v1", "http://[2002:5db8:d822::1]/v1"),
    ("http://[64:ff9b::5db8:d822]/v1", "http://[64:ff9b::5db8:d822]/v1"),
    ("http://[64:ff9b:1::5db8:d822]/v1", "http://[64:ff9b:1::5db8:d822]/v1"),
]

# (url, words the message must contain) — refused unless private endpoints are allowed.
PRIVATE = [
    ("http://127.0.0.1:8080/v1", "loopback"),
    ("http://localhost:1234/v1", "loopback"),
    ("http://api.localhost/v1", "loopback"),
    ("http://2130706433/v1", "loopback"),  # decimal 127.0.0.1
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
    ("http://[fec0::1]/v1", "private-network"),  # deprecated site-local
    ("http://[2002:7f00:1::]/v1", "loopback"),  # 6to4 carrying 127.0.0.1
    ("http://[2002:a00:5::]/v1", "private-network"),  # 6to4 carrying 10.0.0.5
    ("http://[2001:0:7f00:1::f7f7:f7f7]/v1", "loopback"),  # Teredo, server 127.0.0.1
    ("http://[2001:0:5db8:d822::f5ff:fffa]/v1", "private-network"),  # Teredo, client 10.0.0.5
    ("http://[64:ff9b::7f00:1]/v1", "loopback"),  # NAT64 carrying 127.0.0.1
    ("http://[64:ff9b::a00:5]/v1", "private-network"),
    ("http://[64:ff9b:1::a00:5]/v1", "private-network"),  # local-use NAT64, /96 layout
    ("http://[64:ff9b:1:0:a:0:500:0]/v1", "private-network"),  # /64 layout: 10.0.0.5
    ("http://[::127.0.0.1]/v1", "loopback"),  # deprecated IPv4-compatible
]

# What the operator-allowed URLs above are saved as, where that is not the URL as typed.
SAVED = {
    "http://2130706433/v1": "http://127.0.0.1/v1",
    "http://0x7f.0.0.1/v1": "http://127.0.0.1/v1",
    "http://0x7f000001/v1": "http://127.0.0.1/v1",
    "http://127.1/v1": "http://127.0.0.1/v1",
}

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
    "http://168.63.129.16/",  # Azure WireServer
    "http://192.0.0.192/",  # Oracle Cloud metadata
    "http://[::ffff:a83f:8110]/",  # 168.63.129.16, IPv4-mapped
]

# IPv6 forms refused for the IPv4 address they carry (169.254.169.254 in each).
CARRIERS = [
    "http://[2002:a9fe:a9fe::]/",  # 6to4
    "http://[2001:0:5db8:d822::5601:5601]/",  # Teredo client (stored inverted)
    "http://[2001:0:a9fe:a9fe::ffff:ffff]/",  # Teredo server
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 well-known prefix
    "http://[64:ff9b:1::a9fe:a9fe]/",  # NAT64 local-use prefix
    "http://[::169.254.169.254]/",  # IPv4-compatible
]

# Text the transport's parser (httpx) refuses: saved, it would break every request.
UNPARSEABLE = [
    ("http://010.010.010.010/v1", "IPv4"),  # leading zeros: octal to some parsers
    ("http://0177.0.0.1/v1", "IPv4"),
    ("http://api.example.com:8080:90/v1", "port"),
    ("http://api.example.com:0/v1", "port"),
    ("http://api.example.com:65536/v1", "port"),
    ("http://[::g]/v1", "IPv6"),
    ("http://[::1/v1", "port"),  # httpx reads the colons as a port
]

MALFORMED = [
    ("", "empty"),
    ("   ", "empty"),
    ("ftp://api.example.com/v1", "http://"),
    ("file:///etc/passwd", "http://"),
    ("api.example.com/v1", "http://"),
    ("https://user:secret@api.example.com/v1", "password"),
    ("https://token@api.example.com/v1", "password"),
    ("https://@api.example.com/v1", "password"),
    ("https://evil.example\\@api.example.com/v1", "password"),
    ("https://api.example.com/v1?key=x", "query"),
    ("https://api.example.com/v1#frag", "fragment"),
    ("https://api.example.com/v1?", "query"),
    ("https://api example.com/v1", "spaces"),
    ("https://api.example.com:99999/v1", "valid URL"),
    ("http://[fe80::1%25eth0]/v1", "zone"),
    ("http://[fd00:ec2::254%25eth0]/v1", "zone"),
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
    assert await policy(True).check(url) == SAVED.get(url, url.strip().rstrip("/"))


@pytest.mark.parametrize("url", ALWAYS)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_link_local_and_metadata_always_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(EndpointRefused, match="never contacts"):
        await policy(allow_private).check(url)


@pytest.mark.parametrize("url", CARRIERS)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_ipv6_forms_judged_by_the_ipv4_address_they_carry(
    url: str, allow_private: bool
) -> None:
    with pytest.raises(EndpointRefused) as info:
        await policy(allow_private).check(url)
    message = str(info.value)
    assert "169.254.169.254" in message and "never contacts" in message


@pytest.mark.parametrize(("url", "what"), UNPARSEABLE)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_urls_the_transport_cannot_parse_are_refused(
    url: str, what: str, allow_private: bool
) -> None:
    with pytest.raises(EndpointRefused) as info:
        await policy(allow_private).check(url)
    message = str(info.value)
    assert message.startswith("That is not a valid URL (") and what in message
    assert "https://host/v1" in message


async def test_saved_legacy_address_is_the_one_connected_to() -> None:
    saved = await policy(True).check("http://0x7f.1:8080/v1/")
    assert saved == "http://127.0.0.1:8080/v1"
    assert httpx.URL(saved).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("address", "always"),
    [
        ("168.63.129.16", True),
        ("192.0.0.192", True),
        ("2002:a9fe:a9fe::", True),
        ("2001:0:5db8:d822::5601:5601", True),
        ("64:ff9b::a9fe:a9fe", True),
        ("64:ff9b:1::a9fe:a9fe", True),
        ("::a9fe:a9fe", True),
        ("fd00:ec2::254%eth0", True),
        ("2002:7f00:1::", False),
        ("64:ff9b::7f00:1", False),
        ("::127.0.0.1", False),
        ("fec0::1", False),
    ],
)
def test_connect_time_check_classifies_alike(address: str, always: bool) -> None:
    """The connection guard (DNS rebinding) sees the same verdicts as check()."""
    with pytest.raises(EndpointRefused, match="never contacts" if always else "ALLOW_PRIVATE"):
        policy(False).vet_connection("api.example.com", address)
    if always:
        with pytest.raises(EndpointRefused, match="never contacts"):
            policy(True).vet_connection("api.example.com", address)
    else:
        policy(True).vet_connection("api.example.com", address)


def test_connect_time_check_passes_public_carriers() -> None:
    for address in ("2002:5db8:d822::", "64:ff9b::5db8:d822", "64:ff9b:1::808:808"):
        policy(False).vet_connection("api.example.com", address)


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


# ---- property: nothing check() returns can break the transport ----------------------

HOSTILE_HOSTS = [
    "",
    *"""
    api.example.com API.Example.COM localhost 127.0.0.1 0x7f.1 127.1 2130706433 0xffffffff
    4294967296 1.2.3 1.2.3.4.5 256.1.1.1 010.010.010.010 0177.0.0.1 08 0x １２７.０.０.１
    127。0。0。1 ⓛⓞⓒⓐⓛⓗⓞⓢⓣ Bücher.example xn-- a..b ex%41mple.com h\\x [::1] [::1 ::1 []
    [::ffff:127.0.0.1] [fe80::1%25eth0] [2002:a9fe:a9fe::] [64:ff9b::808:808] [v1.x]
    """.split(),
]
PORTS = ["", ":", ":80", ":0", ":443", ":65535", ":65536", ":+80", ":٨٠", ":x", ":1:2"]
url_char = st.sampled_from(list("/?#%@\\:[]. \t-_~aZ09é😀０"))
hostile_urls = st.one_of(
    st.builds(
        lambda scheme, sep, user, host, port, path: scheme + sep + user + host + port + path,
        # Mostly well-formed around the host, so that the host and port get exercised.
        st.sampled_from(["http", "https"] * 3 + ["HTTP", "ftp", "", "javascript"]),
        st.sampled_from(["://"] * 6 + [":/", ":", "//", ":///", ":\\\\"]),
        st.sampled_from([""] * 6 + ["u@", "u:p@", "@", "a\\@"]),
        st.sampled_from(HOSTILE_HOSTS) | st.text(url_char, max_size=12),
        st.sampled_from(PORTS),
        st.text(url_char, max_size=10),
    ),
    st.text(max_size=40),
)


async def resolve_anything(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


@settings(max_examples=400, deadline=None)
@given(url=hostile_urls, allow_private=st.booleans())
@example(url="http://010.010.010.010/v1", allow_private=False)
@example(url="http://１２７.０.０.１/", allow_private=True)
@example(url="http://0x7f.1/", allow_private=True)
async def test_whatever_check_returns_parses_as_the_transport_parses(
    url: str, allow_private: bool
) -> None:
    checker = EndpointPolicy(allow_private=allow_private, resolver=resolve_anything)
    try:
        saved = await checker.check(url)
    except EndpointRefused:
        return
    parsed = httpx.URL(saved)
    assert parsed.scheme in ("http", "https") and parsed.raw_host
    assert not saved.endswith("/")
    assert await checker.check(saved) == saved  # saving it again changes nothing


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://l\u043ecalhost:1234/v1", "U+043E CYRILLIC SMALL LETTER O"),
        ("https://api.\u03bfpenai.com/v1", "U+03BF GREEK SMALL LETTER OMICRON"),
        ("http://h\u200b/v1", "U+200B ZERO WIDTH SPACE"),
        # IDNA maps these to ASCII (ideographic full stops to dots, ⓛⓞⓒⓐⓛ… to localhost):
        # a host that reads as another is typed again, whatever it would map to.
        ("http://93\u3002184\u3002216\u300234/v1/", "U+3002 IDEOGRAPHIC FULL STOP"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "U+FF11 FULLWIDTH DIGIT ONE"),
        (
            "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/",
            "U+24DB CIRCLED LATIN SMALL LETTER L",
        ),
        ("http://\uff41\uff50\uff49.example.com/v1", "U+FF41 FULLWIDTH LATIN SMALL LETTER A"),
        ("http://[2606:4700::1%25\xe9]/v1", "U+00E9 LATIN SMALL LETTER E WITH ACUTE"),
    ],
)
async def test_a_look_alike_host_is_refused_as_default_proxy_url_refuses_it(
    url: str, named: str
) -> None:
    """Only DEFAULT_PROXY_URL refused them; `/proxy set` took `lоcalhost` (as its xn--
    name), a host that is not the one meant."""
    with pytest.raises(EndpointRefused, match=re.escape(f"not ASCII ({named}): type it again")):
        await policy(True).check(url)


async def test_a_password_in_the_url_is_refused_as_one_without_naming_its_letters() -> None:
    """Review: `pässwörd` in the user info was refused as a host with a character that is
    not ASCII, naming the password's ä."""
    with pytest.raises(EndpointRefused) as info:
        await policy(True).check("http://user:p\u00e4ssw\u00f6rd@api.example.com/v1")
    assert "must not contain a user name or password" in str(info.value)
    assert "\u00e4" not in str(info.value) and "U+00E4" not in str(info.value)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("https://api.example.com/v1", "https://API.example.com:443", True),
        ("http://10.0.0.2", "http://10.0.0.2:80/v1/chat/completions", True),
        ("http://[::1]:8080/v1", "http://[0:0:0:0:0:0:0:1]:8080", True),
        ("http://api.example.com", "https://api.example.com", False),  # scheme
        ("https://api.example.com", "https://api.example.com:8443", False),  # port
        # Names are not resolved: localhost may reach ::1, another socket than 127.0.0.1.
        ("http://localhost:1234", "http://127.0.0.1:1234", False),
    ],
)
def test_server_of_says_which_server_a_url_reaches(first: str, second: str, same: bool) -> None:
    """What a key or password set for a URL stays with (`/proxy set` keeps it for the same)."""
    assert (server_of(first) == server_of(second)) is same


@pytest.mark.parametrize(
    "url",
    [
        "user:Hunter2pw@api.example.com/v1",  # the scheme left out
        ":Hunter2pw@127.0.0.1:1234/v1",
        "Hunter2pw@localhost:1234",
        "http:/user:Hunter2pw@api.example.com/v1",  # a slash short
        "http:user:Hunter2pw@api.example.com/v1",
    ],
)
async def test_a_password_in_a_url_without_its_scheme_is_not_quoted_back(url: str) -> None:
    """`needs http:// in front` quoted the whole text back, password and all, into the
    channel: refused as a URL with a password is, naming none of it."""
    with pytest.raises(EndpointRefused) as info:
        await policy(True).check(url)
    assert "must not contain a user name or password" in str(info.value)
    assert "Hunter2pw" not in str(info.value)
