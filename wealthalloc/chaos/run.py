"""One chaos run: investors at work, the faults in turn, then the verdict.

Every loop is bounded in count and in time: the investors by ``max_operations`` and the run's end,
each operation by its deadline, each recovery wait by ``recovery_timeout_s``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from wealthalloc.chaos import verdict
from wealthalloc.chaos.faults import FaultError, Injector
from wealthalloc.chaos.workload import Investor, Tally, Unanswered
from wealthalloc.config import Settings
from wealthalloc.runtime.launcher import RuntimeState


@dataclass(frozen=True)
class FaultOutcome:
    name: str
    detail: str
    injected: bool
    # Seconds from the fault until each investor had an operation answered that started after it.
    recovery_s: tuple[float, ...]
    ready_after_s: float | None  # until /health/ready answered 200 again


@dataclass
class ChaosReport:
    investors: int
    operations: int = 0
    acknowledged: int = 0
    refused: int = 0
    refused_by: dict[str, int] = field(default_factory=dict)  # "kind status CODE" -> how many
    unanswered: tuple[str, ...] = ()
    baseline_recovery_s: tuple[float, ...] = ()
    faults: list[FaultOutcome] = field(default_factory=list)
    lost: tuple[str, ...] = ()
    doubled: tuple[str, ...] = ()
    ledger: tuple[str, ...] = ()
    audit_entries: int = 0
    audit: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    events_settled_s: float = 0.0
    api: tuple[str, ...] = ()

    @property
    def kills(self) -> int:
        return sum(1 for fault in self.faults if fault.injected)

    @property
    def recovery_p99_s(self) -> float:
        return verdict.percentile([s for fault in self.faults for s in fault.recovery_s], 99)

    @property
    def ok(self) -> bool:
        """No acknowledged write lost or doubled, and the ledger, audit chain, events and API all whole."""
        return not (self.lost or self.doubled or self.ledger or self.audit or self.events or self.api)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "kills": self.kills,
            "recovery_p99_s": round(self.recovery_p99_s, 2),
            "baseline_recovery_p99_s": round(verdict.percentile(self.baseline_recovery_s, 99), 2),
            "ok": self.ok,
        }

    def line(self) -> str:
        return verdict.summary_line(
            self.operations, len(self.lost), len(self.doubled), self.kills, self.recovery_p99_s
        )


@dataclass(frozen=True)
class ChaosPlan:
    investors: int = 12
    pace_s: float = 1.5
    warmup_s: float = 15.0
    gap_s: float = 8.0
    recovery_timeout_s: float = 120.0
    op_timeout_s: float = 120.0
    max_operations: int = 2000


def run_chaos(
    settings: Settings, state: RuntimeState, plan: ChaosPlan, *, say: Callable[[str], None] = print
) -> ChaosReport:
    api_url = state.api_url
    tally = Tally()
    stop = threading.Event()
    joined: list[Investor] = []
    people = [
        Investor(api_url, tally, seed=seed, op_timeout_s=plan.op_timeout_s) for seed in range(plan.investors)
    ]
    since_ms = int(time.time() * 1000) - 1000

    def work(person: Investor) -> None:
        try:
            person.join()
        except Unanswered as exc:
            tally.unanswered.append(f"{person.name} join: {exc}")
            return
        joined.append(person)
        person.run(stop, pace_s=plan.pace_s, max_operations=plan.max_operations)

    threads = [
        threading.Thread(target=work, args=(p,), name=f"investor-{i}", daemon=True)
        for i, p in enumerate(people)
    ]
    report = ChaosReport(investors=plan.investors)
    injector = Injector(settings, state)
    try:
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        _until(lambda: len(joined) + sum(1 for u in tally.unanswered if " join: " in u) >= len(people), 180)
        say(f"{len(joined)} of {len(people)} investors at work")
        if not joined:
            report.unanswered = tuple(tally.unanswered)
            return report
        mark = time.monotonic()
        time.sleep(plan.warmup_s)
        report.baseline_recovery_s = _recoveries(tally, joined, mark, plan.recovery_timeout_s)
        for fault in injector.faults():
            injector.struck_at = time.monotonic()
            try:
                detail = fault.inject()
                at = injector.struck_at
            except FaultError as exc:
                report.faults.append(FaultOutcome(fault.name, str(exc), False, (), None))
                say(f"  {fault.name:22} not injected: {exc}")
                continue
            recovery = _recoveries(tally, joined, at, plan.recovery_timeout_s)
            ready = _ready_after(api_url, at, plan.recovery_timeout_s)
            report.faults.append(FaultOutcome(fault.name, detail, True, recovery, ready))
            worst = max(recovery) if recovery else float("nan")
            say(f"  {fault.name:22} {detail}; every investor answered again within {worst:.1f} s")
            time.sleep(plan.gap_s)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=plan.op_timeout_s + 10)
        for person in people:
            person.close()

    report.operations = tally.operations
    report.acknowledged = len(tally.acks)
    report.refused = len(tally.refused)
    report.refused_by = dict(Counter(tally.refused).most_common())
    report.unanswered = tuple(tally.unanswered)
    users = sorted({ack.user_id for ack in tally.acks})
    settled = verdict.wait_for_events(state.database_url, state.redis_url, users, since_ms=since_ms)
    report.events, report.events_settled_s = settled.problems, settled.seconds
    judgement = verdict.judge(tally.acks, verdict.read_stored(state.database_url, tally.acks))
    report.lost, report.doubled = judgement.lost, judgement.doubled
    report.ledger = verdict.ledger_problems(state.database_url, users)
    report.audit_entries, report.audit = verdict.audit_problems(state.database_url)
    signed_in = [(p.portfolio_id, p.auth_headers()) for p in joined]
    report.api = verdict.api_problems(api_url, signed_in, state.database_url, tally.acks)
    return report


def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def _recoveries(tally: Tally, people: list[Investor], at: float, timeout_s: float) -> tuple[float, ...]:
    """For each investor, seconds from ``at`` until an operation started after it was answered (the
    ones never answered again within ``timeout_s`` count as the whole timeout)."""
    names = {person.name for person in people}

    def firsts() -> dict[str, float]:
        first: dict[str, float] = {}
        for name, started, answered in list(tally.answered_at):
            if name in names and started >= at:
                first[name] = min(first.get(name, answered), answered)
        return first

    _until(lambda: len(firsts()) >= len(names), timeout_s)
    seen = firsts()
    return tuple(round(seen[name] - at, 2) if name in seen else timeout_s for name in sorted(names))


def _ready_after(api_url: str, at: float, timeout_s: float) -> float | None:
    def ready() -> bool:
        try:
            return httpx.get(f"{api_url}/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    return round(time.monotonic() - at, 2) if _until(ready, timeout_s) else None


def save(report: ChaosReport, settings: Settings) -> str:
    path = settings.data_dir / "chaos-report.json"
    path.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    return str(path)
