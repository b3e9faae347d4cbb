"""Allowing a webhook host is allowing its web receiver, not every service on it.

Before the fix an allow-list entry such as ``127.0.0.1`` admitted any port on
that host: a user could point a webhook at the Ray dashboard (8265, whose REST
API submits jobs), Ray's GCS or Redis on the same machine. Now an entry without
a port admits the scheme's default port only, ``host:port`` names another one,
``host:*`` any one, and the platform's own service ports are never called.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest

from tests.integration.people import Investor, error
from wealthalloc.events.url_guard import REFUSED_PORTS, Allowance, UnsafeUrl, check_url


def literal(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    address = ipaddress.ip_address(host)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, 6, "", (str(address), port))]


def by_name(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8265/api/jobs/",  # Ray dashboard
        "http://127.0.0.1:6379/",  # Ray GCS / Redis
        "http://127.0.0.1:10001/",  # Ray client server
        "http://127.0.0.1:52365/",  # Ray dashboard agent
        "http://127.0.0.1:5432/",  # PostgreSQL
        "http://127.0.0.1:8404/stats",  # HAProxy stats
        "http://127.0.0.1:9999/",  # any other port
    ],
)
def test_an_address_allowed_without_a_port_admits_only_the_default_port(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="port"):
        check_url(url, allowed=["127.0.0.1"], resolve=literal)
    assert check_url("http://127.0.0.1/hook", allowed=["127.0.0.1"], resolve=literal).port == 80
    assert check_url("https://127.0.0.1/hook", allowed=["127.0.0.1"], resolve=literal).port == 443


def test_a_host_name_allowed_without_a_port_admits_only_the_default_port() -> None:
    assert check_url("https://receiver.internal/in", allowed=["receiver.internal"], resolve=by_name)
    with pytest.raises(UnsafeUrl, match="port 8265"):
        check_url("http://receiver.internal:8265/", allowed=["receiver.internal"], resolve=by_name)
    with pytest.raises(UnsafeUrl, match="receiver.internal:9000"):
        check_url("http://receiver.internal:9000/", allowed=["receiver.internal"], resolve=by_name)
    for suffix_url in ("http://a.corp.example:9000/", "https://a.corp.example:8443/"):
        with pytest.raises(UnsafeUrl, match="port"):
            check_url(suffix_url, allowed=["*.corp.example"], resolve=by_name)


def test_a_named_port_or_a_wildcard_admits_more_but_never_a_platform_port() -> None:
    assert check_url("http://127.0.0.1:8787/", allowed=["127.0.0.1:8787"], resolve=literal).port == 8787
    assert check_url("http://10.2.3.4:8787/", allowed=["10.0.0.0/8:8787"], resolve=literal).port == 8787
    assert check_url("http://[fd00::1]:8787/", allowed=["[fd00::/8]:8787"], resolve=literal).port == 8787
    assert check_url("http://127.0.0.1:40123/", allowed=["127.0.0.1:*"], resolve=literal).port == 40123
    with pytest.raises(UnsafeUrl, match="port"):
        check_url("http://127.0.0.1:8788/", allowed=["127.0.0.1:8787"], resolve=literal)
    for port in sorted(REFUSED_PORTS):
        for allowed in (["127.0.0.1:*"], [f"127.0.0.1:{port}"], ["receiver.internal:*"]):
            host = "receiver.internal" if "receiver" in allowed[0] else "127.0.0.1"
            with pytest.raises(UnsafeUrl, match=f"port {port}"):
                check_url(
                    f"http://{host}:{port}/", allowed=allowed, resolve=by_name if "r" in host else literal
                )


def test_platform_ports_are_refused_on_public_hosts_too() -> None:
    with pytest.raises(UnsafeUrl, match="port 8265"):
        check_url("https://93.184.216.34:8265/", resolve=literal)
    assert check_url("https://93.184.216.34:8443/", resolve=literal).port == 8443


def test_a_malformed_port_in_the_allow_list_is_a_configuration_error() -> None:
    for entry in ("127.0.0.1:http", "127.0.0.1:0", "127.0.0.1:70000", "[::1]8080"):
        with pytest.raises(ValueError, match="allow-list entry"):
            Allowance.parse([entry])


def test_the_api_refuses_a_webhook_to_the_ray_dashboard_on_an_allowed_host(
    http: httpx.Client, database_url: str
) -> None:
    """The test deployment allows ``127.0.0.1:*`` (receivers on random ports); 8265 stays refused."""
    investor = Investor(http, database_url)
    response = investor.post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:8265/api/jobs/", "events": ["trades.executed"]}
    )
    assert "port 8265" in error(response, 400, "UNSAFE_WEBHOOK_URL")["message"]
