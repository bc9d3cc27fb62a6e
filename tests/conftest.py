"""Real PostgreSQL for every test: ``COSMIC_OPS_DATABASE_URL`` if set, else the embedded server.

Each test module gets a fresh database, dropped afterwards.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

from cosmic_ops import db, schema, settings
from cosmic_ops.embedded import embedded_conninfo


def pytest_configure(config):
    # pytest restores the warning filters after collection: keep silencing the Dagster previews
    # the product uses on purpose (listed once, in cosmic_ops.assets) for the tests' whole run.
    from cosmic_ops.assets import DELIBERATE_PREVIEWS

    for category, message in DELIBERATE_PREVIEWS:
        config.addinivalue_line("filterwarnings",
                                f"ignore:{message}:{category.__module__}.{category.__qualname__}")


@pytest.fixture(scope="session")
def server_conninfo() -> str:
    """Maintenance conninfo of the server under test (the ``postgres`` database)."""
    return os.environ.get(settings.DATABASE_URL_ENV) or embedded_conninfo()


def _create_database(server: str, label: str) -> str:
    name = f"cosmic_test_{re.sub(r'[^a-z0-9]+', '_', label.lower())[-30:]}_{uuid.uuid4().hex[:8]}"
    db.create_database(server, name)
    return name


@pytest.fixture(scope="module")
def fresh_database(request, server_conninfo):
    """A new, empty database for this test module: yields its conninfo."""
    name = _create_database(server_conninfo, request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield db.with_database(server_conninfo, name)
    finally:
        db.drop_database(server_conninfo, name)


@pytest.fixture(scope="module")
def bootstrapped_database(fresh_database):
    """A fresh database with the Cosmic Gardener schema at the latest version."""
    with db.connect(fresh_database) as conn:
        schema.bootstrap(conn)
    return fresh_database


@pytest.fixture()
def new_database(request, server_conninfo):
    """A new, empty database for one test (when a module needs several)."""
    name = _create_database(server_conninfo, request.node.name)
    try:
        yield db.with_database(server_conninfo, name)
    finally:
        db.drop_database(server_conninfo, name)


@pytest.fixture()
def conn(bootstrapped_database):
    """A maintenance session (autocommit, as ``db.connect`` opens them) on the module's bootstrapped database."""
    with db.connect(bootstrapped_database) as connection:
        yield connection


def pytest_collection_modifyitems(items):
    # A browser test starts `dagster dev` and Chromium: slow by nature, so `-m "not slow"`
    # leaves it out without each browser module repeating the mark.
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
