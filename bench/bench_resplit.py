"""Benchmark: re-split celestial_bodies_planets HASH(save_id) from modulus 4 to 8 while the game plays.

One demo database (scale ``default``; ``--quick``: ``small``) is built once and used as the
template of two copies, one per contender, so each splits the same rows:

- ``seed 001``: the only procedure the seed knows, run as seed 001 shows it (psql, each
  statement committing on its own, no lock_timeout), for each old partition found in the
  catalog: ``DETACH PARTITION``; ``RENAME`` it aside; ``CREATE TABLE ... PARTITION OF`` for
  remainders r and r+4 of modulus 8; ``INSERT INTO celestial_bodies SELECT * FROM`` the
  renamed table; ``DROP`` it. From the DETACH until the INSERT commits the partition's rows
  are gone from the game's view, and a game insert for those saves meets no partition
  until the CREATEs;
- ``cosmic_ops``: ``resplit_hash_partitions(conn, 'celestial_bodies_planets', 8)`` with the
  policy's defaults (batches of 10,000 rows, ``db.LockRetryPolicy()``): capture trigger, batched
  copy, verification, a short swap per old partition.

While each contender runs, pgbench plays the game on planets at a fixed rate (``-R``, 4
clients, ``--max-tries=1 --failures-detailed``, per-transaction log). One game transaction
reads the planets of a random save, updates a random planet (a live one that existed before
the split, drawn from ``bench_planets``) and inserts a new planet into the random save. The
update and the insert log themselves in the same transaction into ``bench_game_updates``
(planet, ``clock_timestamp()`` written into its ``updated_at``, rows hit) and
``bench_game_inserts`` (the new id), so what the game committed is known exactly. A probe
session reads, every 20 ms in one statement, the planets of 16 saves known to have planets
(the two with the most planets in each remainder of modulus 8, so every old partition
has two in each half).

Reported per contender: seconds of the split, rows moved and rows/s, the copy's rows/s
(the seed's ``INSERT ... SELECT`` statements; our batches), the game during the split
against a quiet window as long, just before it (transactions, p99, max; also the maximum
less pgbench's schedule lag: with ``-R`` a client held up starts its next transactions
late, and their latency counts from when they were due), its failed transactions
(pgbench: serialization/deadlock), aborted clients (pgbench aborts a client on any other
error, rolling back its transaction: e.g. ``no partition of relation ... found for row``)
and committed updates of an existing planet that found no row (a lost write), and the
seconds during which probe reads of a save returned no rows: per save, from the start
of the first read that came back empty to the start of the next read that found its rows,
united over the saves (resolution: one probe round, ~20 ms).
Goals (MET / MISSED): ours 0 failed game transactions (failed + aborted + lost updates)
and 0 seconds invisible; our game's longest transaction during the split below the
maintenance ``lock_timeout`` (``db.LockRetryPolicy().lock_timeout_ms``); our copy's rows/s at
least half the seed's ``INSERT ... SELECT`` rows/s.

Verified after each contender, with the game stopped (why it is sound: the game never
deletes; its update writes only ``position_x`` and ``updated_at`` of planets that existed
before; its inserts get ids above the largest id before, from the table's sequence):
1. planets has 8 partitions, all of modulus 8, covering the hash space;
2. no planet id appears twice;
3. the planets that existed before (id <= the largest id before) have the same count and
   ``cosmic_ops.fingerprint`` checksum over every column but ``position_x`` and
   ``updated_at`` as before the game started: none lost, doubled or otherwise changed;
4. the planets above that id are exactly the ones ``bench_game_inserts`` recorded
   (committed game inserts): none lost, none extra;
5. every planet a committed game update hit carries in ``updated_at`` the last value the
   game wrote into it (``clock_timestamp()`` is read as the row is written, after any wait
   for its lock, so the update committed last wrote the largest): no committed update was
   overwritten by the copy.

Exit status 0 when both contenders ran and verified, whether the goals were met or not
(they are printed MET / MISSED); 1 when a split raised or a verification failed.

    .venv/bin/python bench/bench_resplit.py [--quick] [--scale small|default] [--rate 200]
        [--clients 4] [--protocol prepared|simple|extended] [--quiet-seconds S] [--split-seconds S]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server) and the pgbench next to the
server's pg_dump (15 or newer); creates a template database and a copy per contender and
drops them.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from _common import Latency, Server, Workload, build_demo  # noqa: E402
from bench_cycle import PGBENCH_FAILURES, Game  # noqa: E402
from cosmic_ops import db  # noqa: E402
from cosmic_ops.backups import client_for  # noqa: E402
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.fingerprint import Fingerprint, fingerprint, table_columns  # noqa: E402
from cosmic_ops.layout.catalog import hash_table  # noqa: E402
from cosmic_ops.layout.resplit import SplitResult, resplit_hash_partitions  # noqa: E402

SCHEMA, TABLE = "public", "celestial_bodies_planets"
MODULUS = 8
LOCK_TIMEOUT_MS = db.LockRetryPolicy().lock_timeout_ms
GAME_COLUMNS = ("position_x", "updated_at")  # what the game's update writes
WARMUP_S = 2.0
TAIL_S = 1.0
PROBE_INTERVAL_S = 0.02
PROBE_SAVES_PER_REMAINDER = 2

# Outside the planets tree: the planets the game updates (numbered, for pgbench's random())
# and what the game committed.
BENCH_TABLES = f"""
CREATE TABLE bench_planets (n int PRIMARY KEY, id bigint NOT NULL, save_id bigint NOT NULL);
INSERT INTO bench_planets SELECT row_number() OVER (ORDER BY id), id, save_id
FROM {TABLE} WHERE NOT is_destroyed;
CREATE TABLE bench_game_updates (id bigint NOT NULL, at timestamptz NOT NULL, hits int NOT NULL);
CREATE TABLE bench_game_inserts (id bigint NOT NULL, save_id bigint NOT NULL);
"""


# One line per command: pgbench numbers them from 0, so an aborted client's command names its line.
READ_SAVE = ("SELECT id, name, mass, radius, position_x, position_y, position_z FROM celestial_bodies "
             "WHERE body_type = 'planet' AND save_id = :s;")
PICK_PLANET = "SELECT id AS pid, save_id AS psave FROM bench_planets WHERE n = :k \\gset"
UPDATE_PLANET = ("WITH moved AS (UPDATE celestial_bodies SET position_x = position_x + 1.0, "
                 "updated_at = clock_timestamp() WHERE body_type = 'planet' AND save_id = :psave AND id = :pid "
                 "RETURNING updated_at) "
                 "INSERT INTO bench_game_updates (id, at, hits) "
                 "SELECT :pid, coalesce(max(updated_at), clock_timestamp()), count(*) FROM moved;")
INSERT_PLANET = ("WITH born AS (INSERT INTO celestial_bodies (save_id, body_type, name, mass, radius) "
                 "VALUES (:s, 'planet', 'Game planet', 1.0, 1.0) RETURNING id, save_id) "
                 "INSERT INTO bench_game_inserts (id, save_id) SELECT id, save_id FROM born;")


def game_script(saves: int, planets: int) -> str:
    """One game transaction: read a random save's planets, update a random planet, insert a new one."""
    return "\n".join([f"\\set s random(1, {saves})", f"\\set k random(1, {planets})", PICK_PLANET,
                      "BEGIN;", READ_SAVE, UPDATE_PLANET, INSERT_PLANET, "END;", ""])


# --- the data -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Before:
    """The planets before the game and the split: what the verification compares with."""

    max_id: int
    rows: int
    fingerprint: Fingerprint  # over every column but the game's
    columns: tuple[str, ...]
    saves: int
    planets: int  # rows of bench_planets
    probe_saves: tuple[tuple[int, int], ...]  # (remainder of modulus 8, save)


def add_bench_tables(conn: psycopg.Connection) -> None:
    conn.execute(BENCH_TABLES)


def read_before(url: str) -> Before:
    with psycopg.connect(url) as conn:
        columns = tuple(c for c in table_columns(conn, SCHEMA, TABLE) if c not in GAME_COLUMNS)
        max_id, rows = conn.execute(sql.SQL("SELECT max(id), count(*) FROM {}").format(
            sql.Identifier(SCHEMA, TABLE))).fetchone()
        unchanged = fingerprint(conn, SCHEMA, TABLE, columns)
        saves = conn.execute("SELECT max(id) FROM game_saves").fetchone()[0]
        planets = conn.execute("SELECT count(*) FROM bench_planets").fetchone()[0]
        probe = conn.execute(
            """
            SELECT r, s.save_id FROM generate_series(0, %(m)s - 1) r CROSS JOIN LATERAL (
                SELECT save_id FROM bench_planets
                WHERE satisfies_hash_partition(%(t)s::regclass, %(m)s, r, save_id)
                GROUP BY save_id ORDER BY count(*) DESC, save_id LIMIT %(n)s) s
            ORDER BY r, s.save_id
            """, {"m": MODULUS, "t": TABLE, "n": PROBE_SAVES_PER_REMAINDER}).fetchall()
    return Before(max_id, rows, unchanged, columns, saves, planets, tuple((r, s) for r, s in probe))


# --- the probe ------------------------------------------------------------------------------
@dataclass
class ProbeRead:
    began: float
    ended: float
    empty: frozenset[int]  # saves that came back without planets
    error: Optional[str] = None


class Probe:
    """Its own session reads, every ``interval_s``, the planets of ``saves`` through
    ``celestial_bodies`` in one statement (one snapshot), as the game reads them."""

    QUERY = ("SELECT s, (SELECT count(*) FROM celestial_bodies WHERE body_type = 'planet' AND save_id = s) "
             "FROM unnest(%s::bigint[]) AS s")

    def __init__(self, url: str, saves: list[int], interval_s: float = PROBE_INTERVAL_S):
        self.url, self.saves, self.interval_s = url, saves, interval_s
        self.reads: list[ProbeRead] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="bench_resplit:probe") as conn:
            while not self._stop.is_set():
                began = time.time()
                try:
                    counts = conn.execute(self.QUERY, (self.saves,)).fetchall()
                    self.reads.append(ProbeRead(began, time.time(), frozenset(s for s, n in counts if n == 0)))
                except psycopg.Error as exc:
                    self.reads.append(ProbeRead(began, time.time(), frozenset(), str(exc).strip().splitlines()[0]))
                self._stop.wait(self.interval_s)

    def invisible(self) -> list[tuple[float, float]]:
        """The stretches during which some save's planets could not be read, united over the saves."""
        stretches = []
        for save in self.saves:
            since: Optional[float] = None
            for read in self.reads:
                if read.error:
                    continue
                if save in read.empty:
                    since = read.began if since is None else since
                elif since is not None:
                    stretches.append((since, read.began))
                    since = None
            if since is not None:
                stretches.append((since, self.reads[-1].ended))
        return union(stretches)

    def empty_reads(self) -> int:
        return sum(len(r.empty) for r in self.reads)

    def saves_affected(self) -> int:
        return len(set().union(*(r.empty for r in self.reads))) if self.reads else 0

    def errors(self) -> list[str]:
        return [r.error for r in self.reads if r.error]

    def longest_read_ms(self, window: tuple[float, float]) -> float:
        return max(((r.ended - r.began) * 1000 for r in self.reads if window[0] <= r.ended <= window[1]),
                   default=float("nan"))


def union(stretches: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for lower, upper in sorted(stretches):
        if merged and lower <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], upper))
        else:
            merged.append((lower, upper))
    return merged


# --- the contenders -------------------------------------------------------------------------
@dataclass
class Statement:
    """One statement of the seed's procedure, or one phase of ours, on the wall clock."""

    partition: str
    what: str
    began: float
    ended: float
    rows: Optional[int] = None

    @property
    def seconds(self) -> float:
        return self.ended - self.began


@dataclass
class Split:
    began: float = 0.0
    ended: float = 0.0
    rows_moved: int = 0
    copy_rows: int = 0
    copy_seconds: float = 0.0
    steps: list[Statement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def seconds(self) -> float:
        return self.ended - self.began


def seed_001(url: str, split: Split) -> None:
    """Seed 001's procedure, one statement at a time in autocommit (as psql runs it), with no
    lock_timeout; the old partitions come from the catalog."""
    with psycopg.connect(url, autocommit=True, application_name="bench_resplit:seed_001") as conn:
        planets = hash_table(conn, TABLE)
        parent = sql.Identifier(planets.schema, planets.name)
        for old in planets.partitions:
            aside = f"{old.name}_back"
            statements = [
                ("detach", sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    parent, sql.Identifier(old.schema, old.name))),
                ("rename", sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    sql.Identifier(old.schema, old.name), sql.Identifier(aside))),
                *[(f"create {MODULUS}/{remainder}",
                   sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
                       sql.Identifier(old.schema, f"{planets.name}_m{MODULUS}_r{remainder}"), parent,
                       sql.Literal(MODULUS), sql.Literal(remainder)))
                  for remainder in range(old.remainder, MODULUS, old.modulus)],
                ("insert ... select", sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                    sql.Identifier(planets.root_schema, planets.root_name), sql.Identifier(old.schema, aside))),
                ("drop", sql.SQL("DROP TABLE {}").format(sql.Identifier(old.schema, aside))),
            ]
            for what, statement in statements:
                began = time.time()
                cursor = conn.execute(statement)
                step = Statement(old.name, what, began, time.time())
                if what.startswith("insert"):
                    step.rows = cursor.rowcount
                    split.rows_moved += cursor.rowcount
                    split.copy_rows += cursor.rowcount
                    split.copy_seconds += step.seconds
                split.steps.append(step)


def cosmic(url: str, split: Split) -> None:
    """``resplit_hash_partitions`` with the policy's defaults; its hook points timed per partition."""
    moments: list[tuple[str, float]] = []
    with db.connect(url, application_name="cosmic_ops:bench_resplit") as conn:
        result: SplitResult = resplit_hash_partitions(
            conn, TABLE, MODULUS, progress=split.notes.append, hook=lambda point: moments.append((point, time.time())))
    if not result.verified:
        raise RuntimeError(f"the split's own verification failed: {[r.metadata() for r in result.results]}")
    begun = [t for point, t in moments if point == "begun"]
    ends = {p: [t for point, t in moments if point == p] for p in ("copied", "verified", "swapped")}
    for number, remainder in enumerate(result.results):
        old, outcome = remainder.split.old.name, remainder.outcome
        previous = ends["swapped"][number - 1] if number else split.began
        split.steps += [
            Statement(old, ("drop previous old; " if number else "plan; ") + "begin: new tables, capture trigger",
                      previous, begun[number]),
            Statement(old, f"copy {outcome.batches} batches", begun[number], ends["copied"][number],
                      outcome.rows_copied),
            Statement(old, "verify", ends["copied"][number], ends["verified"][number]),
            Statement(old, f"swap (lock wait {outcome.swap_lock_wait_s:.3f}s, attempt {outcome.swap_attempts}, "
                           f"transaction {outcome.swap_seconds * 1000:.1f} ms)",
                      ends["verified"][number], ends["swapped"][number]),
        ]
        split.rows_moved += sum(outcome.rows_by_route.values())
        split.copy_rows += outcome.rows_copied
        split.copy_seconds += outcome.copy_seconds
    if ends["swapped"]:
        split.steps.append(Statement(result.results[-1].split.old.name, "drop the old partition",
                                     ends["swapped"][-1], time.time()))


# --- one contender's run --------------------------------------------------------------------
@dataclass
class Run:
    name: str
    split: Split
    game: Game
    probe: Probe
    ready: float  # the game's warm-up is over
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    lost_updates: int = 0

    @property
    def window(self) -> tuple[float, float]:
        return (self.split.began, self.split.ended)

    def split_samples(self) -> list[tuple[float, float]]:
        """The game's transactions that ran at some time during the split: those that ended in it,
        and those it held up until after its last statement."""
        began, ended = self.window
        return [(end, latency) for end, latency in self.game.samples((began, math.inf))
                if end - latency / 1000 <= ended]

    def own_max_ms(self, window: tuple[float, float], *, overlapping: bool = False) -> float:
        """The longest time a game transaction that ended in ``window`` (``overlapping``: that ran at
        some time during it, as ``split_samples`` counts them) spent after it started:
        its latency less pgbench's schedule lag (``-R``: a client held up starts its next
        transactions late, and their latency counts from when they were due). The log's
        seventh field is the lag with ``-R``."""
        longest = float("nan")
        for game_run in self.game.runs:
            for path in self.game.workload.dir.glob(f"{game_run.tag}.*"):
                for line in path.read_text().splitlines():
                    fields = line.split()
                    if len(fields) < 7 or not fields[2].isdigit():
                        continue
                    end, latency = int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1e6
                    if window[0] <= end and (end - latency if overlapping else end) <= window[1]:
                        own = (int(fields[2]) - int(fields[6])) / 1000
                        longest = own if math.isnan(longest) else max(longest, own)
        return longest

    def quiet_window(self) -> tuple[tuple[float, float], bool]:
        """As long as the split, just before it (cut at the warm-up: then ``True``)."""
        lower = self.split.began - self.split.seconds
        return (max(lower, self.ready), self.split.began), lower < self.ready

    def failed_total(self) -> int:
        return (self.game.failed_total() or 0) + len(self.game.aborts) + self.lost_updates

    @property
    def verified(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def verify(url: str, before: Before, run: Run) -> None:
    """The checks of the docstring, on the contender's copy with the game stopped."""
    checks = run.checks
    with psycopg.connect(url) as conn:
        planets = hash_table(conn, TABLE)
        layout = ", ".join(f"{p.modulus}/{p.remainder}" for p in planets.partitions)
        checks.append(("8 partitions of modulus 8", planets.moduli == (MODULUS,) and len(planets.partitions) == MODULUS
                       and planets.coverage == 1, layout))
        rows, ids = conn.execute(sql.SQL("SELECT count(*), count(DISTINCT id) FROM {}").format(
            sql.Identifier(SCHEMA, TABLE))).fetchone()
        checks.append(("no id twice", rows == ids, f"{rows} rows, {ids} ids"))
        after = fingerprint(conn, SCHEMA, TABLE, before.columns,
                            where=sql.SQL("id <= {}").format(sql.Literal(before.max_id)))
        checks.append(("rows from before: count and checksum", after == before.fingerprint,
                       f"{after.rows} rows (before {before.fingerprint.rows}), checksum "
                       f"{'equal' if after.checksum == before.fingerprint.checksum else 'DIFFERENT'}"))
        missing, extra, inserted = conn.execute(sql.SQL(
            "SELECT count(*) FILTER (WHERE p.id IS NULL), count(*) FILTER (WHERE g.id IS NULL), count(g.id) "
            "FROM (SELECT id FROM {} WHERE id > %s) p FULL JOIN bench_game_inserts g USING (id)").format(
                sql.Identifier(SCHEMA, TABLE)), (before.max_id,)).fetchone()
        checks.append(("game inserts, all and only", missing == 0 and extra == 0,
                       f"{inserted} committed, {missing} missing, {extra} not the game's"))
        updated, stale = conn.execute(sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE p.updated_at IS DISTINCT FROM u.at) "
            "FROM (SELECT id, max(at) AS at FROM bench_game_updates WHERE hits > 0 GROUP BY id) u "
            "LEFT JOIN {} p USING (id)").format(sql.Identifier(SCHEMA, TABLE))).fetchone()
        checks.append(("game updates, last one kept", stale == 0,
                       f"{updated} planets updated, {stale} not as last written"))
        run.lost_updates = conn.execute("SELECT count(*) FROM bench_game_updates WHERE hits = 0").fetchone()[0]


def play(server: Server, template: str, before: Before, name: str, contender: Callable[[str, Split], None],
         args, pgbench: Optional[Path], players: int, bodies: int) -> Run:
    url = server.clone(f"{template}_{name.replace(' ', '_')}", template)
    workload = Workload(url, players, bodies, args.rate, args.clients, script=game_script(before.saves, before.planets),
                        protocol=args.protocol, binary=pgbench)
    game = Game(workload, WARMUP_S + args.quiet_seconds + args.split_seconds + TAIL_S, extend_s=5.0)
    probe = Probe(url, [s for _, s in before.probe_saves])
    split = Split()
    try:
        try:
            probe.start()
            game.start()
            ready = time.time() + WARMUP_S
            game.play_alone(WARMUP_S + args.quiet_seconds)
            split.began = time.time()
            try:
                contender(url, split)
            except Exception as exc:  # noqa: BLE001 - reported, and in the exit status
                split.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            split.ended = time.time()
            game.finish(TAIL_S)
        except BaseException:
            game.abandon()
            raise
        finally:
            probe.stop()
        run = Run(name, split, game, probe, ready)
        verify(url, before, run)
        return run
    except BaseException:
        workload.cleanup()
        raise
    finally:
        server.drop(f"{template}_{name.replace(' ', '_')}")


# --- report ---------------------------------------------------------------------------------
def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def ratio(a: float, b: float) -> str:
    return "-" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}"


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def figures(run: Run) -> dict[str, object]:
    quiet_window, cut = run.quiet_window()
    split_latency, quiet = Latency.of(run.split_samples()), Latency.of(run.game.samples(quiet_window))
    invisible = run.probe.invisible()
    return {
        "split": run.split, "latency": split_latency, "quiet": quiet, "cut": cut, "quiet_window": quiet_window,
        "failed": run.game.failed_total(), "aborted": len(run.game.aborts), "invisible": invisible,
        "invisible_s": sum(upper - lower for lower, upper in invisible),
    }


def print_summary(runs: list[Run]) -> None:
    seed, ours = runs
    f = {run.name: figures(run) for run in runs}
    a, b = f[seed.name], f[ours.name]

    def line(label: str, x: str, y: str, r: str = "") -> None:
        print(f"{label:<52}{x:>16}{y:>16}{r:>12}")

    print()
    line("", seed.name, ours.name, "ours/seed")
    print("-" * 96)
    line("split seconds", f"{a['split'].seconds:.2f}", f"{b['split'].seconds:.2f}",
         ratio(b["split"].seconds, a["split"].seconds))
    line("rows moved", f"{a['split'].rows_moved:,}", f"{b['split'].rows_moved:,}")
    rate = [run.split.rows_moved / run.split.seconds if run.split.seconds else float("nan") for run in runs]
    line("rows/s (whole split)", f"{rate[0]:,.0f}", f"{rate[1]:,.0f}", ratio(rate[1], rate[0]))
    copy = [run.split.copy_rows / run.split.copy_seconds if run.split.copy_seconds else float("nan") for run in runs]
    line("copy rows/s (INSERT ... SELECT | batches)", f"{copy[0]:,.0f}", f"{copy[1]:,.0f}", ratio(copy[1], copy[0]))
    line("game transactions that ran during the split", f"{a['latency'].transactions}", f"{b['latency'].transactions}")
    line("game tps during the split / quiet",
         f"{a['latency'].transactions / a['split'].seconds:.0f} / {a['quiet'].transactions / a['split'].seconds:.0f}",
         f"{b['latency'].transactions / b['split'].seconds:.0f} / {b['quiet'].transactions / b['split'].seconds:.0f}")
    line("game failed transactions (pgbench, whole run)", str(a["failed"]), str(b["failed"]))
    line("game aborted clients (whole run)", str(a["aborted"]), str(b["aborted"]))
    line("game updates that found no row (lost, whole run)", str(seed.lost_updates), str(ours.lost_updates))
    line("game p99 ms: split / quiet", f"{ms(a['latency'].p99_ms)} / {ms(a['quiet'].p99_ms)}",
         f"{ms(b['latency'].p99_ms)} / {ms(b['quiet'].p99_ms)}", ratio(b["latency"].p99_ms, a["latency"].p99_ms))
    line("game max ms: split / quiet", f"{ms(a['latency'].max_ms)} / {ms(a['quiet'].max_ms)}",
         f"{ms(b['latency'].max_ms)} / {ms(b['quiet'].max_ms)}", ratio(b["latency"].max_ms, a["latency"].max_ms))
    line("game max ms less schedule lag: split / quiet",
         f"{ms(seed.own_max_ms(seed.window, overlapping=True))} / {ms(seed.own_max_ms(a['quiet_window']))}",
         f"{ms(ours.own_max_ms(ours.window, overlapping=True))} / {ms(ours.own_max_ms(b['quiet_window']))}")
    line("seconds a save's planets read as none (probe)", f"{a['invisible_s']:.2f}", f"{b['invisible_s']:.2f}")
    line("probe reads that came back empty (saves)", f"{seed.probe.empty_reads()} ({seed.probe.saves_affected()})",
         f"{ours.probe.empty_reads()} ({ours.probe.saves_affected()})")
    line("probe longest read ms during the split", ms(seed.probe.longest_read_ms(seed.window)),
         ms(ours.probe.longest_read_ms(ours.window)))
    line("verification", "passed" if seed.verified else "FAILED", "passed" if ours.verified else "FAILED")
    if a["cut"] or b["cut"]:
        print("  the quiet window was cut at the warm-up: raise --quiet-seconds above the split's seconds")


def print_details(run: Run) -> None:
    start = run.split.began
    print(f"\n{run.name}: steps (s from the split's start; game: transactions that ended during the step)")
    header = f"{'partition':<30}{'step':<58}{'start':>7}{'s':>8}{'rows':>9}{'txns':>6}{'max ms':>9}"
    print(header)
    print("-" * len(header))
    for step in run.split.steps:
        latency = Latency.of(run.game.samples((step.began, step.ended)))
        print(f"{step.partition:<30}{step.what:<58}{step.began - start:>7.2f}{step.seconds:>8.3f}"
              f"{'' if step.rows is None else step.rows:>9}{latency.transactions:>6}{ms(latency.max_ms):>9}")
    if run.split.error:
        print(f"RAISED {run.split.error}")
    invisible = run.probe.invisible()
    if invisible:
        print("  planets read as none (s from the split's start): "
              + ", ".join(f"{lower - start:.2f}..{upper - start:.2f}" for lower, upper in invisible))
    commands = game_script(0, 0).splitlines()
    for abort in run.game.aborts:
        command = commands[abort.command][:40] + "..." if abort.command < len(commands) else "?"
        print(f"  aborted client {abort.client} at {abort.at - start:.2f}s, command {abort.command} ({command}): "
              f"{abort.message}")
    for error in sorted(set(run.probe.errors())):
        print(f"  probe error: {error}")
    for label, ok, detail in run.checks:
        print(f"  check {'ok    ' if ok else 'FAILED'} {label}: {detail}")
    for game_run in run.game.runs:
        for note in game_run.notes:
            print(f"  {game_run.tag}: {note}")


def print_goals(runs: list[Run]) -> None:
    seed, ours = runs
    a, b = figures(seed), figures(ours)
    copy = [run.split.copy_rows / run.split.copy_seconds if run.split.copy_seconds else float("nan") for run in runs]
    goals = [
        ("failed game transactions (ours)",
         f"{ours.failed_total()} = {b['failed']} failed + {b['aborted']} aborted + {ours.lost_updates} lost updates",
         "0", ours.failed_total() == 0),
        ("seconds invisible (ours)", f"{b['invisible_s']:.2f}", "0", b["invisible_s"] == 0),
        ("longest game wait / lock_timeout (ours)",
         f"{ratio(b['latency'].max_ms, LOCK_TIMEOUT_MS)} ({ms(b['latency'].max_ms)} / {LOCK_TIMEOUT_MS} ms)", "< 1",
         b["latency"].max_ms < LOCK_TIMEOUT_MS),
        ("copy rows/s, ours / seed INSERT...SELECT", f"{ratio(copy[1], copy[0])} ({copy[1]:,.0f} / {copy[0]:,.0f})",
         ">= 0.5", copy[1] >= 0.5 * copy[0]),
    ]
    print("\nGoals")
    header = f"{'goal':<44}{'figure':<52}{'target':<8}verdict"
    print(header)
    print("-" * len(header))
    for goal, figure, target, met in goals:
        print(f"{goal:<44}{figure:<52}{target:<8}{verdict(met)}")
    print(f"seed 001 for comparison: {seed.failed_total()} failed game transactions ({a['failed']} failed + "
          f"{a['aborted']} aborted + {seed.lost_updates} lost updates), {a['invisible_s']:.2f} s invisible, "
          f"longest game wait {ms(a['latency'].max_ms)} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small scale, short quiet phase")
    from cosmic_ops import demo

    parser.add_argument("--scale", choices=sorted(demo.SCALES), default=None)
    parser.add_argument("--rate", type=int, default=200, help="game transactions per second (pgbench -R)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (-c)")
    parser.add_argument("--protocol", choices=("prepared", "simple", "extended"), default="prepared",
                        help="pgbench -M: how the game sends its statements")
    parser.add_argument("--quiet-seconds", type=float, default=None,
                        help="the game alone before each split; the quiet window is its last part, as long as "
                             "the split (default 60, quick 8)")
    parser.add_argument("--split-seconds", type=float, default=None,
                        help="expected length of a split: sizes the first pgbench run, shorter runs follow if "
                             "it takes longer (default 30, quick 5)")
    args = parser.parse_args()
    scale = args.scale or ("small" if args.quick else "default")
    args.quiet_seconds = args.quiet_seconds if args.quiet_seconds is not None else (8 if args.quick else 60)
    args.split_seconds = args.split_seconds if args.split_seconds is not None else (5 if args.quick else 30)

    clock = datetime.now(timezone.utc)
    server = Server(resolve_conninfo())
    template = f"bench_resplit_{uuid.uuid4().hex[:8]}"
    runs: list[Run] = []
    try:
        started = time.perf_counter()
        url, players, bodies = build_demo(server, template, scale, as_of=clock.date(), reshape=add_bench_tables)
        before = read_before(url)
        with psycopg.connect(url) as conn:
            pgbench = client_for(conn).bin_dir / "pgbench"
            version = conn.execute("SHOW server_version").fetchone()[0]
        print(f"data: demo scale {scale!r} as of {clock:%Y-%m-%d}, {before.rows:,} planets in 4 hash partitions "
              f"({before.planets:,} live ones the game updates), {before.saves:,} saves; built in "
              f"{time.perf_counter() - started:.1f}s on {db.redact(server.conninfo)} (PostgreSQL {version})")
        print(f"game: pgbench -R {args.rate} -c {args.clients} -j 2 -M {args.protocol} {' '.join(PGBENCH_FAILURES)}; "
              "a transaction reads a random save's planets, updates a random planet, inserts a planet; "
              f"quiet {args.quiet_seconds:.0f}s, then the split 4 -> {MODULUS}")
        print(f"probe: every {PROBE_INTERVAL_S * 1000:.0f} ms the planets of {len(before.probe_saves)} saves "
              f"({PROBE_SAVES_PER_REMAINDER} per remainder of modulus {MODULUS})")
        for name, contender in (("seed 001", seed_001), ("cosmic_ops", cosmic)):
            print(f"... {name}", flush=True)
            runs.append(play(server, template, before, name, contender, args,
                             pgbench if pgbench.exists() else None, players, bodies))
        print_summary(runs)
        for run in runs:
            print_details(run)
        print_goals(runs)
        failed = [run for run in runs if run.split.error or not run.verified]
        for run in failed:
            print(f"{run.name}: " + (f"raised {run.split.error}" if run.split.error else "verification failed"),
                  file=sys.stderr)
        return 1 if failed else 0
    finally:
        for run in runs:
            run.game.workload.cleanup()
        server.drop_all()


if __name__ == "__main__":
    raise SystemExit(main())
