"""The webhook URL guard: only public https targets, unless the operator allowed a host or network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from wealthalloc.events.url_guard import (
    Allowance,
    UnresolvableHost,
    UnsafeUrl,
    check_url,
    is_public,
)

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


def resolver(table: Mapping[str, Sequence[str]]) -> Any:
    """A getaddrinfo stand-in answering from ``table``; records what it was asked."""
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        asked.append((host, port))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port, 0, 0) if ":" in address else (address, port),
            )
            for address in table[host]
        ]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def literal(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    """getaddrinfo for IP literals only: the tests never touch DNS."""
    address = ipaddress.ip_address(host)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, 6, "", (str(address), port))]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://127.8.9.10/hook",
        "https://0.0.0.0/hook",
        "https://10.0.0.1/hook",
        "https://10.255.255.254/hook",
        "https://172.16.0.1/hook",
        "https://172.31.255.254/hook",
        "https://192.168.0.1/hook",
        "https://192.168.255.254/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://169.254.0.1/hook",
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://224.0.0.1/hook",  # multicast
        "https://255.255.255.255/hook",
        "https://[::1]/hook",
        "https://[::]/hook",
        "https://[fc00::1]/hook",
        "https://[fd12:3456:789a::1]/hook",
        "https://[fe80::1]/hook",
        "https://[fec0::1]/hook",  # site-local
        "https://[ff02::1]/hook",  # multicast
        "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "https://[::ffff:10.0.0.1]/hook",
        "https://[::ffff:169.254.169.254]/hook",
        "https://[::ffff:7f00:1]/hook",  # the same mapped loopback, written in hex
        "https://[::127.0.0.1]/hook",  # IPv4-compatible
        "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
        "https://[2002:c0a8:101::]/hook",  # 6to4 of 192.168.1.1
        "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="non-public address"):
        check_url(url, resolve=literal)


@pytest.mark.parametrize(
    "url", ["https://2130706433/hook", "https://0x7f000001/hook", "https://0177.0.0.1/hook"]
)
def test_numeric_spellings_of_loopback_are_judged_by_what_they_resolve_to(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url)  # the system resolver turns each of these into 127.0.0.1 (or refuses it)


def test_a_public_address_passes_and_comes_back_with_what_was_checked() -> None:
    safe = check_url(f"https://{PUBLIC_V4}/hooks?x=1", resolve=literal)

    assert safe.addresses == (ipaddress.ip_address(PUBLIC_V4),)
    assert (safe.scheme, safe.host, safe.port) == ("https", PUBLIC_V4, 443)
    assert check_url(f"https://[{PUBLIC_V6}]:8443/", resolve=literal).port == 8443
    assert check_url("https://[::ffff:93.184.216.34]/", resolve=literal).addresses


def test_a_host_name_resolving_to_a_private_address_is_refused() -> None:
    resolve = resolver({"hooks.attacker.example": ["10.0.0.7"]})

    with pytest.raises(
        UnsafeUrl, match=r"hooks\.attacker\.example resolves to a non-public address \(10\.0\.0\.7\)"
    ):
        check_url("https://hooks.attacker.example/x", resolve=resolve)
    assert resolve.asked == [("hooks.attacker.example", 443)]


def test_every_resolved_address_must_be_public_not_just_the_first() -> None:
    resolve = resolver({"mixed.example": [PUBLIC_V4, "::1"], "v6.example": [PUBLIC_V6]})

    with pytest.raises(UnsafeUrl, match="::1"):
        check_url("https://mixed.example/", resolve=resolve)
    assert check_url("https://V6.Example./", resolve=resolve).host == "v6.example"


def test_a_name_that_does_not_resolve_is_refused_as_unresolvable() -> None:
    with pytest.raises(UnresolvableHost, match="does not resolve"):
        check_url("https://nowhere.example/", resolve=resolver({}))
    assert issubclass(UnresolvableHost, UnsafeUrl)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://{PUBLIC_V4}/hook", "https"),
        ("ftp://hooks.example/hook", "https"),
        ("file:///etc/passwd", "https"),
        ("javascript:alert(1)", "https"),
        ("gopher://hooks.example:70/", "https"),
        ("https://user:secret@hooks.example/hook", "user name or password"),
        ("https://token@hooks.example/hook", "user name or password"),
        ("https:///hook", "no host"),
        ("https://hooks.example:99999/hook", "cannot be parsed"),
        ("https://hooks.example/ho ok", "whitespace"),
        ("https://hooks.example/\r\nX-Evil: 1", "whitespace"),
        ("https://hooks.example/" + "a" * 2048, "longer than"),
        ("", "empty"),
    ],
)
def test_urls_that_are_not_plain_https_without_credentials_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl, match=reason):
        check_url(url, resolve=resolver({"hooks.example": [PUBLIC_V4]}))


def test_an_allowed_cidr_admits_its_addresses_over_http_too_and_nothing_else() -> None:
    allowed = ["10.0.0.0/8", "10.0.0.0/8:8080", "fd00::/8"]

    assert check_url("https://10.1.2.3/hook", allowed=allowed, resolve=literal)
    assert check_url("http://10.1.2.3:8080/hook", allowed=allowed, resolve=literal).port == 8080
    assert check_url("https://[::ffff:10.0.0.1]/hook", allowed=allowed, resolve=literal)
    assert check_url("http://[fd00::5]/hook", allowed=allowed, resolve=literal)
    for refused in ("https://192.168.1.1/", "https://127.0.0.1/", "https://[fc00::1]/"):
        with pytest.raises(UnsafeUrl):
            check_url(refused, allowed=allowed, resolve=literal)
    with pytest.raises(UnsafeUrl, match="https"):
        check_url(f"http://{PUBLIC_V4}/", allowed=allowed, resolve=literal)


def test_an_allowed_loopback_address_admits_a_local_receiver() -> None:
    safe = check_url("http://127.0.0.1:8787/hook", allowed=["127.0.0.1:8787"], resolve=literal)

    assert safe.addresses == (ipaddress.ip_address("127.0.0.1"),) and safe.scheme == "http"
    with pytest.raises(UnsafeUrl):
        check_url("http://[::1]:8787/hook", allowed=["127.0.0.1:8787"], resolve=literal)


def test_an_allowed_host_name_admits_whatever_it_resolves_to() -> None:
    resolve = resolver(
        {
            "receiver.internal": ["10.0.0.5"],
            "a.corp.example": ["192.168.4.4"],
            "corp.example": ["192.168.4.5"],
            "evilcorp.example": ["192.168.4.6"],
            "other.internal": ["10.0.0.6"],
        }
    )
    allowed = ["receiver.internal:9000", "*.corp.example"]

    assert check_url("http://receiver.internal:9000/in", allowed=allowed, resolve=resolve)
    assert check_url("https://A.corp.example/in", allowed=allowed, resolve=resolve)
    for refused in ("https://corp.example/", "https://evilcorp.example/", "https://other.internal/"):
        with pytest.raises(UnsafeUrl, match="non-public"):
            check_url(refused, allowed=allowed, resolve=resolve)


def test_allowances_are_parsed_once_and_ignore_blank_entries() -> None:
    allowance = Allowance.parse([" 10.0.0.0/8 ", "", "127.0.0.1", "Receiver.Internal.", "*.corp.example"])

    assert [str(n) for n, _ in allowance.networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert [h for h, _ in allowance.hosts] == ["receiver.internal"]
    assert allowance.allows_host("x.corp.example", 443) and not allowance.allows_host("corp.example", 443)
    assert check_url("https://10.9.9.9/", allowed=allowance, resolve=literal)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        (PUBLIC_V6, True),
        ("::ffff:8.8.8.8", True),
        ("2002:0808:0808::", True),
        ("127.0.0.1", False),
        ("192.0.2.1", False),  # documentation range
        ("198.18.0.1", False),  # benchmarking range
        ("2001:db8::1", False),
        ("::ffff:192.168.0.1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public
