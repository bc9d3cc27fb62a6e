"""Benchmark: backups and retirement, each beside its plain baseline in the same run.

On one scratch database with identical months of event_logs:
- month backup: ``backup_month`` (snapshot, row count + checksum, pg_dump -Fc,
  sha256, manifest) vs a plain ``pg_dump -Fc -t <partition>`` of the same table:
  the wrapper's overhead, as MB/s of dump written;
- verification of that backup (scratch database restore + count + checksum), shown
  against the backup itself;
- full backup: ``full_backup`` with ``-j 2`` (per-table counts, sha256, manifest) vs
  a plain ``pg_dump -Fd -j 2``; plus its verification;
- retirement of a month (re-hash of the backup, count before, detach, count and
  checksum under lock, DROP) vs ``DELETE`` of an identical month's rows, alone and
  followed by the ``VACUUM`` it needs before the space is reusable.
Reported as median seconds over the repetitions (the destructive pair runs once);
ratio = ours / baseline.

    /work/venv/bin/python bench/bench_backups.py [--quick] [--rows N] [--repeat 3]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server); creates its own scratch
database and drops it; backups go to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from cosmic_ops import db, schema  # noqa: E402
from cosmic_ops.backups import (  # noqa: E402
    BackupStore, RetentionPolicy, backup_month, client_for, full_backup, verify_full_backup, verify_month_backup,
)
from cosmic_ops.backups.month import pattern  # noqa: E402
from cosmic_ops.backups.tools import run_tool  # noqa: E402
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.partitions import ensure_month_partitions  # noqa: E402
from cosmic_ops.retention import retire_month  # noqa: E402
from cosmic_ops.timeutil import month_bounds_utc  # noqa: E402

RETIRED, DELETED, OTHER = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)


def fill_month(conn, month: date, rows: int) -> None:
    lower, upper = month_bounds_utc(month)
    conn.execute(
        """
        INSERT INTO event_logs (player_id, event_type, server_timestamp, session_id, server_region, payload)
        SELECT g %% 5000, (ARRAY['resource_collected','player_login','orbit_adjusted'])[1 + g %% 3],
               %(lower)s::timestamptz + (%(upper)s::timestamptz - %(lower)s::timestamptz) * g / (%(n)s + 1),
               g / 20, (ARRAY['eu','na','asia'])[1 + g %% 3],
               jsonb_build_object('amount', g %% 977, 'resource', 'metal', 'body_id', g * 7)
        FROM generate_series(1, %(n)s) g
        """,
        {"lower": lower, "upper": upper, "n": rows},
    )
    conn.commit()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    samples, last = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        last = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--rows", type=int, default=None, help="rows per month (default 300000, quick 5000)")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3, quick 1)")
    args = parser.parse_args()
    rows = args.rows or (5_000 if args.quick else 300_000)
    repeat = args.repeat or (1 if args.quick else 3)

    server = resolve_conninfo()
    name = f"cosmic_bench_backups_{uuid.uuid4().hex[:8]}"
    conninfo = db.create_database(server, name)
    workdir = Path(tempfile.mkdtemp(prefix="cosmic_bench_backups_"))
    try:
        with db.connect(conninfo) as conn:
            schema.bootstrap(conn)
            ensure_month_partitions(conn, "event_logs", [RETIRED, DELETED, OTHER])
            conn.commit()
            for month in (RETIRED, DELETED, OTHER):
                fill_month(conn, month, rows)
            client = client_for(conn)
            conn.rollback()
        store = BackupStore(workdir / "store")
        results: list[tuple[str, float, float, str]] = []

        # 1. one month: wrapper vs plain pg_dump of the same partition
        def ours_month():
            with db.connect(conninfo) as c:
                return backup_month(c, store, client, conninfo=conninfo, month=OTHER, keep_generations=1)

        def plain_month():
            target = workdir / "plain.dump"
            target.unlink(missing_ok=True)
            run_tool(client, "pg_dump", ["--format=custom", "--table", pattern("public", "event_logs_2025_03"),
                                         f"--file={target}"], conninfo=conninfo, what="plain pg_dump")
            return target.stat().st_size

        plain_s, plain_bytes = timed(plain_month, repeat)
        ours_s, backup = timed(ours_month, repeat)
        m = backup.generation.manifest
        results.append(("month backup, s", ours_s, plain_s, f"{m.bytes / 1e6 / ours_s:.1f} vs "
                        f"{plain_bytes / 1e6 / plain_s:.1f} MB/s ({m.bytes / 1e6:.1f} MB, {m.rows} rows)"))
        verify_s, verification = timed(
            lambda: verify_month_backup(store, backup.generation, conninfo=conninfo, client=client), repeat)
        assert verification.ok, verification.error
        results.append(("month verify (scratch restore) vs backup, s", verify_s, ours_s, verification.method))

        # 2. full backup with -j 2 vs plain pg_dump -Fd -j 2
        def ours_full():
            with db.connect(conninfo) as c:
                return full_backup(c, store, client, conninfo=conninfo, jobs=2, keep_generations=1)

        def plain_full():
            target = workdir / f"plain_full_{uuid.uuid4().hex[:6]}"
            run_tool(client, "pg_dump", ["--format=directory", "--jobs=2", f"--file={target}"],
                     conninfo=conninfo, what="plain pg_dump -Fd")
            return target

        plain_full_s, _ = timed(plain_full, repeat)
        ours_full_s, full = timed(ours_full, repeat)
        fm = full.generation.manifest
        results.append(("full backup -j 2, s", ours_full_s, plain_full_s,
                        f"{fm.bytes / 1e6:.1f} MB, {len(fm.tables)} tables, {fm.rows} rows"))
        verify_full_s, full_verification = timed(
            lambda: verify_full_backup(store, full.generation, conninfo=conninfo, client=client, jobs=2), 1)
        assert full_verification.ok, full_verification.error
        results.append(("full verify (scratch restore -j 2) vs backup, s", verify_full_s, ours_full_s, ""))

        # 3. retirement of one month vs DELETE of an identical month (destructive: once)
        with db.connect(conninfo) as c:
            generation = backup_month(c, store, client, conninfo=conninfo, month=RETIRED).generation
        assert verify_month_backup(store, generation, conninfo=conninfo, client=client).ok
        with db.connect(conninfo) as c:
            started = time.perf_counter()
            retired = retire_month(c, store, conninfo=conninfo, month=RETIRED, policy=RetentionPolicy(),
                                   today=datetime.now(timezone.utc).date())
            retire_s = time.perf_counter() - started
            lower, upper = month_bounds_utc(DELETED)
            started = time.perf_counter()
            deleted = c.execute("DELETE FROM event_logs WHERE server_timestamp >= %s AND server_timestamp < %s",
                                (lower, upper)).rowcount
            c.commit()
            delete_s = time.perf_counter() - started
        with db.connect(conninfo, autocommit=True) as c:
            started = time.perf_counter()
            c.execute("VACUUM event_logs_2025_02")
            vacuum_s = time.perf_counter() - started
        assert retired.rows_retired == deleted == rows
        results.append(("retire month vs DELETE, s", retire_s, delete_s,
                        f"{rows} rows, detach {retired.detach_mode} (incl. checksum recount)"))
        results.append(("retire month vs DELETE + VACUUM, s", retire_s, delete_s + vacuum_s,
                        "space back only after VACUUM; DROP returns it at once"))

        print(f"\nbench_backups: {rows} rows per month, repeat {repeat}, client {client.describe()}\n")
        print(f"| {'measure':<48} | {'ours':>9} | {'baseline':>9} | {'ratio':>6} | note")
        print(f"|{'-' * 50}|{'-' * 11}|{'-' * 11}|{'-' * 8}|------")
        for label, ours, base, note in results:
            print(f"| {label:<48} | {ours:9.3f} | {base:9.3f} | {ours / base:6.2f} | {note}")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        db.drop_database(server, name)


if __name__ == "__main__":
    raise SystemExit(main())
