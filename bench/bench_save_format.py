"""Benchmark: the save/4 document format vs the simplest exact alternative, raw COPY bytes + a zstd dictionary.

One run, one server, the same generated data for every contender (each gets its own copy of
one demo database, ``CREATE DATABASE ... TEMPLATE``), every due save packed in batches of 200
in one session, each batch one transaction (as ``compressed_saves`` does per worker):

- save/4: ``saves.compress_batch``, the code the asset runs: ``COPY (DELETE ... RETURNING)``
  in binary, the hand-written column encoder (``savecopy``), zstd-3, read back and checked.
- raw + dictionary: the same locking and storing, but each save's rows are PostgreSQL's own
  binary COPY tuples as sent (``RETURNING save_id, ...``, split by save in Python), compressed
  with zstd-3 and a dictionary trained once (``zstandard.train_dictionary``) on saves that are
  not packed (the live ones: no save is compressed with a dictionary that has seen it),
  kept once in a registry table as ``cosmic_ops.save_layouts`` keeps layouts; decompressed
  and its sha256 checked before the batch commits.
- raw, no dictionary: the same without the dictionary, to show what the dictionary buys.

saves/s is wall time of the packing loop, server included (noisy on a shared machine);
client CPU is this process's CPU time in it, the encoder's own cost.

Each is then checked exact: a sample of saves is rehydrated (save/4 by ``rehydrate_saves``;
the others by ``COPY ... FROM STDIN (FORMAT binary)`` of the stored tuples) and each
table's fingerprint over those saves must equal the one taken before packing.

Reported per contender: saves/s of the packing loop, bytes stored, compression ratio (the
saves' rows as tuples, ``pg_column_size``, over the bytes stored; the alternative also with
its dictionary counted once), and ratios alternative / save/4. The issue's rule: replace the
hand-written encoder if the alternative's ratio is within 15 % of save/4's and it is not slower.

    .venv/bin/python bench/bench_save_format.py [--quick] [--scale small|default] [--repeat 3]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server); creates scratch databases and
drops them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
import zstandard  # noqa: E402
from psycopg import sql  # noqa: E402

from _common import Server, build_demo, due_months  # noqa: E402
from cosmic_ops import db  # noqa: E402
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.fingerprint import Fingerprint, fingerprint, table_columns  # noqa: E402
from cosmic_ops.lifecycle import savecopy, saves  # noqa: E402
from cosmic_ops.lifecycle.policy import BatchLog, MonthScope  # noqa: E402
from cosmic_ops.lifecycle.savecopy import COPY_HEADER, COPY_SIGNATURE, COPY_TRAILER  # noqa: E402

# The benchmark's one clock: demo data and every age-based decision are as of this instant.
NOW = datetime.now(timezone.utc)
BATCH = saves.DEFAULT_SAVES_PER_BATCH
CODEC = saves.DEFAULT_CODEC
DICTIONARY_BYTES = 112_640  # zstd's own default (--maxdict)
RAW_FORMAT = "bench.raw-copy+dict"

REGISTRY = """
CREATE TABLE cosmic_ops.bench_save_dictionaries (
    id         text PRIMARY KEY,
    dictionary bytea NOT NULL,
    trained_at timestamptz NOT NULL DEFAULT now()
)
"""


def only_saves(conn: psycopg.Connection) -> None:
    """The event history only slows the copies."""
    conn.execute("TRUNCATE event_logs")


# --- the alternative: raw COPY tuples, split by save ----------------------------------------
def save_first_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """The table's columns with save_id first, so each tuple's save is its first field."""
    columns = list(table_columns(conn, "public", table))
    return ["save_id"] + [c for c in columns if c != "save_id"]


def tuples_by_save(data: bytes) -> dict[int, list[bytes]]:
    """The tuples of a COPY binary stream whose first field is an int8 save id, grouped by save."""
    if not data.startswith(COPY_SIGNATURE) or not data.endswith(COPY_TRAILER):
        raise ValueError("not a whole COPY binary stream")
    field_count, length_of, save_of = struct.Struct(">h").unpack_from, struct.Struct(">i").unpack_from, \
        struct.Struct(">q").unpack_from
    position, end = 19 + int.from_bytes(data[15:19], "big"), len(data) - 2
    out: dict[int, list[bytes]] = {}
    while position < end:
        start = position
        (fields,) = field_count(data, position)
        (save_id,) = save_of(data, position + 6)
        position += 2
        for _ in range(fields):
            (length,) = length_of(data, position)
            position += 4 + (length if length > 0 else 0)
        out.setdefault(save_id, []).append(data[start:position])
    if position != end:
        raise ValueError("COPY binary stream ends inside a tuple")
    return out


def raw_documents(conn: psycopg.Connection, save_ids: Sequence[int], statement: Callable[[str], sql.Composed]
                  ) -> dict[int, bytes]:
    """Per save: a JSON header line (format, save id, the tables' layouts, which a real format must name
    to refuse a changed table), then for each save table its tuples' byte length (4 bytes) and the
    tuples as PostgreSQL sent them."""
    layouts = [savecopy.table_layout(conn, t).fingerprint for t in saves.SAVE_TABLES]
    blocks: dict[int, list[bytes]] = {
        save_id: [json.dumps({"format": RAW_FORMAT, "save_id": save_id, "layouts": layouts},
                             separators=(",", ":")).encode() + b"\n"] for save_id in save_ids}
    for table in saves.SAVE_TABLES:
        with conn.cursor().copy(statement(table), (list(save_ids),)) as copy:
            grouped = tuples_by_save(b"".join(copy))
        for save_id in save_ids:
            block = b"".join(grouped.get(save_id, ()))
            blocks[save_id].append(len(block).to_bytes(4, "big") + block)
    return {save_id: b"".join(parts) for save_id, parts in blocks.items()}


def select_statement(columns: dict[str, list[str]]) -> Callable[[str], sql.Composed]:
    return lambda table: sql.SQL("COPY (SELECT {} FROM {} WHERE save_id = ANY(%s)) TO STDOUT (FORMAT binary)").format(
        sql.SQL(", ").join(map(sql.Identifier, columns[table])), sql.Identifier(table))


def delete_statement(columns: dict[str, list[str]]) -> Callable[[str], sql.Composed]:
    return lambda table: sql.SQL(
        "COPY (DELETE FROM {} WHERE save_id = ANY(%s) RETURNING {}) TO STDOUT (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns[table])))


def train(url: str, samples: int) -> tuple[bytes, int, float]:
    """(dictionary, saves it was trained on, seconds): trained on saves that are not due."""
    with db.connect(url) as conn:
        live = [r[0] for r in conn.execute(sql.SQL("SELECT id FROM game_saves WHERE NOT ({}) ORDER BY id").format(
            sql.SQL(saves_due_sql())))]
        random.Random(2026).shuffle(live)
        chosen = sorted(live[:samples])
        columns = {t: save_first_columns(conn, t) for t in saves.SAVE_TABLES}
        documents = []
        for start in range(0, len(chosen), BATCH):
            documents += raw_documents(conn, chosen[start:start + BATCH], select_statement(columns)).values()
    began = time.perf_counter()
    trained = zstandard.train_dictionary(DICTIONARY_BYTES, documents, level=CODEC.level)
    return trained.as_bytes(), len(chosen), time.perf_counter() - began


class RawCopy:
    """Packs a batch of locked saves the alternative's way, in the caller's transaction."""

    def __init__(self, conn: psycopg.Connection, dictionary: bytes | None):
        self.dictionary_id = None
        trained = None
        if dictionary is not None:
            self.dictionary_id = hashlib.sha256(dictionary).hexdigest()[:24]
            conn.execute("INSERT INTO cosmic_ops.bench_save_dictionaries (id, dictionary) VALUES (%s, %s) "
                         "ON CONFLICT (id) DO NOTHING", (self.dictionary_id, dictionary))
            trained = zstandard.ZstdCompressionDict(dictionary)
        self.compress = zstandard.ZstdCompressor(level=CODEC.level, dict_data=trained).compress
        self.decompress = zstandard.ZstdDecompressor(dict_data=trained).decompress
        self.columns = {t: save_first_columns(conn, t) for t in saves.SAVE_TABLES}

    def pack(self, conn: psycopg.Connection, save_ids: list[int]) -> list[saves.PackedSave]:
        conn.execute("SELECT set_config('client_encoding', 'UTF8', true)")
        packs = []
        for save_id, raw in raw_documents(conn, save_ids, delete_statement(self.columns)).items():
            compressed = self.compress(raw)
            digest = hashlib.sha256(raw).hexdigest()
            back = self.decompress(compressed)
            if len(back) != len(raw) or hashlib.sha256(back).hexdigest() != digest:
                raise saves.SaveVerificationFailed(f"save {save_id}: checksum mismatch after decompression")
            packs.append(saves.PackedSave(save_id, compressed, {
                "format": RAW_FORMAT, "save_id": save_id, "codec": "zstd", "level": CODEC.level,
                "dictionary": self.dictionary_id, "original_bytes": len(raw), "compressed_bytes": len(compressed),
                "sha256": digest}))
        return packs

    def rehydrate(self, conn: psycopg.Connection, save_id: int) -> None:
        with conn.transaction():
            state = conn.execute("SELECT compressed_state FROM game_saves WHERE id = %s FOR UPDATE",
                                 (save_id,)).fetchone()[0]
            raw = self.decompress(bytes(state))
            offset = raw.index(b"\n") + 1
            conn.execute("SELECT set_config('client_encoding', 'UTF8', true)")
            for table in saves.SAVE_TABLES:
                size = int.from_bytes(raw[offset:offset + 4], "big")
                block = raw[offset + 4:offset + 4 + size]
                offset += 4 + size
                statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, self.columns[table])))
                with conn.cursor().copy(statement) as copy:
                    copy.write(COPY_HEADER + block + COPY_TRAILER)
            conn.execute("UPDATE game_saves SET compressed_state = NULL, compression_info = NULL, "
                         "compressed_at = NULL WHERE id = %s", (save_id,))


# --- one contender on its own copy ------------------------------------------------------------
def saves_due_sql() -> str:
    return "NOT is_active AND compressed_state IS NULL AND updated_at < now() - interval '7 days'"


@dataclass
class FormatRun:
    name: str
    saves: int
    seconds: float
    tuple_bytes: int
    stored_bytes: int
    cpu_s: float  # this process's CPU time in the packing loop: the encoder's cost without the server's
    dictionary_bytes: int = 0
    rehydrated: int = 0
    rehydrate_s: float = 0.0

    @property
    def saves_per_s(self) -> float:
        return self.saves / self.seconds

    @property
    def ratio(self) -> float:
        return self.tuple_bytes / self.stored_bytes

    @property
    def ratio_with_dictionary(self) -> float:
        return self.tuple_bytes / (self.stored_bytes + self.dictionary_bytes)

    @property
    def rehydrate_per_s(self) -> float:
        return self.rehydrated / self.rehydrate_s if self.rehydrate_s else 0.0


def fingerprints(conn: psycopg.Connection, save_ids: list[int]) -> dict[str, Fingerprint]:
    with conn.transaction():
        return {t: fingerprint(conn, "public", t, table_columns(conn, "public", t),
                               sql.SQL("save_id = ANY({})").format(sql.Literal(save_ids))) for t in saves.SAVE_TABLES}


def run_format(server: Server, base: str, name: str, contender: str, dictionary: bytes, sample_size: int
               ) -> FormatRun:
    url = server.clone(f"{base}_{name}", base, REGISTRY)
    try:
        with db.connect(url) as conn:
            months = due_months(conn, "game_saves", saves_due_sql())
            scope = MonthScope.of(months[0], saves.DEFAULT_INACTIVE_FOR, NOW, through=months[-1])
            due = saves.select_candidates(conn, scope)
            tuple_bytes = sum(conn.execute(sql.SQL(
                "SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {} t WHERE save_id = ANY(%s)").format(
                sql.Identifier(table)), ([s[0] for s in due],)).fetchone()[0] for table in saves.SAVE_TABLES)
            sample = sorted(random.Random(7).sample([s[0] for s in due], min(sample_size, len(due))))
            before = fingerprints(conn, sample)
            raw = None if contender == "v4" else RawCopy(conn, dictionary if contender == "raw" else None)
            conn.commit()
            report = saves.CompressReport(scope=scope, log=BatchLog(unit="saves"))
            packed = 0
            began, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(due), BATCH):
                batch = due[start:start + BATCH]
                if raw is None:
                    packed += len(saves.compress_batch(conn, batch, CODEC, report))
                    continue
                with conn.transaction():
                    conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
                    ids = saves._lock_unchanged(conn, batch)
                    saves._store(conn, raw.pack(conn, ids))
                    packed += len(ids)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            stored, count = conn.execute("SELECT coalesce(sum(octet_length(compressed_state)), 0), count(*) "
                                         "FROM game_saves WHERE compressed_state IS NOT NULL").fetchone()
            conn.commit()
            if packed != len(due) or count != len(due):
                raise RuntimeError(f"{name}: packed {packed} ({count} stored) of {len(due)} due saves")
            began = time.perf_counter()
            if raw is None:
                saves.rehydrate_saves(conn, sample)
            else:
                for save_id in sample:
                    raw.rehydrate(conn, save_id)
                    conn.commit()
            rehydrate_s = time.perf_counter() - began
            if fingerprints(conn, sample) != before:
                raise RuntimeError(f"{name}: rehydrated saves differ from the rows packed")
        return FormatRun(name, packed, seconds, int(tuple_bytes), int(stored), cpu,
                         len(dictionary) if contender == "raw" else 0, len(sample), rehydrate_s)
    finally:
        server.drop(f"{base}_{name}")


# --- report -----------------------------------------------------------------------------------
def print_round(runs: list[FormatRun]) -> None:
    v4 = runs[0]
    header = (f"{'contender':<34}{'saves':>7}{'s':>8}{'saves/s':>9}{'x /4':>7}{'CPU ms/save':>12}{'x /4':>7}"
              f"{'tuple MB':>10}{'stored MB':>10}"
              f"{'ratio':>7}{'x /4':>7}{'+dict':>7}{'rehydr/s':>10}")
    print(header)
    print("-" * len(header))
    for run in runs:
        with_dictionary = f"{run.ratio_with_dictionary:>7.2f}" if run.dictionary_bytes else f"{'-':>7}"
        print(f"{run.name:<34}{run.saves:>7}{run.seconds:>8.2f}{run.saves_per_s:>9.0f}"
              f"{run.saves_per_s / v4.saves_per_s:>7.2f}{1000 * run.cpu_s / run.saves:>12.3f}"
              f"{run.cpu_s / v4.cpu_s:>7.2f}{run.tuple_bytes / 2**20:>10.2f}"
              f"{run.stored_bytes / 2**20:>10.2f}{run.ratio:>7.2f}{run.ratio / v4.ratio:>7.2f}{with_dictionary}"
              f"{run.rehydrate_per_s:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: small scale, one round")
    from cosmic_ops import demo

    parser.add_argument("--scale", choices=sorted(demo.SCALES), default=None)
    parser.add_argument("--repeat", type=int, default=None, help="rounds (medians reported); default 3, quick 1")
    parser.add_argument("--train-saves", type=int, default=None,
                        help="live saves the dictionary is trained on; default 2000, quick 200")
    parser.add_argument("--rehydrate-saves", type=int, default=None,
                        help="packed saves rehydrated and compared; default 500, quick 50")
    args = parser.parse_args()
    scale = args.scale or ("small" if args.quick else "default")
    repeat = args.repeat or (1 if args.quick else 3)
    train_saves = args.train_saves or (200 if args.quick else 2000)
    sample = args.rehydrate_saves or (50 if args.quick else 500)

    server = Server(resolve_conninfo(os.environ.get("COSMIC_OPS_DATABASE_URL")))
    base = f"bench_save_format_{uuid.uuid4().hex[:8]}"
    try:
        started = time.perf_counter()
        url, _, _ = build_demo(server, base, scale, as_of=NOW.date(), reshape=only_saves)
        print(f"data: demo scale {scale!r}, built in {time.perf_counter() - started:.1f}s on {db.redact(server.conninfo)}")
        dictionary, trained_on, train_s = train(url, train_saves)
        print(f"dictionary: {len(dictionary)} bytes, trained on {trained_on} live saves in {train_s:.2f}s "
              f"(zstd-{CODEC.level})")
        contenders = [("save/4 (savecopy, zstd-3)", "v4"), ("raw COPY + dictionary (zstd-3)", "raw"),
                      ("raw COPY, no dictionary (zstd-3)", "plain")]
        rounds: list[list[FormatRun]] = []
        for number in range(1, repeat + 1):
            runs = []
            # Each round another contender goes first, so none always meets a colder cache.
            shift = (number - 1) % len(contenders)
            order = contenders[shift:] + contenders[:shift]
            for label, contender in order:
                run = run_format(server, base, f"r{number}_{contender}", contender, dictionary, sample)
                run.name = label
                runs.append(run)
            runs.sort(key=lambda r: [c[0] for c in contenders].index(r.name))
            print(f"\n[round {number} of {repeat}] batches of {BATCH} saves, one session; "
                  "ratio = saves' tuple bytes / bytes stored (+dict: the dictionary counted once)")
            print_round(runs)
            rounds.append(runs)
        print(f"\nmedians over {repeat} round(s)")
        for index, (label, _) in enumerate(contenders):
            print(f"  {label:<34}{statistics.median(r[index].saves_per_s for r in rounds):>6.0f} saves/s "
                  f"({statistics.median(r[index].saves_per_s / r[0].saves_per_s for r in rounds):.2f}x /4), ratio "
                  f"{statistics.median(r[index].ratio for r in rounds):.2f} "
                  f"({statistics.median(r[index].ratio / r[0].ratio for r in rounds):.2f}x /4), client CPU "
                  f"{statistics.median(1000 * r[index].cpu_s / r[index].saves for r in rounds):.3f} ms/save "
                  f"({statistics.median(r[index].cpu_s / r[0].cpu_s for r in rounds):.2f}x /4)")
        speed = statistics.median(r[1].saves_per_s / r[0].saves_per_s for r in rounds)
        ratio = statistics.median(r[1].ratio / r[0].ratio for r in rounds)
        print(f"raw + dictionary / save/4: speed {speed:.2f}x, ratio {ratio:.2f}x")
        verdict = "replace save/4 with it" if ratio >= 0.85 and speed >= 1.0 else "keep save/4"
        print(f"rule (ratio within 15 % and not slower): {verdict}")
    finally:
        server.drop_all()


if __name__ == "__main__":
    main()
