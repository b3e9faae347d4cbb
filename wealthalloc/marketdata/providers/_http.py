"""One GET that answers JSON with numbers as ``Decimal``, and the transport failures mapped to our errors.

Both providers answer JSON; Polygon writes prices as JSON numbers, which
``json.loads`` would make floats, so bodies are parsed with
``parse_float=Decimal`` and a price never passes through a binary float.

Alpha Vantage takes its key only as a query parameter, and httpx logs every
request URL at INFO: a filter on the ``httpx`` logger masks ``apikey=`` and
``apiKey=`` values so a key never reaches a log line.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from wealthalloc.marketdata.providers._base import MalformedAnswer, ProviderUnavailable

_KEY_IN_URL = re.compile(r"(?i)(api_?key=)[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with every ``apikey=...``/``apiKey=...`` value replaced by ``***``."""
    return _KEY_IN_URL.sub(r"\1***", text)


class _RedactKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(redact(str(arg)) if isinstance(arg, httpx.URL | str) else arg for arg in args)
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(existing, _RedactKeys) for existing in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactKeys())


@dataclass(frozen=True)
class JsonAnswer:
    """A provider's HTTP answer: status, ``Retry-After`` if given, the parsed body (None if not JSON)."""

    status: int
    body: Any
    retry_after_s: float | None
    text: str


async def get_json(
    client: httpx.AsyncClient,
    provider: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonAnswer:
    """GET ``url`` and parse its body; transport failures and 5xx are :class:`ProviderUnavailable`.

    A 2xx body that is not JSON is :class:`MalformedAnswer`; a 4xx body that
    is not JSON comes back with ``body=None`` for the provider to judge by
    its status.
    """
    try:
        response = await client.get(url, params=params, headers=headers)
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(provider, f"timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(provider, f"{type(exc).__name__}: {redact(str(exc))}") from exc
    text = response.text
    if response.status_code >= 500:
        raise ProviderUnavailable(provider, f"HTTP {response.status_code}: {redact(text[:200])}")
    try:
        body: Any = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        if 200 <= response.status_code < 300:
            raise MalformedAnswer(provider, f"body is not JSON: {redact(text[:80])!r}") from exc
        body = None
    return JsonAnswer(
        status=response.status_code,
        body=body,
        retry_after_s=_retry_after(response.headers.get("Retry-After")),
        text=text,
    )


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare for APIs, and the backoff covers it
    return max(0.0, min(seconds, 120.0))
