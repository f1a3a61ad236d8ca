"""Worker processes that end with their parent, so a killed job leaves nothing running.

A ``ProcessPoolExecutor``'s workers outlive a parent killed with ``kill -9``: they finish
their jobs, keep writing files, then block forever on the result pipe. Start every pool with
``initializer=die_with_parent, initargs=(os.getpid(),)`` (or :func:`die_with_parent_then`
to run another initializer after it)::

    ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent,
                        initargs=(os.getpid(),))

On Linux the kernel delivers ``SIGKILL`` to the worker when its parent ends
(``prctl(PR_SET_PDEATHSIG)``). The signal follows the *thread* that started the worker, so
create and use a pool from one thread that outlives it (as a ``with`` block does). Elsewhere,
or where ``prctl`` fails, a daemon thread polls the parent once a second and ends the worker.

Ctrl-C in a terminal sends ``SIGINT`` to the whole process group, workers included: each
would print its own ``KeyboardInterrupt`` traceback (and a simulator torn down half-way its
own errors). Workers ignore it (:func:`die_with_parent` does); the parent stops them
(:func:`stop_on_interrupt`) and says once what it kept. A worker starting up has not ignored
it yet: submit the jobs (which starts the workers) with ``SIGINT`` blocked, which they
inherit (:func:`interrupts_held`)::

    with ProcessPoolExecutor(...) as pool, stop_on_interrupt(pool):
        with interrupts_held():
            futures = [pool.submit(run, job) for job in jobs]
        ...
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_INTERVAL_S = 1.0  # how often the fallback thread looks at the parent


def die_with_parent(parent_pid: int | None = None, *, use_prctl: bool = True) -> str:
    """End this process (``SIGKILL``) as soon as its parent process ends, and ignore Ctrl-C
    (``SIGINT``): the parent stops its workers.

    Call it first thing in a worker (a pool's ``initializer``).

    Args:
        parent_pid: the pid of the process that started this one (``os.getpid()`` there).
            If it has already gone, this process ends at once. None: ``os.getppid()`` now.
        use_prctl: False skips the Linux kernel mechanism and uses the polling thread
            (tests of the portable path).

    Returns:
        ``"prctl"`` or ``"watchdog"``: how the parent is watched.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards one held since the start
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    parent = os.getppid()
    if parent_pid is not None and parent != parent_pid and not _alive(parent_pid):
        os._exit(1)  # the parent died before we got here; nobody will read our results
    if use_prctl and _set_parent_death_signal():
        # The parent may have ended between getppid() and prctl(): then the kernel sent
        # nothing, but we have been re-parented already.
        if os.getppid() != parent:
            os._exit(1)
        return "prctl"
    threading.Thread(
        target=_watch_parent, args=(parent,), name="die-with-parent", daemon=True
    ).start()
    return "watchdog"


def die_with_parent_then(
    parent_pid: int, then: Callable[..., Any] | None = None, *args: Any
) -> None:
    """:func:`die_with_parent`, then ``then(*args)``: for a pool that has an initializer
    already (``initargs=(os.getpid(), _limit_threads, threads)``)."""
    die_with_parent(parent_pid)
    if then is not None:
        then(*args)


@contextlib.contextmanager
def stop_on_interrupt(pool: ProcessPoolExecutor) -> Iterator[ProcessPoolExecutor]:
    """On Ctrl-C in the ``with`` body, end ``pool``'s workers at once, then let the
    ``KeyboardInterrupt`` go on: the pool's own exit would wait for the jobs they run."""
    try:
        yield pool
    except KeyboardInterrupt:
        stop_workers(pool)
        raise


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold ``SIGINT`` (block it in this thread) while worker processes start.

    A process starts with its parent's signal mask, so a Ctrl-C that reaches a worker before
    :func:`die_with_parent` ignores it waits instead of interrupting its start-up with a
    traceback; here it is delivered when the block ends. Without ``pthread_sigmask`` (not
    POSIX) nothing is held.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop_workers(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """Cancel ``pool``'s queued jobs and end its workers (``SIGTERM``), without waiting for
    their jobs; what they were writing is left as a kill leaves it (temporary files)."""
    # The executor has no public way to end running jobs: its worker processes are private.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout)


def _set_parent_death_signal() -> bool:
    """Ask the Linux kernel to SIGKILL this process when its parent ends; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        result = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError) as exc:
        log.debug("prctl unavailable (%s); watching the parent from a thread", exc)
        return False
    if result != 0:
        log.debug("prctl failed (errno %d); watching the parent from a thread", ctypes.get_errno())
        return False
    return True


def _watch_parent(parent: int) -> None:
    # A process whose parent ends is re-parented (to init or a subreaper): getppid() changes.
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
