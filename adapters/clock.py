"""Clocks: wall time for live sources, tick time for manual and replay, a fake for tests."""

from __future__ import annotations

import threading
import time


class WallClock:
    """Real time. Ticks do not move it."""

    def now_ns(self) -> int:
        return time.time_ns()

    def observe_tick(self, ts_ms: int) -> None:
        return None


class TickClock:
    """Engine time that follows the timestamps of accepted ticks (never backwards).

    Before the first tick it reads wall time, so conditions made with ``datetime.now()`` and
    ticks stamped with the current time agree. Replays at any speed therefore expire
    conditions at the same tick.
    """

    def __init__(self) -> None:
        self._last_ns: int | None = None
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        last = self._last_ns
        return time.time_ns() if last is None else last

    def observe_tick(self, ts_ms: int) -> None:
        ns = ts_ms * 1_000_000
        with self._lock:
            if self._last_ns is None or ns > self._last_ns:
                self._last_ns = ns


class FakeClock:
    """Manually advanced time for tests."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += int(seconds * 1_000_000_000)

    def set_ns(self, ns: int) -> None:
        with self._lock:
            self._now = ns

    def observe_tick(self, ts_ms: int) -> None:
        return None
