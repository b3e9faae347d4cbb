"""A WebSocket client of /api/v1/stream for tests: it answers heartbeats and keeps what it read."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.integration.people import Investor

WAIT_S = 20.0


class Stream:
    """One client socket and the messages it has read so far."""

    def __init__(self, api_url: str) -> None:
        self.ws: ClientConnection = connect(
            api_url.replace("http://", "ws://") + "/api/v1/stream", open_timeout=10
        )
        self.received: list[dict[str, Any]] = []

    def auth(self, token: str, **extra: Any) -> dict[str, Any]:
        self.ws.send(json.dumps({"type": "auth", "token": token, **extra}))
        return self.next_message(lambda m: m["type"] in ("ready", "reset"))

    def next_message(
        self, wanted: Callable[[dict[str, Any]], bool], timeout: float = WAIT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no wanted message in {timeout} s; got {self.received}")
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            self.received.append(message)
            if message["type"] == "ping":
                self.ws.send(json.dumps({"type": "pong"}))
            if wanted(message):
                return message

    def event(self, event_type: str, timeout: float = WAIT_S) -> dict[str, Any]:
        return self.next_message(lambda m: m["type"] == "event" and m["event_type"] == event_type, timeout)

    def events(self, event_type: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == "event" and m["event_type"] == event_type]

    def drain(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return
            self.received.append(message)

    def close_code(self, timeout: float = WAIT_S) -> int | None:
        """The code the server closed the socket with (reading until it does)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.received.append(json.loads(self.ws.recv(timeout=deadline - time.monotonic())))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        raise TimeoutError(f"the socket stayed open; got {self.received}")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def streams(api_url: str) -> Iterator[Callable[[], Stream]]:
    opened: list[Stream] = []

    def open_stream() -> Stream:
        stream = Stream(api_url)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


def token_of(investor: Investor) -> str:
    return investor.headers["Authorization"].removeprefix("Bearer ")
