"""Policy values shared by the row-lifecycle jobs: ages with units, throttling, month scopes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable, ContextManager

import psycopg

from ..db import end_read
from ..timeutil import month_bounds_utc

@dataclass(frozen=True)
class MonthScope:
    """Rows whose timestamp falls in ``[lower, upper)``: whole months, cut at the policy's age.

    Usually one month (a partition); a range of months when a backfill runs as one run.
    """

    month: date
    lower: datetime
    upper: datetime
    last_month: date | None = None  # the range's last month, when it spans several

    @property
    def is_empty(self) -> bool:
        return self.upper <= self.lower

    def by_month(self) -> list["MonthScope"]:
        """Each month of the range with its own part of this scope (empty where nothing is due yet)."""
        months, month = [], self.month
        while month <= (self.last_month or self.month):
            lower, upper = month_bounds_utc(month)
            months.append(MonthScope(month=month, lower=lower, upper=max(lower, min(upper, self.upper))))
            month = upper.date()
        return months

    @classmethod
    def of(cls, month: date, older_than: timedelta, now: datetime,
           *, through: date | None = None) -> "MonthScope":
        """Months ``month`` .. ``through`` (inclusive; default: just ``month``), older than ``older_than``
        at ``now``: the run's one clock (its partition key's schedule tick or its start), never
        read here, so a run that crosses midnight or a month end cuts every batch at the same instant."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (a naive time would be read in the session's zone)")
        lower, month_end = month_bounds_utc(month)
        if through is not None:
            if through < month:
                raise ValueError(f"month range ends ({through}) before it starts ({month})")
            month_end = month_bounds_utc(through)[1]
        last = month_bounds_utc(through)[0].date() if through is not None else None
        return cls(month=lower.date(), lower=lower, upper=max(lower, min(month_end, now - older_than)),
                   last_month=last if last is not None and last > lower.date() else None)

    def describe(self) -> str:
        return f"[{self.lower.isoformat()}, {self.upper.isoformat()})"


@dataclass(frozen=True)
class Throttle:
    """pt-archiver-style pacing: bounded batches, a pause between them, an optional rows/s cap."""

    batch_size: int = 2_000
    pause_s: float = 0.0
    max_rows_per_s: float | None = None
    # pt-archiver's --sleep-coef: pause this many times as long as the batch took. It
    # follows the machine's speed, where a rows/s cap does not: busy, slower batches
    # earn longer pauses. 1.0 keeps the session busy at most half the time.
    sleep_coef: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.pause_s < 0:
            raise ValueError("pause_s must not be negative")
        if self.max_rows_per_s is not None and self.max_rows_per_s <= 0:
            raise ValueError("max_rows_per_s must be positive when set")
        if self.sleep_coef is not None and self.sleep_coef < 0:
            raise ValueError("sleep_coef must not be negative")

    def describe(self) -> str:
        """The pacing in words, for plans and metadata."""
        pacing = [f"pause {self.pause_s}s", f"cap {self.max_rows_per_s or 'none'} rows/s"]
        if self.sleep_coef:
            pacing.append(f"then {self.sleep_coef}x each batch's time")
        return ", ".join(pacing)

    def delay_after(self, rows: int, batch_seconds: float) -> float:
        """Seconds to wait after a batch of ``rows`` that took ``batch_seconds``.

        A short batch (fewer rows than ``batch_size``) ends its table or month: no fixed
        pause, only the rows/s cap and the sleep coefficient apply.
        """
        wait = self.pause_s if rows >= self.batch_size else 0.0
        if self.sleep_coef:
            wait = max(wait, self.sleep_coef * batch_seconds)
        if self.max_rows_per_s:
            wait = max(wait, rows / self.max_rows_per_s - batch_seconds)
        return max(0.0, wait)


@dataclass
class BatchLog:
    """Progress of a batched run: what each batch did and how long it took."""

    unit: str
    batches: int = 0
    moved: int = 0
    longest_batch_s: float = 0.0
    busy_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record(self, moved: int, seconds: float) -> None:
        self.batches += 1
        self.moved += moved
        self.busy_s += seconds
        self.longest_batch_s = max(self.longest_batch_s, seconds)

    def finish(self) -> None:
        self.finished = time.monotonic()

    def absorb(self, other: "BatchLog") -> None:
        """Add the batches another worker logged during this run."""
        self.batches += other.batches
        self.moved += other.moved
        self.busy_s += other.busy_s
        self.longest_batch_s = max(self.longest_batch_s, other.longest_batch_s)

    def last_batch(self, done: int, seconds: float) -> str:
        """The progress line for a batch just recorded."""
        return (f"batch {self.batches}: {done} {self.unit} in {seconds * 1000:.1f} ms "
                f"(total {self.moved}, {self.per_s:,.0f} {self.unit}/s)")

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def per_s(self) -> float:
        return self.moved / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[str], None]


def run_batches(
    step: Callable[[], int | None],
    throttle: Throttle,
    log: BatchLog,
    *,
    progress: ProgressCallback | None = None,
    max_batches: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchLog:
    """Call ``step`` (one committed batch; returns units done, None when nothing is left) until it stops."""
    while max_batches is None or log.batches < max_batches:
        began = time.monotonic()
        done = step()
        took = time.monotonic() - began
        if done is None:
            break
        log.record(done, took)
        if progress:
            progress(log.last_batch(done, took))
        delay = throttle.delay_after(done, took)
        if delay:
            sleep(delay)
    log.finish()
    return log


def own_transaction(conn: psycopg.Connection) -> ContextManager:
    """A transaction that really commits at exit (not a savepoint inside someone else's)."""
    end_read(conn)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("a batch must start outside any transaction")
    return conn.transaction()
