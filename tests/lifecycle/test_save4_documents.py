"""Saves packed as ``cosmic_ops.save/4`` stay readable (lifecycle/FORMAT.md).

``data/save4_documents.json`` holds three saves as the save/4 encoder packed them (compressed
state, compression info, the layouts they name) and their rows' text before packing: a save of
values that trip serializers (NaN, ±infinity, -0, int8 limits, quotes, unicode, jsonb), an
ordinary one and one without rows, in two batches, so every column encoding of save/4 is
there. The encoder is gone; this file is the proof that the reader still reads what it wrote.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cosmic_ops import db
from cosmic_ops.lifecycle import rehydrate_saves
from cosmic_ops.lifecycle.saves import SAVE_TABLES, verify_packed_saves

from .helpers import rows_as_text

DOCUMENTS = json.loads((Path(__file__).parent / "data" / "save4_documents.json").read_text())


@pytest.fixture(scope="module")
def packed_in_save4(bootstrapped_database):
    """The database of a release that packed these saves as save/4."""
    with db.connect(bootstrapped_database) as conn:
        player = conn.execute("INSERT INTO players (username) VALUES ('packed-by-save4') "
                              "RETURNING player_id").fetchone()[0]
        for layout in DOCUMENTS["layouts"]:
            conn.execute("INSERT INTO cosmic_ops.save_layouts (fingerprint, table_name, columns, types, typmods, "
                         "nullable) VALUES (%(fingerprint)s, %(table_name)s, %(columns)s, %(types)s, %(typmods)s, "
                         "%(nullable)s)", layout)
        for slot, save in enumerate(DOCUMENTS["saves"], start=1):
            conn.execute("INSERT INTO game_saves (id, player_id, slot, name, universe_seed, is_active, "
                         "compressed_state, compression_info, compressed_at) "
                         "VALUES (%s, %s, %s, 'save4', 1, false, %s, %s, now())",
                         (save["save_id"], player, slot, base64.b64decode(save["compressed_state"]),
                          json.dumps(save["compression_info"])))
        conn.commit()
    return bootstrapped_database


def test_save4_documents_verify_and_rehydrate_row_for_row(packed_in_save4):
    ids = [save["save_id"] for save in DOCUMENTS["saves"]]
    assert {save["compression_info"]["format"] for save in DOCUMENTS["saves"]} == {"cosmic_ops.save/4"}
    with db.connect(packed_in_save4) as conn:
        assert verify_packed_saves(conn, ids) == {}
        report = rehydrate_saves(conn, ids)
        assert report.already_live == []
        for save in DOCUMENTS["saves"]:
            assert report.restored[save["save_id"]] == {t: len(save["rows"][t]) for t in SAVE_TABLES}
            for table in SAVE_TABLES:
                restored = rows_as_text(conn, table, "save_id = %s", (save["save_id"],))
                assert sorted(restored) == sorted(save["rows"][table]), (save["save_id"], table)
        assert sum(len(rows) for save in DOCUMENTS["saves"] for rows in save["rows"].values()) == 164
