"""Periodic nudges on one daemon thread: the engine's timers (Journal flush, Sniper sweep,
Executor reconcile, Feed stale check), wired by ``run.py``.

``PeriodicTimers(step_s, jobs)`` wakes every ``step_s`` seconds of wall time (``Event.wait``,
so ``stop`` ends it at once) and runs each ``TimerJob`` whose period has elapsed: a job with
``every_s`` at or under the step runs on every wake-up, a longer one once its accumulated
steps reach its period (then its count starts again from zero). The first wake-up is one step
after ``start``. Jobs run in the order given, on the timer's thread: they must be quick and
must not block (the engine's only tell an actor a ``TimerFired``). A job that raises is
logged (``TIMER_JOB_FAILED``) and the others, and later wake-ups, go on.

``tick()`` is one wake-up without the thread (what the thread calls; tests call it directly).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loguru import logger

_EPSILON = 1e-9  # float steps that add up to a period must count as reaching it


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerJob:
    """``action`` every ``every_s`` seconds (``None``: on every wake-up); ``name`` for logs."""

    name: str
    action: Callable[[], None]
    every_s: float | None = None

    def __post_init__(self) -> None:
        if self.every_s is not None and not self.every_s > 0:
            raise ValueError(f"every_s: must be a positive number of seconds or None, got {self.every_s!r}")


class PeriodicTimers:
    """The timer thread (``name``, a daemon): ``start`` once, ``stop`` (idempotent) ends it."""

    def __init__(self, step_s: float, jobs: Sequence[TimerJob], *, name: str = "engine-timers") -> None:
        if not step_s > 0:
            raise ValueError(f"step_s: must be a positive number of seconds, got {step_s!r}")
        self.step_s = step_s
        self.jobs = tuple(jobs)
        self._elapsed = [0.0 for _ in self.jobs]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.ticks = 0  # wake-ups so far

    def start(self) -> PeriodicTimers:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end (it ends at its next wait) and, with ``timeout``, wait for it."""
        self._stop.set()
        if timeout is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def tick(self) -> list[str]:
        """One wake-up: run every job that is due; returns their names, in order."""
        self.ticks += 1
        ran = []
        for index, job in enumerate(self.jobs):
            if job.every_s is not None and job.every_s > self.step_s + _EPSILON:
                self._elapsed[index] += self.step_s
                if self._elapsed[index] + _EPSILON < job.every_s:
                    continue
                self._elapsed[index] = 0.0
            try:
                job.action()
            except Exception as error:  # noqa: BLE001 - one failed nudge must not stop the others
                logger.bind(actor="timers").error("TIMER_JOB_FAILED: {}: {!r}", job.name, error)
            ran.append(job.name)
        return ran

    def _run(self) -> None:
        while not self._stop.wait(self.step_s):
            self.tick()


__all__ = ["PeriodicTimers", "TimerJob"]
