"""Which endpoint URLs users may point the bot at.

Checked on the addresses a name resolves to, not just on the text, so that
`http://2130706433/`, `http://0x7f.1/` or a DNS name pointing at 10.0.0.5 are caught.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from bot.types.text import describe_char, quoted

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_ALLOW_HINT = (
    "An operator can allow loopback and private-network endpoints by setting "
    "ALLOW_PRIVATE_ENDPOINTS=true (in .env or the environment) and restarting the bot."
)
_EXAMPLE = "Give a full URL such as https://host/v1."

# Cloud instance-metadata services outside the link-local range.
_METADATA = {
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("168.63.129.16"),  # Azure WireServer
    ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# IPv6 forms that carry an IPv4 address: the IPv4 address is where traffic ends up.
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")

# httpx's InvalidURL messages start with what is wrong, then quote the text (which
# may hold a password): only the start is shown, reworded.
_PARSE_REASONS = (
    (
        "Invalid IPv4 address",
        "the host is not a valid IPv4 address; write it as four numbers from 0 to 255 "
        "without leading zeros",
    ),
    ("Invalid IPv6 address", "the host is not a valid IPv6 address"),
    ("Invalid IDNA hostname", "the host name has characters a host name cannot have"),
    ("Invalid port", "the port is not a number"),
    ("URL too long", "it is too long"),
    ("Invalid non-printable", "it contains a control character"),
)


class EndpointRefused(ValueError):
    """A URL the policy does not allow; the message is safe to show a user."""


class AddressRefused(EndpointRefused):
    """A URL refused for an address its host stands for: `shown` is `what` (a loopback
    address, …); `always`: refused even with private endpoints allowed."""

    def __init__(self, message: str, *, shown: str, what: str, always: bool) -> None:
        super().__init__(message)
        self.shown, self.what, self.always = shown, what, always


@dataclass(frozen=True, slots=True)
class _Verdict:
    what: str
    always: bool  # refused even when private endpoints are allowed
    via: ipaddress.IPv4Address | None = None  # the embedded IPv4 address that decided


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _literal_address(host: str) -> IPAddress | None:
    """Parse every textual IP form a resolver would accept, without any lookup."""
    try:
        # A zone (`fe80::1%25eth0`) does not change which address it is.
        return ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host)
    except ValueError:
        pass
    # inet_aton accepts the legacy forms: 2130706433, 0x7f.1, 127.1
    if all(c in "0123456789abcdefxABCDEFX." for c in host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded(addr: ipaddress.IPv6Address) -> tuple[list[ipaddress.IPv4Address], bool]:
    """IPv4 addresses an IPv6 address carries, and whether they alone decide its verdict."""
    if addr.ipv4_mapped is not None:
        return [addr.ipv4_mapped], True
    if addr in _SIXTOFOUR:
        assert addr.sixtofour is not None
        return [addr.sixtofour], True
    if addr.teredo is not None:
        # Server and client are both IPv4 hosts traffic may reach: judge both. If both
        # are public, Teredo (2001::/32, not globally routed) is still judged as itself.
        return list(addr.teredo), False
    packed = addr.packed
    if addr in _NAT64:
        return [ipaddress.IPv4Address(packed[12:])], True
    if addr in _NAT64_LOCAL:
        # RFC 6052: where the IPv4 address sits depends on the prefix length the
        # operator chose (48, 56, 64 or 96 here), which cannot be seen: judge every
        # reading. Zero padding makes most wrong readings fall in 0.0.0.0/8, which no
        # translator forwards to, so those are left out unless nothing else is left.
        readings = [
            ipaddress.IPv4Address(packed[6:8] + packed[9:11]),
            ipaddress.IPv4Address(packed[7:8] + packed[9:12]),
            ipaddress.IPv4Address(packed[9:13]),
            ipaddress.IPv4Address(packed[12:]),
        ]
        return [v4 for v4 in readings if v4 not in _THIS_NETWORK] or readings[-1:], True
    if addr in _V4_COMPATIBLE and int(addr) > 1:  # not :: or ::1
        # Deprecated: a public address carried this way stays "reserved" (refused).
        return [ipaddress.IPv4Address(packed[12:])], False
    return [], False


def _classify_plain(addr: IPAddress) -> _Verdict | None:
    if addr in _METADATA or addr.is_link_local:
        return _Verdict("a link-local or cloud metadata address", True)
    # Before `is_reserved`: Python counts ::1 and :: as reserved (they sit in ::/8).
    if addr.is_loopback or addr.is_unspecified:
        return _Verdict("a loopback address", False)
    if addr.is_multicast or addr.is_reserved:
        return _Verdict("a multicast or reserved address", True)
    if addr.is_private:
        return _Verdict("a private-network address", False)
    # Deprecated site-local fec0::/10 is still routed inside some networks.
    if addr in _CGNAT or (isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local):
        return _Verdict("a private-network address", False)
    return None


def _classify(addr: IPAddress) -> _Verdict | None:
    """What the address is (None when public), judged by any IPv4 address it embeds."""
    if isinstance(addr, ipaddress.IPv4Address):
        return _classify_plain(addr)
    addr = ipaddress.IPv6Address(addr.packed)  # without a zone, so set lookups match
    inner, decisive = _embedded(addr)
    worst: _Verdict | None = None
    for v4 in inner:
        verdict = _classify_plain(v4)
        if verdict is not None and (worst is None or verdict.always > worst.always):
            worst = _Verdict(verdict.what, verdict.always, v4)
    if worst is not None or decisive:
        return worst
    return _classify_plain(addr)


def _userinfo() -> EndpointRefused:
    """A URL with a user name or password: refused without quoting it (it holds one)."""
    return EndpointRefused(
        "The URL must not contain a user name or password. Remove them and give the password "
        "as the proxy password instead."
    )


def _not_valid(reason: str) -> EndpointRefused:
    return EndpointRefused(f"That is not a valid URL ({reason}). {_EXAMPLE}")


def _parse(text: str) -> tuple[httpx.URL, str]:
    """Parse as the transport will, so nothing saved here can fail there: (URL, host)."""
    try:
        parsed = httpx.URL(text)
        # Not always ASCII: httpx lets any text through in an IPv6 zone (`[::1%25é]`).
        return parsed, parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError) as err:
        message = str(err)
        reason = next(
            (why for start, why in _PARSE_REASONS if message.startswith(start)),
            "it cannot be read as a URL",
        )
        raise _not_valid(reason) from None


def saved_url(text: str) -> str:
    """The form `EndpointPolicy.check` saves a URL it passes in: without a trailing slash,
    a literal IPv4 host written out (`http://127.1:8080` → `http://127.0.0.1:8080`). A
    URL kept without being checked (the operator's) is kept in it too, so that what a
    status check found compares equal to it."""
    try:
        parsed, host = _parse(text)
    except EndpointRefused:
        return text.rstrip("/")  # refused when it is used
    return _saved(text, parsed, _literal_address(host))


def _saved(text: str, parsed: httpx.URL, literal: IPAddress | None) -> str:
    if isinstance(literal, ipaddress.IPv4Address) and _authority(text).partition(":")[0] != str(
        literal
    ):
        # Save the address that was checked, not a spelling some parser reads otherwise.
        text = str(parsed.copy_with(host=str(literal)))
    return text.rstrip("/")


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    allow_private: bool = False
    resolver: Resolver = system_resolver

    async def check(self, url: str) -> str:
        """Return the URL to save (no trailing slash, canonical IPv4) or raise EndpointRefused."""
        text = url.strip()
        if not text:
            raise EndpointRefused(f"The URL is empty. {_EXAMPLE}")
        if any(c.isspace() for c in text):
            raise EndpointRefused(f"The URL contains spaces. {_EXAMPLE}")
        if "://" not in text and "@" in text:  # `user:password@host`: quoted, it is shown
            raise _userinfo()
        if "://" not in text:  # `localhost:1234`, as LM Studio shows it
            raise EndpointRefused(
                f"{quoted(text)} needs http:// or https:// in front: http:// for a "
                "server on this machine or network (LM Studio: http://localhost:1234/v1), "
                "https:// for one on the internet."
            )
        # The host alone (a password's letters are refused below, and never named).
        odd = next((c for c in _authority(text).rpartition("@")[2] if not c.isascii()), None)
        if odd is not None:  # `lоcalhost` with a Cyrillic о: a host that is not the one meant
            raise EndpointRefused(
                f"The URL's host name has a character that is not ASCII ({describe_char(odd)}): "
                "type it again; an international host name is written in its xn-- form."
            )
        parsed, host = _parse(text)
        if parsed.scheme not in ("http", "https"):
            raise EndpointRefused(f"Only http:// and https:// URLs are allowed. {_EXAMPLE}")
        # `@` alone (empty user info) is refused too: it only ever serves to confuse.
        if parsed.userinfo or "@" in _authority(text):
            raise _userinfo()
        if not host:
            raise EndpointRefused(f"The URL has no host name. {_EXAMPLE}")
        if ":" in host and "%" in host:
            # Zones only matter for link-local addresses, which are refused anyway, and
            # httpx lets any text through in one.
            raise _not_valid("an IPv6 address with a zone (%25…) cannot be used")
        # Checked on the text: httpx keeps an empty `?` or `#`, which parse as nothing.
        if "?" in text or "#" in text:
            raise EndpointRefused("The URL must not contain a query (?…) or fragment (#…).")
        port = parsed.port
        if port is not None and not 0 < port < 65536:
            raise _not_valid("the port must be a number from 1 to 65535")
        literal = await self._check_host(host, port or (443 if parsed.scheme == "https" else 80))
        return _saved(text, parsed, literal)

    async def _check_host(self, host: str, port: int) -> IPAddress | None:
        """Vet every address `host` stands for; return it when `host` is an IP literal."""
        literal = _literal_address(host)
        name = host.rstrip(".")
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        elif name == "localhost" or name.endswith(".localhost"):
            addresses = [ipaddress.ip_address("127.0.0.1")]
        else:
            try:
                resolved = await self.resolver(host, port)
            except (OSError, UnicodeError):
                raise EndpointRefused(
                    f"The host name {quoted(host)} could not be resolved. Check the spelling."
                ) from None
            if not resolved:
                raise EndpointRefused(f"The host name {quoted(host)} could not be resolved.")
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
        for addr in addresses:
            self._vet(host, addr)
        return literal

    def vet_connection(self, host: str, address: str) -> None:
        """Check the address a connection is about to use (raises EndpointRefused).

        Names are checked when a URL is set, but a name may resolve elsewhere later
        (DNS rebinding); the network layer asks again with the address it connects to.
        """
        self._vet(host, ipaddress.ip_address(address.split("%", 1)[0]))

    def _vet(self, host: str, addr: IPAddress) -> None:
        verdict = _classify(addr)
        if verdict is None:
            return
        notes = [str(addr)] if str(addr) != host else []
        if verdict.via is not None:
            notes.append(f"which carries {verdict.via}")
        shown = f"{host} ({', '.join(notes)})" if notes else host
        if verdict.always:
            raise AddressRefused(
                f"Refused: {shown} is {verdict.what}, which the bot never contacts.",
                shown=shown,
                what=verdict.what,
                always=True,
            )
        if not self.allow_private:
            raise AddressRefused(
                f"Refused: {shown} is {verdict.what}. {_ALLOW_HINT}",
                shown=shown,
                what=verdict.what,
                always=False,
            )


def server_of(url: str) -> tuple[str, str, int]:
    """Which server a saved URL reaches: scheme, host and port as the transport reads them
    (`https://host` and `https://host:443` are one; so are two spellings of one IPv6
    address). A name is compared as written, never resolved: `localhost` may reach ::1,
    another socket than 127.0.0.1's, and a lookup's answer may change (DNS rebinding)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):  # not saved by check(): compared as text
        scheme, _, rest = url.partition("://")
        return scheme.lower(), rest.split("/", 1)[0].lower(), 0
    host = parsed.host
    literal = _literal_address(host) if ":" in host else None
    if literal is not None:
        host = literal.compressed
    return parsed.scheme, host, parsed.port or (443 if parsed.scheme == "https" else 80)


def _authority(text: str) -> str:
    """The `user@host:port` part of an http(s) URL's text, split where httpx splits it."""
    rest = text.partition(":")[2]
    if not rest.startswith("//"):
        return ""
    return re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
