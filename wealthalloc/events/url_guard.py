"""Refusing webhook URLs that would make the platform call into its own network (SSRF).

A webhook URL is chosen by a user, and the platform calls it from inside the
cluster: pointed at ``127.0.0.1``, ``10.0.0.5`` or ``169.254.169.254`` it would
reach the database, the Ray dashboard or the cloud metadata service. So a URL
is accepted only when:

- it is ``https`` (``http`` only for a host the operator allowed),
- it carries no user name or password,
- its host name resolves, and *every* address it resolves to is public, or
  inside a network the operator allowed, or the host name itself is allowed.

Addresses that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
IPv4-compatible ``::a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are
judged by the IPv4 address they lead to.

The check runs when a webhook is created and again before every delivery,
because a name that resolved to a public address yesterday may resolve to a
private one today (DNS rebinding). The sender then connects to the addresses
this check returned (:attr:`SafeUrl.addresses`) rather than resolving again, so
nothing can change between the check and the connection.

``allowed`` entries are CIDR networks (``10.1.0.0/16``), single addresses
(``127.0.0.1``), host names (``receiver.internal``) or host-name suffixes
(``*.corp.example``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_HTTPS_ONLY = "the URL must use https (http only for hosts the operator allowed)"


class UnsafeUrl(ValueError):
    """The URL may not be called; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnresolvableHost(UnsafeUrl):
    """The host name does not resolve (now): refused at creation, retried later at delivery."""


@dataclass(frozen=True)
class SafeUrl:
    """A URL that passed the guard, with the addresses it was checked against (connect to these)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class Allowance:
    """The operator's exceptions, parsed once: networks, exact host names and host-name suffixes."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Allowance:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append(entry[1:])  # ".corp.example"
            else:
                hosts.add(entry)
        return cls(networks=tuple(networks), hosts=frozenset(hosts), suffixes=tuple(suffixes))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(suffix) for suffix in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        candidates = {address, _embedded_ipv4(address) or address}
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is one of the forms that embed one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True when ``address`` is a globally routable unicast address (judged by any IPv4 it embeds)."""
    address = _embedded_ipv4(address) or address
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    ):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return address.is_global  # also refuses 100.64.0.0/10 (carrier-grade NAT) and the like


def _split(url: str) -> SplitResult:
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise UnsafeUrl(f"the URL cannot be parsed: {exc}") from exc
    return parts


def _host(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("the URL has no host")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return host.lower()
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UnsafeUrl(f"the host name {host!r} is not valid") from exc


def _resolve(resolve: Resolver, host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"the host {host} does not resolve: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        sockaddr = info[4]
        try:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        except ValueError as exc:
            raise UnsafeUrl(f"the host {host} resolves to something that is not an address") from exc
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableHost(f"the host {host} resolves to no address")
    return tuple(addresses)


def check_url(
    url: str,
    *,
    allowed: Sequence[str] | Allowance = (),
    resolve: Resolver = socket.getaddrinfo,
) -> SafeUrl:
    """Accept ``url`` as a webhook target or raise :class:`UnsafeUrl` saying why.

    Resolves the host (``resolve`` has the signature of :func:`socket.getaddrinfo`, which
    blocks: call this in a thread from async code) and checks every address it gets.
    """
    allowance = allowed if isinstance(allowed, Allowance) else Allowance.parse(allowed)
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeUrl("the URL must start with https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrl("the URL must not contain a user name or password")
    host = _host(parts)
    port = parts.port or (443 if scheme == "https" else 80)
    host_allowed = allowance.allows_host(host)
    if scheme == "http" and not host_allowed and not allowance.networks:
        raise UnsafeUrl(_HTTPS_ONLY)  # no allowed network could make it acceptable: do not even resolve
    addresses = _resolve(resolve, host, port)
    if not host_allowed:
        refused = [a for a in addresses if not is_public(a) and not allowance.allows_address(a)]
        if refused:
            shown = ", ".join(str(a) for a in refused[:3])
            raise UnsafeUrl(f"the host {host} resolves to a non-public address ({shown})")
    if scheme == "http" and not (host_allowed or all(allowance.allows_address(a) for a in addresses)):
        raise UnsafeUrl(_HTTPS_ONLY)
    return SafeUrl(url=url, scheme=scheme, host=host, port=port, addresses=addresses)
