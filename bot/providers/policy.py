"""Which endpoint URLs users may point the bot at.

Checked on the addresses a name resolves to, not just on the text, so that
`http://2130706433/`, `http://0x7f.1/` or a DNS name pointing at 10.0.0.5 are caught.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_ALLOW_HINT = (
    "An operator can allow loopback and private-network endpoints by setting "
    "ALLOW_PRIVATE_ENDPOINTS=true."
)

# Cloud instance-metadata services outside the link-local range.
_METADATA = {
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class EndpointRefused(ValueError):
    """A URL the policy does not allow; the message is safe to show a user."""


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _literal_address(host: str) -> IPAddress | None:
    """Parse every textual IP form a resolver would accept, without any lookup."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton accepts the legacy forms: 2130706433, 0177.0.0.1, 0x7f.1, 127.1
    if all(c in "0123456789abcdefxABCDEFX." for c in host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _classify(addr: IPAddress) -> tuple[str, bool] | None:
    """(what the address is, always refused?) or None when it is public."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr in _METADATA or addr.is_link_local:
        return ("a link-local or cloud metadata address", True)
    # Before `is_reserved`: Python counts ::1 and :: as reserved (they sit in ::/8).
    if addr.is_loopback or addr.is_unspecified:
        return ("a loopback address", False)
    if addr.is_multicast or addr.is_reserved:
        return ("a multicast or reserved address", True)
    if addr.is_private or (isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT):
        return ("a private-network address", False)
    return None


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    allow_private: bool = False
    resolver: Resolver = system_resolver

    async def check(self, url: str) -> str:
        """Return the URL normalised (no trailing slash) or raise EndpointRefused."""
        text = url.strip()
        if not text:
            raise EndpointRefused("The URL is empty. Give a full URL such as https://host/v1.")
        if any(c.isspace() for c in text):
            raise EndpointRefused(
                "The URL contains spaces. Give a full URL such as https://host/v1."
            )
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise EndpointRefused(
                "That is not a valid URL. Give a full URL such as https://host/v1."
            ) from None
        if parts.scheme not in ("http", "https"):
            raise EndpointRefused(
                "Only http:// and https:// URLs are allowed. Give a full URL such as https://host/v1."
            )
        if parts.username is not None or parts.password is not None:
            raise EndpointRefused(
                "The URL must not contain a user name or password. Remove them and give the "
                "password as the proxy password instead."
            )
        host = parts.hostname
        if not host:
            raise EndpointRefused(
                "The URL has no host name. Give a full URL such as https://host/v1."
            )
        if parts.query or parts.fragment:
            raise EndpointRefused("The URL must not contain a query (?…) or fragment (#…).")
        await self._check_host(host, port or (443 if parts.scheme == "https" else 80))
        return text.rstrip("/")

    async def _check_host(self, host: str, port: int) -> None:
        literal = _literal_address(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        elif host == "localhost" or host.endswith(".localhost"):
            addresses = [ipaddress.ip_address("127.0.0.1")]
        else:
            try:
                resolved = await self.resolver(host, port)
            except (OSError, UnicodeError):
                raise EndpointRefused(
                    f"The host name {host} could not be resolved. Check the spelling."
                ) from None
            if not resolved:
                raise EndpointRefused(f"The host name {host} could not be resolved.")
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
        for addr in addresses:
            self._vet(host, addr)

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
        what, always = verdict
        shown = host if str(addr) == host else f"{host} ({addr})"
        if always:
            raise EndpointRefused(f"Refused: {shown} is {what}, which the bot never contacts.")
        if not self.allow_private:
            raise EndpointRefused(f"Refused: {shown} is {what}. {_ALLOW_HINT}")
