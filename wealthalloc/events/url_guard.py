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
(``*.corp.example``), each optionally with a port: ``receiver.internal:9000``,
``10.1.0.0/16:8443``, ``[fd00::/8]:8443``, or ``127.0.0.1:*`` for any port. An
entry without a port admits the scheme's default port only (443 for https, 80
for http): allowing a host is allowing its web receiver, not every service on
it. Multiple entries for one host add up.

Some ports are never called, whatever the allow-list says, on any host:
:data:`REFUSED_PORTS`, the ports of the cluster's own services (Ray's GCS,
dashboard, client server, agents; HAProxy's stats and metrics; PostgreSQL,
CockroachDB, Redis; IB Gateway). A webhook that reached one of them, even on an
allowed receiver host that also runs Ray, could drive the cluster.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
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

REFUSED_PORTS: frozenset[int] = frozenset(
    {
        6379,  # Ray's default GCS port, and Redis's
        6389,  # the GCS port `wealthalloc serve` gives Ray (WEALTHALLOC_RAY_PORT)
        8265,  # Ray dashboard (its REST API submits jobs)
        10001,  # Ray client server
        52365,  # Ray dashboard agent
        8076,  # Ray object manager, as Ray's docs configure it
        8077,  # Ray node manager, likewise
        8404,  # HAProxy stats (WEALTHALLOC_HAPROXY_STATS_PORT)
        9101,  # HAProxy Prometheus exporter (WEALTHALLOC_HAPROXY_METRICS_PORT)
        5432,  # PostgreSQL
        26257,  # CockroachDB
        4001,  # IB Gateway, live
        4002,  # IB Gateway, paper
        7496,  # TWS, live
        7497,  # TWS, paper
    }
)

# The ports an allow-list entry admits: None for any (but the refused ones), an empty set for the
# scheme's default port, otherwise the ports named.
Ports = frozenset[int] | None
_SCHEME_DEFAULT: frozenset[int] = frozenset()
_DEFAULT_PORTS = {"https": 443, "http": 80}


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


def _merge(current: Ports | str, more: Ports) -> Ports:
    if current == "absent":
        return more
    if current is None or more is None:
        return None
    assert not isinstance(current, str)
    return current | more


def _split_port(entry: str) -> tuple[str, Ports]:
    """``host[:port]``, ``[v6 or v6 network]:port`` or a bare IPv6 address/network (no port)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if not rest:
            return host, _SCHEME_DEFAULT
        if not rest.startswith(":"):
            raise ValueError(f"webhook allow-list entry {entry!r}: expected [address]:port")
        return host, _parse_port(entry, rest[1:])
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _parse_port(entry, port)
    return entry, _SCHEME_DEFAULT


def _parse_port(entry: str, text: str) -> Ports:
    if text == "*":
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"webhook allow-list entry {entry!r}: the port must be 1-65535 or *")
    return frozenset({int(text)})


def _admits(ports: Ports, port: int, default_port: int) -> bool:
    if ports is None:
        return True
    return port in ports or (not ports and port == default_port)


@dataclass(frozen=True)
class Allowance:
    """The operator's exceptions, parsed once: networks, exact host names and host-name suffixes,
    each with the ports it admits."""

    networks: tuple[tuple[IPNetwork, Ports], ...] = ()
    hosts: tuple[tuple[str, Ports], ...] = ()
    suffixes: tuple[tuple[str, Ports], ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowance:
        networks: list[tuple[IPNetwork, Ports]] = []
        hosts: dict[str, Ports] = {}
        suffixes: dict[str, Ports] = {}
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            name, ports = _split_port(entry)
            name = name.rstrip(".")
            try:
                networks.append((ipaddress.ip_network(name, strict=False), ports))
                continue
            except ValueError:
                pass
            if name.startswith("*."):
                suffixes[name[1:]] = _merge(suffixes.get(name[1:], "absent"), ports)  # ".corp.example"
            else:
                hosts[name] = _merge(hosts.get(name, "absent"), ports)
        return cls(networks=tuple(networks), hosts=tuple(hosts.items()), suffixes=tuple(suffixes.items()))

    def names_host(self, host: str) -> bool:
        """Whether an entry names this host (at whatever port): its addresses need not be public."""
        return any(h == host for h, _ in self.hosts) or any(host.endswith(s) for s, _ in self.suffixes)

    def allows_host(self, host: str, port: int, default_port: int = 443) -> bool:
        return any(h == host and _admits(p, port, default_port) for h, p in self.hosts) or any(
            host.endswith(s) and _admits(p, port, default_port) for s, p in self.suffixes
        )

    def covers_address(self, address: IPAddress) -> bool:
        """Whether an allowed network holds this address (at whatever port)."""
        candidates = {address, _embedded_ipv4(address) or address}
        return any(c.version == n.version and c in n for c in candidates for n, _ in self.networks)

    def allows_address(self, address: IPAddress, port: int, default_port: int = 443) -> bool:
        candidates = {address, _embedded_ipv4(address) or address}
        return any(
            c.version == n.version and c in n and _admits(p, port, default_port)
            for c in candidates
            for n, p in self.networks
        )


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
    default_port = _DEFAULT_PORTS[scheme]
    port = parts.port or default_port
    if port in REFUSED_PORTS:
        raise UnsafeUrl(f"port {port} belongs to a service of the platform and is never called")
    host_allowed = allowance.allows_host(host, port, default_port)
    if not host_allowed and allowance.names_host(host):
        raise UnsafeUrl(f"port {port} is not allowed for {host} (the operator allows it as {host}:{port})")
    if scheme == "http" and not host_allowed and not allowance.networks:
        raise UnsafeUrl(_HTTPS_ONLY)  # no allowed network could make it acceptable: do not even resolve
    addresses = _resolve(resolve, host, port)
    if not host_allowed:
        refused = [
            a for a in addresses if not is_public(a) and not allowance.allows_address(a, port, default_port)
        ]
        if refused:
            shown = ", ".join(str(a) for a in refused[:3])
            if all(allowance.covers_address(a) for a in refused):
                raise UnsafeUrl(f"port {port} is not allowed for {shown} (the operator allows other ports)")
            raise UnsafeUrl(f"the host {host} resolves to a non-public address ({shown})")
    if scheme == "http" and not (
        host_allowed or all(allowance.allows_address(a, port, default_port) for a in addresses)
    ):
        raise UnsafeUrl(_HTTPS_ONLY)
    return SafeUrl(url=url, scheme=scheme, host=host, port=port, addresses=addresses)
