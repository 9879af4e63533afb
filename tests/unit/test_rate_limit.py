"""adapters/net/rate_limit.py: the process-wide REST token bucket, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from adapters.net.rate_limit import RateLimitTimeout, TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def bucket(fake: FakeTime, rate: float = 20, burst: int = 50) -> TokenBucket:
    return TokenBucket(rate, burst, clock=fake.clock, wait=fake.wait)


def test_a_burst_of_50_goes_at_once_then_20_per_second():
    fake = FakeTime()
    limiter = bucket(fake)
    assert [limiter.acquire() for _ in range(50)] == [0.0] * 50
    started = fake.now
    for _ in range(40):
        limiter.acquire()
    assert fake.now - started == pytest.approx(2.0)  # 40 more at 20/s
    stats = limiter.stats()
    assert stats["requests"] == 90 and stats["waited_s"] == pytest.approx(sum(fake.waits), abs=1e-3)
    assert stats["max_wait_s"] == pytest.approx(0.05)


def test_idle_time_refills_up_to_the_burst_and_no_more():
    fake = FakeTime()
    limiter = bucket(fake, rate=10, burst=5)
    for _ in range(5):
        limiter.acquire()
    fake.now += 60  # a long pause saves at most 5 tokens
    for _ in range(5):
        assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.1)


def test_a_timeout_shorter_than_the_wait_takes_nothing_and_raises():
    fake = FakeTime()
    limiter = bucket(fake, rate=1, burst=1)
    limiter.acquire()
    with pytest.raises(RateLimitTimeout, match="within 0.5s"):
        limiter.acquire(timeout=0.5)
    assert limiter.acquire(timeout=1.5) == pytest.approx(1.0)


def test_bad_settings_and_costs_are_refused():
    with pytest.raises(ValueError, match="rate_per_s and burst must be positive"):
        TokenBucket(0, 5)
    with pytest.raises(ValueError, match="more than the burst"):
        TokenBucket(1, 2).acquire(cost=3)


def test_shared_by_threads_never_more_than_burst_plus_rate_times_elapsed():
    limiter = TokenBucket(200, 10)
    done = threading.Barrier(5)
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire(timeout=5)
            with lock:
                grants.append(limiter._clock())  # noqa: SLF001 - the bucket's own clock
        done.wait(timeout=5)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(grants) == 50
    elapsed = max(grants) - min(grants)
    assert elapsed >= (50 - 10) / 200 - 0.005  # 40 of the 50 had to wait for refills at 200/s


def test_close_wakes_a_waiter_which_then_gives_up():
    limiter = TokenBucket(0.001, 1)
    limiter.acquire()
    failed = threading.Event()

    def waiter() -> None:
        try:
            limiter.acquire(timeout=60)
        except RateLimitTimeout:
            failed.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    limiter.close()
    assert failed.wait(5)
    thread.join(timeout=5)
