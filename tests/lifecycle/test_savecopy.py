"""The save/5 document on its own: tuples split by save, kept byte for byte, counted and checked on reading."""

from __future__ import annotations

import struct

import pytest

from cosmic_ops.lifecycle.savecopy import (
    COPY_HEADER, COPY_TRAILER, EncodingMismatch, SaveRows, TableLayout, build, parse, split_by_save,
)

LAYOUT = TableLayout("t", ("id", "save_id", "note"), ("int8", "int8", "text"), (-1, -1, -1), (False, False, True))


def _tuple(row_id: int, save_id: int, note: str | None) -> bytes:
    fields = [struct.pack(">q", row_id), struct.pack(">q", save_id), None if note is None else note.encode()]
    return struct.pack(">h", len(fields)) + b"".join(
        struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f for f in fields)


ROWS = [(1, 7, "a"), (2, 9, None), (3, 7, ""), (4, 7, "星雲 ✨")]
STREAM = COPY_HEADER + b"".join(_tuple(*row) for row in ROWS) + COPY_TRAILER


def test_a_stream_splits_into_each_saves_tuples_as_sent():
    saves = split_by_save(LAYOUT, STREAM, [7, 8, 9])
    assert {s: part.rows for s, part in saves.items()} == {7: 3, 8: 0, 9: 1}
    assert saves[7].data == _tuple(1, 7, "a") + _tuple(3, 7, "") + _tuple(4, 7, "星雲 ✨")
    assert saves[9].copy_stream() == COPY_HEADER + _tuple(2, 9, None) + COPY_TRAILER
    assert saves[7].value_bytes == 3 * 16 + len("a星雲 ✨".encode())


@pytest.mark.parametrize("stream, problem", [
    (STREAM[:-3] + COPY_TRAILER, "cut short|ends inside"),
    (STREAM[:-2], "not a whole"),
    (COPY_HEADER + _tuple(5, 8, "x")[:-1] + b"\x00" + COPY_TRAILER, "not of the batch|ends inside|cut short"),
])
def test_a_stream_that_is_not_what_was_asked_for_is_refused(stream, problem):
    with pytest.raises(EncodingMismatch, match=problem):
        split_by_save(LAYOUT, stream, [7, 9])


def test_rows_of_a_save_outside_the_batch_are_refused():
    with pytest.raises(EncodingMismatch, match="save 9 was read"):
        split_by_save(LAYOUT, STREAM, [7])


def test_a_document_reads_back_its_tuples_and_refuses_a_cut_or_miscounted_body():
    parts = split_by_save(LAYOUT, STREAM, [7, 9])
    raw = build(7, [parts[7]])
    header = parse(raw, lambda table, fingerprint: LAYOUT)
    decoded = header["tables"]["t"]["decoded"]
    assert isinstance(decoded, SaveRows) and decoded.rows == 3 and decoded.data == parts[7].data
    assert header["tables"]["t"]["layout"] == LAYOUT.fingerprint and header["save_id"] == 7
    for broken in (raw[:-1], raw + b"\0", raw.replace(b'"rows":3', b'"rows":2')):
        with pytest.raises(ValueError):
            parse(broken, lambda table, fingerprint: LAYOUT)
