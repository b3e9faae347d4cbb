"""Structured JSON logs for every WealthAlloc process.

One line of JSON per event on stderr, so Ray's log files, the dashboard and a
log shipper can all parse them; ``console`` format is for a person at a terminal.
Standard-library loggers (uvicorn, psycopg, ib_async) go through the same
renderer so nothing prints in a second format. A line written inside a request
carries its ``request_id`` (bound by the API's middleware), and one written
inside a trace span its ``trace_id`` and ``span_id``, so a log search and the
trace of one request lead to each other.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from wealthalloc.config import LogFormat
from wealthalloc.ops import tracing

_configured: tuple[str, str] | None = None


def configure_logging(level: str = "INFO", fmt: LogFormat = "json") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    global _configured
    if _configured == (level, fmt):
        return
    _configured = (level, fmt)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def add_trace_ids(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The current span's ids, when tracing runs in this process and a span is current."""
    if tracing.enabled():
        ids = tracing.current_ids()
        if ids is not None:
            event.setdefault("trace_id", ids[0])
            event.setdefault("span_id", ids[1])
    return event


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
