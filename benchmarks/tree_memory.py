"""Peak resident memory of a process and all its descendants (driver, Ray raylet and workers), for benchmarks."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakTreeRSS:
    """Samples ``pid``'s process tree every 100 ms while the ``with`` block runs; ``peak`` is in bytes."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, tree_rss(self.process))
            except psutil.Error:
                pass
            time.sleep(0.1)

    def __enter__(self) -> PeakTreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._done.set()
        self._thread.join()
