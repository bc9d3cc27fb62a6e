"""``dagster dev`` under ``cosmic-ops dev``: one Ctrl-C or SIGTERM stops all of it.

``dagster dev`` starts the webserver, the daemon and the code server, and the code server
starts a process per run. Alone it is hard to stop: it maps SIGTERM to whatever SIGINT does,
and a shell without job control starts background commands with SIGINT ignored, so both are
then ignored; and a SIGTERM to it alone would leave a run in progress running on. So
``cosmic-ops dev`` stays in front: it starts ``dagster dev`` in a process group of its own
and, on SIGINT or SIGTERM, sends SIGINT to that whole group -- what Ctrl-C in a terminal
does: ``dagster dev`` shuts its services down, a run in progress is interrupted (Dagster
marks it canceled; every maintenance job of ours is safe to interrupt and its next run
finishes the work). Whatever is left after ``GRACE_S`` is killed. ``cosmic-ops dev`` then
ends at once (``os._exit``): it holds nothing to release (the bootstrap closed its sessions),
and the finalization of an interpreter that imported Dagster takes seconds on a busy machine.

The embedded PostgreSQL is not in that group: it keeps running for the next start
(``cosmic-ops db stop`` stops it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Sequence

# Then SIGKILL: the whole stop stays within 10 s even on a busy machine, where dagster dev's own
# shutdown (webserver, daemon threads, code server) takes 5-8 s. A run killed then is repaired by
# the next job on its table, like any killed run.
GRACE_S = 5.0
_POLL_S = 0.2


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal: it exists
        return True


def _stop_group(child: subprocess.Popen, grace_s: float) -> None:
    pgid = child.pid  # the group's leader
    try:
        os.killpg(pgid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if child.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(_POLL_S)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def serve(command: Sequence[str], env: dict[str, str], *, grace_s: float = GRACE_S) -> int:
    """Run ``command`` (``dagster dev ...``) in a new process group until it exits, or until we
    get SIGINT or SIGTERM, then stop its whole group. Returns its exit code (0 when stopped)."""
    stop_requested: list[int] = []

    def request_stop(signum, frame) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        child = subprocess.Popen(list(command), env=env, process_group=0)
        while not stop_requested:
            try:
                return child.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                continue
        _stop_group(child, grace_s)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
