"""Ordered parallel map with a progress bar, for the data preparation tools."""
from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Iterable, Iterator

from tqdm import tqdm


def imap_progress(func: Callable[[Any], Any], jobs: Iterable[Any], workers: int, desc: str,
                  progress: bool = True) -> Iterator[Any]:
    """``func(job)`` for every job, in order, on ``workers`` processes (in this one when <= 1).

    Results are yielded as they come so the caller can write them out while workers go on.
    """
    jobs = list(jobs)
    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield func(job)
                bar.update()
            return
        with multiprocessing.Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap(func, jobs):
                yield result
                bar.update()
    finally:
        bar.close()


def default_workers() -> int:
    """Processes for data preparation: the CPU count, at most 8 (disk-bound beyond that)."""
    return max(1, min(8, multiprocessing.cpu_count()))
