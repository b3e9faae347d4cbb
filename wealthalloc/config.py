"""The one settings object of WealthAlloc.

Every knob is read here and nowhere else: the environment (``WEALTHALLOC_*``),
then a ``.env`` file in the working directory, then the defaults below. Ray
workers and Serve replicas build their own ``Settings`` from the same
environment, so a value set when the cluster starts reaches every process.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VERSION = "0.1.0"

BrokerKind = Literal["paper", "ibkr"]
LogFormat = Literal["json", "console"]


class Settings(BaseSettings):
    """Configuration for every WealthAlloc process (CLI, actors, Serve replicas)."""

    model_config = SettingsConfigDict(
        env_prefix="WEALTHALLOC_",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Field(
        default=Path(".data"),
        description="Parquet prices, embedded database and Redis files, model registry.",
    )

    database_url: str = "postgresql://postgres@127.0.0.1:5432/wealthalloc"
    database_pool_min: int = Field(default=1, ge=0)
    database_pool_max: int = Field(default=10, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    embedded_services: bool = Field(
        default=True,
        description="Start embedded PostgreSQL/Redis under data_dir when the configured ones do not answer.",
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    dashboard_port: int = Field(default=8265, ge=1, le=65535)
    ray_port: int = Field(default=6389, ge=1, le=65535, description="Ray's GCS port (6379 is Redis's).")
    ray_address: str = Field(default="", description="Empty: a local Ray started by `wealthalloc serve`.")
    ray_namespace: str = "wealthalloc"
    serve_haproxy: bool = Field(
        default=True, description="Serve's HAProxy ingress instead of the default proxy."
    )
    haproxy_stats_port: int = Field(default=8404, ge=1, le=65535)
    haproxy_metrics_port: int = Field(default=9101, ge=1, le=65535)
    api_replicas: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    operations_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token for /metrics and /health's details (Prometheus, `wealthalloc doctor`),"
        " beside an admin's token; generated into data_dir by `wealthalloc serve` when empty.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = "json"
    otlp_endpoint: str = Field(
        default="",
        description="OpenTelemetry collector (OTLP over HTTP, e.g. http://otel-collector:4318) that every"
        " process sends its traces to; empty: no tracing, at no cost.",
    )

    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="JWT signing key; generated into data_dir on first run when empty.",
    )
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    jwt_previous_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "Retired signing keys by key id, still accepted for tokens they signed. After a rotation keep the"
            " old secret here (JSON: {kid: secret}) for access_token_minutes, then drop it."
        ),
    )
    access_token_minutes: int = Field(default=30, ge=1, le=24 * 60)
    fresh_login_minutes: int = Field(
        default=10,
        ge=1,
        le=24 * 60,
        description="MFA and API-key changes need a sign-in with the password at most this long ago.",
    )
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    api_key_days: int = Field(default=90, ge=1, le=365)
    lockout_threshold: int = Field(default=5, ge=1, description="Failed logins that lock an account.")
    lockout_minutes: int = Field(default=15, ge=1)
    login_ip_per_minute: int = Field(
        default=300,
        ge=1,
        description="Login attempts per client address per minute, against password spraying.",
    )
    rate_limit_standard: int = Field(default=60, ge=1, description="Requests per minute, standard tier.")
    rate_limit_premium: int = Field(default=120, ge=1, description="Requests per minute, premium tier.")
    rate_limit_api_key: int = Field(default=1000, ge=1, description="Requests per minute, per API key.")
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        description="Proxies in front of the API whose X-Forwarded-For entries are trusted.",
    )
    mfa_issuer: str = "WealthAlloc"

    broker: BrokerKind = "paper"
    ib_host: str = "127.0.0.1"
    ib_port: int = Field(default=4002, ge=1, le=65535)
    ib_client_id: int = Field(default=17, ge=0, description="The first client id of the connection pool.")
    ib_pool_size: int = Field(
        default=2, ge=1, le=8, description="IB connections, with client ids ib_client_id onward."
    )
    ib_account: str = Field(default="", description="Empty: the first managed account of the gateway.")
    ib_heartbeat_seconds: float = Field(default=30, gt=0)
    ib_reconnect_initial_seconds: float = Field(default=1, gt=0)
    ib_reconnect_max_seconds: float = Field(default=60, gt=0)
    ib_breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failed connects or heartbeats that open the breaker."
    )
    ib_order_retries: int = Field(
        default=3, ge=0, le=3, description="Resends of an order that provably did not reach the venue."
    )
    ib_request_timeout_seconds: float = Field(default=10, gt=0)

    # Linked accounts (docs/linked-accounts.md): account numbers sealed with AES-256-GCM.
    linked_account_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Key ring for account numbers (JSON {key id: base64 32-byte key}, oldest first): the last"
        " encrypts, all decrypt; `wealthalloc linked-accounts reencrypt` moves rows to the last one.",
    )
    linked_account_index_key: SecretStr = Field(
        default=SecretStr(""),
        description="Base64 32-byte HMAC key of the account-number blind index; never rotated with the ring.",
    )
    linked_ib_client_id: int = Field(
        default=200, ge=0, description="The first IB client id of the linked accounts' connections."
    )
    linked_sync_hours: float = Field(
        default=24, gt=0, description="How often every linked IBKR account is synced without being asked."
    )
    linked_max_connections: int = Field(
        default=64, ge=1, description="IB connections the linked accounts may hold at once, all users."
    )
    paper_commission_per_share: Decimal = Field(default=Decimal("0.005"), ge=0)
    paper_commission_minimum: Decimal = Field(default=Decimal("1.00"), ge=0)
    paper_commission_max_pct: Decimal = Field(
        default=Decimal("0.01"), ge=0, description="Commission cap as a fraction of the trade value."
    )
    paper_max_fill_notional: Decimal = Field(
        default=Decimal("250000"),
        gt=0,
        description="Largest value filled in one step; bigger orders fill in parts, one per tick.",
    )
    paper_spread_bps: Decimal = Field(default=Decimal("2"), ge=0, description="Quoted bid/ask spread.")
    order_price_collar: Decimal = Field(
        default=Decimal("0.05"),
        ge=0,
        le=1,
        description="Price protection: market and stop buys never fill this far above the reference price.",
    )
    broker_tick_seconds: float = Field(
        default=1.0, gt=0, description="How often open orders are checked against the market."
    )
    quote_cache_seconds: int = Field(default=60, ge=1)

    market_clock_date: date | None = Field(
        default=None,
        description="Pin the market clock to this trading day of the data instead of mapping today onto it.",
    )
    shard_count: int = Field(
        default=2,
        ge=1,
        description="PortfolioShard actors. Each is a Python process: more than the cores they can use "
        "only adds Ray's per-process work and splits the commit groups (docs/order-path.md). The same "
        "number on every node of a cluster, since it decides which shard owns a user.",
    )
    slot_count: int = Field(default=4096, ge=1)
    shard_max_books: int = Field(default=10_000, ge=1, description="Books one shard keeps in memory (LRU).")
    shard_commit_group: int = Field(
        default=64,
        ge=1,
        description="Most changes of different users a shard commits in one transaction (1: each alone).",
    )
    shard_idle_seconds: float = Field(
        default=900, gt=0, description="A book untouched this long leaves memory."
    )
    model_registry_uri: str = Field(default="", description="Empty: data_dir/models.")
    backup_dir: str = Field(
        default="", description="Where `wealthalloc backup` writes. Empty: data_dir/backups."
    )
    # The AnomalyDetector Serve deployment (serve_apps/anomaly). cluster/serve-config.yaml's
    # autoscaling_config, when present, wins over the replica settings here.
    anomaly_num_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per detector replica.")
    anomaly_num_gpus: float = Field(
        default=0.0, ge=0, description="GPUs per detector replica (a fraction shares one); 0 scores on CPU."
    )
    anomaly_replicas: int = Field(
        default=1, ge=1, description="Detector replicas (the minimum when autoscaling)."
    )
    anomaly_max_replicas: int = Field(
        default=1, ge=1, description="Above anomaly_replicas, Serve autoscales the detector up to this many."
    )
    anomaly_target_ongoing_requests: float = Field(
        default=16, gt=0, description="Requests per detector replica the autoscaler aims for."
    )
    anomaly_max_ongoing_requests: int = Field(
        default=256, ge=1, description="Requests one replica accepts at once."
    )
    anomaly_max_batch_size: int = Field(
        default=256, ge=1, description="Most windows per model call; requests are merged up to it."
    )
    anomaly_batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, description="How long a batch waits for more requests before it runs."
    )
    anomaly_max_windows: int = Field(
        default=1024, ge=1, le=4096, description="Most windows one scoring request may carry."
    )
    anomaly_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often detector replicas look for a newly promoted model version."
    )
    anomaly_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long the API waits for the detector before answering 503."
    )
    tune_cpus_per_trial: float = Field(default=1, gt=0, description="CPUs Ray Tune gives each trial.")
    tune_gpus_per_trial: float = Field(
        default=0,
        ge=0,
        description="GPUs per trial; 0 gives each trial one GPU when the cluster has any, none otherwise.",
    )

    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts, IPs or CIDRs (*.suffix allowed) webhook URLs may point at although not public;"
        " only these may use http. Each names its port (host:8443, [v6]:8443, host:*); without one only"
        " the scheme's default port is allowed. The platform's own service ports are never allowed.",
    )
    webhook_timeout_seconds: float = Field(default=10, gt=0, description="Time allowed for one delivery.")
    webhook_max_attempts: int = Field(default=6, ge=1, description="Attempts before a delivery is failed.")
    webhook_retry_initial_seconds: float = Field(
        default=30, gt=0, description="First retry delay; it doubles after each failed attempt."
    )
    webhook_retry_max_seconds: float = Field(default=3600, gt=0)
    webhook_max_per_user: int = Field(default=20, ge=1)
    event_stream_max_length: int = Field(
        default=100_000, ge=100, description="Entries kept per Redis stream (about); the outbox keeps all."
    )
    event_stream_max_age_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="Stream entries older than this are trimmed."
    )
    event_user_stream_max_length: int = Field(
        default=1000,
        ge=10,
        description="Entries kept (about) in each user's own stream, what a socket resumes from.",
    )
    event_linger_ms: float = Field(
        default=20,
        ge=0,
        description="How long the event bus's relay and consumers wait after a batch, so the next "
        "batch gathers more events (one round trip and commit for many instead of one each).",
    )
    stream_queue_size: int = Field(
        default=1000, ge=1, description="Events a WebSocket may fall behind before it is closed (4429)."
    )
    stream_heartbeat_seconds: float = Field(
        default=20,
        gt=0,
        description="A WebSocket is pinged this often and closed (4408) after two silent ones.",
    )
    stream_auth_timeout_seconds: float = Field(
        default=10, gt=0, description="Time a new WebSocket has to send its auth message."
    )
    stream_auth_check_seconds: float = Field(
        default=2, gt=0, description="How often a replica checks its sockets' sessions for a sign-out."
    )
    alert_max_per_user: int = Field(default=100, ge=1, description="Armed price alerts one user may hold.")
    webhook_incoming_secrets: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description='Shared secrets per incoming source, newest first (JSON {"broker": ["new", "old"]}).',
    )
    webhook_incoming_tolerance_seconds: int = Field(default=300, ge=1)

    # Notifications (docs/notifications.md): e-mail through SMTP, off while smtp_host is empty.
    smtp_host: str = Field(default="", description="SMTP server for notification e-mails; empty: none sent.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = Field(default="", description="Empty: the server is used without logging in.")
    smtp_password: SecretStr = Field(default=SecretStr(""))
    smtp_from: str = Field(
        default="WealthAlloc <notifications@localhost>", description="The From of notification e-mails."
    )
    smtp_starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS first.")
    smtp_timeout_seconds: float = Field(default=10, gt=0, description="Time allowed for one SMTP exchange.")
    smtp_max_attempts: int = Field(default=5, ge=1, description="Attempts before an e-mail is given up.")
    smtp_retry_initial_seconds: float = Field(
        default=30, gt=0, description="First retry delay of an e-mail; it doubles after each failure."
    )
    smtp_retry_max_seconds: float = Field(default=3600, gt=0)
    smtp_max_age_seconds: float = Field(
        default=86_400, gt=0, description="A notification older than this is no longer e-mailed."
    )
    public_base_url: str = Field(
        default="", description="Where people open the web app (links in e-mails); empty: no links."
    )
    notification_sign_in_days: int = Field(
        default=90, ge=1, description="A sign-in from an address and device unseen this long is a new one."
    )

    harvest_min_loss: Decimal = Field(
        default=Decimal("100"), ge=0, description="Smallest unrealised loss (USD) worth harvesting."
    )
    harvest_min_loss_pct: Decimal = Field(
        default=Decimal("0.05"), ge=0, le=1, description="Smallest loss as a fraction of the lots' basis."
    )

    # Recommendations (wealthalloc/domain/recommendations.py says what each limit does).
    recommendations_max_age_seconds: int = Field(
        default=3600,
        ge=1,
        description="Listing recommendations reruns a portfolio's when its last run is older than this"
        " (or its book, the market day or the risk tolerance changed).",
    )
    recommendations_max_position_weight: Decimal = Field(
        default=Decimal("0.25"),
        gt=0,
        le=1,
        description="A holding above this share of the portfolio gets a reduce_risk; the optimiser's bound.",
    )
    recommendations_max_hhi: Decimal = Field(
        default=Decimal("0.30"),
        gt=0,
        le=1,
        description="HHI of the holdings' weights above which one dominant holding is trimmed.",
    )
    recommendations_min_confidence: Decimal = Field(
        default=Decimal("0.55"), ge=0, le=1, description="Rebalances and signals below this are not offered."
    )
    recommendations_lookback_days: int = Field(
        default=504, ge=260, le=2520, description="Trading days of history the recommender measures on."
    )
    recommendations_snooze_days: int = Field(
        default=7,
        ge=0,
        description="An accepted or dismissed recommendation is not offered again (same kind and symbol)"
        " for this many days.",
    )
    recommendations_anomaly_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a run waits for the anomaly detector before recommending without its flags.",
    )

    # Market data providers (wealthalloc/marketdata/providers): live quotes ahead of the bundled history.
    # With no API key set, the chain is the platform's original one: IBKR or bundled closes, then the cache.
    market_data_chain: list[Literal["ibkr", "polygon", "alpha_vantage", "cache", "bundled"]] = Field(
        default=["ibkr", "polygon", "alpha_vantage", "cache", "bundled"],
        description="The order quotes are asked in (JSON list). A provider without its API key is skipped,"
        " ibkr only counts when the broker is ibkr, cache needs Redis.",
    )
    polygon_api_key: SecretStr = Field(
        default=SecretStr(""), description="Polygon.io API key; empty leaves Polygon out of the chain."
    )
    polygon_base_url: str = Field(
        default="https://api.polygon.io", description="Polygon's REST root (tests point it at a fake server)."
    )
    polygon_requests_per_minute: int = Field(
        default=5000, ge=1, description="Polygon's documented budget, shared by every process through Redis."
    )
    polygon_last_trade: bool = Field(
        default=True,
        description="Quote from /v2/last/trade (real-time plans); false, or a 403, uses the previous close.",
    )
    alpha_vantage_api_key: SecretStr = Field(
        default=SecretStr(""), description="Alpha Vantage API key; empty leaves it out of the chain."
    )
    alpha_vantage_base_url: str = Field(
        default="https://www.alphavantage.co", description="Alpha Vantage's root (its API is at /query)."
    )
    alpha_vantage_requests_per_minute: int = Field(
        default=5, ge=1, description="Alpha Vantage's budget: 5 a minute on a free key."
    )
    market_data_timeout_seconds: float = Field(
        default=2.5, gt=0, description="Longest wait for one provider answer before it counts as failed."
    )
    market_data_retries: int = Field(
        default=1, ge=0, le=5, description="Retries of a provider call after a timeout, network error or 5xx."
    )
    market_data_backoff_initial_seconds: float = Field(
        default=0.2, gt=0, description="First retry delay; it doubles per retry (with jitter)."
    )
    market_data_backoff_max_seconds: float = Field(default=4.0, gt=0, description="Longest retry delay.")
    market_data_breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failed calls that open a provider's circuit breaker."
    )
    market_data_breaker_cooldown_seconds: float = Field(
        default=30, ge=0, description="How long an open breaker skips its provider before one trial call."
    )
    market_data_stale_seconds: float = Field(
        default=900,
        ge=0,
        description="A provider quote whose price is older than this is marked stale; 0: only cached ones.",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Ray workers run in another working directory; a relative path would
        # point somewhere else in each of them.
        return value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def prices_dir(self) -> Path:
        return self.data_dir / "prices"

    @property
    def registry_uri(self) -> str:
        return self.model_registry_uri or str(self.data_dir / "models")

    @property
    def backups_dir(self) -> Path:
        return Path(self.backup_dir).expanduser().resolve() if self.backup_dir else self.data_dir / "backups"

    @property
    def api_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
