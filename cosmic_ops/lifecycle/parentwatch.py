"""Worker processes that end as soon as the process that started them dies.

A pool worker killed along with its parent is harmless: its session closes and the
server rolls back its open batch. A worker that outlives a ``kill -9`` of its parent
is not: it waits forever on the pool's queue (it holds both ends of that pipe, so it
never reads end-of-file), keeps an idle session, and keeps the multiprocessing
resource tracker alive (spawned workers share its pipe; it exits once every holder
has). So each worker, when it starts:

- asks Linux to send it SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
  which works even while the worker is busy in C code;
- watches the pipe its parent spawned it through (multiprocessing's parent sentinel),
  which reads end-of-file when the parent exits, on any POSIX system;
- and exits at once if the parent died before either was in place.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import wait

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _signal_me_when_parent_dies() -> bool:
    """Linux only. The kernel's "parent" is the *thread* that started the process: pools
    are started from the thread that submits their work and waits for it, which outlives them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_readable(sentinel: int) -> None:
    wait([sentinel])
    os._exit(1)


def exit_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (the process that started it) ends."""
    _signal_me_when_parent_dies()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_readable, args=(parent.sentinel,), name="parent-watch",
                         daemon=True).start()
    if os.getppid() != parent_pid:  # it died before we were watching
        os._exit(1)
