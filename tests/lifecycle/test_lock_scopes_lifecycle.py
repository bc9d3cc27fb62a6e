"""Jobs on one table exclude each other (issue 12, part 2): celestial_bodies and saves.

One job runs in a thread on its own session and is stopped inside its locked region
(its progress or log callback); the other must fail with ``MaintenanceLockBusy`` and
change nothing. Then the first job finishes its work.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from cosmic_ops import db
from cosmic_ops.db import MaintenanceLockBusy
from cosmic_ops.lifecycle import (
    ArchivePolicy, SavePolicy, Throttle, archive_destroyed_bodies, compress_inactive_saves, rehydrate_save,
    unarchive_bodies,
)
from cosmic_ops.lifecycle.policy import BatchLog, MonthScope
from cosmic_ops.lifecycle.saves import CompressReport, Codec, compress_batch, select_candidates
from cosmic_ops.monitoring import apply as run_vacuum, plan_vacuum

from ..clock import NOW
from ..paused import Paused
from .helpers import destroyed_months, inactive_save_months, load_demo

pytestmark = pytest.mark.slow  # loads the demo data


@pytest.fixture(scope="module")
def demo(bootstrapped_database):
    load_demo(bootstrapped_database, seed=11)
    return bootstrapped_database


def _body_counts(conninfo):
    with db.connect(conninfo) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM ONLY celestial_bodies_stars), "
                            "(SELECT count(*) FROM celestial_bodies), "
                            "(SELECT count(*) FROM celestial_bodies_archive)").fetchone()


def _vacuum(conn, table, log=lambda line: None):
    return run_vacuum(conn, plan_vacuum(conn, [("public", table)]), log=log)


def test_archive_unarchive_and_vacuum_of_celestial_bodies_exclude_each_other(demo):
    with db.connect(demo) as conn:
        month = destroyed_months(conn)[0]
        some_save = conn.execute("SELECT min(save_id) FROM celestial_bodies").fetchone()[0]
        conn.commit()
    small = ArchivePolicy(throttle=Throttle(batch_size=10))

    archiving = Paused(demo, lambda c: archive_destroyed_bodies(c, month, small, progress=archiving.hook,
                                                                now=NOW))
    with archiving, db.connect(demo, autocommit=True) as conn:
        before = _body_counts(demo)
        for table in ("celestial_bodies_stars", "celestial_bodies_archive"):
            with pytest.raises(MaintenanceLockBusy, match="paused-job"):
                _vacuum(conn, table)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            unarchive_bodies(conn, save_id=some_save)
        assert _body_counts(demo) == before
    assert archiving.result.conserved and archiving.result.log.moved > 10

    vacuuming = Paused(demo, lambda c: _vacuum(c, "celestial_bodies_stars", vacuuming.hook), autocommit=True)
    with vacuuming, db.connect(demo) as conn:
        before = _body_counts(demo)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            archive_destroyed_bodies(conn, destroyed_months(conn)[-1], small, now=NOW)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            unarchive_bodies(conn, save_id=some_save)
        assert _body_counts(demo) == before
    assert len(vacuuming.result) == 1


def _packed(conninfo, save_id) -> bool:
    with db.connect(conninfo) as conn:
        return conn.execute("SELECT compressed_state IS NOT NULL FROM game_saves WHERE id = %s",
                            (save_id,)).fetchone()[0]


def _rows_of(conninfo, save_id) -> int:
    with db.connect(conninfo) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM celestial_bodies WHERE save_id = %(s)s) + "
                            "(SELECT count(*) FROM save_resources WHERE save_id = %(s)s) + "
                            "(SELECT count(*) FROM save_research WHERE save_id = %(s)s)", {"s": save_id}).fetchone()[0]


def test_compression_and_rehydration_of_the_same_save_exclude_each_other(demo):
    with db.connect(demo) as conn:
        month = max(inactive_save_months(conn)[:-1],
                    key=lambda m: len(select_candidates(conn, MonthScope.of(m, timedelta(days=7), NOW))))
        due = select_candidates(conn, MonthScope.of(month, timedelta(days=7), NOW))
        conn.commit()
        assert len(due) >= 3
        returning = due[-1][0]  # packed by an earlier run; its player comes back during the next one
        rows = _rows_of(demo, returning)
        compress_batch(conn, [due[-1]], Codec(), CompressReport(scope=None, log=BatchLog(unit="saves")))
    assert _packed(demo, returning) and _rows_of(demo, returning) == 0

    one_by_one = SavePolicy(throttle=Throttle(batch_size=1), workers=1)
    compressing = Paused(demo, lambda c: compress_inactive_saves(c, month, one_by_one,
                                                                 progress=compressing.hook, now=NOW))
    with compressing, db.connect(demo) as conn:
        rehydrate_save(conn, returning)  # the save's own row lock: no table scope, never waits for the run
        conn.commit()
    assert compressing.result.log.moved == len(due) - 1
    # The run packed the saves that were due when it started, and left the rehydrated one alone.
    assert not _packed(demo, returning) and _rows_of(demo, returning) == rows
    assert all(_packed(demo, save_id) for save_id, _ in due[:-1])
