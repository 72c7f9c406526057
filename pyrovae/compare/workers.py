"""The processes that run a comparison's cells, and how they stop: together with the comparison.

Each cell process dies with the comparison that started it: on Linux the kernel sends it SIGTERM
when its parent dies (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread notices a new parent
within a second; the cell's training then saves a checkpoint and stops, so the next ``pyrovae
compare`` resumes it. SIGINT or SIGTERM to the comparison stops the grid: queued cells are dropped,
running ones told to stop (each saves a checkpoint), and the comparison ends with one line.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

import torch

from ..errors import TrainingInterrupted

PR_SET_PDEATHSIG = 1  # linux/prctl.h
GRACE_SECONDS = 60.0  # time a cell whose parent died has to save its checkpoint
Job = tuple[Any, ...]


class GridInterrupted(TrainingInterrupted):
    """A signal stopped the comparison; finished cells are kept, stopped ones resume next time."""


def interrupted(signum: int) -> GridInterrupted:
    name = signal.Signals(signum).name
    return GridInterrupted(f"comparison interrupted by {name}: finished cells are kept and the running ones saved a "
                           "checkpoint; run the same pyrovae compare command again to resume", signum)  # fmt: skip


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While active (in the main thread), SIGINT and SIGTERM stop the comparison with
    :class:`GridInterrupted`; a cell training in this process answers them itself first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise interrupted(signum)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def worker_init(threads: int, parent: int) -> None:
    """A cell process: its share of the threads, and a life no longer than its parent's."""
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="parent-watchdog").start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)  # the cell's training saves a checkpoint and stops
    time.sleep(GRACE_SECONDS)
    os._exit(1)


def run_in_processes(
    run: Callable[..., str], jobs: list[Job], workers: int, on_done: Callable[[str], None] | None
) -> None:
    """``run(*job)`` for every job in ``workers`` spawned processes; ``on_done(cell_id)`` as each
    ends. A signal, or a cell that fails or was stopped, stops them all (see the module docstring)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=worker_init, initargs=(threads, os.getpid())
    )
    futures: list[Future[str]] = []
    try:
        with stop_on_signals():
            futures = [pool.submit(run, *job) for job in jobs]
            for f in as_completed(futures):
                if on_done is not None:
                    on_done(f.result())
    except BaseException:
        _stop(pool, futures)
        raise
    pool.shutdown()


def _stop(pool: ProcessPoolExecutor, futures: list[Future[str]], timeout: float = GRACE_SECONDS) -> None:
    """Drop the queued cells, ask the running ones to stop (SIGTERM: each saves a checkpoint), and
    wait for them; any still alive after ``timeout`` seconds is killed."""
    for f in futures:
        f.cancel()
    children = mp.active_children()
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()
    pool.shutdown(wait=False, cancel_futures=True)
