"""Live-stream fan-out: events a second and commit-to-socket latency at many WebSockets.

A server process (uvicorn, one replica's worth) runs the platform's ``StreamHub``: one Redis reader
shared by every socket, each socket a bounded queue sending the same JSON the ``/api/v1/stream``
route sends. This process opens ``--sockets`` WebSockets (one user each), then appends events the
way the outbox relay does (the user's stream, then the topic stream) at ``--rate`` a second, each
stamped with its append time, and measures append → received on the socket. Beside it, in the same
run: the plain Redis loop (XADD, then a blocking XREAD on one connection), the floor of any design.
Also printed: the server's memory per idle socket (RSS with the sockets open minus before, divided).

Sign-in is left out on purpose (one bcrypt per socket would measure bcrypt); ``bench/api.py`` times
the request path.

    python bench/stream.py [--sockets 1000] [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wealthalloc.runtime.launcher import free_port  # noqa: E402

REDIS_URL = os.environ.get("WEALTHALLOC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def serve(port: int, redis_url: str) -> None:
    """The server side: the hub and a socket endpoint that forwards a user's events."""
    import redis.asyncio as aioredis
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from serve_apps.api.routes.stream import _send_event
    from wealthalloc.events.fanout import StreamHub

    hub: StreamHub | None = None

    async def stream(websocket: WebSocket) -> None:
        nonlocal hub
        if hub is None:
            hub = StreamHub(redis=aioredis.Redis.from_url(redis_url, socket_timeout=10), block_ms=1000)
        await websocket.accept()
        first = json.loads(await websocket.receive_text())
        sub = hub.subscribe([uuid.UUID(first["user"])], queue_size=1000)
        await websocket.send_text('{"type": "ready"}')
        try:
            while True:
                await _send_event(websocket, await sub.queue.get())
        except WebSocketDisconnect:
            pass
        finally:
            hub.unsubscribe(sub)

    async def rss(request: Any) -> PlainTextResponse:
        return PlainTextResponse(str(_rss_kib()))

    app = Starlette(routes=[WebSocketRoute("/stream", stream), Route("/rss", rss)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws_max_queue=64)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _event(user: uuid.UUID, sequence: int) -> Any:
    from tests.events import cash_moved

    return cash_moved(user, sequence, sent_at=time.time())


async def _plain_loop(redis_url: str, n: int) -> list[float]:
    """XADD then a blocking XREAD from the entry before: the latency of Redis itself."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, socket_timeout=10)
    reader = aioredis.Redis.from_url(redis_url, socket_timeout=10)
    latencies = []
    try:
        last = "$"
        for _ in range(n):
            waiting = asyncio.create_task(reader.xread({"bench:plain": last}, count=1, block=1000))
            await asyncio.sleep(0)
            start = time.perf_counter()
            await client.xadd("bench:plain", {"t": "1"}, maxlen=1000)
            response = await waiting
            latencies.append(time.perf_counter() - start)
            last = response[0][1][-1][0]
        await client.delete("bench:plain")
    finally:
        await client.aclose()
        await reader.aclose()
    return latencies


async def _run(sockets: int, rate: int, seconds: float, redis_url: str) -> dict[str, Any]:
    import httpx
    import redis.asyncio as aioredis
    from websockets.asyncio.client import connect

    from wealthalloc.events.relay import OutboxRelay

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--redis-url", redis_url],
        cwd=Path(__file__).resolve().parents[1],
    )
    latencies: list[float] = []
    received = 0
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    await http.get("/rss")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
            rss_before = int((await http.get("/rss")).text)
            users = [uuid.uuid4() for _ in range(sockets)]

            async def client(user: uuid.UUID, ready: asyncio.Event, opened: list[int]) -> None:
                nonlocal received
                async with connect(f"ws://127.0.0.1:{port}/stream", max_queue=None) as ws:
                    await ws.send(json.dumps({"user": str(user)}))
                    await ws.recv()
                    opened.append(1)
                    if len(opened) == sockets:
                        ready.set()
                    async for text in ws:
                        message = json.loads(text)
                        latencies.append(time.time() - message["data"]["sent_at"])
                        received += 1

            ready = asyncio.Event()
            opened: list[int] = []
            tasks = []
            for start in range(0, sockets, 100):  # open in waves: the listen backlog is finite
                tasks += [asyncio.create_task(client(u, ready, opened)) for u in users[start : start + 100]]
                await asyncio.sleep(0.05)
            await asyncio.wait_for(ready.wait(), 120)
            await asyncio.sleep(1.0)
            rss_open = int((await http.get("/rss")).text)

            redis = aioredis.Redis.from_url(redis_url, socket_timeout=10)
            relay = OutboxRelay(pool=None, redis=redis)  # type: ignore[arg-type]  # appends only
            total = int(rate * seconds)
            began = time.perf_counter()
            for n in range(total):
                await relay._append([_event(random.choice(users), n + 1)])
                pause = began + (n + 1) / rate - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
            sent_s = time.perf_counter() - began
            deadline = time.monotonic() + 10
            while received < total and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            delivered_s = time.perf_counter() - began
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for user in users:
                await redis.delete(f"stream:user:{{{user}}}")
            await redis.aclose()
        plain = await _plain_loop(redis_url, 2000)
    finally:
        server.terminate()  # the hub's open Redis read can hold a graceful shutdown: then kill
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    ordered = sorted(latencies)
    plain_sorted = sorted(plain)
    return {
        "sockets": sockets,
        "events_sent": total,
        "events_received": received,
        "events_per_s_sent": round(total / sent_s, 1),
        "events_per_s_delivered": round(received / delivered_s, 1),
        "stream_p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "stream_p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2) if ordered else None,
        "plain_xadd_xread_p50_ms": round(statistics.median(plain_sorted) * 1000, 3),
        "plain_xadd_xread_p99_ms": round(plain_sorted[int(len(plain_sorted) * 0.99) - 1] * 1000, 3),
        "server_kib_per_idle_socket": round((rss_open - rss_before) / sockets, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=1000, help="WebSockets open at once (default 1000)")
    parser.add_argument("--rate", type=int, default=200, help="events appended a second (default 200)")
    parser.add_argument("--seconds", type=float, default=10, help="how long events are appended (default 10)")
    parser.add_argument("--redis-url", default=REDIS_URL, help="a Redis database the bench may write to")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.redis_url)
        return
    figures = asyncio.run(_run(args.sockets, args.rate, args.seconds, args.redis_url))
    print(
        f"{figures['sockets']} sockets, {figures['events_received']}/{figures['events_sent']} events, "
        f"{figures['events_per_s_delivered']} events/s delivered"
    )
    print(
        f"append -> socket: p50 {figures['stream_p50_ms']} ms, p99 {figures['stream_p99_ms']} ms "
        f"(plain XADD -> XREAD: p50 {figures['plain_xadd_xread_p50_ms']} ms, "
        f"p99 {figures['plain_xadd_xread_p99_ms']} ms)"
    )
    print(f"server memory per idle socket: {figures['server_kib_per_idle_socket']} KiB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
