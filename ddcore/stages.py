"""Wall time and peak memory of each pipeline stage, for the manifest."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import psutil
import torch


class _PeakSampler(threading.Thread):
    """Samples this process's resident memory every ``interval`` seconds and keeps the maximum."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self.process.memory_info().rss)


class StageRecorder:
    """``with recorder.stage("evaluate"): ...`` records seconds and peak RSS (and CUDA peak) per stage."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        sampler = _PeakSampler()
        sampler.start()
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            yield
        finally:
            record = {
                "seconds": round(time.perf_counter() - started, 3),
                "peak_rss_mib": round(sampler.stop() / 2**20, 1),
            }
            if cuda:
                record["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            self.stages[name] = record

    def to_dict(self) -> dict[str, dict[str, float]]:
        return dict(self.stages)
