"""The same machinery manages any monthly RANGE table given a policy: the PostgreSQL
manual's ``measurement`` (date key, seed 002) and a timestamptz table kept in Tokyo time."""

from __future__ import annotations

from datetime import date, datetime, timezone

from cosmic_ops.partitions import PartitionPolicy, ensure_months, list_partitions, rehome_default_rows
from cosmic_ops.partitions.catalog import indexes_of, storage_parameters
from cosmic_ops.partitions.maintain import index_matches
from cosmic_ops.partitions.state import check_contiguous, check_indexes_and_storage, check_month_pruning, check_months_exist

from ..clock import NOW

from .helpers import rows_per_partition, tree_snapshot

MEASUREMENT = PartitionPolicy.from_mapping({
    "table": "measurement", "partition_column": "logdate", "premake": "2 months", "lookback": "1 month",
    "retention": "1 year", "indexes": ["logdate", "city_id, logdate DESC"],
    "storage": {"fillfactor": "90", "autovacuum_vacuum_scale_factor": "0.1"},
})


def test_measurement_by_date(econn):
    econn.execute("CREATE TABLE measurement (city_id int NOT NULL, logdate date NOT NULL, peaktemp int, "
                  "unitsales int) PARTITION BY RANGE (logdate)")
    econn.execute("CREATE TABLE measurement_default PARTITION OF measurement DEFAULT WITH (fillfactor = 90, "
                  "autovacuum_vacuum_scale_factor = 0.1)")
    econn.execute("CREATE INDEX ON measurement_default (logdate)")
    econn.execute("CREATE INDEX ON measurement_default (city_id, logdate DESC)")
    econn.execute("INSERT INTO measurement SELECT g % 7, date '2006-02-01' + g, g, g FROM generate_series(0, 59) g")
    econn.commit()
    count_before = econn.execute("SELECT count(*), sum(unitsales) FROM measurement").fetchone()
    econn.commit()

    result = ensure_months(econn, MEASUREMENT, MEASUREMENT.window(NOW))
    assert len(result.created) == 4
    assert rehome_default_rows(econn, MEASUREMENT).created == ["measurement_2006_02", "measurement_2006_03",
                                                               "measurement_2006_04"]
    assert econn.execute("SELECT count(*), sum(unitsales) FROM measurement").fetchone() == count_before
    assert rows_per_partition(econn, "measurement") == {
        "measurement_2006_02": 28, "measurement_2006_03": 31, "measurement_2006_04": 1}
    parts = [p for p in list_partitions(econn, "measurement") if not p.is_default]
    assert parts[0].lower == date(2006, 2, 1) and parts[0].upper == date(2006, 3, 1)
    indexes = indexes_of(econn, [p.oid for p in parts])
    storage = storage_parameters(econn, [p.oid for p in parts])
    for p in parts:
        assert all(any(index_matches(i, s) for i in indexes[p.oid]) for s in MEASUREMENT.indexes)
        assert storage[p.oid] == {"autovacuum_vacuum_scale_factor": "0.1", "fillfactor": "90"}
    assert check_indexes_and_storage(econn, MEASUREMENT).passed
    assert check_months_exist(econn, MEASUREMENT, now=NOW).passed
    assert check_month_pruning(econn, MEASUREMENT, date(2006, 3, 1)).passed
    econn.commit()
    before = tree_snapshot(econn)
    assert not ensure_months(econn, MEASUREMENT, MEASUREMENT.window(NOW)).changed
    assert tree_snapshot(econn) == before


TOKYO = PartitionPolicy.from_mapping({
    "table": "sensor_readings", "partition_column": "taken_at", "premake": "1 month", "lookback": "0 months",
    "retention": "6 months", "timezone": "Asia/Tokyo", "indexes": ["taken_at"],
})


def test_timestamptz_table_in_another_time_zone(econn):
    econn.execute("CREATE TABLE sensor_readings (id bigint, taken_at timestamptz NOT NULL) PARTITION BY RANGE (taken_at)")
    econn.execute("SET TimeZone = 'America/Los_Angeles'")
    econn.commit()
    ensure_months(econn, TOKYO, [date(2026, 11, 1), date(2026, 12, 1)])
    parts = list_partitions(econn, "sensor_readings")
    assert [(p.name, p.lower, p.upper) for p in parts] == [
        ("sensor_readings_2026_11", datetime(2026, 10, 31, 15, tzinfo=timezone.utc),
         datetime(2026, 11, 30, 15, tzinfo=timezone.utc)),
        ("sensor_readings_2026_12", datetime(2026, 11, 30, 15, tzinfo=timezone.utc),
         datetime(2026, 12, 31, 15, tzinfo=timezone.utc)),
    ]
    econn.commit()
    # 2026-11-30 20:00 UTC is December in Tokyo: the current month there is 2026-12.
    assert check_contiguous(econn, TOKYO, now=datetime(2026, 11, 30, 20, tzinfo=timezone.utc)).passed
    econn.execute("INSERT INTO sensor_readings VALUES (1, '2026-11-30 16:00+00')")
    assert rows_per_partition(econn, "sensor_readings") == {"sensor_readings_2026_12": 1}
