"""Inactive saves packed into ``game_saves.compressed_state``, and rehydrated exactly.

A batch of saves' rows (``celestial_bodies``, ``save_resources``, ``save_research``)
is taken with one ``COPY (DELETE ... RETURNING ...) TO STDOUT (FORMAT binary)`` per
table, and each save becomes one document of its rows in PostgreSQL's own binary
form (``savecopy``, format ``cosmic_ops.save/5``), compressed with a zstd dictionary
trained once; rehydration copies the same bytes back with ``COPY ... FROM STDIN
(FORMAT binary)``, so values and types come back identical. Saves packed as
``cosmic_ops.save/4`` (``save4``) rehydrate too. The formats are persistent: see ``FORMAT.md``.

What is packed is exactly what was deleted. Python builds each document of the
tuples PostgreSQL sent, compresses it (zstd with the dictionary, or zlib),
decompresses it again and checks the sha256, and only then stores it -- all in
the batch's one transaction, which commits only after every check passed, so any
failure or kill rolls everything back. The save rows are locked (``FOR UPDATE SKIP
LOCKED``) and re-checked, so a save that changed after it was selected is left
alone; while a batch runs, the game cannot add to or change its saves' rows (an
insert's foreign-key check waits on the save's lock, an update on the lock of the
row being deleted).

Packing moves rows out of ``celestial_bodies``, ``save_resources`` and ``save_research``
into ``game_saves``: a run holds the maintenance lock scopes of all four tables
(``recovery.table_maintenance``), so it never overlaps the archive, a VACUUM or any other
job that changes them. Rehydration is the exception: it restores one save in one
short transaction, as the game would, for a player who is waiting, so it takes no
scope and never waits for a nightly job. It and packing exclude each other per save:
both lock the save's row (rehydration waits; a batch skips a save whose row is
locked), and a run packs only the saves that were due when it started, so a save
rehydrated meanwhile is not packed again by that run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

import psycopg
import zstandard
from psycopg import sql

from .. import recovery
from ..db import SessionSpec, compress_wal, compressed_wal, end_read
from . import save4, savecopy
from .parentwatch import exit_with_parent
from .policy import BatchLog, MonthScope, ProgressCallback, Throttle, own_transaction, run_batches

SAVES_TABLE = "game_saves"
SAVE_TABLES = ("celestial_bodies", "save_resources", "save_research")
DOCUMENT_FORMAT = savecopy.FORMAT
# Every format a database may hold, and its reader (FORMAT.md: a format, once stored, stays readable).
_READERS = {savecopy.FORMAT: savecopy.parse, save4.FORMAT: save4.parse}
# Saves a dictionary is trained on (zstd suggests ~100 times the dictionary's size of samples),
# and the fewest worth training on: a dictionary is trained once per set of table layouts.
DICTIONARY_TRAINING_SAVES = 2000
MIN_DICTIONARY_TRAINING_SAVES = 100
DEFAULT_INACTIVE_FOR = timedelta(days=7)
CODECS = ("zstd", "zlib")


class SaveVerificationFailed(RuntimeError):
    """A packed save did not unpack to what was read: nothing was changed."""


class SaveNotCompressed(ValueError):
    """The save holds no compressed state: its rows are live (never packed, or already rehydrated)."""


@dataclass(frozen=True)
class Codec:
    name: str = "zstd"
    level: int = 19

    def __post_init__(self) -> None:
        if self.name not in CODECS:
            raise ValueError(f"codec {self.name!r} not supported; choose one of {CODECS}")
        low, high = (1, 22) if self.name == "zstd" else (1, 9)
        if not low <= self.level <= high:
            raise ValueError(f"{self.name} level must be between {low} and {high}, got {self.level}")

    def compressor(self, dictionary: savecopy.SaveDictionary | None = None) -> Callable[[bytes], bytes]:
        """A compress function to reuse within one thread (a zstd context is not thread-safe)."""
        if self.name == "zstd":
            return zstandard.ZstdCompressor(level=self.level, dict_data=dictionary and dictionary.zstd()).compress
        return lambda data: zlib.compress(data, self.level)

    @staticmethod
    def decompressor(name: str, dictionary: savecopy.SaveDictionary | None = None) -> Callable[[bytes], bytes]:
        """A decompress function for packs of codec ``name``, to reuse within one thread."""
        if name == "zstd":
            return zstandard.ZstdDecompressor(dict_data=dictionary and dictionary.zstd()).decompress
        if name == "zlib":
            return zlib.decompress
        raise ValueError(f"unknown codec {name!r} in compression_info")


DEFAULT_CODEC = Codec("zstd", 3)
DEFAULT_SAVES_PER_BATCH = 200
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class SavePolicy:
    inactive_for: timedelta = DEFAULT_INACTIVE_FOR
    codec: Codec = DEFAULT_CODEC
    throttle: Throttle = Throttle(batch_size=DEFAULT_SAVES_PER_BATCH)
    # Worker processes packing batches side by side (each batch still one transaction);
    # more than one needs a way to open their sessions (``worker_sessions``).
    workers: int = DEFAULT_WORKERS

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


@dataclass
class MonthTally:
    """One month's part of a compression run: the saves packed whose ``updated_at`` (UTC) falls
    in that month, their rows and sizes, and the month's due saves left after the run."""

    saves: int = 0
    rows_folded: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    saves_remaining: int = 0

    @property
    def ratio(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else 0.0

    def add(self, other: "MonthTally") -> None:
        for name in ("saves", "rows_folded", "bytes_before", "bytes_after", "saves_remaining"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class CompressReport:
    scope: MonthScope
    log: BatchLog
    rows_folded: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    document_bytes: int = 0
    saves_remaining: int = 0
    skipped_changed: int = 0
    months: dict[date, MonthTally] = field(default_factory=dict)  # by month of updated_at

    @property
    def ratio(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else 0.0

    def month(self, month: date) -> MonthTally:
        return self.months.setdefault(month, MonthTally())

    def absorb(self, other: "CompressReport") -> None:
        self.log.absorb(other.log)
        for name in ("rows_folded", "bytes_before", "bytes_after", "document_bytes", "skipped_changed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for month, tally in other.months.items():
            self.month(month).add(tally)


@dataclass
class PackedSave:
    save_id: int
    compressed: bytes
    info: dict


@dataclass
class PackedBatch:
    """A batch's packs, and how many rows were taken from each table for them."""

    packs: list[PackedSave]
    rows_taken: dict[str, int]


def _candidates_where() -> sql.Composable:
    return sql.SQL("NOT is_active AND compressed_state IS NULL AND updated_at >= %(lower)s AND updated_at < %(upper)s")


def select_candidates(conn: psycopg.Connection, scope: MonthScope, limit: int | None = None) -> list[tuple[int, datetime]]:
    """(save id, updated_at) of saves due for packing, oldest id first."""
    statement = sql.SQL("SELECT id, updated_at FROM {} WHERE {} ORDER BY id {}").format(
        sql.Identifier(SAVES_TABLE), _candidates_where(),
        sql.SQL("LIMIT {}").format(sql.Literal(limit)) if limit else sql.SQL(""))
    return conn.execute(statement, {"lower": scope.lower, "upper": scope.upper}).fetchall()


def _lock_unchanged(conn: psycopg.Connection, selected: Sequence[tuple[int, datetime]]) -> list[int]:
    """Lock the selected saves that are still inactive, uncompressed and not updated since selection.

    Under READ COMMITTED a row updated by a committed transaction is re-checked
    against the WHERE clause before it is locked, so a save touched since it was
    selected drops out; one held by a running transaction is skipped.
    """
    rows = conn.execute(
        sql.SQL(
            """SELECT g.id FROM {} g
            JOIN unnest(%s::bigint[], %s::timestamptz[]) AS sel(id, updated_at)
              ON sel.id = g.id AND sel.updated_at = g.updated_at
            WHERE NOT g.is_active AND g.compressed_state IS NULL
            ORDER BY g.id
            FOR UPDATE OF g SKIP LOCKED"""
        ).format(sql.Identifier(SAVES_TABLE)),
        ([s[0] for s in selected], [s[1] for s in selected]),
    ).fetchall()
    return [r[0] for r in rows]


def _verify(compressed: bytes, expected: dict, decompress: Callable[[bytes], bytes], *,
            layout_of: savecopy.LayoutResolver | None = None) -> dict | None:
    """Decompress and check length and sha256 (and, parsing it, row counts) against ``expected``.

    Right after packing, the checksum alone proves the decompressed bytes are the
    document just built from the rows PostgreSQL sent, so parsing is skipped (no
    ``layout_of``, which resolves the table layouts a document names).
    """
    raw = decompress(compressed)
    if hashlib.sha256(raw).hexdigest() != expected["sha256"] or len(raw) != expected["original_bytes"]:
        raise SaveVerificationFailed(f"save {expected.get('save_id')}: checksum mismatch after decompression")
    if layout_of is None:
        return None
    document = _parse_document(raw, expected, layout_of)
    counts = {t: document["tables"][t]["decoded"].rows for t in SAVE_TABLES}
    if counts != expected["row_counts"]:
        raise SaveVerificationFailed(f"save {expected.get('save_id')}: row counts {counts} != {expected['row_counts']}")
    return document


def _parse_document(raw: bytes, expected: dict, layout_of: savecopy.LayoutResolver) -> dict:
    fmt = expected.get("format")
    if fmt not in _READERS:
        raise SaveVerificationFailed(f"save {expected.get('save_id')}: unknown document format {fmt!r}")
    try:
        return _READERS[fmt](raw, layout_of)
    except (ValueError, KeyError, IndexError) as exc:
        raise SaveVerificationFailed(f"save {expected.get('save_id')}: unreadable {fmt} document: {exc}") from exc


def _binary_session(conn: psycopg.Connection) -> None:
    # Text values travel in the client encoding even in binary COPY: one fixed encoding both ways.
    conn.execute("SELECT set_config('client_encoding', 'UTF8', true)")


def pack_saves(conn: psycopg.Connection, save_ids: list[int], codec: Codec) -> PackedBatch:
    """Take the rows of ``save_ids`` (already locked), pack and verify them, in the caller's transaction.

    The rows are deleted here: the caller stores the packs and commits, or rolls back.
    """
    _binary_session(conn)
    layouts = [savecopy.table_layout(conn, t) for t in SAVE_TABLES]
    savecopy.record_layouts(conn, layouts)
    # zstd only; a batch packed before the first dictionary was trained simply has none.
    dictionary = savecopy.current_dictionary(conn, layouts) if codec.name == "zstd" else None
    try:
        taken = {layout.table: savecopy.take_batch(conn, layout, save_ids) for layout in layouts}
    except savecopy.EncodingMismatch as exc:
        raise SaveVerificationFailed(f"saves {min(save_ids)}..{max(save_ids)}: {exc}") from exc
    compress, decompress = codec.compressor(dictionary), Codec.decompressor(codec.name, dictionary)
    packs = []
    for save_id in sorted(save_ids):
        parts = [taken[t][save_id] for t in SAVE_TABLES]
        raw = savecopy.build(save_id, parts)
        compressed = compress(raw)
        info = {
            "format": DOCUMENT_FORMAT,
            "save_id": save_id,
            "codec": codec.name,
            "level": codec.level,
            "dictionary": dictionary.id if dictionary else None,
            "original_bytes": len(raw),
            "compressed_bytes": len(compressed),
            "row_bytes": sum(part.value_bytes for part in parts),
            "row_counts": {part.layout.table: part.rows for part in parts},
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
        _verify(compressed, info, decompress)
        packs.append(PackedSave(save_id, compressed, info))
    return PackedBatch(packs, {t: sum(part.rows for part in taken[t].values()) for t in SAVE_TABLES})


def _decompressor_of(conn: psycopg.Connection, info: dict) -> Callable[[bytes], bytes]:
    """How to decompress a stored pack: its codec, with the dictionary it names (if any)."""
    dictionary = None
    if info.get("dictionary"):
        dictionary = savecopy.stored_dictionary(conn, info["dictionary"])
        if dictionary is None:
            raise SaveVerificationFailed(
                f"save {info.get('save_id')}: dictionary {info['dictionary']} is not in cosmic_ops.save_dictionaries")
    return Codec.decompressor(info["codec"], dictionary)


def train_dictionary_once(conn: psycopg.Connection, codec: Codec) -> savecopy.SaveDictionary | None:
    """Train the zstd dictionary for the tables' current layouts unless there is one (its own transaction).

    It is trained on saves that still have rows, before the run's first batch, so every batch
    of the run (and of later runs, until a table's layout changes) compresses with it.
    Returns the dictionary trained, or None (one exists, the codec is not zstd, too few saves).
    """
    if codec.name != "zstd":
        return None
    with own_transaction(conn):
        layouts = [savecopy.table_layout(conn, t) for t in SAVE_TABLES]
        if savecopy.current_dictionary(conn, layouts) is not None:
            return None
        sample = [r[0] for r in conn.execute(
            sql.SQL("SELECT id FROM {} WHERE compressed_state IS NULL ORDER BY random() LIMIT %s").format(
                sql.Identifier(SAVES_TABLE)), (DICTIONARY_TRAINING_SAVES,))]
        if len(sample) < MIN_DICTIONARY_TRAINING_SAVES:
            return None
        _binary_session(conn)
        return savecopy.train_dictionary(conn, layouts, sample, codec.level)


def _store(conn: psycopg.Connection, packs: list[PackedSave]) -> None:
    # Binary parameters (%b): as text, bytea travels hex-encoded and costs 4x the time.
    conn.execute(
        sql.SQL(
            """UPDATE {} g SET compressed_state = p.state, compression_info = p.info, compressed_at = now()
            FROM unnest(%b::bigint[], %b::bytea[], %b::jsonb[]) AS p(id, state, info)
            WHERE g.id = p.id"""
        ).format(sql.Identifier(SAVES_TABLE)),
        ([p.save_id for p in packs], [p.compressed for p in packs],
         [json.dumps(p.info) for p in packs]),
    )


def compress_batch(conn: psycopg.Connection, selected: Sequence[tuple[int, datetime]], codec: Codec,
                   report: CompressReport) -> list[int]:
    """Pack one batch of selected saves in one transaction; returns the ids packed."""
    with own_transaction(conn):
        # A batch lost to a server crash simply was not packed (rows, pack and delete
        # commit together): it need not wait for its WAL to reach disk.
        conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
        save_ids = _lock_unchanged(conn, selected)
        report.skipped_changed += len(selected) - len(save_ids)
        if not save_ids:
            return []
        batch = pack_saves(conn, save_ids, codec)
        _store(conn, batch.packs)
        report.rows_folded += sum(batch.rows_taken.values())
        report.bytes_before += sum(p.info["row_bytes"] for p in batch.packs)
        report.bytes_after += sum(len(p.compressed) for p in batch.packs)
        report.document_bytes += sum(p.info["original_bytes"] for p in batch.packs)
    updated = dict(selected)
    for pack in batch.packs:
        moment = updated[pack.save_id].astimezone(timezone.utc)
        tally = report.month(date(moment.year, moment.month, 1))
        tally.saves += 1
        tally.rows_folded += sum(pack.info["row_counts"].values())
        tally.bytes_before += pack.info["row_bytes"]
        tally.bytes_after += len(pack.compressed)
    return save_ids


def _pack_or_skip(conn: psycopg.Connection, batch: Sequence[tuple[int, datetime]], codec: Codec,
                  report: CompressReport, progress: ProgressCallback | None) -> list[int]:
    try:
        return compress_batch(conn, batch, codec, report)
    except SaveVerificationFailed as exc:
        # The batch rolled back whole; its saves wait for the next run.
        if progress:
            progress(f"batch skipped: {exc}")
        report.skipped_changed += len(batch)
        return []


def _compress_one_session(conn: psycopg.Connection, batches: list[list[tuple[int, datetime]]], policy: SavePolicy,
                          report: CompressReport, progress: ProgressCallback | None) -> None:
    pending = iter(batches)

    def one_batch() -> int | None:
        # Saves found changed or locked are left for a later run.
        batch = next(pending, None)
        return None if batch is None else len(_pack_or_skip(conn, batch, policy.codec, report, progress))

    run_batches(one_batch, policy.throttle, report.log, progress=progress)


# The session of a worker process, opened once by the pool's initializer.
_worker_session: psycopg.Connection | None = None


def _open_worker_session(sessions: SessionSpec, parent_pid: int) -> None:
    exit_with_parent(parent_pid)
    os.nice(19)  # the worker's compression yields the CPU to the game's backends
    global _worker_session
    _worker_session = sessions.connect()
    compress_wal(_worker_session)  # the session is the worker's own, closed with it


def _pack_in_worker(batch: Sequence[tuple[int, datetime]], scope: MonthScope,
                    policy: SavePolicy) -> tuple[CompressReport, list[str]]:
    """One batch in a worker process: (its report, its progress messages)."""
    mine = CompressReport(scope=scope, log=BatchLog(unit="saves"))
    messages: list[str] = []
    began = time.monotonic()
    done = len(_pack_or_skip(_worker_session, batch, policy.codec, mine, messages.append))
    took = time.monotonic() - began
    mine.log.record(done, took)
    # Each worker paces itself as a single session would.
    time.sleep(policy.throttle.delay_after(done, took))
    return mine, messages


# Starting worker processes costs about half a second (interpreter, imports, session):
# below this many batches per worker, one session finishes sooner.
MIN_BATCHES_PER_WORKER = 2


def _compress_in_processes(sessions: SessionSpec, batches: list[list[tuple[int, datetime]]], scope: MonthScope,
                           policy: SavePolicy, report: CompressReport, progress: ProgressCallback | None) -> None:
    """Hand disjoint batches of the due saves to worker processes, each with its own session.

    Processes, not threads: parsing and encoding are Python, and two threads would
    take turns on the interpreter lock while the server waits.
    """
    pool = ProcessPoolExecutor(max_workers=policy.workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_open_worker_session, initargs=(sessions, os.getpid()))
    try:
        pending = [pool.submit(_pack_in_worker, batch, scope, policy) for batch in batches]
        for future in as_completed(pending):
            mine, messages = future.result()
            report.absorb(mine)
            if progress:
                for message in messages:
                    progress(message)
                progress(report.log.last_batch(mine.log.moved, mine.log.busy_s))
    finally:
        # On failure or interruption no new batch starts; those running finish or roll back.
        pool.shutdown(wait=True, cancel_futures=True)
    report.log.finish()


def _due_batches(conn: psycopg.Connection, scope: MonthScope, policy: SavePolicy,
                 max_batches: int | None) -> list[list[tuple[int, datetime]]]:
    due = select_candidates(conn, scope)
    end_read(conn)
    size = policy.throttle.batch_size
    return [due[start:start + size] for start in range(0, len(due), size)][:max_batches]


def compress_inactive_saves(
    conn: psycopg.Connection,
    month: date,
    policy: SavePolicy = SavePolicy(),
    *,
    now: datetime,
    progress: ProgressCallback | None = None,
    max_batches: int | None = None,
    through: date | None = None,
    worker_sessions: SessionSpec | None = None,
) -> CompressReport:
    """Pack every due save of ``month`` (.. ``through``), batch by batch (each batch one transaction).

    The saves packed are those due when the run starts (one snapshot). With
    ``policy.workers`` > 1 and ``worker_sessions``, that many worker processes pack
    batches side by side when there are enough (``MIN_BATCHES_PER_WORKER``); ``conn``
    holds the tables meanwhile.
    """
    scope = MonthScope.of(month, policy.inactive_for, now, through=through)
    report = CompressReport(scope=scope, log=BatchLog(unit="saves"))
    with recovery.table_maintenance(conn, SAVES_TABLE, *SAVE_TABLES) as recovered:
        recovered.tell(progress)
        batches = _due_batches(conn, scope, policy, max_batches)
        trained = train_dictionary_once(conn, policy.codec) if batches else None
        if trained and progress:
            progress(f"trained the save dictionary {trained.id} ({len(trained.data)} bytes)")
        if worker_sessions and policy.workers > 1 and len(batches) >= MIN_BATCHES_PER_WORKER * policy.workers:
            _compress_in_processes(worker_sessions, batches, scope, policy, report, progress)
        else:
            with compressed_wal(conn):
                _compress_one_session(conn, batches, policy, report, progress)
        report.saves_remaining = len(select_candidates(conn, scope))
        for part in scope.by_month():
            report.month(part.month).saves_remaining = len(select_candidates(conn, part)) if not part.is_empty else 0
        end_read(conn)
    return report


def rehydrate_save(conn: psycopg.Connection, save_id: int) -> dict[str, int]:
    """Restore a packed save's rows exactly and clear its compressed state (SPEC §7).

    Runs in the caller's transaction (a savepoint if one is open); the caller commits.
    Returns the rows restored per table.
    """
    with conn.transaction():
        found = conn.execute(
            sql.SQL("SELECT compressed_state, compression_info FROM {} WHERE id = %s FOR UPDATE").format(
                sql.Identifier(SAVES_TABLE)), (save_id,)).fetchone()
        if found is None:
            raise LookupError(f"save {save_id} does not exist")
        state, info = found
        if state is None:
            raise SaveNotCompressed(f"save {save_id} is not compressed")
        document = _verify(bytes(state), info, _decompressor_of(conn, info), layout_of=_registered_layouts(conn))
        restored = {table: _restore_binary(conn, save_id, table, document["tables"][table]) for table in SAVE_TABLES}
        conn.execute(
            sql.SQL("UPDATE {} SET compressed_state = NULL, compression_info = NULL, compressed_at = NULL "
                    "WHERE id = %s").format(sql.Identifier(SAVES_TABLE)), (save_id,))
    return restored


@dataclass
class RehydrateReport:
    restored: dict[int, dict[str, int]]  # save id -> rows restored per table
    already_live: list[int]

    @property
    def rows_restored(self) -> int:
        return sum(sum(rows.values()) for rows in self.restored.values())


def rehydrate_saves(conn: psycopg.Connection, save_ids: Iterable[int],
                    progress: ProgressCallback | None = None) -> RehydrateReport:
    """Rehydrate each save in its own committed transaction; saves already live are skipped.

    A run killed midway committed the saves before the kill, so its rerun with the same
    ids skips those (``already_live``) and restores the rest.
    """
    report = RehydrateReport(restored={}, already_live=[])
    for save_id in save_ids:
        try:
            report.restored[save_id] = rehydrate_save(conn, save_id)
        except SaveNotCompressed:
            conn.rollback()
            report.already_live.append(save_id)
            if progress:
                progress(f"save {save_id} is live already (not compressed): skipped")
            continue
        conn.commit()
        if progress:
            progress(f"save {save_id} rehydrated: {report.restored[save_id]}")
    return report


def _registered_layouts(conn: psycopg.Connection) -> savecopy.LayoutResolver:
    known: dict[str, savecopy.TableLayout | None] = {}

    def layout_of(table: str, fingerprint: str) -> savecopy.TableLayout:
        if fingerprint not in known:
            known[fingerprint] = savecopy.recorded_layout(conn, fingerprint)
        layout = known[fingerprint]
        if layout is None or layout.table != table:
            raise SaveVerificationFailed(f"{table} layout {fingerprint} is not in cosmic_ops.save_layouts")
        return layout
    return layout_of


def _restore_binary(conn: psycopg.Connection, save_id: int, table: str, part: dict) -> int:
    layout = savecopy.table_layout(conn, table)
    decoded = part["decoded"]
    if decoded.layout.fingerprint != layout.fingerprint:
        raise SaveVerificationFailed(
            f"save {save_id}: {table} changed since packing ({decoded.layout.describe()} -> {layout.describe()})")
    _binary_session(conn)
    with conn.cursor() as cursor:
        with cursor.copy(layout.insert_statement()) as copy:
            copy.write(decoded.copy_stream())
        inserted = cursor.rowcount
    if inserted != decoded.rows:
        raise SaveVerificationFailed(f"save {save_id}: {table} restored {inserted} of {decoded.rows} rows")
    return inserted


def verify_packed_saves(conn: psycopg.Connection, save_ids: Iterable[int]) -> dict[int, str]:
    """Decompress each packed save and check it; returns {save id: problem} for the bad ones."""
    problems: dict[int, str] = {}
    layout_of = _registered_layouts(conn)
    for save_id, state, info in conn.execute(
        sql.SQL("SELECT id, compressed_state, compression_info FROM {} WHERE id = ANY(%s) "
                "AND compressed_state IS NOT NULL").format(sql.Identifier(SAVES_TABLE)), (list(save_ids),)):
        try:
            _verify(bytes(state), info, _decompressor_of(conn, info), layout_of=layout_of)
        except (SaveVerificationFailed, ValueError, KeyError, zlib.error, zstandard.ZstdError) as exc:
            problems[save_id] = str(exc)
    return problems


def saves_with_rows_and_state(conn: psycopg.Connection, lower: datetime, upper: datetime) -> list[int]:
    """Saves updated in ``[lower, upper)`` that hold a compressed state AND still have rows: must be none."""
    exists = sql.SQL(" OR ").join(
        sql.SQL("EXISTS (SELECT 1 FROM {} t WHERE t.save_id = g.id)").format(sql.Identifier(t)) for t in SAVE_TABLES)
    rows = conn.execute(
        sql.SQL("SELECT g.id FROM {} g WHERE g.compressed_state IS NOT NULL AND g.updated_at >= %s "
                "AND g.updated_at < %s AND ({}) ORDER BY g.id").format(sql.Identifier(SAVES_TABLE), exists),
        (lower, upper)).fetchall()
    end_read(conn)
    return [r[0] for r in rows]


def sample_packed_saves(conn: psycopg.Connection, lower: datetime, upper: datetime, size: int) -> tuple[list[int], int]:
    """A random sample of packed saves updated in ``[lower, upper)``, and how many there are in all."""
    total = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE compressed_state IS NOT NULL AND updated_at >= %s "
                "AND updated_at < %s").format(sql.Identifier(SAVES_TABLE)), (lower, upper)).fetchone()[0]
    rows = conn.execute(
        sql.SQL("SELECT id FROM {} WHERE compressed_state IS NOT NULL AND updated_at >= %s AND updated_at < %s "
                "ORDER BY random() LIMIT %s").format(sql.Identifier(SAVES_TABLE)), (lower, upper, size)).fetchall()
    end_read(conn)
    return [r[0] for r in rows], total
