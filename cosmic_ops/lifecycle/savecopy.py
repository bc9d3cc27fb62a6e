"""A save's rows as PostgreSQL sends them (document format ``cosmic_ops.save/5``; see FORMAT.md).

PostgreSQL does the reading and the value formatting: one ``COPY (DELETE ... RETURNING ...)
TO STDOUT (FORMAT binary)`` per table for a whole batch of saves, so the rows packed are
exactly the rows deleted, found and removed in one pass (the caller's transaction commits
only once every document has been verified). A save's document keeps its tuples byte for
byte as PostgreSQL sent them (``*_send``), so whatever the type -- NaN, -0, ±infinity, int8
limits, jsonb, numeric -- rehydration is a ``COPY ... FROM STDIN (FORMAT binary)`` of the same
bytes, and no setting (DateStyle, TimeZone, extra_float_digits) can change them. Python only
finds where each tuple ends and which save it belongs to.

The compression makes it small: zstd with a dictionary trained once on saves
(``zstandard.train_dictionary``), kept in ``cosmic_ops.save_dictionaries`` and named by id
in each save's compression info, as the tables' layouts (columns, types, nullability) are
kept in ``cosmic_ops.save_layouts`` and named by fingerprint in each document. This replaced
save/4's hand-written column encoder (the measurements are in FORMAT.md); ``save4`` still
reads what that wrote.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import psycopg
import zstandard
from psycopg import sql

FORMAT = "cosmic_ops.save/5"
# COPY binary: signature, flags, header-extension length; each tuple then a field count.
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_HEADER = COPY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
# zstd's own default size (``zstd --train --maxdict``).
DICTIONARY_BYTES = 112_640

_FIELD_COUNT, _LENGTH, _INT8 = struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")


class EncodingMismatch(RuntimeError):
    """What PostgreSQL sent is not what was asked for (rows of other saves, a cut stream): it is not used."""


@dataclass(frozen=True)
class TableLayout:
    """A table's columns as rows are packed and restored, from the catalog."""

    table: str
    columns: tuple[str, ...]
    # pg_catalog types by name (int8, text, ...), any other type schema-qualified.
    types: tuple[str, ...]
    # Type modifiers (numeric(20,4), timestamptz(3), ...): binary input applies them, so a
    # changed precision must not meet old values unnoticed.
    typmods: tuple[int, ...]
    nullable: tuple[bool, ...]

    @property
    def fingerprint(self) -> str:
        """Names this layout in documents and in the registry."""
        text = json.dumps([self.table, self.columns, self.types, self.typmods, self.nullable], separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    def describe(self) -> str:
        return ", ".join(f"{c} {t}{f'({m})' if m >= 0 else ''}{'' if n else ' NOT NULL'}"
                         for c, t, m, n in zip(self.columns, self.types, self.typmods, self.nullable))

    def _column_list(self) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier("t", c) for c in self.columns)

    def take_statement(self) -> sql.Composed:
        """Delete the rows of ``save_id = ANY(%s)``, returning every column in table order."""
        return sql.SQL("COPY (DELETE FROM {} AS t WHERE t.save_id = ANY(%s) RETURNING {}) TO STDOUT (FORMAT binary)"
                       ).format(sql.Identifier(self.table), self._column_list())

    def read_statement(self) -> sql.Composed:
        """The same rows as ``take_statement`` sends, without deleting them."""
        return sql.SQL("COPY (SELECT {} FROM {} AS t WHERE t.save_id = ANY(%s)) TO STDOUT (FORMAT binary)").format(
            self._column_list(), sql.Identifier(self.table))

    def insert_statement(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(self.table), sql.SQL(", ").join(map(sql.Identifier, self.columns)))


def table_layout(conn: psycopg.Connection, table: str) -> TableLayout:
    rows = conn.execute(
        """SELECT a.attname,
                  CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN t.typname
                       ELSE format('%%I.%%I', n.nspname, t.typname) END,
                  a.atttypmod, NOT a.attnotnull
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""", (table,)).fetchall()
    if not rows:
        raise LookupError(f"table {table!r} not found")
    layout = TableLayout(table, *(tuple(column) for column in zip(*rows)))
    if "save_id" not in layout.columns or layout.types[layout.columns.index("save_id")] != "int8":
        raise ValueError(f"{table} has no bigint save_id column")
    return layout


def record_layouts(conn: psycopg.Connection, layouts: Sequence[TableLayout]) -> None:
    """Register the layouts documents are about to name (in the caller's transaction)."""
    for layout in layouts:
        conn.execute(
            "INSERT INTO cosmic_ops.save_layouts (fingerprint, table_name, columns, types, typmods, nullable) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (fingerprint) DO NOTHING",
            (layout.fingerprint, layout.table, list(layout.columns), list(layout.types), list(layout.typmods),
             list(layout.nullable)))


def recorded_layout(conn: psycopg.Connection, fingerprint: str) -> TableLayout | None:
    row = conn.execute("SELECT table_name, columns, types, typmods, nullable FROM cosmic_ops.save_layouts "
                       "WHERE fingerprint = %s", (fingerprint,)).fetchone()
    if row is None:
        return None
    return TableLayout(row[0], tuple(row[1]), tuple(row[2]), tuple(row[3]), tuple(row[4]))


LayoutResolver = Callable[[str, str], TableLayout]


# --- rows ---------------------------------------------------------------------------------------
@dataclass
class SaveRows:
    """One table's rows of one save: COPY binary tuples back to back, as PostgreSQL sent them."""

    layout: TableLayout
    rows: int
    data: bytes

    @property
    def value_bytes(self) -> int:
        """Bytes of the values alone (without each tuple's field count and each field's length)."""
        return len(self.data) - self.rows * (2 + 4 * len(self.layout.columns))

    def copy_stream(self) -> bytes:
        return COPY_HEADER + self.data + COPY_TRAILER


def _tuple_ends(data: bytes, start: int, end: int, fields: int, save_field: int):
    """(tuple end, save id) of each tuple in ``data[start:end]``."""
    position = start
    while position < end:
        (count,) = _FIELD_COUNT.unpack_from(data, position)
        if count != fields:
            raise EncodingMismatch(f"a tuple of {count} fields where the layout has {fields}")
        position += 2
        save_id = None
        for number in range(fields):
            (length,) = _LENGTH.unpack_from(data, position)
            if number == save_field and length == 8:
                (save_id,) = _INT8.unpack_from(data, position + 4)
            position += 4 + (length if length > 0 else 0)
        yield position, save_id
    if position != end:
        raise EncodingMismatch("COPY binary data ends inside a tuple")


def split_by_save(layout: TableLayout, stream: bytes, save_ids: Sequence[int]) -> dict[int, SaveRows]:
    """A COPY binary stream of ``layout``'s columns, split into each save's tuples (every save listed)."""
    if not stream.startswith(COPY_SIGNATURE) or not stream.endswith(COPY_TRAILER):
        raise EncodingMismatch(f"{layout.table}: not a whole COPY binary stream")
    tuples: dict[int, list[bytes]] = {save_id: [] for save_id in save_ids}
    start = 19 + int.from_bytes(stream[15:19], "big")
    try:
        for end, save_id in _tuple_ends(stream, start, len(stream) - 2, len(layout.columns),
                                        layout.columns.index("save_id")):
            if save_id not in tuples:
                raise EncodingMismatch(f"{layout.table}: a row of save {save_id} was read, not of the batch")
            tuples[save_id].append(stream[start:end])
            start = end
    except struct.error as exc:
        raise EncodingMismatch(f"{layout.table}: COPY binary stream cut short ({exc})") from exc
    return {save_id: SaveRows(layout, len(parts), b"".join(parts)) for save_id, parts in tuples.items()}


def _copy_out(conn: psycopg.Connection, statement: sql.Composed, save_ids: Sequence[int]) -> bytes:
    with conn.cursor().copy(statement, (list(save_ids),)) as copy:
        return b"".join(copy)


def take_batch(conn: psycopg.Connection, layout: TableLayout, save_ids: Sequence[int]) -> dict[int, SaveRows]:
    """Delete the saves' rows of ``layout.table`` and return them by save, in the caller's transaction."""
    return split_by_save(layout, _copy_out(conn, layout.take_statement(), save_ids), save_ids)


def read_batch(conn: psycopg.Connection, layout: TableLayout, save_ids: Sequence[int]) -> dict[int, SaveRows]:
    """The saves' rows of ``layout.table`` as ``take_batch`` would return them, left in place."""
    return split_by_save(layout, _copy_out(conn, layout.read_statement(), save_ids), save_ids)


# --- documents --------------------------------------------------------------------------------
def build(save_id: int, parts: Sequence[SaveRows]) -> bytes:
    """One save's document: a JSON header line, then each table's tuples in header order."""
    header = {"format": FORMAT, "save_id": save_id,
              "tables": {p.layout.table: {"layout": p.layout.fingerprint, "rows": p.rows, "bytes": len(p.data)}
                         for p in parts}}
    return json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n" + b"".join(p.data for p in parts)


def parse(raw: bytes, layout_of: LayoutResolver) -> dict:
    """The header, with each table's ``SaveRows`` under ``"decoded"`` (its tuples counted and checked).

    ``layout_of(table, fingerprint)`` gives the layout a table's part was written with.
    """
    line, _, body = raw.partition(b"\n")
    header = json.loads(line)
    if header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document: {header.get('format')!r}")
    offset = 0
    for name, part in header["tables"].items():
        layout = layout_of(name, part["layout"])
        data = body[offset: offset + part["bytes"]]
        if len(data) != part["bytes"]:
            raise ValueError(f"document body ends inside {name} ({len(data)} of {part['bytes']} bytes)")
        offset += part["bytes"]
        try:
            rows = sum(1 for _ in _tuple_ends(data, 0, len(data), len(layout.columns), save_field=-1))
        except (EncodingMismatch, struct.error) as exc:
            raise ValueError(f"{name}: {exc}") from exc
        if rows != part["rows"]:
            raise ValueError(f"{name}: {rows} tuples where the header says {part['rows']}")
        part["decoded"] = SaveRows(layout, rows, data)
    if offset != len(body):
        raise ValueError(f"document body holds {len(body)} bytes, the header accounts for {offset}")
    return header


# --- dictionaries -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SaveDictionary:
    """A zstd dictionary, named by the sha256 of its bytes (as stored in ``cosmic_ops.save_dictionaries``)."""

    id: str
    data: bytes

    @classmethod
    def of(cls, data: bytes) -> "SaveDictionary":
        return cls(hashlib.sha256(data).hexdigest()[:24], data)

    @cached_property
    def _zstd(self) -> zstandard.ZstdCompressionDict:
        return zstandard.ZstdCompressionDict(self.data)

    def zstd(self) -> zstandard.ZstdCompressionDict:
        """The dictionary for zstd (made once: it is read-only, and compressors and decompressors share it)."""
        return self._zstd


# A dictionary never changes once stored: each process reads it once.
_LOADED: dict[str, SaveDictionary] = {}


def stored_dictionary(conn: psycopg.Connection, dictionary_id: str) -> SaveDictionary | None:
    if dictionary_id not in _LOADED:
        row = conn.execute("SELECT dictionary FROM cosmic_ops.save_dictionaries WHERE id = %s",
                           (dictionary_id,)).fetchone()
        if row is None:
            return None
        _LOADED[dictionary_id] = SaveDictionary(dictionary_id, bytes(row[0]))
    return _LOADED[dictionary_id]


def current_dictionary(conn: psycopg.Connection, layouts: Sequence[TableLayout]) -> SaveDictionary | None:
    """The dictionary trained for saves of these table layouts, if there is one."""
    row = conn.execute("SELECT id FROM cosmic_ops.save_dictionaries WHERE layouts = %s ORDER BY trained_at DESC, id "
                       "LIMIT 1", ([layout.fingerprint for layout in layouts],)).fetchone()
    return None if row is None else stored_dictionary(conn, row[0])


def train_dictionary(conn: psycopg.Connection, layouts: Sequence[TableLayout], save_ids: Sequence[int],
                     level: int) -> SaveDictionary | None:
    """Train a dictionary on the documents of ``save_ids`` (left in place) and record it, in the caller's
    transaction; None when zstd finds too little to train on."""
    samples: list[bytes] = []
    for start in range(0, len(save_ids), 500):
        chunk = sorted(save_ids[start:start + 500])
        by_table = [read_batch(conn, layout, chunk) for layout in layouts]
        samples += [build(save_id, [rows[save_id] for rows in by_table]) for save_id in chunk]
    try:
        dictionary = SaveDictionary.of(zstandard.train_dictionary(DICTIONARY_BYTES, samples, level=level).as_bytes())
    except zstandard.ZstdError:
        return None
    record_layouts(conn, layouts)
    conn.execute("INSERT INTO cosmic_ops.save_dictionaries (id, layouts, dictionary, trained_on) "
                 "VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                 (dictionary.id, [layout.fingerprint for layout in layouts], dictionary.data, len(samples)))
    return dictionary
