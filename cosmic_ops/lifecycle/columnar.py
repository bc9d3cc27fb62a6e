"""Columnar binary encoding of a save's rows (document format ``cosmic_ops.save/3``).

Saves are packed as ``cosmic_ops.save/4`` (``savecopy``) now; this module reads
the saves packed before, and its encoder stays to write such documents in tests.

Fixed-width columns become numpy arrays, byte-shuffled (byte 0 of every value,
then byte 1, ... as blosc and Parquet's BYTE_STREAM_SPLIT do) so the codec sees
long runs of similar bytes:

- integers (int2/int4/int8): the column the rows are sorted by is delta-encoded,
  others stored as the distance from the column's minimum; zigzag, modular
  (uint64 wrap-around), so every value round-trips.
- float8: as a scaled integer when every value is exactly the double nearest to a
  decimal with at most ``MAX_DECIMALS`` digits (checked bit for bit, like DuckDB's
  ALP), else the raw IEEE bits; NaN, infinities and -0 always take the raw path.
- timestamptz: microseconds since the epoch (text when a value is infinite or
  out of Python's range).
- bool: one byte.
- everything else (text, jsonb, numeric, real, ...): PostgreSQL's text form,
  NUL-separated (text forms never contain NUL).

NULLs are a byte mask per column. Every encoded column is decoded again and
compared with the input before the document is used, so an encoding bug can only
make packing fail, never lose data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import numpy as np

FORMAT = "cosmic_ops.save/3"
MAX_DECIMALS = 6
INT_TYPES = frozenset({"int2", "int4", "int8"})

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_FLOAT_TEXT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class EncodingMismatch(RuntimeError):
    """A column did not decode to its input: the document is not used."""


def _shuffle(values: np.ndarray) -> bytes:
    width = values.dtype.itemsize
    return values.view(np.uint8).reshape(-1, width).T.tobytes()


def _unshuffle(data: bytes, dtype: str) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    return np.frombuffer(data, np.uint8).reshape(width, -1).T.copy().view(dtype).reshape(-1)


def _zigzag(values: np.ndarray) -> np.ndarray:
    signed = values.view(np.int64)
    return ((signed << 1) ^ (signed >> 63)).view(np.uint64)


def _unzigzag(values: np.ndarray) -> np.ndarray:
    return ((values >> np.uint64(1)) ^ (np.uint64(0) - (values & np.uint64(1)))).view(np.int64)


def _unpack_ints(base: int | None, data: bytes) -> np.ndarray:
    encoded = _unshuffle(data, "<u8")
    if base is None:
        return np.cumsum(_unzigzag(encoded).view(np.uint64), dtype=np.uint64).view(np.int64)
    return (encoded + np.int64(base).view(np.uint64)).view(np.int64)


_POWERS = 10.0 ** np.arange(MAX_DECIMALS + 1)


def _decimal_scale(values: np.ndarray) -> int | None:
    """Fewest decimals k such that every value is float64(n) / 10**k for an integer n, bit for bit."""
    if not len(values) or not np.all(np.isfinite(values)):
        return None
    # Huge values overflow to infinity here, which never compares exact: no warning needed.
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(values * _POWERS[:, None])
        exact = np.all((scaled / _POWERS[:, None]).view(np.int64) == values.view(np.int64), axis=1)
        # Integers beyond 2**53 are not all exact doubles.
        exact &= np.max(np.abs(values)) * _POWERS < 2.0 ** 53
    return int(np.argmax(exact)) if exact.any() else None


def encode_decimals(floats: np.ndarray) -> tuple[list, np.ndarray] | None:
    """``["F", decimals, base]`` and the scaled integers' offsets from ``base`` (uint64), when every
    value is exactly a decimal of at most ``MAX_DECIMALS`` digits; else None. Shared with ``savecopy``."""
    decimals = _decimal_scale(floats)
    if decimals is None:
        return None
    scaled = np.rint(floats * 10.0 ** decimals).astype(np.int64)
    base = int(scaled.min())
    return ["F", decimals, base], scaled.view(np.uint64) - np.int64(base).view(np.uint64)


def decode_decimals(spec: list, stored: np.ndarray) -> np.ndarray:
    """The float8 values ``encode_decimals`` stored under ``spec``."""
    return (stored + np.int64(spec[2]).view(np.uint64)).view(np.int64).astype(np.float64) / 10.0 ** spec[1]


@dataclass
class Column:
    """One column as read: its PostgreSQL type name and its values (None = NULL)."""

    type_name: str
    values: list


# A column's spec is a short list, [code, *parameters]; a code starting with NULLS_MARK means a
# byte mask of the table's row count (1 = NULL) precedes the values. Codes: ``t`` text (byte
# length), ``b`` bool, ``f`` raw float8, ``i`` int and ``u`` epoch µs (base of the offsets, or
# None for delta), ``F`` float8 as decimals (digits, base).
NULLS_MARK = "~"
_WIDTH = {"b": 1, "f": 8, "i": 8, "u": 8, "F": 8}


def _segment_starts(counts: Sequence[int]) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))


def delta_by_save(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Differences to the previous value of the same save (the first value of each save stays itself).

    ``values`` are uint64 (modular: every value round-trips); ``starts`` the row where each
    save begins, then the row count. Shared with ``savecopy``.
    """
    diffs = np.diff(values, prepend=np.uint64(0))
    firsts = starts[:-1][starts[:-1] < starts[1:]]
    diffs[firsts] = values[firsts]
    return diffs


def undelta_by_save(diffs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The inverse of ``delta_by_save``."""
    sums = np.cumsum(diffs, dtype=np.uint64)
    if not len(sums):
        return sums
    before = np.where(starts[:-1] > 0, sums[np.maximum(starts[:-1] - 1, 0)], np.uint64(0))
    return sums - np.repeat(before.astype(np.uint64), np.diff(starts))


def _encode_batch(kind: str, present: list, starts: np.ndarray, sort_key: bool) -> tuple[list, np.ndarray | None]:
    """(spec without NULL marks, fixed-width values of every save back to back, or None for text)."""
    if kind in INT_TYPES or kind == "timestamptz":
        numbers = present if kind in INT_TYPES else _timestamps_to_us(present)
        if numbers is None:
            return ["t"], None
        values = np.array(numbers, dtype=np.int64).view(np.uint64)
        code = "i" if kind in INT_TYPES else "u"
        if sort_key:
            return [code, None], _zigzag(delta_by_save(values, starts))
        base = int(values.view(np.int64).min()) if len(values) else 0
        return [code, base], values - np.int64(base).view(np.uint64)
    if kind == "float8":
        floats = np.array(present, dtype=np.float64)
        return encode_decimals(floats) or (["f"], floats)
    if kind == "bool":
        return ["b"], np.array(present, dtype=np.uint8)
    return ["t"], None


def _decode_batch(spec: list, stored: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """What ``decode_native`` gives for every save back to back (the encoder's self-check)."""
    code = spec[0]
    if code in ("i", "u"):
        if spec[1] is None:
            return undelta_by_save(_unzigzag(stored).view(np.uint64), starts).view(np.int64)
        return (stored + np.int64(spec[1]).view(np.uint64)).view(np.int64)
    if code == "F":
        return decode_decimals(spec, stored)
    return stored


def encode_column_of_saves(kind: str, per_save: Sequence[list], sort_key: bool) -> list[tuple[list, bytes]]:
    """One column of many saves' rows: (spec, bytes) per save, decoded again and checked.

    The transforms run once over the whole batch; each save's document still carries
    every parameter it needs (bases and decimals are shared by the batch).
    """
    has_nulls = any(None in values for values in per_save)
    masks = [bytes(v is None for v in values) if has_nulls and None in values else b"" for values in per_save]
    present = [[v for v in values if v is not None] if mask else values for values, mask in zip(per_save, masks)]
    starts = _segment_starts([len(values) for values in present])
    flat = [v for values in present for v in values]
    spec, stored = _encode_batch(kind, flat, starts, sort_key)
    out = []
    if stored is None:
        for values, mask in zip(present, masks):
            payload = "\0".join(values).encode("utf-8")
            if (payload.decode("utf-8").split("\0") if values else []) != values:
                raise EncodingMismatch(f"{kind} column does not decode to its input")
            out.append(([(NULLS_MARK if mask else "") + "t", len(payload)], mask + payload))
        return out
    pieces = []
    for index, mask in enumerate(masks):
        payload = _shuffle(stored[starts[index]:starts[index + 1]])
        pieces.append(_unshuffle(payload, stored.dtype.str))
        out.append(([(NULLS_MARK if mask else "") + spec[0], *spec[1:]], mask + payload))
    decoded = _decode_batch(spec, np.concatenate(pieces) if pieces else stored[:0], starts)
    if spec[0] == "b":
        expected = np.array([bool(v) for v in flat], dtype=np.uint8)
    elif spec[0] in ("f", "F"):
        expected = np.array(flat, dtype=np.float64)
    else:
        expected = np.array(flat if spec[0] == "i" else _timestamps_to_us(flat), dtype=np.int64)
    # Bit for bit: NaN equals itself, -0.0 differs from 0.0.
    if decoded.shape != expected.shape or decoded.tobytes() != expected.tobytes():
        raise EncodingMismatch(f"{kind} column does not decode to its input")
    return out


def decode_native(spec: list, body: bytes, offset: int, rows: int) -> tuple[bytes, object, int]:
    """(NULL mask, values present as stored: list of text, bool bytes, int64 or float64 array), next offset."""
    code = spec[0]
    mask = b""
    if code.startswith(NULLS_MARK):
        code = code[len(NULLS_MARK):]
        mask = body[offset: offset + rows]
        offset += rows
    count = rows - sum(mask)
    size = spec[1] if code == "t" else _WIDTH[code] * count
    payload = body[offset: offset + size]
    if len(payload) != size:
        raise ValueError(f"document body ends inside a column ({len(payload)} of {size} bytes)")
    offset += size
    present: object
    if code == "t":
        present = payload.decode("utf-8").split("\0") if count else []
        if len(present) != count:
            raise ValueError(f"text column holds {len(present)} values, expected {count}")
    elif code == "b":
        present = bytes(payload)
    elif code == "f":
        present = _unshuffle(payload, "<f8")
    elif code in ("i", "u"):
        present = _unpack_ints(spec[1], payload)
    elif code == "F":
        present = decode_decimals(spec, _unshuffle(payload, "<u8"))
    else:
        raise ValueError(f"unknown column encoding {code!r}")
    return mask, present, offset


def decode_column(spec: list, body: bytes, offset: int, rows: int) -> tuple[list[str | None], int]:
    """The column's values in PostgreSQL text form (None = NULL), and the offset after its bytes."""
    mask, present, offset = decode_native(spec, body, offset, rows)
    code = spec[0].lstrip(NULLS_MARK)
    if code == "b":
        present = ["t" if b else "f" for b in present]
    elif code in ("f", "F"):
        present = [_float_text(v) for v in present.tolist()]
    elif code == "i":
        present = [str(v) for v in present.tolist()]
    elif code == "u":
        present = [_us_text(v) for v in present.tolist()]
    if not mask:
        return present, offset
    values = iter(present)
    return [None if null else next(values) for null in mask], offset


def _float_text(value: float) -> str:
    text = repr(value)
    return _FLOAT_TEXT.get(text, text)


def _timestamps_to_us(texts: Sequence[str]) -> list[int] | None:
    """ISO UTC texts -> µs since the epoch; None when one is not a finite, Python-range timestamp."""
    try:
        return [(datetime.fromisoformat(t) - _EPOCH) // _MICROSECOND for t in texts]
    except (ValueError, OverflowError):
        return None


def _us_text(value: int) -> str:
    return (_EPOCH + value * _MICROSECOND).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _sorted_by_first_column(types: Sequence[str], columns: list[list]) -> tuple[list[list], bool]:
    """The rows ordered by the first column when it is an integer column without NULLs (ids then delta-encode)."""
    if not columns or types[0] not in INT_TYPES or None in columns[0]:
        return columns, False
    order = sorted(range(len(columns[0])), key=columns[0].__getitem__)
    return [[column[i] for i in order] for column in columns], True


def build_many(save_ids: Sequence[int], tables: dict[str, tuple[Sequence[str], Sequence[str], Sequence[list[list]]]]
               ) -> list[bytes]:
    """One document per save: a JSON header line, then every table's column blocks in order.

    ``tables`` maps a table to (column names, type names, per save its columns of values).
    """
    headers = [{"format": FORMAT, "save_id": save_id, "tables": {}} for save_id in save_ids]
    bodies: list[list[bytes]] = [[] for _ in save_ids]
    for table, (names, types, per_save) in tables.items():
        ordered = [_sorted_by_first_column(types, columns) for columns in per_save]
        sort_key = bool(ordered) and all(flag for _, flag in ordered)
        if not sort_key:
            ordered = [(columns, False) for columns in per_save]
        specs: list[list] = [[] for _ in save_ids]
        for index, kind in enumerate(types):
            encoded = encode_column_of_saves(kind, [columns[index] for columns, _ in ordered], sort_key and index == 0)
            for number, (spec, block) in enumerate(encoded):
                specs[number].append(spec)
                bodies[number].append(block)
        for number, (columns, _) in enumerate(ordered):
            headers[number]["tables"][table] = {"columns": list(names), "rows": len(columns[0]) if columns else 0,
                                                "blocks": specs[number]}
    return [json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n" + b"".join(body)
            for header, body in zip(headers, bodies)]


def build(save_id: int, tables: dict[str, tuple[Sequence[str], Sequence[Column]]]) -> bytes:
    """One save's document (see ``build_many``)."""
    return build_many([save_id], {t: (names, [c.type_name for c in columns], [[c.values for c in columns]])
                                  for t, (names, columns) in tables.items()})[0]


def parse(raw: bytes) -> dict:
    """Header and per table {"columns", "values"} with values column by column in text form."""
    line, _, body = raw.partition(b"\n")
    header = json.loads(line)
    if header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document: {header.get('format')!r}")
    offset = 0
    for part in header["tables"].values():
        values = []
        for spec in part["blocks"]:
            column, offset = decode_column(spec, body, offset, part["rows"])
            values.append(column)
        part["values"] = values
    if offset != len(body):
        raise ValueError(f"document body holds {len(body)} bytes, the header accounts for {offset}")
    return header
