"""Fixtures for partition maintenance: a bootstrapped database per test, since
every test changes the partition tree."""

from __future__ import annotations

import pytest

from cosmic_ops import db, schema


@pytest.fixture()
def event_db(new_database):
    """A fresh bootstrapped database for one test: yields its conninfo."""
    with db.connect(new_database) as conn:
        schema.bootstrap(conn)
    return new_database


@pytest.fixture()
def econn(event_db):
    with db.connect(event_db) as connection:
        yield connection
