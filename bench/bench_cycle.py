"""Benchmark: the whole maintenance cycle while pgbench plays the game at a fixed rate.

One demo database on the configured server, shaped so that rows wait in DEFAULT:
the current month has no partition (the game's inserts, ``server_timestamp =
now()``, land in ``event_logs_default``) and the month just outside the
lookback window was never created (its demo rows sit in DEFAULT too). pgbench
plays the game throughout (``-R`` fixed rate, 4 clients, per-transaction log;
each transaction logs an event, moves a live body and reads the player's latest
events). After a quiet phase the cycle runs, step by step, with the core
functions (plain Python on psycopg, as the Dagster assets call them), one
clock decided once at the start:

1. months of the policy's window, the current one included, while rows wait in DEFAULT;
2. rehoming of the rows left in DEFAULT;
3. backup (verified by a scratch restore) and retirement of the two months past retention;
4. full backup and its verification;
5. archive of destroyed bodies; 6. packing of inactive saves;
7. VACUUM (ANALYZE) of the tables the cycle left dead rows in; 8. ANALYZE of the partitioned parents.

Reported: aborted clients (goal 0; pgbench's one error line per aborted client,
time-stamped as it arrives, gives the step it happened in), failed transactions
(goal 0; pgbench's summary, and the per-transaction log by step), the game's p99
and maximum latency over the transactions that ended during the cycle against
the quiet window of the same length just before it (goal: p99 within 2x, max
below the maintenance DDL ``lock_timeout``), and per step. A control window, as
long again and just before the quiet one, is compared with the quiet one the
same way: its ratio is the method's own noise. If every client aborts, pgbench
exits; another run takes over so the later steps still play against the game.

Exit status 0 when the cycle ran, whether the goals were met or not (they are
printed MET / MISSED); 1 when a step raised.

    /work/venv/bin/python bench/bench_cycle.py [--quick] [--scale small|default] [--rate 200]
        [--protocol prepared|simple|extended] [--cycle-seconds S] [--quiet-seconds S]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server) and the pgbench next
to the server's pg_dump (pgbench 15 or newer, for ``--failures-detailed``);
creates a scratch database and drops it; backups go to a temporary folder.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from _common import Latency, Server, Workload, build_demo, due_months, game_script  # noqa: E402
from cosmic_ops import db, monitoring  # noqa: E402
from cosmic_ops.backups import (  # noqa: E402
    BackupStore, Generation, PgClient, RetentionPolicy, Verification, backup_month, client_for, full_backup,
    verify_full_backup, verify_month_backup,
)
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.lifecycle import (  # noqa: E402
    ArchivePolicy, SavePolicy, archive_destroyed_bodies, compress_inactive_saves,
)
from cosmic_ops.lifecycle.archive import leaf_tables  # noqa: E402
from cosmic_ops.partitions import (  # noqa: E402
    EVENT_LOGS_POLICY, default_partition, ensure_months, partition_for_month, rehome_default_rows,
)
from cosmic_ops.partitions.state import default_rows_by_month  # noqa: E402
from cosmic_ops.retention import RetirementResult, attached_past_retention, retire_month  # noqa: E402
from cosmic_ops.timeutil import add_months  # noqa: E402

POLICY = EVENT_LOGS_POLICY
# The game reads what it just wrote: the player's latest events, through the parent.
PLAYER_FEED = ("SELECT id, event_type, server_timestamp FROM event_logs WHERE player_id = :pid "
               "ORDER BY server_timestamp DESC LIMIT 10;\n")
GAME_SCRIPT = game_script(PLAYER_FEED)
# Every failed transaction is counted, none retried; failures are told apart by kind.
PGBENCH_FAILURES = ("--max-tries=1", "--failures-detailed")
# How long a maintenance DDL waits for its lock (each attempt); game statements queue behind
# a waiting DDL at most that long, which is the bound the goal sets for the game's maximum.
LOCK_TIMEOUT_MS = db.LockRetryPolicy().lock_timeout_ms
WARMUP_S = 2.0
TAIL_S = 1.0
P99_GOAL = 2.0


# --- the database: rows waiting in DEFAULT --------------------------------------------------
def months_to_default(months: list[date]) -> Callable[[psycopg.Connection], None]:
    """Detach each month's partition (found in the catalog), put its rows back through the
    parent (they land in DEFAULT) and drop it: as if the month had never been created."""
    def reshape(conn: psycopg.Connection) -> None:
        for month in months:
            partition = partition_for_month(conn, POLICY.qualified_name, month)
            if partition is None:
                continue
            table = sql.Identifier(partition.schema, partition.name)
            parent = sql.Identifier(POLICY.schema, POLICY.table)
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, table))
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(parent, table))
            conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return reshape


# --- the game -------------------------------------------------------------------------------
ABORTED = re.compile(r"client (\d+) script \d+ aborted in command (\d+) query \d+: (.*)")
FAILED_TOTAL = re.compile(r"number of failed transactions: (\d+)")


@dataclass
class Abort:
    at: float  # wall clock when pgbench printed it
    client: int
    command: int
    message: str


@dataclass
class GameRun:
    """One pgbench process: its log tag, its aborted clients and its summary's failed transactions."""

    tag: str
    began: float
    ended: float
    returncode: int
    failed: int | None
    aborts: list[Abort] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Game:
    """pgbench playing until told when to stop.

    pgbench writes its log when it exits, so a run has a fixed length: the first is
    planned to outlast the cycle; if it ends before the stop time (every client
    aborted, or the cycle outlasted the plan), runs of ``extend_s`` take over at once
    (short, so that the game stops soon after it is told to).
    """

    def __init__(self, workload: Workload, planned_s: float, extend_s: float):
        self.workload, self.extend_s = workload, extend_s
        self.planned_end = time.time() + planned_s
        self.stop: float | None = None
        self.process: subprocess.Popen | None = None
        self.runs: list[GameRun] = []
        self.error: str | None = None
        self._thread = threading.Thread(target=self._play, name="game", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def play_alone(self, seconds: float) -> None:
        """The quiet phase: nothing but the game for ``seconds`` (sooner if pgbench cannot run)."""
        self._thread.join(seconds)
        if self.error:
            raise RuntimeError(self.error)

    def finish(self, tail_s: float) -> None:
        """Stop ``tail_s`` from now and wait for the running pgbench to end and write its log."""
        self.stop = time.time() + tail_s
        self._thread.join()
        if self.error:
            raise RuntimeError(self.error)

    def abandon(self) -> None:
        """Stop now, without figures (something failed outside the steps)."""
        self.stop = time.time()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        self._thread.join()

    def _play(self) -> None:
        while True:
            now = time.time()
            end = self.stop if self.stop is not None else (now + self.extend_s if self.runs else self.planned_end)
            if end - now < 1:
                return
            run = GameRun(f"game{len(self.runs)}", now, now, 0, None)
            process = self.process = self.workload.start(math.ceil(end - now), run.tag, PGBENCH_FAILURES)
            for line in process.stderr:  # one line per aborted client, as it happens
                self._note(run, time.time(), line.rstrip())
            summary = process.stdout.read()
            run.returncode, run.ended = process.wait(), time.time()
            failed = FAILED_TOTAL.search(summary)
            run.failed = int(failed.group(1)) if failed else None
            self.runs.append(run)
            if run.returncode not in (0, 2):  # 2: clients aborted, the run's figures stand
                self.error = f"pgbench exited {run.returncode}: {' | '.join(run.notes)[-500:]}"
                return

    @staticmethod
    def _note(run: GameRun, at: float, line: str) -> None:
        aborted = ABORTED.search(line)
        if aborted:
            run.aborts.append(Abort(at, int(aborted.group(1)), int(aborted.group(2)), aborted.group(3).strip()))
        elif run.aborts and not line.startswith("pgbench:"):  # DETAIL, HINT, CONTEXT of the error
            run.aborts[-1].message += " | " + line.strip()
        elif line and "Run was aborted" not in line:
            run.notes.append(line)

    @property
    def aborts(self) -> list[Abort]:
        return [a for run in self.runs for a in run.aborts]

    def samples(self, window: tuple[float, float]) -> list[tuple[float, float]]:
        return [s for run in self.runs for s in self.workload.samples(run.tag, window)]

    def failures(self, window: tuple[float, float]) -> int:
        return sum(self.workload.failures(run.tag, window) for run in self.runs)

    def failed_total(self) -> int | None:
        counts = [run.failed for run in self.runs]
        return None if None in counts else sum(counts)


# --- the cycle ------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    began: float
    ended: float
    result: str
    error: str | None = None

    @property
    def window(self) -> tuple[float, float]:
        return (self.began, self.ended)


def run_step(steps: list[Step], name: str, work: Callable[[], str]) -> None:
    """Run one step, timed; a step that raises is recorded and the cycle goes on."""
    began = time.time()
    try:
        result, error = work(), None
    except Exception as exc:  # noqa: BLE001 - reported per step, and in the exit status
        result, error = "", f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    steps.append(Step(name, began, time.time(), result, error))


def proven(verification: Verification) -> Verification:
    """A backup's verification that passed (a failed one raises: the step failed)."""
    if not verification.ok:
        raise RuntimeError(f"verification failed: {verification.error}")
    return verification


@dataclass
class Cycle:
    url: str
    clock: datetime  # the run's one "now": the window, retention, archive and packing ages
    client: PgClient
    store: BackupStore
    retire: list[date]
    bodies_months: list[date]
    saves_months: list[date]
    generations: dict[date | None, Generation] = field(default_factory=dict)  # month's backup (None: full)

    def connect(self, **kwargs) -> psycopg.Connection:
        return db.connect(self.url, application_name="cosmic_ops:bench_cycle", **kwargs)

    def run(self) -> list[Step]:
        steps: list[Step] = []
        run_step(steps, "months of the window, current one included", self.months)
        run_step(steps, "rehome DEFAULT rows", self.rehome)
        for month in self.retire:
            run_step(steps, f"backup {month:%Y-%m}", lambda: self.backup(month))
            run_step(steps, f"verify {month:%Y-%m} (scratch restore)", lambda: self.verify(month))
            run_step(steps, f"retire {month:%Y-%m}", lambda: self.retire_month(month))
        run_step(steps, "full backup (-j 2)", self.full_backup)
        run_step(steps, "verify full backup (scratch restore)", self.verify_full)
        run_step(steps, "archive destroyed bodies", self.archive)
        run_step(steps, "pack inactive saves", self.compress)
        run_step(steps, "VACUUM (ANALYZE)", self.vacuum)
        run_step(steps, "ANALYZE partitioned parents", self.analyze)
        return steps

    def months(self) -> str:
        with self.connect() as conn:
            result = ensure_months(conn, POLICY, POLICY.window(self.clock))
        return (f"created {len(result.created)} ({', '.join(result.created) or '-'}); {result.rows_moved} rows "
                f"moved out of DEFAULT; lock wait {result.lock_wait_s:.2f}s")

    def rehome(self) -> str:
        with self.connect() as conn:
            result = rehome_default_rows(conn, POLICY)
        if result.conflicts:
            raise RuntimeError("; ".join(result.conflicts))
        return (f"created {', '.join(result.created) or '-'}; {result.rows_moved} rows moved; DEFAULT "
                f"{result.default_rows_before} -> {result.default_rows_after} rows")

    def backup(self, month: date) -> str:
        with self.connect() as conn:
            result = backup_month(conn, self.store, self.client, conninfo=self.url, month=month)
        self.generations[month] = result.generation
        m = result.generation.manifest
        return f"{m.rows} rows, {m.bytes / 1e6:.1f} MB"

    def verify(self, month: date) -> str:
        verification = proven(verify_month_backup(self.store, self.generations[month], conninfo=self.url,
                                                  client=self.client))
        return f"{verification.rows} rows restored and counted ({verification.method})"

    def retire_month(self, month: date) -> str:
        with self.connect() as conn:
            outcome = retire_month(conn, self.store, conninfo=self.url, month=month, policy=RetentionPolicy(),
                                   today=self.clock.date())
        if not isinstance(outcome, RetirementResult) or outcome.rows_retired != self.generations[month].manifest.rows:
            raise RuntimeError(f"retirement of {month:%Y-%m} did not retire the backed-up rows: {outcome}")
        return f"{outcome.rows_retired} rows, detach {outcome.detach_mode} ({outcome.detach_attempts} attempt(s))"

    def full_backup(self) -> str:
        with self.connect() as conn:
            result = full_backup(conn, self.store, self.client, conninfo=self.url, jobs=2)
        self.generations[None] = result.generation
        m = result.generation.manifest
        return f"{m.rows} rows in {len(m.tables)} tables, {m.bytes / 1e6:.1f} MB"

    def verify_full(self) -> str:
        verification = proven(verify_full_backup(self.store, self.generations[None], conninfo=self.url,
                                                 client=self.client, jobs=2))
        return f"{verification.rows} rows restored and counted"

    def over_due_months(self, job: Callable, policy, months: list[date]):
        """A row-lifecycle job over ``months`` in one call, as a single-run backfill of its monthly asset does."""
        with self.connect() as conn:
            return job(conn, months[0], policy, now=self.clock, through=months[-1],
                       worker_sessions=db.SessionSpec(self.url))

    def archive(self) -> str:
        report = self.over_due_months(archive_destroyed_bodies, ArchivePolicy(), self.bodies_months)
        if not report.conserved or report.rows_remaining:
            raise RuntimeError(f"archive: {report.rows_remaining} rows left, live + archived "
                               f"{report.scope_rows_before} -> {report.scope_rows_after}")
        return f"{report.log.moved} bodies moved in {report.moving_s:.1f}s of batches"

    def compress(self) -> str:
        report = self.over_due_months(compress_inactive_saves, SavePolicy(), self.saves_months)
        if report.saves_remaining:
            raise RuntimeError(f"packing left {report.saves_remaining} due saves")
        return f"{report.log.moved} saves packed, {report.rows_folded} rows folded"

    def vacuum(self) -> str:
        with self.connect(autocommit=True) as conn:
            relations = [default_partition(conn, POLICY.qualified_name).qualified]
            relations += [(POLICY.schema, leaf) for leaf in leaf_tables(conn, "celestial_bodies")]
            relations += [(POLICY.schema, table) for table in ("game_saves", "save_resources", "save_research")]
            results = monitoring.apply(conn, monitoring.plan_vacuum(conn, relations))
        dead = sum(r.dead_tuples_before for r in results), sum(r.dead_tuples_after for r in results)
        return f"{len(results)} tables, dead tuples {dead[0]} -> {dead[1]}"

    def analyze(self) -> str:
        with self.connect(autocommit=True) as conn:
            results = monitoring.apply(conn, monitoring.plan_analyze(conn, monitoring.partitioned_roots(conn)))
        return ", ".join(r.action.table for r in results)


# --- report ---------------------------------------------------------------------------------
def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("MET" if met else "MISSED")


def where(moment: float, steps: list[Step]) -> str:
    for number, step in enumerate(steps, 1):
        if step.began <= moment <= step.ended:
            return f"step {number} ({step.name})"
    if moment < steps[0].began:
        return "before the cycle"
    return "after the cycle" if moment > steps[-1].ended else "between steps"


def print_steps(game: Game, steps: list[Step], start: float) -> None:
    print("\nSteps (s from the cycle's start; game: its transactions that ended during the step)")
    header = (f"{'#':>2} {'step':<44}{'start':>7}{'s':>7}{'txns':>7}{'tps':>6}{'p99 ms':>9}{'max ms':>9}"
              f"{'aborted':>8}{'failed':>7}  result")
    print(header)
    print("-" * len(header))
    for number, step in enumerate(steps, 1):
        latency = Latency.of(game.samples(step.window))
        seconds = step.ended - step.began
        aborted = sum(1 for a in game.aborts if step.began <= a.at <= step.ended)
        result = f"RAISED {step.error}" if step.error else step.result
        print(f"{number:>2} {step.name:<44}{step.began - start:>7.1f}{seconds:>7.2f}{latency.transactions:>7}"
              f"{latency.transactions / seconds:>6.0f}{ms(latency.p99_ms):>9}{ms(latency.max_ms):>9}"
              f"{aborted:>8}{game.failures(step.window):>7}  {result}")


def print_windows(game: Game, start: float, end: float, ready: float) -> list[Latency]:
    """The control window, the quiet window and the cycle: the quiet window is as long as the cycle,
    just before it, the control as long again, before that (each cut at the game's warm-up)."""
    length = end - start
    windows = [("control: idle, before the quiet window", start - 2 * length, start - length),
               ("quiet: idle, just before the cycle", start - length, start), ("cycle", start, end)]
    print(f"\nWindows as long as the cycle ({length:.1f}s; from: s from the cycle's start)")
    header = f"{'window':<46}{'from':>8}{'txns':>7}{'tps':>6}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}"
    print(header)
    print("-" * len(header))
    latencies, cut = [], False
    for label, lower, upper in windows:
        if lower < ready:
            lower, cut, label = ready, True, label + " (cut)"
        latency = Latency.of(game.samples((lower, upper)))
        latencies.append(latency)
        print(f"{label:<46}{lower - start:>8.1f}{latency.transactions:>7}{latency.transactions / (upper - lower):>6.0f}"
              f"{ms(latency.p99_ms):>9}{ms(latency.mean_ms):>9}{ms(latency.max_ms):>9}")
    if cut:
        print("  (cut): the quiet phase was shorter than twice the cycle; raise --cycle-seconds or --quiet-seconds")
    return latencies


def print_goals(game: Game, control: Latency, quiet: Latency, cycle: Latency) -> None:
    aborted, failed = len(game.aborts), game.failed_total()
    p99_ratio, max_ratio = cycle.p99_ms / quiet.p99_ms, cycle.max_ms / LOCK_TIMEOUT_MS
    goals = [
        ("aborted clients", f"{aborted}", "0", aborted == 0),
        ("failed transactions", "-" if failed is None else f"{failed}", "0", None if failed is None else failed == 0),
        ("p99 cycle / quiet", f"{p99_ratio:.2f} ({ms(cycle.p99_ms)} / {ms(quiet.p99_ms)} ms)", f"<= {P99_GOAL:g}",
         None if math.isnan(p99_ratio) else p99_ratio <= P99_GOAL),
        ("max cycle / DDL lock_timeout", f"{max_ratio:.2f} ({ms(cycle.max_ms)} / {LOCK_TIMEOUT_MS} ms)", "< 1",
         None if math.isnan(max_ratio) else max_ratio < 1),
    ]
    print("\nGoals")
    header = f"{'goal':<32}{'figure':<36}{'target':<8}verdict"
    print(header)
    print("-" * len(header))
    for goal, figure, target, met in goals:
        print(f"{goal:<32}{figure:<36}{target:<8}{verdict(met)}")
    print(f"{'control: p99 quiet / control':<32}{quiet.p99_ms / control.p99_ms:.2f} "
          "(two idle windows: the method's own noise)")


def command_text(number: int) -> str:
    """The start of pgbench's command ``number`` in the game script (one command per line, from 0)."""
    commands = GAME_SCRIPT.strip().splitlines()
    return commands[number][:32] + "..." if number < len(commands) else "?"


def print_game(game: Game, steps: list[Step], start: float) -> None:
    if game.aborts:
        print("\nAborted clients (s from the cycle's start): when pgbench printed the error, and when the "
              "client's last logged transaction had ended (it was stuck in between)")
        for run in game.runs:
            for abort in run.aborts:
                last = game.workload.last_end(run.tag, abort.client)
                print(f"  {abort.at - start:>8.2f}s  {where(abort.at, steps)}: client {abort.client} of {run.tag}, "
                      f"last transaction ended {'-' if last is None else f'{last - start:.2f}s'}, "
                      f"command {abort.command} ({command_text(abort.command)}): {abort.message}")
    runs = [f"{r.tag} {r.began - start:+.1f}..{r.ended - start:+.1f}s exit {r.returncode}" for r in game.runs]
    print(f"\npgbench runs (s from the cycle's start): {'; '.join(runs)}")
    for run in game.runs:
        for note in run.notes:
            print(f"  {run.tag}: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small scale, short quiet phase")
    from cosmic_ops import demo

    parser.add_argument("--scale", choices=sorted(demo.SCALES), default=None)
    parser.add_argument("--rate", type=int, default=200, help="game transactions per second (pgbench -R)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (-c)")
    parser.add_argument("--protocol", choices=("prepared", "simple", "extended"), default="prepared",
                        help="pgbench -M: how the game sends its statements")
    parser.add_argument("--cycle-seconds", type=float, default=None,
                        help="expected length of the cycle: sizes the quiet phase (twice it: the control and "
                             "the quiet window) and the first pgbench run (default 300, quick 8)")
    parser.add_argument("--quiet-seconds", type=float, default=None,
                        help="the game alone before the cycle (default: twice --cycle-seconds)")
    args = parser.parse_args()
    scale = args.scale or ("small" if args.quick else "default")
    cycle_s = args.cycle_seconds or (8 if args.quick else 300)
    quiet_s = args.quiet_seconds or 2 * cycle_s

    clock = datetime.now(timezone.utc)
    current = POLICY.current_month(clock)
    outside = add_months(current, -(POLICY.lookback + 1))  # DEFAULT rows the window does not cover
    server = Server(resolve_conninfo())
    workdir = Path(tempfile.mkdtemp(prefix="bench_cycle_"))
    try:
        started = time.perf_counter()
        url, players, bodies = build_demo(server, f"bench_cycle_{uuid.uuid4().hex[:8]}", scale, as_of=clock.date(),
                                          reshape=months_to_default([current, outside]))
        with db.connect(url) as conn:
            waiting = default_rows_by_month(conn, POLICY)[1]
            past = attached_past_retention(conn, RetentionPolicy(), clock.date())
            cycle = Cycle(url, clock, client_for(conn), BackupStore(workdir / "store"),
                          sorted(p.lower_month() for p in past)[:2],
                          due_months(conn, "celestial_bodies", "is_destroyed"),
                          due_months(conn, "game_saves", "NOT is_active AND compressed_state IS NULL"))
        print(f"data: demo scale {scale!r} as of {clock:%Y-%m-%d}, {bodies} bodies, built in "
              f"{time.perf_counter() - started:.1f}s on {db.redact(server.conninfo)}")
        print("DEFAULT before the game: " + (", ".join(f"{m:%Y-%m}: {n} rows" for m, n in waiting) or "empty")
              + f"; no partition for {current:%Y-%m}, where the game inserts; to retire: "
              + ", ".join(f"{m:%Y-%m}" for m in cycle.retire))
        pgbench = cycle.client.bin_dir / "pgbench"
        workload = Workload(url, players, bodies, args.rate, args.clients, script=GAME_SCRIPT,
                            protocol=args.protocol, binary=pgbench if pgbench.exists() else None)
        print(f"game: pgbench -R {args.rate} -c {args.clients} -j 2 -M {args.protocol} "
              f"{' '.join(PGBENCH_FAILURES)}; a transaction inserts an event (now()), moves a body, reads the "
              f"player's latest events; quiet {quiet_s:.0f}s, then the cycle")
        game = Game(workload, WARMUP_S + quiet_s + cycle_s + TAIL_S, extend_s=max(5.0, cycle_s / 10))
        try:
            try:
                game.start()
                game_start = time.time()
                game.play_alone(WARMUP_S + quiet_s)
                steps = cycle.run()
                game.finish(TAIL_S)
            except BaseException:
                game.abandon()
                raise
            start, end = steps[0].began, steps[-1].ended
            print_steps(game, steps, start)
            print_goals(game, *print_windows(game, start, end, game_start + WARMUP_S))
            print_game(game, steps, start)
        finally:
            workload.cleanup()
        raised = [step for step in steps if step.error]
        for step in raised:
            print(f"step raised: {step.name}: {step.error}", file=sys.stderr)
        return 1 if raised else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        server.drop_all()


if __name__ == "__main__":
    raise SystemExit(main())
