"""The code location loads, with the names SPEC §7 fixes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from cosmic_ops.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_defs_are_loadable_and_hold_cosmic_schema():
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "cosmic_schema" in keys


def test_dagster_cli_validates_the_workspace():
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr
