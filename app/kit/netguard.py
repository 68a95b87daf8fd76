"""Which addresses a URL that a user gave us may reach: public ones only, unless the install allows its own network.

Anything that calls a URL a user can influence (webhooks today) goes through one ``NetworkPolicy``, twice:

- when the URL is given, ``await policy.check_url(url)`` resolves its host and refuses it if *any* address is not
  public (loopback, private, link-local, CGNAT, unique-local, multicast, reserved …, also inside IPv4-mapped,
  IPv4-compatible, 6to4 and NAT64 IPv6 forms), or if it carries credentials, or is not http(s);
- when it is called, ``policy.transport()`` (an httpx transport) resolves the host again, checks every address and
  connects to a checked address only, keeping the name in the Host header and TLS SNI, so a name that re-resolves to
  a private address (DNS rebinding) reaches nothing.

Hosts are read the way the resolver and URL parsers read them: ``127.1``, ``2130706433``, ``0x7f000001`` and
``0177.0.0.1`` are all 127.0.0.1. ``allow_private`` (GitLab's "allow requests to the local network") lets loopback,
private and unique-local addresses and local-only names through; link-local addresses (where cloud metadata lives),
known metadata endpoints, and unspecified, multicast and reserved addresses are refused always.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import NamedTuple, Protocol

import httpx

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address


class URLRefused(Exception):
    """The URL may not be called under this policy; the message says why (it names the URL's host and address)."""


class Resolver(Protocol):
    """Host name to addresses (as strings); raises ``OSError`` when the name does not resolve."""

    async def resolve(self, host: str, port: int) -> Sequence[str]: ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), as the HTTP client itself would use it."""

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]


# (network, what it is, whether allow_private lets it through). Ordered: the first match names the address.
_V4: list[tuple[IPv4Network, str, bool]] = [
    (IPv4Network(net), label, local)
    for net, label, local in (
        ("100.100.100.200/32", "cloud metadata", False),
        ("0.0.0.0/8", "unspecified", False),
        ("127.0.0.0/8", "loopback", True),
        ("10.0.0.0/8", "private", True),
        ("172.16.0.0/12", "private", True),
        ("192.168.0.0/16", "private", True),
        ("100.64.0.0/10", "shared (CGNAT)", True),
        ("169.254.0.0/16", "link-local", False),
        ("192.0.2.0/24", "documentation", False),
        ("198.51.100.0/24", "documentation", False),
        ("203.0.113.0/24", "documentation", False),
        ("224.0.0.0/4", "multicast", False),
    )
]
_V6: list[tuple[IPv6Network, str, bool]] = [
    (IPv6Network(net), label, local)
    for net, label, local in (
        ("fd00:ec2::254/128", "cloud metadata", False),
        ("::/128", "unspecified", False),
        ("::1/128", "loopback", True),
        ("64:ff9b:1::/48", "private (local NAT64)", True),
        ("fc00::/7", "unique-local", True),
        ("fec0::/10", "site-local", True),
        ("fe80::/10", "link-local", False),
        ("2001:db8::/32", "documentation", False),
        ("3fff::/20", "documentation", False),
        ("ff00::/8", "multicast", False),
    )
]
_NAT64 = IPv6Network("64:ff9b::/96")
_COMPAT = IPv6Network("::/96")

# Names that never reach a public address: RFC 6761/6762/8375 special-use names and ICANN's private .internal.
_LOCAL_NAMES = ("localhost",)
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
_METADATA_NAMES = ("metadata.google.internal", "metadata.goog")

# One part of an IPv4 literal as inet_aton and URL parsers read it: decimal, 0-prefixed octal or 0x-prefixed hex.
_V4_PART = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def parse_ip(host: str) -> IPAddress | None:
    """The address a host literal names, in any spelling a resolver or URL parser accepts; None for a name.

    Raises ``ValueError`` for a host that is numeric like an IPv4 address but is not one (``256.1.1.1``, ``09.1``).
    """
    if host.startswith("[") and host.endswith("]"):
        return IPv6Address(host[1:-1])
    if ":" in host:
        return IPv6Address(host)
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot, as in a fully qualified name
    if not all(_V4_PART.fullmatch(part) for part in parts):
        return None
    try:
        values = [_v4_part(part) for part in parts]
    except ValueError:  # an octal part with 8 or 9 in it
        raise ValueError(f"{host} is not a valid IPv4 address") from None
    *head, last = values
    # The last part fills the bytes the others leave: 127.1 is 127.0.0.1, 2130706433 is all four.
    if len(values) > 4 or any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        raise ValueError(f"{host} is not a valid IPv4 address")
    return IPv4Address(sum(value << (8 * (3 - i)) for i, value in enumerate(head)) + last)


def _v4_part(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)  # "09" raises, as inet_aton refuses it
    return int(part)


class Verdict(NamedTuple):
    """What a non-public address is; ``address`` is the IPv4 one inside an IPv4-in-IPv6 form, else the address."""

    kind: str
    local: bool  # allow_private lets it through
    address: IPAddress


def classify(ip: IPAddress) -> Verdict | None:
    """What a non-public address is and whether ``allow_private`` lets it through; None for a public address."""
    if isinstance(ip, IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return classify(embedded)
        for net6, kind, local in _V6:
            if ip in net6:
                return Verdict(kind, local, ip)
        if ip in _COMPAT:  # after the table: :: and ::1 are in ::/96 too
            return Verdict("deprecated IPv4-compatible", False, ip)
    else:
        for net4, kind, local in _V4:
            if ip in net4:
                return Verdict(kind, local, ip)
    return None if ip.is_global else Verdict("reserved", False, ip)


def _embedded_v4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where connecting to it reaches that IPv4 host."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class CheckedURL:
    url: httpx.URL
    addresses: list[IPAddress]


@dataclass(frozen=True)
class NetworkPolicy:
    """Where outgoing calls to user-given URLs may go. ``resolver`` is the seam for tests (a name -> loopback map)."""

    allow_private: bool = False
    resolver: Resolver = field(default_factory=SystemResolver)
    resolve_timeout_seconds: float = 5.0

    def refusal(self, ip: IPAddress) -> str | None:
        """Why this address may not be called (e.g. "a loopback address 127.0.0.1"), or None if it may."""
        verdict = classify(ip)
        if verdict is None or (verdict.local and self.allow_private):
            return None
        article = "an" if verdict.kind == "unspecified" else "a"  # the one kind spoken with a vowel first
        written = f" (as {ip})" if verdict.address != ip else ""
        return f"{article} {verdict.kind} address {verdict.address}{written}"

    def name_refusal(self, name: str) -> str | None:
        """Why this host name may not be called without resolving it, or None if it may be resolved."""
        name = name.lower().rstrip(".")
        if name in _METADATA_NAMES:
            return "a cloud metadata name"
        if not self.allow_private and (name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES)):
            return "a local-only name"
        return None

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` stands for, all checked; raises ``URLRefused`` if any may not be called."""
        try:
            literal = parse_ip(host)
        except ValueError:
            raise URLRefused(f"url host {host} is not a valid address") from None
        if literal is not None:
            reason = self.refusal(literal)
            if reason:
                raise URLRefused(f"url host {host} is {reason}")
            return [literal]
        reason = self.name_refusal(host)
        if reason:
            raise URLRefused(f"url host {host} is {reason}")
        try:
            async with asyncio.timeout(self.resolve_timeout_seconds):
                resolved = await self.resolver.resolve(host, port)
            found = list(dict.fromkeys(ip_address(address) for address in resolved))
        except (OSError, TimeoutError, ValueError):
            found = []
        if not found:
            raise URLRefused(f"url host {host} does not resolve")
        for ip in found:
            reason = self.refusal(ip)
            if reason:
                raise URLRefused(f"url host {host} resolves to {reason}")
        return found

    async def check_url(self, url: str | httpx.URL) -> CheckedURL:
        """The URL and the addresses it reaches, if it may be called: http(s), no credentials, only allowed addresses.

        Raises ``URLRefused`` with a message for the caller's 400.
        """
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise URLRefused(f"url is not valid: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise URLRefused(f"url must use http or https, not {parsed.scheme or 'nothing'}")
        if parsed.userinfo:
            raise URLRefused("url must not contain credentials (user:password@)")
        if not parsed.raw_host:
            raise URLRefused("url has no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return CheckedURL(parsed, await self.addresses(parsed.raw_host.decode("ascii"), port))

    def transport(self) -> GuardedTransport:
        return GuardedTransport(self)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks each request's URL under a policy and connects only to a checked address.

    The request goes to the address itself, with the name kept in the Host header and in TLS SNI (so certificates
    are still verified against the name). A refused URL raises ``httpx.ConnectError``: to the caller it is simply
    unreachable. Connections are not kept alive: every request connects to the address checked for it, and a
    connection opened for one name is never reused for another name on the same address.
    """

    def __init__(self, policy: NetworkPolicy) -> None:
        self.policy = policy
        self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            checked = await self.policy.check_url(request.url)
        except URLRefused as exc:
            log.info("refused to call %s: %s", request.url.copy_with(query=None), exc)
            raise httpx.ConnectError(str(exc), request=request) from None
        name = request.url.raw_host.decode("ascii")
        extensions = dict(request.extensions)
        if request.url.scheme == "https" and parse_ip(name) is None:
            extensions["sni_hostname"] = name
        failure: httpx.ConnectError | None = None
        for ip in checked.addresses:  # the next address only when this one could not be connected to at all
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(ip)),
                headers=request.headers,  # Host: still the name
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self.inner.handle_async_request(pinned)
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def aclose(self) -> None:
        await self.inner.aclose()
