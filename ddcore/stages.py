"""Wall time and peak memory of each pipeline stage, for the manifest."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

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
    """``with recorder.stage("evaluate"): ...`` records seconds and peak RSS (and CUDA peak) per stage.

    ``on_event(message)`` (optional) is told when a stage starts and ends (``"stage distill: started"``,
    ``"stage distill: done in 3.2 s"``, ``"stage distill: failed after 1.0 s"``), for the run's log.
    :attr:`failed` is the innermost stage an exception left, once one did (``None`` otherwise).
    """

    def __init__(self, on_event: Callable[[str], None] | None = None) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self.on_event = on_event
        self.failed: str | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        sampler = _PeakSampler()
        sampler.start()
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        self._tell(f"stage {name}: started")
        ok = False
        try:
            yield
            ok = True
        finally:
            record = {
                "seconds": round(time.perf_counter() - started, 3),
                "peak_rss_mib": round(sampler.stop() / 2**20, 1),
            }
            if cuda:
                record["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            self.stages[name] = record
            if not ok and self.failed is None:
                self.failed = name
            self._tell(f"stage {name}: {'done in' if ok else 'failed after'} {record['seconds']:.1f} s")

    def _tell(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return dict(self.stages)
