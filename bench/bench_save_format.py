"""Benchmark: the save/5 document format (raw COPY tuples) with its trained zstd dictionary vs without one.

One run, one server, the same generated data for every contender (each gets its own copy of
one demo database, ``CREATE DATABASE ... TEMPLATE``), every due save packed by
``saves.compress_batch`` (the code the asset runs) in batches of 200 in one session, each batch
one transaction:

- with the dictionary: trained once by ``saves.train_dictionary_once`` (as a run's first step
  does), on saves that still have rows, before the copies are made;
- without: the same code with the dictionary registry emptied (what a batch packed before
  the first dictionary gets): what the dictionary buys.

Each is then checked exact: a sample of saves is rehydrated (``rehydrate_saves``) and each
table's fingerprint over those saves must equal the one taken before packing.

Reported per contender: saves/s of the packing loop (wall time, server included: noisy on a
shared machine), this process's CPU time per save in it (the encoder's own cost), bytes
stored, compression ratio (the saves' rows as tuples, ``pg_column_size``, over the bytes
stored; with the dictionary also counting the dictionary once), rehydrated saves/s, and
ratios with / without the dictionary.

save/5 replaced save/4's hand-written column encoder after this benchmark, at commit 87ab08e
(``git show 87ab08e:bench/bench_save_format.py``), compared them: lifecycle/FORMAT.md has
the figures.

    .venv/bin/python bench/bench_save_format.py [--quick] [--scale small|default] [--repeat 3]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server); creates scratch databases and
drops them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from _common import Server, build_demo, due_months  # noqa: E402
from cosmic_ops import db  # noqa: E402
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.fingerprint import Fingerprint, fingerprint, table_columns  # noqa: E402
from cosmic_ops.lifecycle import saves  # noqa: E402
from cosmic_ops.lifecycle.policy import BatchLog, MonthScope  # noqa: E402

# The benchmark's one clock: demo data and every age-based decision are as of this instant.
NOW = datetime.now(timezone.utc)
BATCH = saves.DEFAULT_SAVES_PER_BATCH
CODEC = saves.DEFAULT_CODEC
DUE_SAVES = "NOT is_active AND compressed_state IS NULL AND updated_at < now() - interval '7 days'"
CONTENDERS = {  # label: statements run in the contender's copy before it packs
    f"save/5 + dictionary (zstd-{CODEC.level})": (),
    f"save/5, no dictionary (zstd-{CODEC.level})": ("DELETE FROM cosmic_ops.save_dictionaries",),
}


def only_saves(conn: psycopg.Connection) -> None:
    """The event history only slows the copies."""
    conn.execute("TRUNCATE event_logs")


@dataclass
class FormatRun:
    name: str
    saves: int
    seconds: float
    cpu_s: float
    tuple_bytes: int
    stored_bytes: int
    dictionary_bytes: int
    rehydrated: int
    rehydrate_s: float

    @property
    def saves_per_s(self) -> float:
        return self.saves / self.seconds

    @property
    def cpu_ms_per_save(self) -> float:
        return 1000 * self.cpu_s / self.saves

    @property
    def ratio(self) -> float:
        return self.tuple_bytes / self.stored_bytes

    @property
    def ratio_with_dictionary(self) -> float:
        return self.tuple_bytes / (self.stored_bytes + self.dictionary_bytes)

    @property
    def rehydrate_per_s(self) -> float:
        return self.rehydrated / self.rehydrate_s


def fingerprints(conn: psycopg.Connection, save_ids: list[int]) -> dict[str, Fingerprint]:
    with conn.transaction():
        return {t: fingerprint(conn, "public", t, table_columns(conn, "public", t),
                               sql.SQL("save_id = ANY({})").format(sql.Literal(save_ids))) for t in saves.SAVE_TABLES}


def run_format(server: Server, base: str, name: str, statements: tuple[str, ...], sample_size: int) -> FormatRun:
    url = server.clone(f"{base}_{name}", base, *statements)
    try:
        with db.connect(url) as conn:
            months = due_months(conn, "game_saves", DUE_SAVES)
            scope = MonthScope.of(months[0], saves.DEFAULT_INACTIVE_FOR, NOW, through=months[-1])
            due = saves.select_candidates(conn, scope)
            tuple_bytes = sum(conn.execute(sql.SQL(
                "SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {} t WHERE save_id = ANY(%s)").format(
                sql.Identifier(table)), ([s[0] for s in due],)).fetchone()[0] for table in saves.SAVE_TABLES)
            dictionary_bytes = conn.execute("SELECT coalesce(sum(octet_length(dictionary)), 0) "
                                            "FROM cosmic_ops.save_dictionaries").fetchone()[0]
            sample = sorted(random.Random(7).sample([s[0] for s in due], min(sample_size, len(due))))
            before = fingerprints(conn, sample)
            conn.commit()
            report = saves.CompressReport(scope=scope, log=BatchLog(unit="saves"))
            packed = 0
            began, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(due), BATCH):
                packed += len(saves.compress_batch(conn, due[start:start + BATCH], CODEC, report))
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            stored, count = conn.execute("SELECT coalesce(sum(octet_length(compressed_state)), 0), count(*) "
                                         "FROM game_saves WHERE compressed_state IS NOT NULL").fetchone()
            conn.commit()
            if packed != len(due) or count != len(due):
                raise RuntimeError(f"{name}: packed {packed} ({count} stored) of {len(due)} due saves")
            began = time.perf_counter()
            saves.rehydrate_saves(conn, sample)
            rehydrate_s = time.perf_counter() - began
            if fingerprints(conn, sample) != before:
                raise RuntimeError(f"{name}: rehydrated saves differ from the rows packed")
        return FormatRun(name, packed, seconds, cpu, int(tuple_bytes), int(stored), int(dictionary_bytes),
                         len(sample), rehydrate_s)
    finally:
        server.drop(f"{base}_{name}")


def print_round(runs: list[FormatRun]) -> None:
    plain = runs[-1]
    header = (f"{'contender':<34}{'saves':>7}{'s':>8}{'saves/s':>9}{'x none':>8}{'CPU ms/save':>12}{'tuple MB':>10}"
              f"{'stored MB':>10}{'ratio':>7}{'x none':>8}{'+dict':>7}{'rehydr/s':>10}")
    print(header)
    print("-" * len(header))
    for run in runs:
        with_dictionary = f"{run.ratio_with_dictionary:>7.2f}" if run.dictionary_bytes else f"{'-':>7}"
        print(f"{run.name:<34}{run.saves:>7}{run.seconds:>8.2f}{run.saves_per_s:>9.0f}"
              f"{run.saves_per_s / plain.saves_per_s:>8.2f}{run.cpu_ms_per_save:>12.3f}{run.tuple_bytes / 2**20:>10.2f}"
              f"{run.stored_bytes / 2**20:>10.2f}{run.ratio:>7.2f}{run.ratio / plain.ratio:>8.2f}{with_dictionary}"
              f"{run.rehydrate_per_s:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: small scale, one round")
    from cosmic_ops import demo

    parser.add_argument("--scale", choices=sorted(demo.SCALES), default=None)
    parser.add_argument("--repeat", type=int, default=None, help="rounds (medians reported); default 3, quick 1")
    parser.add_argument("--rehydrate-saves", type=int, default=None,
                        help="packed saves rehydrated and compared; default 500, quick 50")
    args = parser.parse_args()
    scale = args.scale or ("small" if args.quick else "default")
    repeat = args.repeat or (1 if args.quick else 3)
    sample = args.rehydrate_saves or (50 if args.quick else 500)

    server = Server(resolve_conninfo(os.environ.get("COSMIC_OPS_DATABASE_URL")))
    base = f"bench_save_format_{uuid.uuid4().hex[:8]}"
    try:
        started = time.perf_counter()
        url, _, _ = build_demo(server, base, scale, as_of=NOW.date(), reshape=only_saves)
        print(f"data: demo scale {scale!r}, built in {time.perf_counter() - started:.1f}s on {db.redact(server.conninfo)}")
        with db.connect(url) as conn:
            started = time.perf_counter()
            trained = saves.train_dictionary_once(conn, CODEC)
            if trained is None:
                raise RuntimeError("no dictionary trained: too few saves")
            samples = conn.execute("SELECT trained_on FROM cosmic_ops.save_dictionaries").fetchone()[0]
        print(f"dictionary: {len(trained.data)} bytes, trained on {samples} saves in "
              f"{time.perf_counter() - started:.2f}s (read + train, once)")
        labels = list(CONTENDERS)
        rounds: list[list[FormatRun]] = []
        for number in range(1, repeat + 1):
            # Each round another contender goes first, so none always meets a colder cache.
            order = labels if number % 2 else labels[::-1]
            runs = {label: run_format(server, base, f"r{number}_{labels.index(label)}", CONTENDERS[label], sample)
                    for label in order}
            for label, run in runs.items():
                run.name = label
            print(f"\n[round {number} of {repeat}] batches of {BATCH} saves, one session; ratio = saves' tuple "
                  "bytes / bytes stored (+dict: the dictionary counted once)")
            rounds.append([runs[label] for label in labels])
            print_round(rounds[-1])
        print(f"\nmedians over {repeat} round(s)")
        for index, label in enumerate(labels):
            print(f"  {label:<34}{statistics.median(r[index].saves_per_s for r in rounds):>6.0f} saves/s "
                  f"({statistics.median(r[index].saves_per_s / r[-1].saves_per_s for r in rounds):.2f}x none), "
                  f"ratio {statistics.median(r[index].ratio for r in rounds):.2f} "
                  f"({statistics.median(r[index].ratio / r[-1].ratio for r in rounds):.2f}x none), "
                  f"client CPU {statistics.median(r[index].cpu_ms_per_save for r in rounds):.3f} ms/save")
    finally:
        server.drop_all()


if __name__ == "__main__":
    main()
