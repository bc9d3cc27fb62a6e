"""Benchmark: archive of destroyed bodies and packing of inactive saves, beside the seed's functions.

One run, one server, the same generated data for every contender (each gets its
own copy of one demo database, ``CREATE DATABASE ... TEMPLATE``):

- archive: the seed's ``archive_destroyed_celestial_bodies()`` (one transaction:
  INSERT ... SELECT, then DELETE) vs ``archive_destroyed_bodies`` month by month
  at its default throttle and unthrottled. Each runs while pgbench plays a game
  workload at a fixed rate (``-R``: insert into ``event_logs`` + update a live
  body per transaction); we report rows/s and the workload's p99 / mean latency
  during the archive, from pgbench's per-transaction log. Rows/s and the latency
  window are those of the call itself (the seed's function; our
  ``archive_destroyed_bodies`` with its conservation counts), not of connecting
  and finding the due months, which the monthly asset does not do. Δp99 compares it with
  the median p99 of idle windows as long as the archive (same clone, just before
  and just after): a short window's p99 is more often caught by a hiccup of the
  machine than a long one's. A control contender runs nothing for as long as
  ours default took; its Δp99 is the method's own noise. A floor contender
  spends the seed's own busy time as pure CPU (counting, no WAL, no locks, no
  pages), half the time, as an archive at half the seed's rows/s and the seed's
  cost per row must: its Δp99 is what the machine charges for that much CPU
  alone, a lower bound for such an archive. A second floor does the same with
  half the CPU (an archive twice as cheap per row as the seed's), to show how
  much less CPU buys.
- compression: the seed's ``compress_inactive_saves()`` vs
  ``compress_inactive_saves`` month by month: saves/s, and bytes of the rows
  replaced vs bytes stored. The seed never defines ``compress_save_data()``;
  the baseline below does what its comment says ("aggregate the related data
  into JSONB and compress"): ``jsonb_build_object`` of ``jsonb_agg(to_jsonb(row))``
  per table, stored as bytea, so the only compression is PostgreSQL's TOAST (pglz).
  Our zstd dictionary is trained once in the base database before the copies are
  made, as in production, where the first run trains it and every later run uses it
  (its one-off time is printed apart).

Ratios are ours / seed (rows/s, saves/s) and seed stored bytes / ours.

    /work/venv/bin/python bench/bench_lifecycle.py [--quick] [--scale small|default] [--rate 500]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server) and pgbench from PATH
or /usr/bin; creates scratch databases and drops them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

# cosmic_ops.demo (numpy, pandas) is imported where it is used: worker processes are spawned
# and re-import this script, which would otherwise charge each worker a second of imports.
from _common import Latency, Server, Workload, build_demo, due_months, scalar, wait  # noqa: E402
from cosmic_ops import db  # noqa: E402
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.lifecycle import (  # noqa: E402
    ArchivePolicy, SavePolicy, Throttle, archive_destroyed_bodies, compress_inactive_saves,
)
from cosmic_ops.lifecycle.archive import DEFAULT_THROTTLE  # noqa: E402
from cosmic_ops.lifecycle.saves import train_dictionary_once  # noqa: E402

# The benchmark's one clock: demo data and every age-based decision are as of this instant.
NOW = datetime.now(timezone.utc)

# --- the seed's functions, verbatim (seed 000, §3.1 and §3.2) --------------------------------
SEED_ARCHIVE = """
CREATE OR REPLACE FUNCTION archive_destroyed_celestial_bodies()
RETURNS void AS $$
BEGIN
    -- 30日以上前に削除された天体をアーカイブ
    INSERT INTO celestial_bodies_archive
    SELECT * FROM celestial_bodies
    WHERE is_destroyed = true
    AND updated_at < CURRENT_TIMESTAMP - interval '30 days';

    -- 元テーブルから削除
    DELETE FROM celestial_bodies
    WHERE is_destroyed = true
    AND updated_at < CURRENT_TIMESTAMP - interval '30 days';
END;
$$ LANGUAGE plpgsql;
"""
SEED_COMPRESS = """
CREATE OR REPLACE FUNCTION compress_inactive_saves()
RETURNS void AS $$
DECLARE
    save_record RECORD;
BEGIN
    FOR save_record IN
        SELECT id FROM game_saves
        WHERE is_active = false
        AND updated_at < CURRENT_TIMESTAMP - interval '7 days'
        AND compressed_state IS NULL
    LOOP
        -- 関連データをJSONBに集約して圧縮
        UPDATE game_saves
        SET compressed_state = compress_save_data(save_record.id)
        WHERE id = save_record.id;

        -- 圧縮後、関連テーブルから削除
        DELETE FROM celestial_bodies WHERE save_id = save_record.id;
        DELETE FROM save_resources WHERE save_id = save_record.id;
        DELETE FROM save_research WHERE save_id = save_record.id;
    END LOOP;
END;
$$ LANGUAGE plpgsql;
"""
# The seed's missing piece, as its comment describes it (see the module docstring).
BASELINE_COMPRESS_SAVE_DATA = """
CREATE OR REPLACE FUNCTION compress_save_data(p_save_id bigint)
RETURNS bytea AS $$
    SELECT convert_to(jsonb_build_object(
        'celestial_bodies', COALESCE((SELECT jsonb_agg(to_jsonb(c)) FROM celestial_bodies c
                                      WHERE c.save_id = p_save_id), '[]'::jsonb),
        'save_resources', COALESCE((SELECT jsonb_agg(to_jsonb(r)) FROM save_resources r
                                    WHERE r.save_id = p_save_id), '[]'::jsonb),
        'save_research', COALESCE((SELECT jsonb_agg(to_jsonb(s)) FROM save_research s
                                   WHERE s.save_id = p_save_id), '[]'::jsonb)
    )::text, 'UTF8')
$$ LANGUAGE sql STABLE;
"""
SEED_FUNCTIONS = (SEED_ARCHIVE, SEED_COMPRESS, BASELINE_COMPRESS_SAVE_DATA)

DUE_BODIES = "is_destroyed AND updated_at < now() - interval '30 days'"
DUE_SAVES = "NOT is_active AND compressed_state IS NULL AND updated_at < now() - interval '7 days'"


def only_the_workload_logs(conn: psycopg.Connection) -> None:
    """Only the workload writes event_logs here; its history only slows the copies."""
    conn.execute("TRUNCATE event_logs")


def count_due(table: str, due: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(table), sql.SQL(due))


# --- pgbench --------------------------------------------------------------------------------
def window_p99s(samples: list[tuple[float, float]], length: float, least: int = 100) -> list[float]:
    """The p99 of each consecutive ``length``-second window of ``samples`` (end time, latency ms).

    A p99 taken over a short window is noisier, and more often caught by a hiccup of
    the machine, than one taken over a long window: the archive's window is compared
    with idle windows of the same length.
    """
    if not samples or length <= 0:
        return []
    first = min(end for end, _ in samples)
    windows: dict[int, list[tuple[float, float]]] = {}
    for end, latency in samples:
        windows.setdefault(int((end - first) // length), []).append((end, latency))
    return [Latency.of(w).p99_ms for w in windows.values() if len(w) >= least]


@dataclass
class ArchiveRun:
    name: str
    rows: int
    seconds: float
    moving_s: float
    wal_bytes: int
    idle: Latency
    during: Latency
    idle_windows: list[float]  # p99 of each idle window as long as the archive (before and after it)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def moving_rows_per_s(self) -> float:
        """Rows/s of the batches alone (ours also counts the scope before and after, to check conservation)."""
        return self.rows / self.moving_s if self.moving_s else 0.0

    @property
    def baseline_p99(self) -> float:
        """Idle p99 over windows as long as the archive's: the median of those before and after it."""
        return statistics.median(self.idle_windows) if self.idle_windows else self.idle.p99_ms

    @property
    def p99_rise(self) -> float:
        return self.during.p99_ms - self.baseline_p99


def wal_lsn(url: str) -> int:
    return int(scalar(url, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


@dataclass
class Timed:
    """What a contender did: rows moved (None: moves nothing), when its call ran (wall clock), and
    how long its batches took (for ours, the call minus its conservation counts before and
    after; the seed's call is all batch).

    The call is what the monthly asset runs: connecting and finding the due months are the
    benchmark's own work (the asset gets its month from the partition key), so they stay out.
    """

    rows: int | None
    began: float
    ended: float
    moving_s: float

    @classmethod
    def since(cls, began: float, rows: int | None = None, moving_s: float | None = None) -> "Timed":
        ended = time.time()
        return cls(rows, began, ended, ended - began if moving_s is None else moving_s)


def run_archive(server: Server, base: str, name: str, players: int, bodies: int, rate: int, idle_s: float,
                during_s: float, work: Callable[[str], Timed]) -> ArchiveRun:
    url = server.clone(f"{base}_{name}", base, *SEED_FUNCTIONS)
    workload = Workload(url, players, bodies, rate)
    try:
        wal0 = wal_lsn(url)
        wait(workload.start(idle_s, "idle"))
        idle = workload.samples("idle")
        # WAL of the workload alone, per second, to leave it out of the archive's figure.
        workload_wal_per_s = (wal_lsn(url) - wal0) / idle_s
        due = scalar(url, count_due("celestial_bodies", DUE_BODIES))
        # pgbench writes its log only when it exits normally, so it runs a fixed time that
        # covers the archive; latencies are taken from transactions that ended during it,
        # and from those that ended after it (a second idle baseline, from the same run).
        bench = workload.start(during_s, "during")
        time.sleep(2.0)
        wal0 = wal_lsn(url)
        timed = work(url)
        wal1 = wal_lsn(url)
        moved, started, ended = timed.rows, timed.began, timed.ended
        wait(bench)
        if ended - started > during_s - 2.5:
            print(f"  note: {name} outlasted the pgbench window ({ended - started:.1f}s); raise --during-seconds")
        during = workload.samples("during", (started, ended))
        after = workload.samples("during", (ended + 0.5, float("inf")))
        if moved is not None and moved != due:
            raise RuntimeError(f"{name}: moved {moved} rows, {due} were due")
        archive_wal = wal1 - wal0 - workload_wal_per_s * (ended - started)
        # Only windows about as full as the archive's count: the tail of each run is shorter.
        least = max(100, int(0.8 * len(during)))
        windows = window_p99s(idle, ended - started, least) + window_p99s(after, ended - started, least)
        return ArchiveRun(name, moved or 0, ended - started, timed.moving_s, max(0, int(archive_wal)),
                          Latency.of(idle), Latency.of(during), windows)
    finally:
        workload.cleanup()
        server.drop(f"{base}_{name}")


def seed_archive(url: str) -> Timed:
    with db.connect(url) as conn:
        due = conn.execute(count_due("celestial_bodies", DUE_BODIES)).fetchone()[0]
        conn.commit()
        began = time.time()
        conn.execute("SELECT archive_destroyed_celestial_bodies()")
        conn.commit()
        return Timed.since(began, due)


def tried_throttle(spec: str) -> tuple[str, Callable[[str], Timed]]:
    """An archive contender from ``--try-throttle BATCH,CAP,COEF[,nolock]``, to compare pacings."""
    batch, cap, coef, *lock = spec.split(",")
    throttle = Throttle(batch_size=int(batch), max_rows_per_s=float(cap) or None, sleep_coef=float(coef) or None)
    policy = ArchivePolicy(throttle=throttle, skip_locked=lock != ["nolock"])
    return f"ours {batch}/batch, cap {cap}, sleep coef {coef}{', no lock' if lock else ''}", our_archive(policy)


def idle_for(seconds: float) -> Callable[[str], Timed]:
    """The control: nothing runs for ``seconds``, measured like an archive.

    Its Δp99 is the method's own noise on this machine: what a contender's Δp99
    cannot be told apart from.
    """
    def work(url: str) -> Timed:
        began = time.time()
        time.sleep(seconds)
        return Timed.since(began)
    return work


def cpu_floor(busy_s: float, duty: float = 0.5, pulse_s: float = 0.05) -> Callable[[str], Timed]:
    """Pure CPU in one backend: ``busy_s`` of counting, in pulses of ``pulse_s``, busy ``duty`` of the time.

    With ``busy_s`` the seed's archive time and ``duty`` 0.5, this is the CPU an
    archive needs to move the seed's rows at half its rows/s if each row costs what it
    costs the seed, without the WAL, locks and page traffic a real move adds. The
    pulses are about as long as one of our default batches.
    """
    def work(url: str) -> Timed:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET jit = off")  # else each pulse would pay for compiling its query
            count = "SELECT count(*) FROM generate_series(1, %s)"
            calibration = time.perf_counter()
            conn.execute(count, (2_000_000,))
            per_s = 2_000_000 / (time.perf_counter() - calibration)
            began, busy = time.time(), 0.0
            while busy < busy_s:
                pulse = time.perf_counter()
                conn.execute(count, (max(1, int(per_s * min(pulse_s, busy_s - busy))),))
                took = time.perf_counter() - pulse
                busy += took
                time.sleep(took * (1 - duty) / duty)
            return Timed.since(began)
    return work


def our_archive(policy: ArchivePolicy) -> Callable[[str], Timed]:
    """All due months in one call, as a single-run backfill of the monthly asset does."""
    def work(url: str) -> Timed:
        with db.connect(url) as conn:
            months = due_months(conn, "celestial_bodies", DUE_BODIES)
            began = time.time()
            report = archive_destroyed_bodies(conn, months[0], policy, now=NOW, through=months[-1],
                                              worker_sessions=db.SessionSpec(url))
            timed = Timed.since(began, report.log.moved, report.moving_s)
        assert report.conserved and report.rows_remaining == 0
        return timed
    return work


# --- compression ----------------------------------------------------------------------------
@dataclass
class CompressRun:
    name: str
    saves: int
    seconds: float
    row_bytes: int
    footprint_bytes: int
    stored_bytes: int
    tables_before: int
    tables_after: int

    @property
    def saves_per_s(self) -> float:
        return self.saves / self.seconds if self.seconds else 0.0


FOOTPRINT = """
WITH due AS (SELECT id FROM game_saves WHERE {due})
SELECT sum(per_row * rows)::bigint FROM (
  SELECT (SELECT count(*) FROM celestial_bodies WHERE save_id IN (SELECT id FROM due)) AS rows,
         (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('celestial_bodies'))::float8
           / (SELECT count(*) FROM celestial_bodies) AS per_row
  UNION ALL
  SELECT (SELECT count(*) FROM save_resources WHERE save_id IN (SELECT id FROM due)),
         pg_total_relation_size('save_resources')::float8 / (SELECT count(*) FROM save_resources)
  UNION ALL
  SELECT (SELECT count(*) FROM save_research WHERE save_id IN (SELECT id FROM due)),
         pg_total_relation_size('save_research')::float8 / (SELECT count(*) FROM save_research)) t
"""
TUPLE_BYTES = """
WITH due AS (SELECT id FROM game_saves WHERE {due})
SELECT (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM celestial_bodies c WHERE save_id IN (SELECT id FROM due))
     + (SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM save_resources r WHERE save_id IN (SELECT id FROM due))
     + (SELECT coalesce(sum(pg_column_size(s.*)), 0) FROM save_research s WHERE save_id IN (SELECT id FROM due))
"""
TABLES_BYTES = """
SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('celestial_bodies'))
     + pg_total_relation_size('save_resources') + pg_total_relation_size('save_research')
     + pg_total_relation_size('game_saves')
"""


def run_compress(server: Server, base: str, name: str, work: Callable[[str], int], *,
                 seed_schema: bool = False) -> CompressRun:
    url = server.clone(f"{base}_{name}", base, *SEED_FUNCTIONS)
    due_sql = sql.SQL(DUE_SAVES)
    with psycopg.connect(url) as conn:
        if seed_schema:
            # The seed stores its JSONB as bytea and relies on TOAST's pglz: give it the
            # default storage back (our schema stores already-compressed packs EXTERNAL).
            conn.execute("ALTER TABLE game_saves ALTER COLUMN compressed_state SET STORAGE EXTENDED")
            conn.commit()
        saves_due = conn.execute(sql.SQL("SELECT count(*) FROM game_saves WHERE {}").format(due_sql)).fetchone()[0]
        tuple_bytes = int(conn.execute(sql.SQL(TUPLE_BYTES).format(due=due_sql)).fetchone()[0])
        footprint = int(conn.execute(sql.SQL(FOOTPRINT).format(due=due_sql)).fetchone()[0])
        tables_before = int(conn.execute(sql.SQL(TABLES_BYTES)).fetchone()[0])
    started = time.perf_counter()
    packed = work(url)
    seconds = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        stored, count = conn.execute("SELECT coalesce(sum(pg_column_size(compressed_state)), 0), count(*) "
                                     "FROM game_saves WHERE compressed_state IS NOT NULL").fetchone()
        left = conn.execute("SELECT (SELECT count(*) FROM celestial_bodies c JOIN game_saves g ON g.id = c.save_id "
                            "WHERE g.compressed_state IS NOT NULL)").fetchone()[0]
        tables_after = int(conn.execute(sql.SQL(TABLES_BYTES)).fetchone()[0])
    server.drop(f"{base}_{name}")
    if count != saves_due or packed != saves_due or left:
        raise RuntimeError(f"{name}: packed {packed}/{count} of {saves_due} due saves; {left} rows left behind")
    return CompressRun(name, packed, seconds, tuple_bytes, footprint, stored, tables_before, tables_after)


def seed_compress(url: str) -> int:
    with db.connect(url) as conn:
        due = conn.execute(count_due("game_saves", DUE_SAVES)).fetchone()[0]
        conn.commit()
        conn.execute("SELECT compress_inactive_saves()")
        conn.commit()
    return due


def our_compress(policy: SavePolicy) -> Callable[[str], int]:
    """All due months in one call, as a single-run backfill of the monthly asset does."""
    def work(url: str) -> int:
        with db.connect(url) as conn:
            months = due_months(conn, "game_saves", DUE_SAVES)
            report = compress_inactive_saves(conn, months[0], policy, now=NOW, through=months[-1],
                                             worker_sessions=db.SessionSpec(url))
        return report.log.moved
    return work


# --- report ---------------------------------------------------------------------------------
def print_archive(runs: list[ArchiveRun], rate: int) -> None:
    seed = runs[0]
    print(f"\nArchive of destroyed bodies (concurrent pgbench at {rate} tps). Δp99: p99 of the transactions that "
          "ended during the archive minus the median p99 of idle windows as long as it, before and after")
    header = (f"{'contender':<52}{'rows':>8}{'s':>7}{'rows/s':>8}{'x seed':>7}{'moving':>8}{'x seed':>7}"
              f"{'WAL MB':>7}{'p99 idle':>9}{'during':>8}{'Δp99 ms':>8}{'whole idle':>11}{'avg idle':>9}"
              f"{'during':>7}{'n':>6}")
    print(header)
    print("-" * len(header))
    for run in runs:
        if run.rows:
            speed = (f"{run.rows:>8}{run.seconds:>7.2f}{run.rows_per_s:>8.0f}{run.rows_per_s / seed.rows_per_s:>7.2f}"
                     f"{run.moving_rows_per_s:>8.0f}{run.moving_rows_per_s / seed.moving_rows_per_s:>7.2f}")
        else:
            speed = f"{'-':>8}{run.seconds:>7.2f}{'-':>8}{'-':>7}{'-':>8}{'-':>7}"
        print(f"{run.name:<52}{speed}{run.wal_bytes / 2**20:>7.1f}{run.baseline_p99:>9.2f}{run.during.p99_ms:>8.2f}"
              f"{run.p99_rise:>8.2f}{run.idle.p99_ms:>11.2f}{run.idle.mean_ms:>9.2f}{run.during.mean_ms:>7.2f}"
              f"{run.during.transactions:>6}")


def print_archive_medians(rounds: list[list[ArchiveRun]]) -> None:
    print(f"\nArchive, medians over {len(rounds)} rounds (contenders alternate within each round); "
          "'moving' leaves out our conservation counts before and after")
    header = (f"{'contender':<52}{'rows/s':>9}{'x seed':>8}{'moving x seed':>14}{'Δp99 ms':>9}   Δp99 per round")
    print(header)
    print("-" * len(header))
    for index in range(len(rounds[0])):
        runs = [r[index] for r in rounds]
        deltas = [run.p99_rise for run in runs]
        if runs[0].rows:
            ratio = statistics.median(r[index].rows_per_s / r[0].rows_per_s for r in rounds)
            moving = statistics.median(r[index].moving_rows_per_s / r[0].moving_rows_per_s for r in rounds)
            speed = f"{statistics.median(r.rows_per_s for r in runs):>9.0f}{ratio:>8.2f}{moving:>14.2f}"
        else:
            speed = f"{'-':>9}{'-':>8}{'-':>14}"
        print(f"{runs[0].name:<52}{speed}{statistics.median(deltas):>9.2f}   {' '.join(f'{d:.1f}' for d in deltas)}")


def print_compress(runs: list[CompressRun]) -> None:
    seed = runs[0]
    print("\nPacking inactive saves (bytes: rows replaced, as tuples and as their share of table+index size, "
          "vs stored compressed_state)")
    header = (f"{'contender':<34}{'saves':>7}{'s':>8}{'saves/s':>9}{'x seed':>8}{'tuple MB':>9}{'disk MB':>9}"
              f"{'stored MB':>10}{'tuple/st':>9}{'disk/st':>8}{'seed st/ours':>13}{'tables +%':>10}")
    print(header)
    print("-" * len(header))
    for run in runs:
        growth = 100.0 * (run.tables_after - run.tables_before) / run.tables_before
        print(f"{run.name:<34}{run.saves:>7}{run.seconds:>8.2f}{run.saves_per_s:>9.0f}"
              f"{run.saves_per_s / seed.saves_per_s:>8.2f}{run.row_bytes / 2**20:>9.2f}{run.footprint_bytes / 2**20:>9.2f}"
              f"{run.stored_bytes / 2**20:>10.2f}{run.row_bytes / run.stored_bytes:>9.2f}"
              f"{run.footprint_bytes / run.stored_bytes:>8.2f}{seed.stored_bytes / run.stored_bytes:>13.2f}"
              f"{growth:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: small scale, short pgbench windows")
    from cosmic_ops import demo

    parser.add_argument("--scale", choices=sorted(demo.SCALES), default=None)
    parser.add_argument("--rate", type=int, default=None, help="pgbench transactions per second")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds of each part (medians reported); default 3, quick 1")
    parser.add_argument("--only", choices=("archive", "compress"), default=None, help="run one of the two parts")
    parser.add_argument("--reuse-base", default=None, help=argparse.SUPPRESS)  # a kept demo database, for tuning
    parser.add_argument("--idle-seconds", type=float, default=None, help="pgbench alone, for the idle latency")
    parser.add_argument("--during-seconds", type=float, default=None,
                        help="pgbench window around each archive (must outlast it)")
    parser.add_argument("--try-throttle", action="append", default=[], metavar="BATCH,CAP,COEF[,nolock]",
                        help="an extra archive contender: rows per batch, rows/s cap (0: none), sleep "
                             "coefficient (0: none), 'nolock' for no row locks; may be repeated")
    args = parser.parse_args()
    scale = args.scale or ("small" if args.quick else "default")
    rate = args.rate or (100 if args.quick else 500)
    idle_s = args.idle_seconds or (1 if args.quick else 12)
    during_s = args.during_seconds or (3 if args.quick else 20)
    args.repeat = args.repeat or (1 if args.quick else 3)

    server = Server(resolve_conninfo(os.environ.get("COSMIC_OPS_DATABASE_URL")))
    base = args.reuse_base or f"bench_lifecycle_{uuid.uuid4().hex[:8]}"
    try:
        started = time.perf_counter()
        if args.reuse_base:
            players, bodies = (scalar(server.url(base), q) for q in (
                "SELECT max(player_id) FROM players", "SELECT max(id) FROM celestial_bodies"))
        else:
            _, players, bodies = build_demo(server, base, scale, as_of=NOW.date(),
                                            reshape=only_the_workload_logs)
        print(f"data: demo scale {scale!r}, {bodies} bodies, built in {time.perf_counter() - started:.1f}s "
              f"on {db.redact(server.conninfo)}")
        if args.only != "archive":
            started = time.perf_counter()
            with db.connect(server.url(base)) as conn:
                trained = train_dictionary_once(conn, SavePolicy().codec)
            if trained:
                print(f"save dictionary: {len(trained.data)} bytes, trained once in "
                      f"{time.perf_counter() - started:.1f}s (before the copies, as a first run does)")
        unthrottled = ArchivePolicy(throttle=Throttle(batch_size=50_000, pause_s=0.0), skip_locked=False, workers=2)
        throttle = DEFAULT_THROTTLE
        contenders = [
            ("seed archive (1 transaction)", seed_archive),
            (f"ours default ({throttle.batch_size}/batch, cap {throttle.max_rows_per_s or 0:.0f} rows/s)",
             our_archive(ArchivePolicy())),
            ("ours unthrottled (50000/batch, no lock, 2 sessions)", our_archive(unthrottled)),
        ]
        contenders += [tried_throttle(spec) for spec in args.try_throttle]
        # Sized from runs earlier in the same round: ours default's time, the seed's.
        sized_later = {
            "control: nothing runs, as long as ours default": lambda runs: idle_for(runs[1].seconds),
            "floor: seed's busy time as pure CPU, busy half the time": lambda runs: cpu_floor(runs[0].seconds),
            "floor: half of it, busy a quarter of the time": lambda runs: cpu_floor(runs[0].seconds / 2, duty=0.25),
        }
        contenders += list(sized_later.items())
        rounds: list[list[ArchiveRun]] = []
        for number in range(1, args.repeat + 1 if args.only != "compress" else 1):
            runs = []
            for index, (label, work) in enumerate(contenders):
                work = work(runs) if label in sized_later else work
                run = run_archive(server, base, f"arch{number}_{index}", players, bodies, rate, idle_s, during_s, work)
                run.name = label
                runs.append(run)
            print(f"\n[round {number} of {args.repeat}]", end="")
            print_archive(runs, rate)
            rounds.append(runs)
        if len(rounds) > 1:
            print_archive_medians(rounds)

        if args.only == "archive":
            return
        policy = SavePolicy()
        compress_contenders = [
            ("seed loop + JSONB baseline", seed_compress, True),
            ("ours, 1 session", our_compress(SavePolicy(workers=1)), False),
            (f"ours ({policy.codec.name}-{policy.codec.level}, {policy.throttle.batch_size} saves/tx, "
             f"{policy.workers} worker processes)", our_compress(policy), False),
        ]
        compress_rounds: list[list[CompressRun]] = []
        for number in range(1, args.repeat + 1):
            runs = []
            for index, (label, work, seed_schema) in enumerate(compress_contenders):
                run = run_compress(server, base, f"pack{number}_{index}", work, seed_schema=seed_schema)
                run.name = label
                runs.append(run)
            print(f"\n[round {number} of {args.repeat}]", end="")
            print_compress(runs)
            compress_rounds.append(runs)
        if len(compress_rounds) > 1:
            print(f"\nPacking, medians over {len(compress_rounds)} rounds")
            for index, (label, _, _) in enumerate(compress_contenders):
                speed = statistics.median(r[index].saves_per_s / r[0].saves_per_s for r in compress_rounds)
                per_round = " ".join(f"{r[index].saves_per_s / r[0].saves_per_s:.2f}" for r in compress_rounds)
                print(f"  {label:<58} {statistics.median(r[index].saves_per_s for r in compress_rounds):>6.0f} "
                      f"saves/s  {speed:.2f}x seed  ({per_round})")
    finally:
        server.drop_all()


if __name__ == "__main__":
    main()
