"""The worker loop that ties the parts: claim → fetch → archive → links → complete."""

from __future__ import annotations

from shoal.worker.loop import CriticalStop, Worker, make_worker_id
from shoal.worker.stats import WorkerStats

__all__ = ["CriticalStop", "Worker", "WorkerStats", "make_worker_id"]
