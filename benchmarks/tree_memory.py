"""Peak resident memory and CPU time of a process and all its descendants (driver, Ray raylet and workers).

CPU time is what a run costs whatever else the machine is doing: on a shared machine wall time measures the
neighbours too.  Descendants are sampled every 100 ms (a Ray actor is killed, not waited for, so its CPU time
is only known while it lives): one born during the block counts from its start, one that exits loses at most
its last 100 ms.  When the sampled process is this one, the sampling thread's own CPU time is left out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil


class PeakTreeRSS:
    """Samples ``pid``'s process tree every 100 ms while the ``with`` block runs.

    ``peak``: the largest summed RSS seen, in bytes; ``cpu_seconds``: user + system CPU time the tree spent
    inside the block; ``timeline``: every sample as (unix time, summed RSS, CPU seconds spent so far, RSS of
    ``pid`` alone), so a caller can cut the run into stages by their start and end times and tell the
    driver's memory (which grows if it holds the corpus) from its workers' (models, fixed per worker).
    """

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.timeline: list[tuple[float, int, float, int]] = []
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._sampler_cpu = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        spent = sum(self._cpu_last[pid] - self._cpu_start.get(pid, 0.0) for pid in self._cpu_last)
        return spent - (self._sampler_cpu if self.process.pid == os.getpid() else 0.0)

    def _sample_once(self) -> None:
        total = own = 0
        try:
            tree = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return
        for p in tree:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss
                    times = p.cpu_times()
            except psutil.Error:
                continue
            total += rss
            own = rss if p.pid == self.process.pid else own
            self._cpu_last[p.pid] = times.user + times.system
        self.peak = max(self.peak, total)
        spent = sum(self._cpu_last[pid] - self._cpu_start.get(pid, 0.0) for pid in self._cpu_last)
        self.timeline.append((time.time(), total, spent, own))

    def _sample(self) -> None:
        while not self._done.is_set():
            started = time.thread_time()
            self._sample_once()
            self._sampler_cpu += time.thread_time() - started
            time.sleep(0.1)

    def __enter__(self) -> PeakTreeRSS:
        self._sample_once()
        self._cpu_start = dict(self._cpu_last)  # what the tree had spent before the block is not the block's
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._done.set()
        self._thread.join()
        self._sample_once()


# A fixed key: benchmark runs are reproducible and hold no real data, so the key guards nothing.
BENCHMARK_KEY = "benchmark-key-not-a-secret-0123456789"


def measured_run(spec: Path, data_root: Path, stage: str | None = None) -> tuple[PeakTreeRSS, float]:
    """``medcurate run SPEC`` into ``data_root`` (run id "bench"), or ``medcurate stage STAGE SPEC`` alone on a data
    root that the earlier stages filled, sampled: the tree's samples and the wall seconds.  Exits the benchmark
    when the run fails."""
    medcurate = str(Path(sys.executable).parent / "medcurate")
    command = ["stage", stage] if stage else ["run"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [medcurate, *command, str(spec), "--data-root", str(data_root), "--run-id", "bench"],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "MEDCURATE_PSEUDONYM_KEY": BENCHMARK_KEY},
    )
    with PeakTreeRSS(proc.pid) as memory:
        code = proc.wait()
    wall = time.perf_counter() - started
    if code != 0:
        sys.exit(f"medcurate {' '.join(command)} failed with exit code {code} (data root {data_root})")
    return memory, wall
