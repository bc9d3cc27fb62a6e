"""Benchmark: threshold-sensor tick, partition_sizes and partition_counts at 100 and 1,000 partitions.

Side by side in one run, on the same scratch database (event_logs with N monthly
partitions, a few rows each), against the seed's way of doing the same:
- sizes: our ``partition_sizes`` view read into a DataFrame vs the seed's §4.2
  view (``relname LIKE 'event_logs_%'``) and the seed's shell query over
  ``pg_tables`` (``pg_total_relation_size(schemaname||'.'||tablename)``);
- counts: our ``partition_counts`` view vs the seed's (min/max of names);
- sensor tick: a full in-process evaluation of ``partition_threshold_sensor`` (connect,
  read sizes, evaluate the policy, plan runs) vs the seed's bare size query.
Reported as median seconds over the repetitions, ratio = ours / seed.

    /work/venv/bin/python bench/bench_monitoring.py [--quick] [--repeat 5]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server); creates its own scratch
database and drops it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from cosmic_ops import db, schema  # noqa: E402
from cosmic_ops.assets.monitoring import partition_threshold_sensor, vacuum_partition_job  # noqa: E402
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.monitoring import read_partition_counts, read_partition_sizes  # noqa: E402
from cosmic_ops.resources import PostgresResource  # noqa: E402
from cosmic_ops.resources.backup_store import BackupStoreResource  # noqa: E402
from cosmic_ops.timeutil import add_months, month_bounds_utc  # noqa: E402

# The seed's monitoring, verbatim apart from the view names (seed 000 §4.1, §4.2).
SEED_SIZES_VIEW = """
CREATE VIEW seed_partition_sizes AS
SELECT n.nspname as schema_name, c.relname as table_name,
    pg_size_pretty(pg_total_relation_size(c.oid)) as total_size,
    pg_size_pretty(pg_relation_size(c.oid)) as table_size,
    pg_stat_get_live_tuples(c.oid) as live_tuples,
    pg_stat_get_dead_tuples(c.oid) as dead_tuples
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND (c.relname LIKE 'event_logs_%' OR c.relname LIKE 'celestial_bodies_%')
ORDER BY pg_total_relation_size(c.oid) DESC
"""
SEED_COUNTS_VIEW = """
CREATE VIEW seed_partition_counts AS
SELECT parent.relname as parent_table, COUNT(*) as partition_count,
    MIN(child.relname) as oldest_partition, MAX(child.relname) as newest_partition
FROM pg_inherits
JOIN pg_class parent ON pg_inherits.inhparent = parent.oid
JOIN pg_class child ON pg_inherits.inhrelid = child.oid
GROUP BY parent.relname
"""
SEED_SHELL_QUERY = """
SELECT schemaname, tablename,
    pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) as size
FROM pg_tables
WHERE tablename LIKE 'event_logs_%' OR tablename LIKE 'celestial_bodies_%'
ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC
"""


def create_months(conn: psycopg.Connection, count: int, rows_per_month: int) -> None:
    """``count`` monthly event_logs partitions ending next year, ``rows_per_month`` rows each."""
    first = add_months(date(datetime.now(timezone.utc).year + 1, 1, 1), -count)
    months = [add_months(first, i) for i in range(count)]
    statements = []
    for month in months:
        lower, upper = month_bounds_utc(month)
        statements.append(sql.SQL("CREATE TABLE {} PARTITION OF event_logs FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(f"event_logs_{lower:%Y_%m}"), sql.Literal(lower), sql.Literal(upper)))
    for start in range(0, len(statements), 200):
        with conn.transaction():
            conn.execute(sql.SQL(";\n").join(statements[start:start + 200]))
    with conn.transaction():
        conn.execute(
            "INSERT INTO event_logs (server_timestamp, player_id, event_type) "
            "SELECT m + (g * interval '1 hour'), g, 'player_login' "
            "FROM generate_series(%s::timestamptz, %s::timestamptz, interval '1 month') m, "
            "generate_series(1, %s) g",
            (f"{months[0].isoformat()} 00:00+00", f"{months[-1].isoformat()} 00:00+00", rows_per_month))
    conn.execute("ANALYZE event_logs")
    conn.commit()


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    work()  # warm the catalog caches once, as a running deployment has them
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def measure(conninfo: str, partitions: int, repeat: int) -> list[tuple[str, int, float, float]]:
    resource = PostgresResource(database_url=conninfo)
    instance = dg.DagsterInstance.ephemeral()
    # The job the sensor targets also holds the tables it vacuums, which reads retirement journals
    # from the backup store; the sensor's tick only needs the resource to exist.
    store = BackupStoreResource(root=tempfile.mkdtemp(prefix="bench_monitoring_store_"))
    defs = dg.Definitions(sensors=[partition_threshold_sensor], jobs=[vacuum_partition_job],
                          resources={"postgres": resource, "backup_store": store})

    def tick() -> object:
        context = dg.build_sensor_context(resources={"postgres": resource}, instance=instance, definitions=defs)
        return partition_threshold_sensor.evaluate_tick(context)

    with db.connect(conninfo) as conn:
        def query(text: str) -> Callable[[], object]:
            def run() -> object:
                rows = conn.execute(text).fetchall()
                conn.commit()
                return rows
            return run

        def ours(read: Callable[[psycopg.Connection], object]) -> Callable[[], object]:
            def run() -> object:
                frame = read(conn)
                conn.commit()
                return frame
            return run

        leaves = len(read_partition_sizes(conn))
        seed_leaves = len(conn.execute(SEED_SHELL_QUERY).fetchall())
        conn.commit()
        return [
            ("partition_sizes: ours vs seed view", leaves,
             median_seconds(ours(read_partition_sizes), repeat),
             median_seconds(query("SELECT * FROM seed_partition_sizes"), repeat)),
            ("partition_sizes: ours vs seed shell query", seed_leaves,
             median_seconds(ours(read_partition_sizes), repeat),
             median_seconds(query(SEED_SHELL_QUERY), repeat)),
            ("partition_counts: ours vs seed view", leaves,
             median_seconds(ours(read_partition_counts), repeat),
             median_seconds(query("SELECT * FROM seed_partition_counts"), repeat)),
            ("sensor tick vs seed size query", leaves,
             median_seconds(tick, repeat),
             median_seconds(query(SEED_SHELL_QUERY), repeat)),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (10 and 50 partitions)")
    parser.add_argument("--repeat", type=int, default=None, help="timed repetitions per measurement")
    args = parser.parse_args(argv)
    sizes = (10, 50) if args.quick else (100, 1000)
    repeat = args.repeat or (2 if args.quick else 5)
    rows_per_month = 5 if args.quick else 20

    server = resolve_conninfo()
    results = []
    for partitions in sizes:
        name = f"cosmic_bench_monitoring_{uuid.uuid4().hex[:8]}"
        conninfo = db.create_database(server, name)
        try:
            with db.connect(conninfo) as conn:
                schema.bootstrap(conn)
                conn.execute(SEED_SIZES_VIEW)
                conn.execute(SEED_COUNTS_VIEW)
                conn.commit()
                started = time.perf_counter()
                create_months(conn, partitions, rows_per_month)
                print(f"# {partitions} event_logs partitions created in {time.perf_counter() - started:.1f}s",
                      file=sys.stderr)
            for label, leaves, ours_s, seed_s in measure(conninfo, partitions, repeat):
                results.append((partitions, label, leaves, ours_s, seed_s))
        finally:
            db.drop_database(server, name)

    print(f"server: {db.redact(server)}; median of {repeat} runs; ratio = ours / seed")
    header = f"{'partitions':>10}  {'measurement':<42} {'rows':>6} {'ours (ms)':>10} {'seed (ms)':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for partitions, label, leaves, ours_s, seed_s in results:
        ratio = ours_s / seed_s if seed_s else float("inf")
        print(f"{partitions:>10}  {label:<42} {leaves:>6} {ours_s * 1000:>10.1f} {seed_s * 1000:>10.1f} {ratio:>6.2f}x")
    ticks = [ours_s for partitions, label, _, ours_s, _ in results if label.startswith("sensor tick")]
    print(f"slowest sensor tick: {max(ticks):.3f}s (Dagster's limit: 60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
