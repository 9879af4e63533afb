"""adapters/clock.py: the tick clock (engine time in replay and manual mode) and its causal time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from adapters.clock import FakeClock, TickClock, WallClock

MS = 1_000_000
T = 1_600_000_000_000  # ms, far from wall time


def on_other_thread(call: Callable[[], Any]) -> Any:
    """What ``call`` returns on a fresh thread (joined with a bound)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    return result[0]


def test_unseeded_before_any_tick_reads_wall_time() -> None:
    before = time.time_ns()
    now = TickClock().now_ns()
    after = time.time_ns()

    assert before <= now <= after


def test_seeded_start_is_read_until_a_tick_moves_it() -> None:
    clock = TickClock(start_ns=T * MS)

    assert clock.now_ns() == T * MS
    clock.observe_tick(T + 5)
    assert clock.now_ns() == (T + 5) * MS


def test_follows_accepted_ticks_in_nanoseconds() -> None:
    clock = TickClock()
    clock.observe_tick(T)
    assert clock.now_ns() == T * MS
    clock.observe_tick(T + 1_250)
    assert clock.now_ns() == (T + 1_250) * MS


def test_never_runs_backwards() -> None:
    clock = TickClock()
    clock.observe_tick(T + 1_000)

    clock.observe_tick(T)  # an older tick (another coin's, say)
    clock.seed(T * MS)  # an older remembered time

    assert clock.now_ns() == (T + 1_000) * MS


def test_seed_moves_only_forward() -> None:
    clock = TickClock(start_ns=T * MS)

    clock.seed((T - 1) * MS)
    assert clock.now_ns() == T * MS
    clock.seed((T + 7) * MS)
    assert clock.now_ns() == (T + 7) * MS


def test_seed_of_an_unseeded_clock_replaces_wall_time() -> None:
    clock = TickClock()
    clock.seed(T * MS)

    assert clock.now_ns() == T * MS


def test_handling_gives_causal_time_on_the_calling_thread_only() -> None:
    clock = TickClock()
    clock.observe_tick(T + 60_000)  # the Feed has read ahead

    clock.handling(T * MS)  # this thread handles an older message

    assert clock.now_ns() == T * MS
    assert on_other_thread(clock.now_ns) == (T + 60_000) * MS, "other threads still see the global time"


def test_handling_does_not_move_the_global_time() -> None:
    clock = TickClock()
    clock.observe_tick(T)

    clock.handling((T + 99_000) * MS)

    assert clock.now_ns() == (T + 99_000) * MS
    assert on_other_thread(clock.now_ns) == T * MS
    clock.handling(None)
    assert clock.now_ns() == T * MS


def test_handling_none_clears_the_causal_time() -> None:
    clock = TickClock(start_ns=T * MS)
    clock.handling((T - 10) * MS)

    clock.handling(None)

    assert clock.now_ns() == T * MS


def test_each_thread_has_its_own_causal_time() -> None:
    clock = TickClock(start_ns=T * MS)
    clock.handling((T + 1) * MS)

    def other() -> int:
        clock.handling((T + 2) * MS)
        try:
            return clock.now_ns()
        finally:
            clock.handling(None)

    assert on_other_thread(other) == (T + 2) * MS
    assert clock.now_ns() == (T + 1) * MS
    clock.handling(None)


def test_ticks_move_the_global_time_while_a_thread_is_handling() -> None:
    clock = TickClock(start_ns=T * MS)
    clock.handling(T * MS)

    on_other_thread(lambda: clock.observe_tick(T + 3_000))

    assert clock.now_ns() == T * MS, "the handling thread keeps its message's time"
    clock.handling(None)
    assert clock.now_ns() == (T + 3_000) * MS


def test_only_the_tick_clock_is_causal() -> None:
    assert TickClock.causal is True
    assert WallClock.causal is False
    assert FakeClock.causal is False


@pytest.mark.parametrize("clock", [FakeClock(T * MS), WallClock()], ids=["fake", "wall"])
def test_other_clocks_ignore_ticks_and_handling(clock: Any) -> None:
    clock.observe_tick(T + 123_456)
    clock.handling(1)

    now = clock.now_ns()

    assert now != 1 and now != (T + 123_456) * MS
    clock.handling(None)


def test_fake_clock_advances_and_sets_by_hand() -> None:
    clock = FakeClock(T * MS)
    clock.advance(1.5)
    assert clock.now_ns() == T * MS + 1_500_000_000
    clock.set_ns(42)
    assert clock.now_ns() == 42
