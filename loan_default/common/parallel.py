"""Independent tasks (one per vintage) in worker processes, results handed back in the tasks' order.

Workers are spawned, not forked: the caller may hold threads (torch, arrow's pools) that a fork would copy mid-lock.
A spawned worker re-imports the script that was started (not a `python -m` module), so a script that calls this
needs the usual `if __name__ == "__main__":` guard (train.py, bench/*.py have it), as for SUOD and DataLoader workers.
Warnings a worker raises are re-raised here, so `on_bad_row="skip"` still tells the user what it dropped.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_DEFAULT_WORKERS = 8  # each worker holds one vintage's transients (~1-2 GB for a full Freddie Mac quarter)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_workers(workers: int | None, tasks: int, small: bool = False) -> int:
    """``workers`` (None: one per CPU, at most `MAX_DEFAULT_WORKERS`; one when the caller calls the job ``small``,
    where starting processes, ~1 s each, would cost more than they save), never more than there are tasks."""
    if workers is None:
        workers = 1 if small else min(available_cpus(), MAX_DEFAULT_WORKERS)
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1 (or null for one per CPU), got {workers}")
    return max(1, min(int(workers), tasks))


def ordered_map(
    fn: Callable[[T], R], items: Sequence[T], workers: int | None = 1, done: Callable[[R], None] | None = None
) -> list[R]:
    """``[fn(item) for item in items]``, in ``workers`` processes when more than one (``fn`` must be a module-level
    function, items and results picklable). ``done(result)`` is called as each task finishes (for progress bars).
    The first failure cancels the tasks not yet started and is raised here."""
    items = list(items)
    workers = resolve_workers(workers, len(items))
    if workers == 1:
        results = []
        for item in items:
            results.append(fn(item))
            if done is not None:
                done(results[-1])
        return results
    slots: list = [None] * len(items)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_capturing, fn, item): i for i, item in enumerate(items)}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in sorted(finished, key=futures.__getitem__):
                    result, caught = future.result()
                    for message in caught:
                        warnings.warn(message, stacklevel=2)
                    slots[futures[future]] = result
                    if done is not None:
                        done(result)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return slots


def _capturing(fn: Callable[[T], R], item: T) -> tuple[R, list[Warning]]:
    """Run ``fn(item)`` in a worker and bring its warnings back with the result."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(item)
    return result, [w.message for w in caught]
