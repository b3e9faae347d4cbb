"""Ray and Ray Serve on this machine: start, deploy, wait until healthy, stop.

``make run`` calls this through ``wealthalloc serve``; a Ray cluster launched
from ``ray-cluster.yaml`` runs the same ``cluster/serve-config.yaml``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from serve_apps.api.proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from wealthalloc.config import Settings
from wealthalloc.runtime import haproxy_errors

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO_ROOT / "cluster" / "serve-config.yaml"
STATE_FILE_NAME = "runtime.json"


class LaunchError(Exception):
    """The platform could not be brought up; the message is for a person."""


@dataclass(frozen=True)
class WorkerNode:
    """A Ray worker node that ``wealthalloc serve --workers`` started beside the head.

    Its raylet listens on ``node_manager_port``, which is how the cluster's node
    table (``ray.nodes()``) names it back to us.
    """

    index: int
    pid: int
    node_manager_port: int


@dataclass(frozen=True)
class RuntimeState:
    """What ``wealthalloc serve`` started, so ``stop`` and ``doctor`` know what is running."""

    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool
    api_url: str
    dashboard_url: str
    ray_address: str
    ray_pid: int
    started_at: float
    workers: tuple[WorkerNode, ...] = field(default=())

    def save(self, data_dir: Path) -> None:
        path = data_dir / STATE_FILE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, data_dir: Path) -> RuntimeState | None:
        try:
            fields = json.loads((data_dir / STATE_FILE_NAME).read_text())
            fields["workers"] = tuple(WorkerNode(**worker) for worker in fields.get("workers", ()))
            return cls(**fields)
        except (OSError, ValueError, TypeError):
            return None

    @staticmethod
    def clear(data_dir: Path) -> None:
        (data_dir / STATE_FILE_NAME).unlink(missing_ok=True)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _generated_secret(path: Path, make: Callable[[], str]) -> str:
    """A secret made once into ``path`` (mode 0600) and read back on every later start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
    return path.read_text().strip()


def secret_key(settings: Settings) -> str:
    """The configured signing key, or one generated once into the data directory.

    Generated rather than defaulted: a key that ships in the repository would
    let anyone forge tokens for every installation that kept it.
    """
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured
    return _generated_secret(settings.data_dir / "secret_key", lambda: secrets.token_urlsafe(48))


def operations_token(settings: Settings) -> str:
    """The configured operations token (for /metrics and /health's details), or one generated once.

    ``wealthalloc doctor`` reads it from the same file; point Prometheus's ``authorization``
    credentials file at it.
    """
    configured = settings.operations_token.get_secret_value()
    if configured:
        return configured
    return _generated_secret(settings.data_dir / "operations_token", lambda: secrets.token_urlsafe(32))


def ray_auth_env(settings: Settings) -> dict[str, str]:
    """Token authentication for the local Ray (GCS and dashboard), the token kept in the data directory.

    ``ray start --head`` turns token authentication on; every client of the
    cluster (``serve run``, ``ray job submit``, the CLI) needs these two
    variables to reach it.
    """
    path = settings.data_dir / "ray_auth_token"
    _generated_secret(path, lambda: secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def platform_env(settings: Settings, database_url: str, redis_url: str) -> dict[str, str]:
    """Environment for Ray and every worker it spawns: the resolved services and Serve's ingress."""
    env = {
        "WEALTHALLOC_SECRET_KEY": secret_key(settings),
        "WEALTHALLOC_OPERATIONS_TOKEN": operations_token(settings),
        "WEALTHALLOC_DATABASE_URL": database_url,
        "WEALTHALLOC_REDIS_URL": redis_url,
        "WEALTHALLOC_DATA_DIR": str(settings.data_dir),
        "WEALTHALLOC_HTTP_HOST": settings.http_host,
        "WEALTHALLOC_HTTP_PORT": str(settings.http_port),
        "RAY_USAGE_STATS_ENABLED": "0",
        # The GCS declares a silent node dead after three missed checks two seconds apart (Ray's
        # defaults wait about 30 s); only then are its actors restarted elsewhere, so this bounds how
        # long the users of a lost node's shards wait.
        "RAY_health_check_period_ms": "2000",
        "RAY_health_check_timeout_ms": "2000",
        "RAY_health_check_failure_threshold": "3",
        # Serve's HTTP servers (proxy and replicas) check a client's X-Request-ID before echoing it
        # and answer requests they cannot parse in the JSON envelope (serve_apps/api/proxy.py).
        PROXY_CALLBACK_ENV: PROXY_CALLBACK,
        # `ray job submit -- python -m training.tune` runs its entrypoint through the shell: "python"
        # must be this environment's, which has the project and its dependencies installed.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **ray_auth_env(settings),
    }
    if settings.serve_haproxy:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(settings.haproxy_stats_port)
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(settings.haproxy_metrics_port)
        # HAProxy's own error answers in the JSON envelope (see wealthalloc/runtime/haproxy_errors.py).
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(haproxy_errors.install(settings.data_dir / "haproxy"))
        env["RAY_SERVE_HAPROXY_TUNE_BUFSIZE"] = str(haproxy_errors.BUFSIZE)
    return env


def start_ray(settings: Settings, env: dict[str, str], *, timeout_s: float = 60) -> tuple[str, int]:
    """Start a local Ray head with its dashboard; returns the GCS address and the head's pid.

    ``ray start --block`` runs in its own session and owns every Ray process it
    starts, so stopping it stops this platform's Ray only, where ``ray stop``
    would kill every Ray on the machine (a test run's, another checkout's).
    """
    for port, what in ((settings.ray_port, "Ray's GCS"), (settings.dashboard_port, "the Ray dashboard")):
        if port_in_use("127.0.0.1", port):
            raise LaunchError(
                f"port {port} for {what} is already in use (another Ray? run `make stop` or `ray stop`)"
            )
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    args = [
        _bin("ray"),
        "start",
        "--head",
        "--block",
        f"--port={settings.ray_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={settings.dashboard_port}",
        "--include-dashboard=true",
        "--disable-usage-stats",
    ]
    pid = _ray_start(
        args, env, log_dir / "ray-head.log", (settings.ray_port, settings.dashboard_port), "Ray", timeout_s
    )
    return f"127.0.0.1:{settings.ray_port}", pid


def _ray_start(
    args: list[str], env: dict[str, str], log: Path, ports: tuple[int, ...], what: str, timeout_s: float
) -> int:
    """Run ``ray start --block`` in a session of its own, logging to ``log``, and wait until it listens
    on ``ports``; its pid. A start that fails or hangs is stopped, with everything it started."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while not all(port_in_use("127.0.0.1", port) for port in ports):
        if process.poll() is not None:
            raise LaunchError(f"{what}: `ray start` exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            stop_ray(process.pid)
            raise LaunchError(f"{what} did not start in {timeout_s:.0f} s; see {log}")
        time.sleep(0.5)
    return process.pid


# Below the kernel's ephemeral range (where every outgoing connection takes its local port) and
# above Ray's worker ports (10002-19999 by default).
_CHOSEN_PORTS_FROM = 20000
_HANDED_OUT: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port nobody holds now, for a server started a little later.

    Chosen below the ephemeral range: a port the kernel hands out for a bind to port 0 is one it
    also hands to outgoing connections, and on a busy machine (a Ray cluster starting, connection
    pools filling) one of those can take it in the seconds before the server binds it, which
    failed a worker node's or HAProxy's start. Outside that range only a server asking for the
    very port could.
    """
    top = _ephemeral_start() - 1
    if top <= _CHOSEN_PORTS_FROM:  # an unusual range: let the kernel choose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = random.randint(_CHOSEN_PORTS_FROM, top)
        if port not in _HANDED_OUT and _bindable(port):
            _HANDED_OUT.add(port)  # two servers of one start never get the same port
            return port
    raise LaunchError(f"no free TCP port between {_CHOSEN_PORTS_FROM} and {top}")


def _bindable(port: int) -> bool:
    """Whether a server could listen on ``port``, on every address, now."""
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


WORKER_OBJECT_STORE_BYTES = 256 * 1024 * 1024


def start_worker(
    settings: Settings,
    env: dict[str, str],
    index: int,
    *,
    num_cpus: int = 2,
    timeout_s: float = 60,
) -> WorkerNode:
    """Start Ray worker node ``index`` on this machine and join it to the head of ``start_ray``.

    Each worker is a raylet of its own, with its own object store and worker
    processes, in a session of its own so it can be killed alone (what losing a
    machine looks like to the cluster). Every port a raylet would otherwise take
    by default is chosen free, or a second raylet would collide with the head's.
    """
    log = worker_log(settings, index)
    log.parent.mkdir(parents=True, exist_ok=True)
    node_manager_port = free_port()
    args = [
        _bin("ray"),
        "start",
        f"--address=127.0.0.1:{settings.ray_port}",
        "--block",
        f"--num-cpus={num_cpus}",
        f"--object-store-memory={WORKER_OBJECT_STORE_BYTES}",
        f"--node-manager-port={node_manager_port}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        "--disable-usage-stats",
    ]
    pid = _ray_start(args, env, log, (node_manager_port,), f"worker node {index}", timeout_s)
    return WorkerNode(index=index, pid=pid, node_manager_port=node_manager_port)


def worker_log(settings: Settings, index: int) -> Path:
    """Where worker node ``index``'s ``ray start`` writes (every start of that number appends)."""
    return settings.data_dir / "logs" / f"ray-worker-{index}.log"


def add_worker(
    settings: Settings, state: RuntimeState, env: dict[str, str]
) -> tuple[RuntimeState, WorkerNode]:
    """Start one more worker node, numbered after every one started before (dead ones included), and
    save it in the state at once, so ``stop`` finds it even when a later step fails."""
    index = max((worker.index for worker in state.workers), default=0) + 1
    worker = start_worker(settings, env, index)
    return _saved_with(settings, state, worker), worker


def _saved_with(settings: Settings, state: RuntimeState, worker: WorkerNode) -> RuntimeState:
    """The state with ``worker`` in it (in place of an earlier worker of its number), saved."""
    others = tuple(w for w in state.workers if w.index != worker.index)
    state = dataclasses.replace(state, workers=(*others, worker))
    state.save(settings.data_dir)
    return state


def _exited(pid: int) -> bool:
    """Whether the process is gone (a zombie nobody has reaped yet counts as gone)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "empty log"


def join_workers(
    settings: Settings,
    state: RuntimeState,
    env: dict[str, str],
    new: tuple[WorkerNode, ...],
    *,
    count: int,
    timeout_s: float = 90,
    restarts: int = 2,
) -> RuntimeState:
    """Wait until the head sees ``count`` live nodes, the ``new`` workers among them; the state.

    A new worker whose ``ray start`` exits before its node has joined is started again under its
    number, at most ``restarts`` times in all: on a busy machine a raylet can die while it starts
    (a port chosen free is taken before it binds, its agent is late to register), and a person who
    asked for a cluster of ``count`` nodes wants that cluster, not the first attempt's error. A
    worker still running but not joined is waited for; the error names it and its log.
    """
    from wealthalloc.runtime.cluster_view import read_cluster

    deadline = time.monotonic() + timeout_s
    waiting = {worker.index: worker for worker in new}
    seen = 0
    while time.monotonic() < deadline:
        try:
            alive = read_cluster(f"127.0.0.1:{settings.ray_port}", settings.ray_namespace, env).alive_nodes
        except (RuntimeError, subprocess.TimeoutExpired):
            alive = ()
        seen = len(alive)
        joined = {node.node_manager_port for node in alive}
        waiting = {i: w for i, w in waiting.items() if w.node_manager_port not in joined}
        if seen >= count and not waiting:
            return state
        for index, worker in list(waiting.items()):
            if not _exited(worker.pid):
                continue
            log = worker_log(settings, index)
            if restarts == 0:
                raise LaunchError(
                    f"worker node {index} stopped before joining the cluster ({_last_line(log)}); see {log}"
                )
            restarts -= 1
            waiting[index] = start_worker(settings, env, index)
            state = _saved_with(settings, state, waiting[index])
        time.sleep(1)
    missing = ", ".join(
        f"worker node {i} ({'running' if not _exited(w.pid) else 'exited'}; see {worker_log(settings, i)})"
        for i, w in waiting.items()
    )
    raise LaunchError(
        f"the cluster has {seen} live node(s) after {timeout_s:.0f} s, not {count}"
        + (f"; not joined: {missing}" if missing else "")
    )


def stop_workers(workers: tuple[WorkerNode, ...]) -> int:
    """Stop the worker nodes, before the head: a head stopped first leaves them retrying to reach it."""
    return sum(stop_ray(worker.pid) for worker in workers)


def kill_worker(worker: WorkerNode) -> int:
    """Kill a worker node's raylet and every process under it at once, as a lost machine would go;
    returns how many processes died.

    The whole tree, not the process group: the raylet starts each worker process (where the node's
    actors run) in a session of its own, and a worker outliving its raylet would go on answering
    the callers already connected to it.
    """
    import psutil

    try:
        root = psutil.Process(worker.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=10)
    return len(tree)


def stop_haproxy(stats_port: int) -> None:
    """Stop the HAProxy that Serve started for this platform: the one holding its stats port.

    Serve spawns HAProxy outside Ray's process group, so stopping Ray can
    leave it running, holding ports the next start needs.
    """
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == stats_port and conn.pid:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(conn.pid)
                if process.name() == "haproxy":
                    process.terminate()
                    process.wait(5)


def stop_ray(pid: int, *, timeout_s: float = 10) -> bool:
    """Stop the Ray head that ``start_ray`` started, and everything it owns."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


_SECRET_ENV = frozenset({"WEALTHALLOC_SECRET_KEY", "WEALTHALLOC_OPERATIONS_TOKEN"})


def serve_config(settings: Settings, env: dict[str, str], *, nodes: int = 1) -> dict[str, Any]:
    """cluster/serve-config.yaml with this machine's host, port and environment filled in.

    On a cluster of several ``nodes`` the API runs one replica on each of at
    least two nodes, so losing a node leaves a replica answering while Serve
    starts its replacement.
    """
    config: dict[str, Any] = yaml.safe_load(SERVE_CONFIG.read_text())
    config.setdefault("http_options", {}).update({"host": settings.http_host, "port": settings.http_port})
    if nodes > 1:
        for app in config.get("applications", []):
            for deployment in app.get("deployments", []):
                if deployment.get("name") == "ApiIngress":
                    deployment["max_replicas_per_node"] = 1
                    autoscaling = deployment.setdefault("autoscaling_config", {})
                    autoscaling.update({"min_replicas": 2, "initial_replicas": 2, "max_replicas": nodes})
    # The secrets stay out: a Serve config is shown on the dashboard. Replicas
    # inherit them from the environment `ray start` was given.
    visible = {k: v for k, v in env.items() if k not in _SECRET_ENV}
    for app in config.get("applications", []):
        runtime_env = app.setdefault("runtime_env", {})
        runtime_env.setdefault("env_vars", {}).update(visible)
    return config


def deploy_serve(settings: Settings, env: dict[str, str], *, nodes: int = 1, timeout_s: float = 90) -> None:
    """Deploy cluster/serve-config.yaml (with this machine's values) on the local Ray.

    ``serve run --non-blocking`` talks to Ray's GCS like any driver; the
    dashboard's REST API (what ``serve deploy`` uses) asks for Ray's
    authentication token, which a local cluster need not have set up.
    """
    config = serve_config(settings, env, nodes=nodes)
    path = settings.data_dir / "serve-config.deployed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    args = [_bin("serve"), "run", str(path), "--non-blocking", "--address", f"127.0.0.1:{settings.ray_port}"]
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        result = subprocess.run(
            args, env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode == 0:
            return
        lines = (result.stderr or result.stdout).strip().splitlines()
        last_error = lines[-1] if lines else f"exit {result.returncode}"
        time.sleep(2)
    raise LaunchError(f"`serve run` failed: {last_error}")


def wait_for_health(
    api_url: str, *, timeout_s: float, on_wait: Any = None, token: str = ""
) -> dict[str, Any]:
    """Poll /health, then /health/ready, until both answer 200; raise naming what still fails.

    /health alone passes while shard actors are still being placed; a platform reported up
    answers its users' first calls from shards that are already running.

    With the operations ``token`` the answer is the whole report and names the failing checks;
    without it, the status only.
    """
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    report: dict[str, Any] = {}
    for path in ("/health", "/health/ready"):
        last = "no answer"
        while True:
            try:
                response = httpx.get(f"{api_url}{path}", timeout=5, headers=headers)
                body = response.json()
                if response.status_code == 200:
                    report = report or dict(body["data"])
                    break
                error = body.get("error", {})
                failing = error.get("details", {}).get("failing")
                last = error.get("message", f"HTTP {response.status_code}")
                last += f" {failing}" if failing else ""
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise LaunchError(f"{api_url}{path} did not answer 200 in {timeout_s:.0f} s: {last}")
            if on_wait is not None:
                on_wait(last)
            time.sleep(1)
    return report
