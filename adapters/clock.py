"""Clocks: wall time for live sources, tick time for manual and replay, a fake for tests."""

from __future__ import annotations

import threading
import time


class WallClock:
    """Real time. Ticks do not move it."""

    causal = False

    def now_ns(self) -> int:
        return time.time_ns()

    def observe_tick(self, ts_ms: int) -> None:
        return None

    def handling(self, ts_ns: int | None) -> None:
        return None


class TickClock:
    """Engine time that follows the timestamps of accepted ticks (never backwards), and is
    *causal* on actor threads.

    Globally, ``now_ns`` is the latest tick the Feed accepted (before the first tick, the time
    it was seeded with, else wall time, so conditions made with ``datetime.now()`` and ticks
    stamped with the current time agree).

    Causal time: while an actor handles a message, ``handling(ts)`` makes ``now_ns`` on that
    thread return the message's own timestamp, so everything a tick causes (the order, the
    fill, the venue's price-age check, every event stamp) carries that tick's time however far
    the Feed has read ahead. Two replays of the same data therefore produce the same
    timestamps, and a replay expires conditions at the same tick at any speed.
    """

    causal = True

    def __init__(self, start_ns: int | None = None) -> None:
        self._last_ns: int | None = start_ns
        self._lock = threading.Lock()
        self._local = threading.local()

    def now_ns(self) -> int:
        handling = getattr(self._local, "ts_ns", None)
        if handling is not None:
            return handling
        last = self._last_ns
        return time.time_ns() if last is None else last

    def handling(self, ts_ns: int | None) -> None:
        """Set (or with ``None`` clear) the causal time of the calling thread."""
        self._local.ts_ns = ts_ns

    def seed(self, ts_ns: int) -> None:
        """Start from a remembered engine time (a resumed replay) until ticks move it."""
        with self._lock:
            if self._last_ns is None or ts_ns > self._last_ns:
                self._last_ns = ts_ns

    def observe_tick(self, ts_ms: int) -> None:
        ns = ts_ms * 1_000_000
        with self._lock:
            if self._last_ns is None or ns > self._last_ns:
                self._last_ns = ns


class FakeClock:
    """Manually advanced time for tests."""

    causal = False

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

    def handling(self, ts_ns: int | None) -> None:
        return None
