"""The address policy as pure functions: every spelling of a forbidden address is refused, public ones are not.

No network: literals are never resolved, and names go to a resolver that only knows what the test tells it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.kit.netguard import IPAddress, NetworkPolicy, URLRefused, parse_ip

STRICT = NetworkPolicy()
PRIVATE_INSTALL = NetworkPolicy(allow_private=True)

# Forbidden IPv4 ranges and whether a private install may reach them.
V4_FORBIDDEN = {
    "0.0.0.0/8": False,
    "127.0.0.0/8": True,
    "10.0.0.0/8": True,
    "172.16.0.0/12": True,
    "192.168.0.0/16": True,
    "100.64.0.0/10": True,
    "169.254.0.0/16": False,
    "192.0.2.0/24": False,
    "198.51.100.0/24": False,
    "203.0.113.0/24": False,
    "224.0.0.0/4": False,
    "240.0.0.0/4": False,
}
V6_FORBIDDEN = {
    "::1/128": True,
    "::/128": False,
    "fc00::/7": True,
    "fe80::/10": False,
    "ff00::/8": False,
    "2001:db8::/32": False,
}
# Blocks of public addresses (public in every spelling); none of these is ever connected to.
V4_PUBLIC = ["8.0.0.0/8", "1.0.0.0/8", "52.0.0.0/8", "93.184.216.0/24", "151.101.0.0/16"]
V6_PUBLIC = ["2606:4700::/32", "2a00:1450::/32", "2001:4860::/32"]


class NoDNS:
    """A resolver that fails the test if it is asked anything: literals must never be resolved."""

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        raise AssertionError(f"{host} was resolved")


class MapDNS:
    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        if host not in self.names:
            raise OSError(f"{host}: unknown to this test")
        return self.names[host]


def in_net(net: str) -> st.SearchStrategy[int]:
    network = IPv4Network(net) if "." in net else IPv6Network(net)
    return st.integers(int(network.network_address), int(network.broadcast_address))


def v4_spellings(n: int) -> st.SearchStrategy[str]:
    """The ways inet_aton and URL parsers accept to write an IPv4 address."""
    octets = list(IPv4Address(n).packed)

    def part(value: int) -> st.SearchStrategy[str]:
        return st.sampled_from([str(value), hex(value), "0x" + format(value, "X"), "0" + format(value, "o")])

    return st.one_of(
        st.just(str(IPv4Address(n))),
        st.just(str(n)),  # 2130706433
        st.just(hex(n)),  # 0x7f000001
        st.just("0" + format(n, "o")),  # 017700000001
        st.tuples(*(part(o) for o in octets)).map(".".join),  # 0177.0x0.0.01
        st.tuples(part(octets[0]), part(octets[1]), part(n & 0xFFFF)).map(".".join),  # 127.0.1
        st.tuples(part(octets[0]), part(n & 0xFFFFFF)).map(".".join),  # 127.1
        st.just(str(IPv4Address(n)) + "."),  # trailing dot
    )


def forbidden_v4() -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(V4_FORBIDDEN)).flatmap(in_net)


def v6_spellings(ip: IPv6Address) -> st.SearchStrategy[str]:
    return st.sampled_from([str(ip), ip.exploded, f"[{ip}]", str(ip).upper()])


def forbidden_v6() -> st.SearchStrategy[IPv6Address]:
    """Forbidden IPv6 addresses, and forbidden IPv4 ones inside IPv4-mapped, NAT64, 6to4 and compatible forms."""
    native = st.sampled_from(sorted(V6_FORBIDDEN)).flatmap(in_net).map(IPv6Address)
    embedded = forbidden_v4().flatmap(
        lambda n: st.sampled_from(
            [
                IPv6Address((0xFFFF << 32) | n),  # ::ffff:a.b.c.d
                IPv6Address((0x64FF9B << 96) | n),  # 64:ff9b::a.b.c.d
                IPv6Address((0x2002 << 112) | (n << 80)),  # 2002:aabb:ccdd::
                IPv6Address(n),  # ::a.b.c.d (deprecated compatible form)
            ]
        )
    )
    return st.one_of(native, embedded)


def verdict(policy: NetworkPolicy, url: str) -> list[IPAddress] | str:
    """The addresses the URL may reach, or why it is refused."""
    try:
        return asyncio.run(policy.check_url(url)).addresses
    except URLRefused as exc:
        return str(exc)


def refused(policy: NetworkPolicy, url: str) -> str:
    answer = verdict(policy, url)
    assert isinstance(answer, str), f"{url} was allowed"
    return answer


@given(forbidden_v4().flatmap(lambda n: st.tuples(st.just(n), v4_spellings(n))))
def test_every_spelling_of_a_forbidden_ipv4_address_is_read_as_it_and_refused(case: tuple[int, str]) -> None:
    n, spelling = case
    assert parse_ip(spelling) == IPv4Address(n)
    reason = STRICT.refusal(IPv4Address(n))
    assert reason is not None and str(IPv4Address(n)) in reason
    message = refused(NetworkPolicy(resolver=NoDNS()), f"http://{spelling}:8080/hook")
    # httpx itself rejects some dotted spellings (0.0.0.00): such a URL cannot be called at all.
    assert message.lower() == f"url host {spelling} is {reason}".lower() or message.startswith("url is not valid")


@given(forbidden_v6().flatmap(lambda ip: st.tuples(st.just(ip), v6_spellings(ip))))
def test_every_forbidden_ipv6_address_and_ipv4_in_ipv6_form_is_refused(case: tuple[IPv6Address, str]) -> None:
    ip, spelling = case
    assert parse_ip(spelling) == ip
    assert STRICT.refusal(ip) is not None
    host = spelling if spelling.startswith("[") else f"[{spelling}]"
    assert "url host" in refused(NetworkPolicy(resolver=NoDNS()), f"https://{host}/hook")


@given(st.sampled_from(V4_PUBLIC).flatmap(in_net).flatmap(lambda n: st.tuples(st.just(n), v4_spellings(n))))
def test_public_ipv4_addresses_are_allowed_in_any_spelling(case: tuple[int, str]) -> None:
    n, spelling = case
    assert parse_ip(spelling) == IPv4Address(n)
    assert STRICT.refusal(IPv4Address(n)) is None
    answer = verdict(NetworkPolicy(resolver=NoDNS()), f"https://{spelling}/hook")
    # Refused only where httpx itself cannot parse the spelling (8.0.0.00), so no client could call it anyway.
    assert answer == [IPv4Address(n)] or str(answer).startswith("url is not valid: Invalid IPv4 address")


def public_v6() -> st.SearchStrategy[IPv6Address]:
    native = st.sampled_from(V6_PUBLIC).flatmap(in_net).map(IPv6Address)
    v4 = st.sampled_from(V4_PUBLIC).flatmap(in_net)
    mapped = v4.map(lambda n: IPv6Address((0xFFFF << 32) | n))
    nat64 = v4.map(lambda n: IPv6Address((0x64FF9B << 96) | n))
    return st.one_of(native, mapped, nat64)


@given(public_v6())
def test_public_ipv6_addresses_and_public_ipv4_in_mapped_or_nat64_form_are_allowed(ip: IPv6Address) -> None:
    assert STRICT.refusal(ip) is None
    checked = asyncio.run(NetworkPolicy(resolver=NoDNS()).check_url(f"https://[{ip}]/hook"))
    assert checked.addresses == [ip]


@given(st.sampled_from(sorted(V4_FORBIDDEN)).flatmap(lambda net: st.tuples(st.just(net), in_net(net))))
def test_a_private_install_reaches_its_own_network_but_never_link_local_or_reserved(case: tuple[str, int]) -> None:
    net, n = case
    allowed = PRIVATE_INSTALL.refusal(IPv4Address(n)) is None
    assert allowed == V4_FORBIDDEN[net]
    assert (PRIVATE_INSTALL.refusal(IPv6Address((0xFFFF << 32) | n)) is None) == V4_FORBIDDEN[net]


@given(st.sampled_from(sorted(V6_FORBIDDEN)).flatmap(lambda net: st.tuples(st.just(net), in_net(net))))
def test_a_private_install_reaches_unique_local_and_loopback_ipv6_only(case: tuple[str, int]) -> None:
    net, n = case
    assert (PRIVATE_INSTALL.refusal(IPv6Address(n)) is None) == V6_FORBIDDEN[net]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "a link-local address 169.254.169.254"),
        ("fd00:ec2::254", "a cloud metadata address fd00:ec2::254"),
        ("100.100.100.200", "a cloud metadata address 100.100.100.200"),
        ("::ffff:169.254.169.254", "a link-local address 169.254.169.254 (as ::ffff:a9fe:a9fe)"),
    ],
)
def test_cloud_metadata_is_refused_even_to_a_private_install(address: str, why: str) -> None:
    ip = parse_ip(address)
    assert ip is not None
    assert PRIVATE_INSTALL.refusal(ip) == why
    assert STRICT.refusal(ip) == why


@pytest.mark.parametrize("host", ["256.0.0.1", "1.2.3.4.5", "09.0.0.1", "1.2.65536", "0x1ffffffff", "4294967296"])
def test_numeric_hosts_that_are_no_ipv4_address_are_refused_unresolved(host: str) -> None:
    with pytest.raises(ValueError, match="not a valid IPv4 address"):
        parse_ip(host)
    message = refused(NetworkPolicy(resolver=NoDNS()), f"http://{host}/")
    assert message in (f"url host {host} is not a valid address", f"url is not valid: Invalid IPv4 address: '{host}'")


@pytest.mark.parametrize("name", ["example.com", "1.2.3.example", "0x7f.example", "xn--bcher-kva.example"])
def test_names_are_not_read_as_addresses(name: str) -> None:
    assert parse_ip(name) is None


def test_local_only_and_metadata_names_are_refused_without_resolving() -> None:
    strict = NetworkPolicy(resolver=NoDNS())
    for name in ("localhost", "LocalHost.", "db.localhost", "printer.local", "vault.internal", "nas.home.arpa"):
        assert refused(strict, f"http://{name}/") == f"url host {name.lower()} is a local-only name"
    private = NetworkPolicy(allow_private=True, resolver=NoDNS())
    for name in ("metadata.google.internal", "metadata.goog"):
        assert refused(strict, f"http://{name}/") == f"url host {name} is a cloud metadata name"
        assert refused(private, f"http://{name}/") == f"url host {name} is a cloud metadata name"


def test_a_name_is_refused_when_any_of_its_addresses_is_and_allowed_when_all_are_public() -> None:
    dns = MapDNS(
        {
            "public.test": ["8.8.8.8", "2606:4700:4700::1111"],
            "mixed.test": ["8.8.8.8", "169.254.169.254"],
            "mapped.test": ["::ffff:10.1.2.3"],
            "garbage.test": ["not an address"],
            "empty.test": [],
        }
    )
    policy = NetworkPolicy(resolver=dns)
    checked = asyncio.run(policy.check_url("https://public.test/hook"))
    assert [str(ip) for ip in checked.addresses] == ["8.8.8.8", "2606:4700:4700::1111"]
    assert (
        refused(policy, "https://mixed.test/") == "url host mixed.test resolves to a link-local address 169.254.169.254"
    )
    assert refused(policy, "https://mapped.test/") == (
        "url host mapped.test resolves to a private address 10.1.2.3 (as ::ffff:a01:203)"
    )
    for name in ("garbage.test", "empty.test", "unknown.test"):
        assert refused(policy, f"https://{name}/") == f"url host {name} does not resolve"
    local = NetworkPolicy(allow_private=True, resolver=MapDNS({"localhost": ["127.0.0.1", "::1"]}))
    assert [str(ip) for ip in asyncio.run(local.check_url("http://localhost:9/")).addresses] == ["127.0.0.1", "::1"]


def test_only_http_urls_without_credentials_are_callable() -> None:
    policy = NetworkPolicy(resolver=NoDNS())
    assert refused(policy, "ftp://8.8.8.8/") == "url must use http or https, not ftp"
    assert refused(policy, "file:///etc/passwd") == "url must use http or https, not file"
    assert refused(policy, "http://user:pw@8.8.8.8/") == "url must not contain credentials (user:password@)"
    assert refused(policy, "http://user@8.8.8.8/") == "url must not contain credentials (user:password@)"
    assert refused(policy, "http:///hook") == "url has no host"
