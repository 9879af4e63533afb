"""One rate limit for every REST call of the process: a thread-safe token bucket.

Exchanges ban by IP, not by connection or by adapter, so the limit must be shared: the engine
builds one ``TokenBucket`` and hands it to every REST user (the fallback poller now, order
placement later). Defaults: 20 requests/s sustained, bursts of 50.

Why not ccxt's own limiter: synchronous ccxt spaces calls ``rateLimit`` ms apart per exchange
*instance* (no bursts, and two instances do not know of each other). The engine therefore turns
it off (``enableRateLimit=False``) on the instances it creates and puts every call through this
bucket instead, which also measures how long callers waited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


EPSILON = 1e-9


class RateLimitTimeout(TimeoutError):
    """No token within the caller's timeout: the request was not made."""


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up; ``acquire`` takes one (or
    ``cost``) and waits, bounded, for it. Safe from any thread."""

    def __init__(self, rate_per_s: float = 20.0, burst: int = 50, *,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], Any] | None = None) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s and burst must be positive, got {rate_per_s} and {burst}")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self._clock = clock
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = clock()
        self.requests = 0
        self.waited_s = 0.0  # total time callers spent waiting: the metric of the status/report
        self.max_wait_s = 0.0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    def acquire(self, cost: float = 1.0, timeout: float | None = None) -> float:
        """Take ``cost`` tokens, waiting as long as it takes (at most ``timeout``). Returns the
        seconds waited; raises ``RateLimitTimeout`` (taking nothing) past the timeout."""
        if cost > self.burst:
            raise ValueError(f"cost {cost} is more than the burst {self.burst}")
        started = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                self._refill(now)
                if self._tokens >= cost - EPSILON:  # float refills can land a hair short
                    self._tokens = max(0.0, self._tokens - cost)
                    waited = now - started
                    self.requests += 1
                    self.waited_s += waited
                    self.max_wait_s = max(self.max_wait_s, waited)
                    return waited
                needed = (cost - self._tokens) / self.rate_per_s
            if timeout is not None and now - started + needed > timeout:
                raise RateLimitTimeout(f"no REST token within {timeout}s (rate {self.rate_per_s}/s)")
            if self._stopping.is_set():
                raise RateLimitTimeout("the rate limiter is closed")
            self._wait(needed)

    def close(self) -> None:
        """Wake and refuse every waiter (the engine is stopping)."""
        self._stopping.set()

    def stats(self) -> dict[str, float | int]:
        with self._lock:
            self._refill(self._clock())
            return {"requests": self.requests, "waited_s": round(self.waited_s, 3),
                    "max_wait_s": round(self.max_wait_s, 3), "tokens": round(self._tokens, 2),
                    "rate_per_s": self.rate_per_s, "burst": self.burst}
