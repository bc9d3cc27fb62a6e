"""A job stopped inside its locked region, for the tests of what may run beside it."""

from __future__ import annotations

import threading

from cosmic_ops import db

# Only keeps a broken test from hanging forever: every wait below ends on an event.
LIMIT_S = 120


class Paused:
    """``job(conn)`` in a thread on its own session, stopped the first time that thread
    reaches ``hook`` (a callback, or ``wrap`` of a function the job calls) until the
    block ends."""

    def __init__(self, conninfo: str, job, *, autocommit: bool = True):
        self.conn = db.connect(conninfo, autocommit=autocommit, application_name="cosmic_ops:paused-job")
        self.job = job
        self.reached, self.released = threading.Event(), threading.Event()
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.job(self.conn)
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__
            self.error = exc
        finally:
            self.reached.set()

    def hook(self, *_args, **_kwargs) -> None:
        if threading.current_thread() is self.thread and not self.reached.is_set():
            self.reached.set()
            self.released.wait(LIMIT_S)

    def wrap(self, function):
        def paused(*args, **kwargs):
            self.hook()
            return function(*args, **kwargs)
        return paused

    def __enter__(self) -> "Paused":
        self.thread.start()
        assert self.reached.wait(LIMIT_S), "the job never reached its pause"
        assert self.error is None, f"the job failed before its pause: {self.error!r}"
        assert self.thread.is_alive(), "the job ended without reaching its pause"
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.thread.join(LIMIT_S)
        self.conn.close()
        if exc[0] is None and self.error is not None:
            raise self.error
