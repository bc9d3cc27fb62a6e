"""Client programs: version choice, clear errors, the password kept off the command line."""

from __future__ import annotations

import stat

import pytest

from cosmic_ops.backups import PgClient, PgClientNotFound, PgToolFailed, find_client
from cosmic_ops.backups.tools import run_tool, select_toc, toc_desc


def test_chosen_client_is_at_least_the_server_major(conn):
    server = conn.info.server_version
    client = find_client(server)
    assert client.major >= server // 10000
    assert client.pg_dump.exists() and client.pg_restore.exists()


def test_no_fitting_client_names_what_was_found():
    with pytest.raises(PgClientNotFound) as caught:
        find_client(990000)
    message = str(caught.value)
    assert "major version >= 99" in message and "found:" in message and "PostgreSQL" in message


def _recording_client(tmp_path, exit_code=0):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "record.txt"
    for program in ("pg_dump", "pg_restore"):
        script = bindir / program
        script.write_text(
            "#!/bin/sh\n"
            f"printf 'argv=%s\\n' \"$*\" > {record}\n"
            f"printf 'env=%s\\n' \"$PGPASSWORD\" >> {record}\n"
            "echo \"failed for password $PGPASSWORD\" >&2\n"
            f"exit {exit_code}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return PgClient(bin_dir=bindir, major=15, version="15.0"), record


def test_password_goes_through_the_environment_only(tmp_path):
    client, record = _recording_client(tmp_path)
    run_tool(client, "pg_dump", ["--format=custom"], what="probe",
             conninfo="host=db.example user=ops password=s3cr3t-pw dbname=game")
    argv, env = record.read_text().splitlines()
    assert "s3cr3t-pw" not in argv and "host=db.example" in argv and "dbname=game" in argv
    assert env == "env=s3cr3t-pw"


def test_tool_errors_are_redacted(tmp_path):
    client, _ = _recording_client(tmp_path, exit_code=1)
    with pytest.raises(PgToolFailed) as caught:
        run_tool(client, "pg_dump", [], what="probe", conninfo="host=h user=u password=s3cr3t-pw dbname=d")
    assert "s3cr3t-pw" not in str(caught.value) and "****" in str(caught.value)


def test_toc_lines_are_classified_by_description():
    lines = [
        "242; 1259 23081 TABLE public event_logs_2025_01 postgres",
        "3270; 0 0 TABLE ATTACH public event_logs_2025_01 postgres",
        "3434; 0 23081 TABLE DATA public event_logs_2025_01 postgres",
        "3285; 2606 23089 CONSTRAINT public event_logs_2025_01 event_logs_2025_01_pkey postgres",
    ]
    assert [toc_desc(l) for l in lines] == ["TABLE", "TABLE ATTACH", "TABLE DATA", "CONSTRAINT"]
    assert select_toc(lines, ("TABLE", "TABLE DATA")) == [lines[0], lines[2]]
