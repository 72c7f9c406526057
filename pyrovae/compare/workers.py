"""The processes that run a comparison's cells, and how they stop: together with the comparison.

Each cell process dies with the comparison that started it: on Linux the kernel sends it SIGTERM
when its parent dies (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread notices a new parent
within a second; the cell's training then saves a checkpoint and stops, so the next ``pyrovae
compare`` resumes it. SIGINT or SIGTERM to the comparison stops the grid: queued cells are dropped,
running ones told to stop (each saves a checkpoint), and the comparison ends with one line. Cells
run in process groups of their own, so a terminal's Ctrl-C reaches the comparison, not each cell.
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
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
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


@contextmanager
def _children_born_deaf() -> Iterator[None]:
    """A process started inside ignores SIGINT until :func:`worker_init` has moved it to its own
    process group: a Ctrl-C while it imports would otherwise stop it with a traceback. (The
    comparison blocks SIGINT meanwhile, so one that comes now is delivered, not lost.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def worker_init(threads: int, parent: int) -> None:
    """A cell process: its share of the threads, a life no longer than its parent's, and a process
    group of its own, so that Ctrl-C reaches the comparison alone, which then stops the cell once
    (a second signal would stop the cell at once, without its checkpoint)."""
    torch.set_num_threads(threads)
    if hasattr(os, "setpgid"):  # POSIX: from here a Ctrl-C at the terminal passes this process by
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # started ignored (_children_born_deaf)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    kernel_signals = sys.platform.startswith("linux")
    if kernel_signals:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    watch = threading.Thread(target=_watch, args=(parent, not kernel_signals), daemon=True, name="parent-watchdog")
    watch.start()


def _watch(parent: int, send: bool) -> None:
    """Once the parent is gone: SIGTERM this cell where the kernel did not (``send``; a second
    SIGTERM would stop the cell before its checkpoint), and end it if it still runs after
    :data:`GRACE_SECONDS`."""
    while os.getppid() == parent:
        time.sleep(1.0)
    if send:
        os.kill(os.getpid(), signal.SIGTERM)  # the cell's training saves a checkpoint and stops
    time.sleep(GRACE_SECONDS)
    os._exit(1)


def run_in_processes(
    run: Callable[..., str], jobs: list[Job], workers: int, on_done: Callable[[str], None] | None
) -> None:
    """``run(*job)`` for every job, at most ``workers`` spawned processes at once; ``on_done(cell_id)``
    as each ends. A signal, or a cell that fails or was stopped, stops them all: a queued job is
    never started (see the module docstring)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    queued = list(jobs)
    running: dict[Connection, BaseProcess] = {}
    try:
        with stop_on_signals():
            while queued or running:
                while queued and len(running) < workers:
                    receive, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_cell, args=(send, run, queued.pop(0), threads, os.getpid()), daemon=True)
                    with _children_born_deaf():
                        proc.start()
                    send.close()
                    running[receive] = proc
                ready = set(wait(list(running)))  # the connections it was given
                for done in [c for c in running if c in ready]:
                    cell_id = _outcome(done, running.pop(done))
                    if on_done is not None:
                        on_done(cell_id)
    except BaseException:
        _stop(list(running.values()))
        raise


def _cell(send: Connection, run: Callable[..., str], job: Job, threads: int, parent: int) -> None:
    """A cell process: runs one job and sends back its cell id, or the exception that stopped it."""
    worker_init(threads, parent)
    try:
        outcome: tuple[bool, Any] = (True, run(*job))
    except BaseException as e:  # sent to the comparison, which stops with it
        outcome = (False, e)
    try:
        send.send(outcome)
    except BrokenPipeError:  # the comparison is gone: there is no one to tell
        pass
    except Exception:  # an exception that does not pickle: its type and message
        send.send((False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}")))
    send.close()


def _outcome(receive: Connection, proc: BaseProcess) -> str:
    """The cell id a finished process sent, or the exception it sent (or a line if it died)."""
    try:
        ok, value = receive.recv()
    except EOFError:
        ok, value = False, RuntimeError(f"a cell process died without a result (exit status {proc.exitcode})")
    receive.close()
    proc.join()
    if not ok:
        raise value
    return str(value)


def _stop(procs: list[BaseProcess], timeout: float = GRACE_SECONDS) -> None:
    """Ask the running cells to stop (SIGTERM: each saves a checkpoint) and wait for them; any
    still alive after ``timeout`` seconds is killed."""
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
