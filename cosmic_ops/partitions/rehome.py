"""Move rows out of the DEFAULT partition into their months (SPEC §3.3).

PostgreSQL never leaves a row in DEFAULT when a partition for it exists, so every
row there belongs to a month without a partition. Rehoming a month is creating
that month: the create transaction (see ``maintain``) moves the month's rows
from DEFAULT into the new table before ATTACH, so the rows stay visible through
the parent at every instant and are never lost or doubled.

When DEFAULT holds many rows (``policy.online_move_min_rows``), all the selected
months are created by one online split (``split_default``): the rows are copied while
the game goes on, and the game waits only for the swap. Otherwise each month is one
transaction that moves its rows under the lock (a few rows: milliseconds), and
``max_months`` bounds a run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import psycopg

from .. import recovery
from ..db import LockRetryPolicy, end_read
from .actions import ActionResult, SplitDefault
from .maintain import PartitionConflict, apply_plan, plan_months, read_with_retry
from .policy import PartitionPolicy, PolicyError
from .state import default_rows_by_month

if TYPE_CHECKING:
    from ..backups.store import BackupStore


@dataclass
class RehomeResult:
    default_rows_before: int
    default_rows_after: int
    months_found: dict[str, int]
    results: list[ActionResult] = field(default_factory=list)
    remaining_months: list[str] = field(default_factory=list)
    unplaceable_rows: int = 0
    conflicts: list[str] = field(default_factory=list)
    dry_run: bool = False
    plan_markdown: str = ""
    recovered: list[str] = field(default_factory=list)  # what taking the table repaired first

    @property
    def rows_moved(self) -> int:
        return sum(r.rows_moved for r in self.results)

    @property
    def created(self) -> list[str]:
        return [r.action.target for r in self.results]


def rehome_default_rows(
    conn: psycopg.Connection,
    policy: PartitionPolicy,
    *,
    max_months: Optional[int] = None,
    dry_run: bool = False,
    retry: LockRetryPolicy = LockRetryPolicy(),
    lock_wait_s: float = 0.0,
    store: Optional[BackupStore] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> RehomeResult:
    """Create the month of every row in DEFAULT, oldest first, one transaction per month,
    holding the table (``recovery.table_maintenance``; a dry run does not, and changes nothing).

    A month that cannot be created (conflict) is reported and skipped; the others
    still move. Rows with a NULL key cannot live in any range partition and are
    only reported.
    """
    if max_months is not None and max_months < 1:
        raise PolicyError(f"max_months must be at least 1, got {max_months}")
    end_read(conn)
    held = (contextlib.nullcontext(recovery.Recovery()) if dry_run else
            recovery.table_maintenance(conn, policy.qualified_name, store=store, wait_s=lock_wait_s, retry=retry))
    with held as recovered:
        _, by_month = read_with_retry(conn, lambda c: default_rows_by_month(c, policy),
                                      what="read DEFAULT rows", retry=retry)
        months = [m for m, _ in by_month if m is not None]
        selected = months if max_months is None else months[:max_months]
        result = RehomeResult(
            default_rows_before=sum(n for _, n in by_month),
            default_rows_after=0,
            months_found={f"{m:%Y-%m}": n for m, n in by_month if m is not None},
            unplaceable_rows=sum(n for m, n in by_month if m is None),
            remaining_months=[f"{m:%Y-%m}" for m in months[len(selected):]],
            dry_run=dry_run,
            recovered=recovered.lines,
        )
        plan = read_with_retry(conn, lambda c: plan_months(c, policy, selected), what="plan", retry=retry)
        result.plan_markdown = plan.to_markdown(conn)
        if dry_run:
            result.default_rows_after = result.default_rows_before
            return result
        if any(isinstance(a, SplitDefault) for a in plan.actions):
            batches = [selected]  # one online move creates them all
        else:
            batches = [[month] for month in selected]
        for months in batches:
            step = read_with_retry(conn, lambda c: plan_months(c, policy, months), what="plan", retry=retry)
            try:
                result.results += apply_plan(conn, step, retry, progress=progress)
            except PartitionConflict as conflict:
                result.conflicts.append(str(conflict))
        _, after = read_with_retry(conn, lambda c: default_rows_by_month(c, policy),
                                   what="read DEFAULT rows", retry=retry)
        result.default_rows_after = sum(n for _, n in after)
    return result
