"""Point-in-time-recovery readiness: reads the server's WAL archiving state, changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

import psycopg


@dataclass(frozen=True)
class PitrReport:
    wal_level: str
    archive_mode: str
    archive_command: str
    archive_library: Optional[str]
    archived_count: int
    failed_count: int
    last_archived_wal: Optional[str]
    last_archived_time: Optional[datetime]
    last_archived_age_s: Optional[float]
    last_failed_time: Optional[datetime]
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        return not self.problems


def _setting(conn: psycopg.Connection, name: str) -> Optional[str]:
    row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def pitr_readiness(conn: psycopg.Connection, *, max_archive_age_s: float = 3600.0) -> PitrReport:
    """Whether WAL is archived well enough to recover to a point in time.

    Ready means: ``wal_level`` replica or logical, ``archive_mode`` on/always, an
    archive command or library set, some WAL archived within ``max_archive_age_s``
    and no failure since the last success.
    """
    wal_level = _setting(conn, "wal_level") or "unknown"
    archive_mode = _setting(conn, "archive_mode") or "unknown"
    archive_command = _setting(conn, "archive_command") or ""
    archive_library = _setting(conn, "archive_library")  # PostgreSQL 15+
    # The age compares two readings of the server's own clock (its archiver's timestamp and
    # its now()); no data is kept or dropped on it, so it does not take the run's clock.
    archived, last_wal, last_time, failed, last_failed, age = conn.execute(
        """
        SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_time,
               extract(epoch FROM now() - last_archived_time)::float8
        FROM pg_stat_archiver
        """
    ).fetchone()
    problems = []
    if wal_level not in ("replica", "logical"):
        problems.append(f"wal_level is {wal_level!r}: WAL lacks what recovery needs (want replica or logical)")
    if archive_mode not in ("on", "always"):
        problems.append(f"archive_mode is {archive_mode!r}: WAL segments are not archived")
    if not archive_command.strip() and not (archive_library or "").strip():
        problems.append("neither archive_command nor archive_library is set")
    if last_time is None:
        problems.append("no WAL segment has ever been archived (pg_stat_archiver)")
    elif age is not None and age > max_archive_age_s:
        problems.append(f"last WAL archived {age:.0f}s ago (more than {max_archive_age_s:.0f}s)")
    if last_failed is not None and (last_time is None or last_failed > last_time):
        problems.append(f"archiving is failing: last failure at {last_failed:%Y-%m-%d %H:%M:%S%z}")
    if not conn.autocommit:
        conn.rollback()
    return PitrReport(
        wal_level=wal_level, archive_mode=archive_mode, archive_command=archive_command,
        archive_library=archive_library, archived_count=archived, failed_count=failed,
        last_archived_wal=last_wal, last_archived_time=last_time, last_archived_age_s=age,
        last_failed_time=last_failed, problems=tuple(problems),
    )
