"""Every package of cosmic_ops imports on its own, first, in a fresh interpreter (no import cycle
that only the usual import order hides)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # one Python subprocess per module

MODULES = ["cosmic_ops.backups", "cosmic_ops.backups.policy", "cosmic_ops.partitions", "cosmic_ops.retention",
           "cosmic_ops.recovery", "cosmic_ops.lifecycle", "cosmic_ops.monitoring", "cosmic_ops.assets.common",
           "cosmic_ops.definitions", "cosmic_ops.backups.restore", "cosmic_ops.partitions.maintain",
           "cosmic_ops.partitions.rehome", "cosmic_ops.lifecycle.archive", "cosmic_ops.lifecycle.saves",
           "cosmic_ops.online", "cosmic_ops.partitions.split_default", "cosmic_ops.layout", "cosmic_ops.layout.resplit",
           "cosmic_ops.fingerprint", "cosmic_ops.assets.resplit", "cosmic_ops.assets.layout",
           "cosmic_ops.ledger", "cosmic_ops.assets.ledger", "cosmic_ops.start"]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module):
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
