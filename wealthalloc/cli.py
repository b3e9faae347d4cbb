"""The ``wealthalloc`` command: set up, run and inspect the platform.

Every command fails with one line on stderr and a non-zero exit when
something it needs is missing (a database that does not answer, a port in
use, a platform already running): the person at the terminal gets the reason,
not a traceback.
"""

from __future__ import annotations

import functools
import getpass
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from wealthalloc.config import Settings

if TYPE_CHECKING:
    from wealthalloc.ml.registry import ModelRegistry
    from wealthalloc.runtime.launcher import RuntimeState
    from wealthalloc.runtime.services import ResolvedService

app = typer.Typer(
    name="wealthalloc",
    help="WealthAlloc: portfolios, tax lots, trading and tax-loss harvesting on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Market data: convert the bundled price history to Parquet.", no_args_is_help=True
)
demo_app = typer.Typer(help="Demo users, portfolios and lots.", no_args_is_help=True)
users_app = typer.Typer(help="User administration.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
events_app = typer.Typer(help="The event outbox and its streams.", no_args_is_help=True)
tax_app = typer.Typer(
    help="Tax reports from a trade history (no database needed) and the daily harvest scan.",
    no_args_is_help=True,
)
models_app = typer.Typer(
    help="The anomaly model registry: list, describe, promote, train the default model.", no_args_is_help=True
)
app.add_typer(events_app, name="events")
app.add_typer(data_app, name="data")
app.add_typer(audit_app, name="audit")
app.add_typer(demo_app, name="demo")
app.add_typer(users_app, name="users")
app.add_typer(tax_app, name="tax")
backup_app = typer.Typer(
    help="Backups of the database and the model registry: create, list, verify, restore.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
app.add_typer(backup_app, name="backup")
linked_app = typer.Typer(help="Linked brokerage accounts.", no_args_is_help=True)
app.add_typer(linked_app, name="linked-accounts")
cluster_app = typer.Typer(
    help="The local Ray cluster that `serve --workers N` (make cluster) started.", no_args_is_help=True
)
app.add_typer(cluster_app, name="cluster")
ledger_app = typer.Typer(help="The money invariants, checked from PostgreSQL.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    pass


def _friendly(func: F) -> F:
    """Turn the failures a person can fix into one line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import psycopg
        import pydantic
        import redis

        from wealthalloc.marketdata import MarketDataError
        from wealthalloc.runtime.launcher import LaunchError
        from wealthalloc.runtime.services import ServiceError
        from wealthalloc.storage.migrate import MigrationError

        try:
            return func(*args, **kwargs)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            field = "WEALTHALLOC_" + str(err["loc"][0]).upper() if err.get("loc") else "settings"
            _fail(f"invalid setting {field}: {err['msg']}")
        except psycopg.Error as exc:
            _fail(f"database: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
        except redis.RedisError as exc:
            _fail(f"redis: {exc}")
        except (CliError, LaunchError, ServiceError, MigrationError, MarketDataError) as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted")

    return wrapper  # type: ignore[return-value]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def _settings(**overrides: Any) -> Settings:
    from wealthalloc.logging import configure_logging

    settings = Settings(**overrides)
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level, settings.log_format)
    return settings


def _say(message: str) -> None:
    typer.echo(message)


def _reachable_database(settings: Settings) -> str:
    """The configured database, or the embedded one that ``wealthalloc serve`` started."""
    from wealthalloc.runtime.launcher import RuntimeState
    from wealthalloc.runtime.services import postgres_problem

    problem = postgres_problem(settings.database_url)
    if problem is None:
        return settings.database_url
    state = RuntimeState.load(settings.data_dir)
    if state is not None and state.embedded_postgres and postgres_problem(state.database_url) is None:
        return state.database_url
    raise CliError(f"PostgreSQL at {settings.database_url} does not answer: {problem}")


def _load_market(settings: Settings) -> tuple[Any, Any]:
    from wealthalloc.marketdata import MarketClock, PriceHistory

    prices = PriceHistory(settings.prices_dir)
    if not prices.symbols():
        raise CliError(f"no prices in {settings.prices_dir}: run `wealthalloc data load` first")
    return prices, MarketClock(prices.trading_days(), pinned=settings.market_clock_date)


@app.command()
@_friendly
def migrate() -> None:
    """Create the database if needed and apply pending schema migrations (safe to run twice)."""
    from wealthalloc.storage.migrate import ensure_database
    from wealthalloc.storage.migrate import migrate as run_migrations

    settings = _settings()
    url = _reachable_database(settings)
    if ensure_database(url):
        _say("created the database")
    report = run_migrations(url)
    if report.applied:
        _say(f"applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
    else:
        _say(f"schema up to date ({report.already_applied} migration(s) applied before)")


@data_app.command("load")
@_friendly
def data_load(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Convert skfolio's bundled price history (20 S&P 500 stocks, the index, 5 factor ETFs) to Parquet."""
    from wealthalloc.marketdata import load_bundled_datasets

    settings = _settings()
    report = load_bundled_datasets(settings.prices_dir, progress=not quiet)
    _say(
        f"{len(report.symbols)} symbols, {report.rows} rows, {report.first_date} .. {report.last_date}"
        f" in {settings.prices_dir}"
    )


# Market data providers: `wealthalloc data fetch` ---------------------------------------------------


@data_app.command("fetch")
@_friendly
def data_fetch(
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols, e.g. AAPL,MSFT.")],
    since: Annotated[str, typer.Option(help="The first day to fetch, YYYY-MM-DD.")],
    until: Annotated[str | None, typer.Option(help="The last day, YYYY-MM-DD (default: today).")] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="polygon or alpha_vantage (default: the first with an API key, in chain order)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fetch daily bars from Polygon or Alpha Vantage into the Parquet price store (merged, per symbol).

    Runs at the provider's pace: the shared rate limit (5 a minute on a free
    Alpha Vantage key) is waited for, not failed on.
    """
    import asyncio
    from datetime import date

    settings = _settings()
    names = [name.strip().upper() for name in symbols.split(",") if name.strip()]
    if not names:
        raise CliError("--symbols names no symbol")
    try:
        first = date.fromisoformat(since)
        last = date.fromisoformat(until) if until else date.today()
    except ValueError as exc:
        raise CliError(f"dates are YYYY-MM-DD: {exc}") from exc
    if first > last:
        raise CliError(f"--since {first} is after --until {last}")
    summary = asyncio.run(_fetch_bars(settings, names, first, last, provider, progress=not quiet))
    for report in summary.written:
        _say(
            f"{report.symbol}: {report.fetched} day(s) {report.first} .. {report.last}"
            f" from {summary.provider}, {report.total} in {report.path}"
        )
    for symbol, reason in summary.failed.items():
        typer.secho(f"{symbol}: {reason}", err=True, fg=typer.colors.YELLOW)
    if not summary.written:
        raise CliError(f"nothing fetched from {summary.provider}")


async def _fetch_bars(
    settings: Settings, symbols: list[str], since: Any, until: Any, provider: str | None, *, progress: bool
) -> Any:
    from wealthalloc.marketdata.providers import SharedLimiter, fetch_history, history_provider, http_client
    from wealthalloc.storage.redis_client import async_redis

    redis: Any = async_redis(settings)
    try:
        await redis.ping()
    except Exception:  # the budget is then this process's own: still within the provider's limit
        await redis.aclose()
        redis = None
    try:
        async with http_client(settings) as http:
            source = history_provider(settings, http=http, limiter=SharedLimiter(redis), name=provider)
            return await fetch_history(
                source, symbols, since=since, until=until, prices_dir=settings.prices_dir, progress=progress
            )
    finally:
        if redis is not None:
            await redis.aclose()


@demo_app.command("seed")
@_friendly
def demo_seed() -> None:
    """Create the demo investor, advisor and admin with portfolios and lots (idempotent)."""
    from wealthalloc.demo.seed import seed_demo

    settings = _settings()
    url = _reachable_database(settings)
    prices, clock = _load_market(settings)
    report = seed_demo(url, prices=prices, clock=clock, bcrypt_rounds=settings.bcrypt_rounds)
    _say(f"demo data: {report}")


@users_app.command("create-admin")
@_friendly
def create_admin_cmd(
    email: Annotated[str, typer.Option(help="The admin's login email.")],
    password: Annotated[
        str | None, typer.Option(help="Omit to be asked without echo (preferred over the command line).")
    ] = None,
    full_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Create an administrator account."""
    from wealthalloc.demo.seed import create_admin

    settings = _settings()
    url = _reachable_database(settings)
    if password is None:
        if not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Repeat: "):
                raise CliError("the passwords differ")
    from wealthalloc.accounts.emails import InvalidEmail, normalise_email
    from wealthalloc.security.password_policy import password_problems

    try:
        email = normalise_email(email)
    except InvalidEmail as exc:
        raise CliError(f"the email is not valid: {exc}") from exc
    problems = password_problems(password, email=email)
    if problems:
        raise CliError(f"the password {'; '.join(problems)}")
    user_id = create_admin(
        url, email=email, password=password, full_name=full_name, bcrypt_rounds=settings.bcrypt_rounds
    )
    _say(f"admin {email} ({user_id})")


@audit_app.command("verify")
@_friendly
def audit_verify() -> None:
    """Recompute every audit row's hash and walk the chain: exit 1 and say where when it was tampered with."""
    import psycopg
    from psycopg.rows import dict_row

    from wealthalloc.events.audit_chain import verify_chain
    from wealthalloc.storage.audit import iter_chain

    settings = _settings()
    url = _reachable_database(settings)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        report = verify_chain(iter_chain(conn))
    if not report.intact:
        for problem in report.problems[:20]:
            typer.echo(f"  {problem}", err=True)
        raise CliError(
            f"the audit chain is broken ({len(report.problems)} problem(s) in {report.entries} entries)"
        )
    _say(f"audit chain intact: {report.entries} entries")


@ledger_app.command("check")
@_friendly
def ledger_check(
    users: Annotated[
        list[str] | None, typer.Option("--user", help="Check this user's portfolios only (repeatable).")
    ] = None,
) -> None:
    """Prove the money adds up: cash = its movements, each fill moved cash once, fills = the order's
    filled quantity, holdings = open lots. Exit 1 naming every discrepancy."""
    import uuid

    from wealthalloc.storage.ledger_check import check_ledger

    try:
        chosen = [uuid.UUID(user) for user in users] if users else None
    except ValueError as exc:
        raise CliError(f"--user takes a user id: {exc}") from exc
    report = check_ledger(_reachable_database(_settings()), chosen)
    for problem in report.discrepancies[:50]:
        typer.echo(f"  {problem.check}: portfolio {problem.portfolio_id}: {problem.detail}", err=True)
    if not report.balanced:
        raise CliError(
            f"the ledger does not add up: {len(report.discrepancies)} discrepancy(ies)"
            f" in {report.portfolios} portfolio(s)"
        )
    _say(f"ledger balanced: {report.portfolios} portfolio(s)")


@events_app.command("replay")
@_friendly
def events_replay(
    from_sequence: Annotated[
        int, typer.Option("--from", min=1, help="The first outbox sequence number to publish.")
    ],
) -> None:
    """Publish every outbox event from a sequence number on to its stream again (consumers deduplicate)."""
    import asyncio

    from wealthalloc.events.relay import OutboxRelay
    from wealthalloc.runtime.services import redis_problem
    from wealthalloc.storage.postgres import async_pool
    from wealthalloc.storage.redis_client import async_redis

    settings = _settings()
    url = _reachable_database(settings)
    problem = redis_problem(settings.redis_url)
    if problem is not None:
        raise CliError(f"Redis at {settings.redis_url} does not answer: {problem}")

    async def replay() -> int:
        pool = async_pool(settings.model_copy(update={"database_url": url}), name="cli-replay")
        await pool.open()
        client = async_redis(settings)
        try:
            relay = OutboxRelay.from_settings(settings, pool=pool, redis=client)
            return await relay.replay(from_sequence=from_sequence)
        finally:
            await client.aclose()
            await pool.close()

    _say(f"replayed {asyncio.run(replay())} event(s) from sequence {from_sequence}")


@tax_app.command("report")
@_friendly
def tax_report(
    transactions: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="CSV with the header date,account_id,account_type,symbol,side,quantity,price"
            " (and optionally fees, currency).",
        ),
    ],
    lot_method: Annotated[
        Literal["fifo", "hifo"], typer.Option(help="Which lots each sale relieves.")
    ] = "fifo",
    year: Annotated[int | None, typer.Option(help="The tax year to show; every year when omitted.")] = None,
    filing_status: Annotated[
        Literal["single", "married_joint", "married_separate", "head_of_household"],
        typer.Option(help="Decides the deduction limit: 3,000, or 1,500 married filing separately."),
    ] = "single",
    output: Annotated[
        Literal["table", "json", "csv", "pdf"],
        typer.Option("--format", help="table or json (the report), csv or pdf (Form 8949 of one year)."),
    ] = "table",
    output_path: Annotated[
        Path | None,
        typer.Option("--output", dir_okay=False, help="Write here instead of stdout (required for pdf)."),
    ] = None,
    box_basis: Annotated[
        Literal["reported", "not-reported", "no-1099b"],
        typer.Option(
            help="What your 1099-B says of the basis, which picks the Form 8949 box: reported (A/D),"
            " not-reported (B/E) or no-1099b (C/F)."
        ),
    ] = "reported",
    taxpayer: Annotated[str, typer.Option(help="Name(s) shown on the return, printed on the PDF.")] = "",
    identity_groups: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="CSV group_name,symbol of substantially identical securities."
        ),
    ] = None,
    carryforward_short: Annotated[
        str, typer.Option(help="Short-term capital loss carried into the history's first year, e.g. 1200.00.")
    ] = "0",
    carryforward_long: Annotated[
        str, typer.Option(help="Long-term capital loss carried into the history's first year.")
    ] = "0",
    sort: Annotated[
        bool, typer.Option(help="Sort rows by date instead of refusing a file out of order.")
    ] = False,
) -> None:
    """Form 8949 rows and Schedule D totals, wash sales across accounts applied.

    Symbols are checked against the prices in the data directory
    (WEALTHALLOC_DATA_DIR) when there are any; any well-formed ticker is
    accepted otherwise. A file that cannot be used exits with code 2 and the
    line numbers of its problems.

    csv and pdf give Form 8949 of --year (by default the last year with a
    sale), every sale in the box --box-basis picks; the pdf ends with the
    Schedule D summary.
    """
    import json
    from datetime import date
    from decimal import Decimal, InvalidOperation

    from wealthalloc.domain.gains_report import CapitalLossCarryforward, FilingStatus
    from wealthalloc.domain.lots import LotMethod
    from wealthalloc.domain.tax_forms import (
        BasisReporting,
        box_totals,
        boxed_rows,
        same_reporting,
        schedule_d,
    )
    from wealthalloc.domain.wash_sale import InvalidHistory
    from wealthalloc.marketdata import PriceHistory
    from wealthalloc.tax import TransactionsCsvError, read_identity_groups_csv, read_transactions_csv
    from wealthalloc.tax.form_csv import form_8949_csv
    from wealthalloc.tax.form_pdf import form_8949_pdf
    from wealthalloc.tax.report import report_dict, report_for, report_table

    settings = _settings()
    known = PriceHistory(settings.prices_dir).symbols() or None
    try:
        carried = CapitalLossCarryforward(short=Decimal(carryforward_short), long=Decimal(carryforward_long))
        groups = read_identity_groups_csv(identity_groups) if identity_groups else None
        history = read_transactions_csv(transactions, today=date.today(), known_symbols=known, sort=sort)
        realization, report = report_for(
            history,
            lot_method=LotMethod(lot_method),
            year=year,
            filing_status=FilingStatus(filing_status),
            prior_carryforward=carried,
            groups=groups,
        )
    except (TransactionsCsvError, InvalidHistory, InvalidOperation, ValueError, OSError) as exc:  # noqa: B014
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from exc
    if output == "pdf" and output_path is None:
        _fail("--format pdf needs --output PATH")
    if output in ("table", "json"):
        text = json.dumps(report_dict(report), indent=2) if output == "json" else report_table(report)
        _emit(text, output_path)
        return
    if not report.totals:
        _fail("no reportable sales: there is no Form 8949 to write")
    form_year = year if year is not None else report.totals[-1].year
    [year_totals] = [totals for totals in report.totals if totals.year == form_year]
    rows = boxed_rows(
        realization.realized, year=form_year, reporting=same_reporting(BasisReporting(box_basis))
    )
    if output == "csv":
        _emit(form_8949_csv(rows, year=form_year), output_path)
        return
    assert output_path is not None
    schedule = schedule_d(box_totals(rows), year_totals)
    try:
        output_path.write_bytes(form_8949_pdf(rows, year=form_year, taxpayer=taxpayer, schedule=schedule))
    except OSError as exc:
        _fail(f"{output_path}: {exc.strerror or exc}")
    _say(f"wrote Form 8949 for {form_year} ({len(rows)} rows) to {output_path}")


def _emit(text: str, path: Path | None) -> None:
    """Text to stdout, or to ``path`` when given (a failure to write is one line)."""
    if path is None:
        _say(text.rstrip("\r\n"))
        return
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8", newline="")
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")


@tax_app.command("scan")
@_friendly
def tax_scan(
    day: Annotated[
        str | None, typer.Option(help="Market day to scan for, YYYY-MM-DD (default: the market's today).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Users per Ray task.")] = 500,
    max_in_flight: Annotated[int, typer.Option(min=1, help="Ray tasks running at once.")] = 4,
    use_ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="Scan on Ray (the running platform's, else a local one).")
    ] = True,
) -> None:
    """The daily harvest scan: every user's opportunities and their tax_harvests.identified events.

    Safe to rerun: a user already scanned for the day is skipped. The same job as
    `python -m actors.harvest_scan` (what `ray job submit` runs on a cluster).
    """
    import json
    from datetime import date

    from actors.harvest_scan import run
    from wealthalloc.runtime.launcher import RuntimeState

    settings = _settings()
    settings = settings.model_copy(update={"database_url": _reachable_database(settings)})
    try:
        scan_day = date.fromisoformat(day) if day else None
    except ValueError as exc:
        raise CliError(f"--day {day!r} is not a date (YYYY-MM-DD)") from exc
    if use_ray:
        import ray

        state = RuntimeState.load(settings.data_dir)
        address = state.ray_address if state is not None else None
        ray.init(address=address, namespace=settings.ray_namespace, log_to_driver=False)
    report = run(settings, day=scan_day, batch_size=batch_size, max_in_flight=max_in_flight, use_ray=use_ray)
    _say(json.dumps(report.as_dict()))


RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Registry directory or URI (default: WEALTHALLOC_MODEL_REGISTRY_URI, else data_dir/models).",
    ),
]


def _registry(settings: Settings, uri: str | None) -> ModelRegistry:
    from wealthalloc.ml.registry import ModelRegistry

    return ModelRegistry(uri or settings.registry_uri)


@models_app.command("list")
@_friendly
def models_list(registry_uri: RegistryOption = None) -> None:
    """Every version, oldest first: when it was trained, which is promoted (*), its threshold and scores.

    VAL_LOSS is the validation reconstruction loss; AE_F1 and AE_PR_AUC are
    the autoencoder's on the held-out period with injected anomalies (see
    docs/model-card.md), ``-`` for a version published without evaluation.
    """
    from training.evaluate import AUTOENCODER

    registry = _registry(_settings(), registry_uri)
    infos = registry.list_versions()
    if not infos:
        _say(f"no model versions in {registry.uri} (train one: wealthalloc models train-default)")
        return

    def number(value: float | None, digits: int = 4) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [("VERSION", "CREATED", "PROMOTED", "THRESHOLD", "VAL_LOSS", "AE_F1", "AE_PR_AUC")]
    for info in infos:
        rows.append(
            (
                info.version,
                info.created_at[:19].replace("T", " ") or "-",
                "*" if info.promoted else "",
                number(info.threshold),
                number(info.metrics.get("val_loss")),
                number(info.evaluation_metric(AUTOENCODER, "f1"), 3),
                number(info.evaluation_metric(AUTOENCODER, "pr_auc"), 3),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        _say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for info in infos:
        if info.problem:
            typer.secho(f"warning: {info.version}: {info.problem}", err=True, fg=typer.colors.YELLOW)


@models_app.command("promote")
@_friendly
def models_promote(
    version: Annotated[str, typer.Argument(help="The version id, as `wealthalloc models list` shows it.")],
    registry_uri: RegistryOption = None,
) -> None:
    """Make VERSION the one serving loads (a rollback is the promotion of an older version)."""
    from wealthalloc.ml.registry import RegistryError

    registry = _registry(_settings(), registry_uri)
    previous = registry.promoted()
    try:
        registry.promote(version)
    except RegistryError as exc:
        raise CliError(str(exc)) from exc
    _say(f"promoted {version} (was {previous or 'none'}); the anomaly detector loads it on its next reload")


@models_app.command("describe")
@_friendly
def models_describe(
    version: Annotated[str, typer.Argument(help="The version id.")],
    registry_uri: RegistryOption = None,
) -> None:
    """Print VERSION's metadata as JSON: config, features, threshold, metrics, data hash, evaluation."""
    import json

    from wealthalloc.ml.registry import RegistryError

    registry = _registry(_settings(), registry_uri)
    try:
        metadata = registry.describe(version)
    except RegistryError as exc:
        raise CliError(str(exc)) from exc
    _say(json.dumps(metadata, indent=2, sort_keys=True))


@models_app.command("train-default")
@_friendly
def models_train_default(
    force: Annotated[
        bool, typer.Option("--force", help="Train and promote even when a version is promoted already.")
    ] = False,
) -> None:
    """Train, evaluate, publish and promote the small default model (about a minute on CPU).

    What `wealthalloc serve` does on a machine whose registry has no promoted
    version; tuned models come from `python -m training.tune`.
    """
    from training.default_model import ensure_default_model

    settings = _settings()
    version = ensure_default_model(settings, progress=sys.stderr.isatty(), force=force)
    if version is None:
        promoted = _registry(settings, None).promoted()
        _say(f"{promoted} is promoted already in {settings.registry_uri} (--force trains a new one)")
        return
    _say(f"trained, published and promoted {version} in {settings.registry_uri}")


def _default_model(settings: Settings) -> str:
    """Train the default anomaly model when no version is promoted, so a fresh machine scores anomalies."""
    from training.default_model import ensure_default_model

    started = time.monotonic()
    version = ensure_default_model(settings, progress=sys.stderr.isatty())
    if version is None:
        return f"{_registry(settings, None).promoted()} promoted"
    return f"trained and promoted {version} in {time.monotonic() - started:.0f} s"


def _origin(embedded: bool, where: Path) -> str:
    return f"embedded, started under {where}" if embedded else "configured server"


DEMO_LOGINS = (
    ("investor", "demo@wealthalloc.dev", "Demo-Investor-2026"),
    ("advisor", "advisor@wealthalloc.dev", "Demo-Advisor-2026"),
    ("admin", "admin@wealthalloc.dev", "Demo-Admin-2026"),
)


@app.command()
@_friendly
def serve(
    health_timeout: Annotated[float, typer.Option(help="Seconds to wait for /health.")] = 180,
    skip_setup: Annotated[bool, typer.Option(help="Skip migrate, data load and demo seed.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            max=8,
            help="Ray worker nodes to start beside the head on this machine: a local multi-node cluster.",
        ),
    ] = 0,
) -> None:
    """Bring the platform up: services, schema, data, demo, Ray and Serve; wait until healthy."""
    from wealthalloc.runtime import launcher, services

    settings = _settings()
    started = time.monotonic()
    state = launcher.RuntimeState.load(settings.data_dir)
    if state is not None and launcher.port_in_use(settings.http_host, settings.http_port):
        raise CliError(f"WealthAlloc is already running at {state.api_url} (stop it with `make stop`)")
    if launcher.port_in_use(settings.http_host, settings.http_port):
        raise CliError(
            f"port {settings.http_port} on {settings.http_host} is in use by another program"
            " (set WEALTHALLOC_HTTP_PORT to another port)"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    pg = services.resolve_postgres(
        settings.database_url, settings.data_dir, allow_embedded=settings.embedded_services
    )
    _say(f"PostgreSQL: {_origin(pg.embedded, settings.data_dir / 'postgres')}")
    began = time.time()
    embedded_redis = False
    try:
        rd = services.resolve_redis(
            settings.redis_url, settings.data_dir, allow_embedded=settings.embedded_services
        )
        embedded_redis = rd.embedded
        _say(f"Redis:      {_origin(rd.embedded, settings.data_dir / 'redis')}")
        _bring_up(settings, pg, rd, skip_setup=skip_setup, workers=workers, health_timeout=health_timeout)
    except BaseException:
        # Nothing half-started is left behind: no Ray or embedded database outlives a start-up that
        # failed or was interrupted, and the next `make run` starts clean. Ray is ours to stop when
        # the state file was written by this start-up (it is saved as soon as Ray runs).
        _say("Start-up failed: stopping what it started.")
        saved = launcher.RuntimeState.load(settings.data_dir)
        ours = saved if saved is not None and saved.started_at >= began else None
        for line in _stop_started(
            settings, ours, embedded_postgres=pg.embedded, embedded_redis=embedded_redis
        ):
            _say(f"  {line}")
        raise

    _say("")
    _say(f"WealthAlloc is up in {time.monotonic() - started:.0f} s")
    _say(f"  API:        {settings.api_url}   (docs: /docs, health: /health, metrics: /metrics)")
    if not settings.operations_token.get_secret_value():
        token_file = settings.data_dir / "operations_token"
        _say(f"  Operators:  /metrics and /health's report take the bearer token in {token_file}")
    _say(f"  Dashboard:  {settings.dashboard_url}")
    _say("  Demo logins:")
    for role, email, password in DEMO_LOGINS:
        _say(f"    {role:9} {email:26} {password}")
    _say("  Stop with:  make stop")


def _bring_up(
    settings: Settings,
    pg: ResolvedService,
    rd: ResolvedService,
    *,
    skip_setup: bool,
    workers: int,
    health_timeout: float,
) -> None:
    """Schema, data and demo; then Ray (its state saved as soon as it runs), the worker nodes and
    Serve, until the API answers healthy. ``pg`` and ``rd`` are the resolved services."""
    from wealthalloc.runtime import launcher

    if not skip_setup:
        from wealthalloc.demo.seed import seed_demo
        from wealthalloc.marketdata import load_bundled_datasets
        from wealthalloc.storage.migrate import ensure_database
        from wealthalloc.storage.migrate import migrate as run_migrations

        ensure_database(pg.url)
        report = run_migrations(pg.url)
        _say(f"Schema:     {len(report.applied)} migration(s) applied, {report.already_applied} already")
        load_bundled_datasets(settings.prices_dir, progress=sys.stderr.isatty())
        prices, clock = _load_market(settings)
        _say(f"Market:     {len(prices.symbols())} symbols, market clock at {clock.today()}")
        seed_demo(pg.url, prices=prices, clock=clock, bcrypt_rounds=settings.bcrypt_rounds)
        _say("Demo:       seeded")
        _say(f"Model:      {_default_model(settings)}")

    env = launcher.platform_env(settings, pg.url, rd.url)
    address, ray_pid = launcher.start_ray(settings, env)
    state = launcher.RuntimeState(
        database_url=pg.url,
        redis_url=rd.url,
        embedded_postgres=pg.embedded,
        embedded_redis=rd.embedded,
        api_url=settings.api_url,
        dashboard_url=settings.dashboard_url,
        ray_address=address,
        ray_pid=ray_pid,
        started_at=time.time(),
    )
    state.save(settings.data_dir)
    _say(f"Ray:        started at {address}")
    started_workers = []
    for _ in range(workers):
        state, worker = launcher.add_worker(settings, state, env)
        started_workers.append(worker)
    if workers:
        state = launcher.join_workers(settings, state, env, tuple(started_workers), count=workers + 1)
        _say(f"Cluster:    head and {workers} worker node(s)")
    launcher.deploy_serve(settings, env, nodes=workers + 1)
    _say("Serve:      application deployed, waiting for /health and /health/ready ...")
    launcher.wait_for_health(
        settings.api_url, timeout_s=health_timeout, token=env["WEALTHALLOC_OPERATIONS_TOKEN"]
    )


@app.command()
@_friendly
def stop() -> None:
    """Stop Serve, Ray and the embedded services that `serve` started."""
    from wealthalloc.runtime import launcher

    settings = _settings()
    state = launcher.RuntimeState.load(settings.data_dir)
    if state is None:
        raise CliError(f"nothing to stop: no platform started from {settings.data_dir}")
    for line in _stop_started(
        settings, state, embedded_postgres=state.embedded_postgres, embedded_redis=state.embedded_redis
    ):
        _say(line)


def _stop_started(
    settings: Settings, state: RuntimeState | None, *, embedded_postgres: bool, embedded_redis: bool
) -> list[str]:
    """Stop Ray (with its worker nodes and HAProxy) when ``state`` says it runs, then the embedded
    services named; what was stopped, a line each. ``stop`` and a failed ``serve`` share it."""
    from wealthalloc.runtime import launcher, services

    said = []
    if state is not None:
        if launcher.stop_workers(state.workers):
            said.append(f"{len(state.workers)} Ray worker node(s) stopped")
        if launcher.stop_ray(state.ray_pid):
            said.append("Ray and Serve stopped")
        if settings.serve_haproxy:
            launcher.stop_haproxy(settings.haproxy_stats_port)
    if embedded_redis and services.stop_embedded_redis(settings.data_dir):
        said.append("embedded Redis stopped")
    if embedded_postgres and services.stop_embedded_postgres(settings.data_dir):
        said.append("embedded PostgreSQL stopped")
    if state is not None:
        launcher.RuntimeState.clear(settings.data_dir)
    return said


@app.command()
@_friendly
def doctor() -> None:
    """Check settings, services, schema, market data, Ray and the API; exit 1 if anything is wrong."""
    import httpx

    from wealthalloc.runtime import launcher, services
    from wealthalloc.storage.migrate import pending

    settings = _settings()
    state = launcher.RuntimeState.load(settings.data_dir)
    db_url = state.database_url if state else settings.database_url
    redis_url = state.redis_url if state else settings.redis_url
    problems = 0

    def report(name: str, problem: str | None, ok: str = "ok") -> None:
        nonlocal problems
        problems += problem is not None
        mark = (
            typer.style("FAIL", fg=typer.colors.RED)
            if problem
            else typer.style(" ok ", fg=typer.colors.GREEN)
        )
        _say(f"[{mark}] {name:12} {problem or ok}")

    report("python", None if sys.version_info >= (3, 11) else "Python 3.11+ needed", sys.version.split()[0])
    db_problem = services.postgres_problem(db_url)
    report("postgres", db_problem)
    if db_problem is None:
        try:
            waiting = pending(db_url)
            report("schema", f"pending: {', '.join(waiting)}" if waiting else None, "up to date")
        except Exception as exc:  # doctor reports every failure, whatever its type
            report("schema", str(exc).splitlines()[0])
    report("redis", services.redis_problem(redis_url))
    prices = sorted(Path(settings.prices_dir).glob("*.parquet"))
    report(
        "market data", None if prices else f"no Parquet in {settings.prices_dir}", f"{len(prices)} symbols"
    )
    ray_up = launcher.port_in_use("127.0.0.1", settings.ray_port)
    report("ray", None if ray_up else "not running (make run)", f"GCS on {settings.ray_port}")
    token = launcher.operations_token(settings)
    try:
        response = httpx.get(
            f"{settings.api_url}/health", timeout=5, headers={"Authorization": f"Bearer {token}"}
        )
        failing = response.json().get("error", {}).get("message") if response.status_code != 200 else None
        report("api", failing, f"{settings.api_url} healthy")
    except httpx.HTTPError:
        report("api", f"no answer at {settings.api_url}")
    if problems:
        raise typer.Exit(1)


def _running_cluster() -> tuple[Settings, Any]:
    from wealthalloc.runtime import launcher

    settings = _settings()
    state = launcher.RuntimeState.load(settings.data_dir)
    if state is None or not launcher.port_in_use("127.0.0.1", settings.ray_port):
        raise CliError(f"no platform is running from {settings.data_dir} (start one with `make cluster`)")
    return settings, state


@cluster_app.command("status")
@_friendly
def cluster_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw view as one JSON object.")] = False,
) -> None:
    """Each node of the cluster, alive or not, and the shards and API replicas it runs."""
    from wealthalloc.runtime import launcher
    from wealthalloc.runtime.cluster_view import API_REPLICA_CLASS, SHARD_CLASS, read_cluster

    settings, state = _running_cluster()
    env = launcher.platform_env(settings, state.database_url, state.redis_url)
    try:
        view = read_cluster(state.ray_address, settings.ray_namespace, env)
    except RuntimeError as exc:
        raise CliError(f"could not read the cluster at {state.ray_address}: {exc}") from exc
    names = {worker.node_manager_port: f"worker-{worker.index}" for worker in state.workers}
    if as_json:
        typer.echo(view.to_json())
        return
    shards, replicas = view.nodes_running(SHARD_CLASS), view.nodes_running(API_REPLICA_CLASS)
    _say(f"{'node':10} {'state':6} {'cpus':>4} {'shards':>6} {'api':>4}  id")
    for node in view.nodes:
        name = "head" if node.is_head else names.get(node.node_manager_port, "other")
        status = "alive" if node.alive else "dead"
        _say(
            f"{name:10} {status:6} {node.cpus:4.0f} {shards[node.node_id]:6d} {replicas[node.node_id]:4d}"
            f"  {node.node_id[:12]}"
        )


@cluster_app.command("kill-node")
@_friendly
def cluster_kill_node(
    index: Annotated[int, typer.Argument(help="The worker node's number, as `cluster status` names it.")],
) -> None:
    """Kill a worker node at once (its raylet and all its processes), as losing that machine would."""
    from wealthalloc.runtime import launcher

    settings, state = _running_cluster()
    worker = next((w for w in state.workers if w.index == index), None)
    if worker is None:
        known = ", ".join(str(w.index) for w in state.workers) or "none"
        raise CliError(f"no worker node {index} (worker nodes: {known})")
    killed = launcher.kill_worker(worker)
    if not killed:
        raise CliError(f"worker node {index} is not running")
    _say(f"worker node {index} killed: its raylet and {killed - 1} process(es) under it")


@cluster_app.command("add-node")
@_friendly
def cluster_add_node(
    wait: Annotated[float, typer.Option(help="Seconds to wait for the cluster to see the new node.")] = 90,
) -> None:
    """Start one more worker node on this machine and join it to the cluster (after a lost one, or to grow).

    New shards and API replicas may be placed on it; the running ones stay where they are.
    """
    from wealthalloc.runtime import launcher
    from wealthalloc.runtime.cluster_view import read_cluster

    settings, state = _running_cluster()
    env = launcher.platform_env(settings, state.database_url, state.redis_url)
    alive = len(read_cluster(state.ray_address, settings.ray_namespace, env).alive_nodes)
    state, worker = launcher.add_worker(settings, state, env)
    launcher.join_workers(settings, state, env, (worker,), count=alive + 1, timeout_s=wait)
    _say(f"worker node {worker.index} joined: {alive + 1} live node(s)")


@app.command()
@_friendly
def chaos(
    investors: Annotated[int, typer.Option(min=1, max=200, help="Investors at work at once.")] = 12,
    pace: Annotated[float, typer.Option(help="Seconds between one investor's operations, on average.")] = 1.5,
    warmup: Annotated[float, typer.Option(help="Seconds of load before the first fault.")] = 15,
    gap: Annotated[float, typer.Option(help="Seconds between one fault's recovery and the next fault.")] = 8,
    recovery_timeout: Annotated[float, typer.Option(help="Longest wait for a recovery, in seconds.")] = 120,
) -> None:
    """Run investors against the local cluster while killing, in turn, a worker node holding shards, an
    API replica, the broker gateway, the event bus, Redis and PostgreSQL's connections; then prove from
    PostgreSQL, Redis and the API that no acknowledged write was lost or doubled, that the ledger adds up,
    the audit chain holds and every event was delivered.

    The last line is `chaos: N operations, L lost, D doubled, K kills, recovery p99 S s`; the exit status
    is 1 unless everything held. Needs a cluster with worker nodes (`make cluster`); `make chaos` starts
    one of its own and stops it afterwards.
    """
    import json

    from wealthalloc.chaos.run import ChaosPlan, run_chaos, save

    settings, state = _running_cluster()
    if not state.workers:
        raise CliError("the platform runs on one node: chaos needs worker nodes (make cluster)")
    plan = ChaosPlan(
        investors=investors, pace_s=pace, warmup_s=warmup, gap_s=gap, recovery_timeout_s=recovery_timeout
    )
    report = run_chaos(settings, state, plan, say=_say)
    _say(
        f"{report.acknowledged} writes acknowledged, {report.refused} refused as asked,"
        f" {len(report.unanswered)} unanswered; events settled in {report.events_settled_s:.1f} s;"
        f" audit chain of {report.audit_entries} entries"
    )
    for title, problems in (
        ("lost", report.lost),
        ("doubled", report.doubled),
        ("ledger", report.ledger),
        ("audit", report.audit),
        ("events", report.events),
        ("api", report.api),
        ("unanswered", report.unanswered),
    ):
        for problem in problems[:10]:
            typer.secho(f"  {title}: {problem}", err=True, fg=typer.colors.RED)
    if report.refused_by:
        _say("refused as asked: " + ", ".join(f"{n} {why}" for why, n in report.refused_by.items()))
    _say(f"report: {save(report, settings)}")
    _say(json.dumps({k: v for k, v in report.as_dict().items() if not isinstance(v, list | tuple | dict)}))
    _say(report.line())
    if not report.ok:
        raise typer.Exit(1)


BackupDir = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="The backup directory (default: WEALTHALLOC_BACKUP_DIR or <data dir>/backups)."
    ),
]
BackupName = Annotated[
    str, typer.Argument(help="A backup id from `wealthalloc backup list`, its path, or `latest`.")
]


def _backups_dir(settings: Settings, directory: Path | None) -> Path:
    return directory.resolve() if directory is not None else settings.backups_dir


@backup_app.command("create")
@_friendly
def backup_create(directory: BackupDir = None) -> None:
    """Dump the database (pg_dump) and copy the local model registry into a new, checksummed backup."""
    from wealthalloc.ops.backup import BackupError, create_backup

    settings = _settings()
    target = _backups_dir(settings, directory)
    try:
        manifest = create_backup(
            database_url=_reachable_database(settings), registry_uri=settings.registry_uri, backup_dir=target
        )
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    _say(
        f"backup {manifest.id} in {target / manifest.id}: schema {manifest.schema_version},"
        f" {len(manifest.files)} file(s), {manifest.total_bytes} bytes, {manifest.duration_s:.1f} s"
    )


@backup_app.command("list")
@_friendly
def backup_list(directory: BackupDir = None) -> None:
    """The backups in the backup directory, oldest first: id, time, schema version, size."""
    from wealthalloc.ops.backup import list_backups

    settings = _settings()
    target = _backups_dir(settings, directory)
    backups = list_backups(target)
    if not backups:
        _say(f"no backups in {target}")
        return
    for manifest in backups:
        files = ", ".join(f.name for f in manifest.files)
        _say(
            f"{manifest.id}  {manifest.created_at}  schema {manifest.schema_version}"
            f"  {manifest.total_bytes} bytes  ({files})"
        )


@backup_app.command("verify")
@_friendly
def backup_verify(backup: BackupName = "latest", directory: BackupDir = None) -> None:
    """Check every file against the manifest's size and sha256, and that pg_restore can read the dump."""
    from wealthalloc.ops.backup import BackupError, resolve, verify_backup

    settings = _settings()
    try:
        path = resolve(_backups_dir(settings, directory), backup)
        problems = verify_backup(path)
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    if problems:
        raise CliError(f"backup {path.name} is damaged: {'; '.join(problems)}")
    _say(f"backup {path.name} verified")


@backup_app.command("restore")
@_friendly
def backup_restore(
    backup: BackupName = "latest",
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="The database to restore into, created when missing (default: WEALTHALLOC_DATABASE_URL).",
        ),
    ] = None,
    registry_dir: Annotated[
        Path | None,
        typer.Option(
            "--registry-dir", help="Where the model registry goes (default: the configured local registry)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a database that holds tables and a registry that holds files."),
    ] = False,
    directory: BackupDir = None,
) -> None:
    """Verify a backup, then restore it into a database (pg_restore) and the model registry."""
    from wealthalloc.ops.backup import BackupError, resolve, restore_backup

    settings = _settings()
    target_registry = registry_dir
    if target_registry is None and "://" not in settings.registry_uri:
        target_registry = Path(settings.registry_uri)
    try:
        path = resolve(_backups_dir(settings, directory), backup)
        report = restore_backup(
            directory=path,
            database_url=database_url or settings.database_url,
            registry_dir=target_registry,
            force=force,
        )
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    _say(f"restored {path.name} into {report.database} in {report.duration_s:.1f} s")
    if report.registry:
        _say(f"model registry restored into {report.registry}")
    if report.pending_migrations:
        _say(
            f"the schema is behind this version: run `wealthalloc migrate`"
            f" ({', '.join(report.pending_migrations)})"
        )
    _say("check the audit chain: wealthalloc audit verify")


@linked_app.command("reencrypt")
@_friendly
def linked_reencrypt(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction.")] = 200,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Seal every linked account number under the newest key of linked_account_keys; older keys may
    then be dropped from the ring. Safe to run twice, and while the platform runs."""
    import asyncio

    from wealthalloc.security.encryption import EncryptionUnavailable, key_ring

    settings = _settings()
    try:
        ring = key_ring(settings)
    except EncryptionUnavailable as exc:
        raise CliError(
            f"{exc}: set WEALTHALLOC_LINKED_ACCOUNT_KEYS and WEALTHALLOC_LINKED_ACCOUNT_INDEX_KEY"
        ) from exc
    url = _reachable_database(settings)
    moved, unreadable = asyncio.run(_reencrypt(url, ring, batch, progress=not quiet))
    _say(f"{moved} account number(s) moved to key {ring.newest}")
    if unreadable:
        raise CliError(
            f"{unreadable} account number(s) open with no key of the ring; they were left as they are"
        )


async def _reencrypt(url: str, ring: Any, batch: int, *, progress: bool) -> tuple[int, int]:
    import psycopg
    from psycopg.rows import dict_row
    from tqdm import tqdm

    from wealthalloc.security.encryption import Sealed, UndecryptableError
    from wealthalloc.storage import linked_accounts as store

    moved = unreadable = 0
    after = None
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        total = await store.count_not_under(conn, ring.newest)
        with tqdm(total=total, unit="account", disable=not progress, desc="re-encrypting") as bar:
            while True:
                async with conn.transaction():
                    rows = await store.sealed_batch(conn, ring.newest, batch, after=after)
                    for row in rows:
                        sealed = Sealed(row["account_number_key_id"], bytes(row["account_number_sealed"]))
                        try:
                            fresh = ring.reseal(sealed, owner=row["user_id"])
                        except UndecryptableError:
                            unreadable += 1
                            continue
                        if fresh is not None:
                            await store.reseal(conn, row["id"], fresh)
                            moved += 1
                if not rows:
                    return moved, unreadable
                after = rows[-1]["id"]
                bar.update(len(rows))


def main() -> None:
    # TensorFlow's C++ start-up chatter (oneDNN notices) is not for an operator's console.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app()


if __name__ == "__main__":
    main()
