"""Metadata of the row-lifecycle assets (archive of destroyed bodies, compressed saves): each
month of a run with its own counts, the run's pacing under ``run_*`` names, the month checks
and the plans."""

from __future__ import annotations

from datetime import date
from typing import Any, Sequence

import dagster as dg

from ...lifecycle.archive import ArchivePlan, ArchiveReport, MonthCounts
from ...lifecycle.policy import BatchLog, MonthScope
from ...lifecycle.saves import CompressReport, MonthTally
from ...partitions.state import CheckOutcome
from . import plan_observation, row_count, size_entries


def months_label(scope: MonthScope) -> str:
    last = scope.last_month or scope.month
    return f"{scope.month:%Y-%m}" if last == scope.month else f"{scope.month:%Y-%m} .. {last:%Y-%m}"


def _run(log: BatchLog, scope: MonthScope, done: str) -> dict[str, Any]:
    """The run as a whole (its batches span its months): named ``run_*`` so no month takes them
    for its own. ``done``: what the run counts (``rows_moved``, ``saves_packed``)."""
    return {
        "run_months": months_label(scope),
        f"run_{done}": log.moved,
        "run_batches": log.batches,
        f"run_{log.unit}_per_s": round(log.per_s, 1),
        "run_longest_batch_s": round(log.longest_batch_s, 4),
        "run_seconds": round(log.elapsed_s, 3),
    }


# ---------------------------------------------------------------------------
# archive of destroyed bodies


def archive_run(report: ArchiveReport, workers: int) -> dict[str, Any]:
    return {
        **_run(report.log, report.scope, "rows_moved"),
        "run_moving_seconds": round(report.moving_s, 3),
        "workers": workers,
        "tablespace_moved": report.tablespace_moved,
        "wal_compression": report.wal_compression or "unchanged (needs superuser or GRANT SET ON PARAMETER)",
    }


def archive_month(counts: MonthCounts) -> dict[str, Any]:
    """One month: the rows this run moved, what is left, and the month's archived rows."""
    return {
        "scope": counts.scope.describe(),
        "rows_moved": counts.rows_moved,
        "rows_remaining": counts.live_after,
        "rows_before": counts.rows_before,
        "live_plus_archived_after": counts.rows_after,
        "archived_rows": counts.archived_after,
        **row_count(counts.archived_after),
    }


def conservation(counts: MonthCounts) -> CheckOutcome:
    """Live + archived rows of the month equal the count before the move."""
    numbers = {"rows_before": counts.rows_before, "live_plus_archived_after": counts.rows_after,
               "live_before": counts.live_before, "archived_before": counts.archived_before,
               "live_after": counts.live_after, "archived_after": counts.archived_after}
    if counts.conserved:
        return CheckOutcome(True, f"{counts.month:%Y-%m}: {counts.rows_before} destroyed bodies before, "
                            f"{counts.live_after} live + {counts.archived_after} archived after", numbers)
    return CheckOutcome(False, f"{counts.month:%Y-%m}: {counts.rows_before} destroyed bodies before the move but "
                        f"{counts.live_after} live + {counts.archived_after} archived = {counts.rows_after} after "
                        f"({counts.rows_after - counts.rows_before:+d})", numbers)


def archive_plan(asset_key: dg.AssetKey, partition: str, plan: ArchivePlan) -> dg.AssetObservation:
    return plan_observation(asset_key, partition, plan.as_markdown(), rows_to_move=plan.candidates,
                            scope=plan.scope.describe())


# ---------------------------------------------------------------------------
# compressed saves


def saves_run(report: CompressReport, codec: str, workers: int) -> dict[str, Any]:
    return {**_run(report.log, report.scope, "saves_packed"), "run_skipped_changed": report.skipped_changed,
            "codec": codec, "workers": workers}


def saves_month(scope: MonthScope, tally: MonthTally) -> dict[str, Any]:
    """One month: the saves this run packed whose last update falls in it, their rows and sizes."""
    return {
        "scope": scope.describe(),
        "saves": tally.saves,
        "rows_folded": tally.rows_folded,
        **size_entries("bytes_before", tally.bytes_before),
        **size_entries("bytes_after", tally.bytes_after),
        "ratio": round(tally.ratio, 3),
        "saves_remaining": tally.saves_remaining,
    }


def saves_plan(asset_key: dg.AssetKey, partition: str, scope: MonthScope, due: Sequence, batch_size: int,
               codec: str) -> dg.AssetObservation:
    markdown = (f"**pack saves** updated in {scope.describe()}: {len(due)} saves, {batch_size} per transaction, "
                f"codec {codec}")
    return plan_observation(asset_key, partition, markdown, saves_to_pack=len(due), scope=scope.describe())


def saves_with_both(month: date, saves: list[int]) -> CheckOutcome:
    numbers = {"saves_with_both": len(saves), "examples": saves[:20]}
    if not saves:
        return CheckOutcome(True, f"{month:%Y-%m}: no save holds both rows and a compressed state", numbers)
    return CheckOutcome(False, f"{month:%Y-%m}: {len(saves)} save(s) hold both live rows and a compressed state "
                        f"(e.g. {', '.join(map(str, saves[:5]))})", numbers)


def checksums(month: date, sample: list[int], total: int, problems: dict[int, str]) -> CheckOutcome:
    numbers = {"sample_size": len(sample), "packed_saves": total, "failed": len(problems),
               "problems": {str(k): v for k, v in list(problems.items())[:20]}}
    if not problems:
        return CheckOutcome(True, f"{month:%Y-%m}: {len(sample)} of {total} packed saves decompress to their "
                            "checksum and row counts", numbers)
    return CheckOutcome(False, f"{month:%Y-%m}: {len(problems)} of {len(sample)} sampled packed saves do not "
                        "decompress to their checksum and row counts", numbers)
