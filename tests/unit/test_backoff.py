"""The reconnect backoff policy: pure, no threads, deterministic with a seeded rng."""

from __future__ import annotations

import random

import pytest

from adapters.net.backoff import Backoff


def test_without_jitter_doubles_from_first_and_stops_at_the_cap() -> None:
    backoff = Backoff(first_s=1.0, factor=2.0, cap_s=10.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.attempts == 7


def test_reset_starts_over_at_first() -> None:
    backoff = Backoff(first_s=0.5, factor=3.0, cap_s=100.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(3)] == [0.5, 1.5, 4.5]
    backoff.reset()
    assert backoff.attempts == 0
    assert [backoff.next_delay() for _ in range(2)] == [0.5, 1.5]


def test_jitter_multiplies_each_capped_delay_by_a_factor_within_the_band() -> None:
    backoff = Backoff(first_s=1.0, factor=2.0, cap_s=8.0, jitter=0.2, rng=random.Random(3))
    bases = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    delays = [backoff.next_delay() for _ in bases]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert len(set(delays[3:])) == len(delays[3:])  # at the cap the delays still spread


def test_a_seeded_rng_gives_exactly_the_expected_sequence() -> None:
    draws = random.Random(42)
    expected = [base * draws.uniform(0.9, 1.1) for base in (0.1, 0.2, 0.4, 0.5, 0.5)]
    backoff = Backoff(first_s=0.1, factor=2.0, cap_s=0.5, jitter=0.1, rng=random.Random(42))
    assert [backoff.next_delay() for _ in range(5)] == expected
    again = Backoff(first_s=0.1, factor=2.0, cap_s=0.5, jitter=0.1, rng=random.Random(42))
    assert [again.next_delay() for _ in range(5)] == expected


def test_a_factor_of_one_is_a_constant_delay() -> None:
    backoff = Backoff(first_s=2.0, factor=1.0, cap_s=2.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(3)] == [2.0, 2.0, 2.0]


def test_thousands_of_failures_do_not_overflow() -> None:
    backoff = Backoff(first_s=1.0, factor=10.0, cap_s=60.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 60.0


def test_defaults_are_one_second_doubling_to_a_minute_with_twenty_percent_jitter() -> None:
    backoff = Backoff(rng=random.Random(0))
    first = backoff.next_delay()
    assert 0.8 <= first <= 1.2
    for _ in range(20):
        last = backoff.next_delay()
    assert 48.0 <= last <= 72.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"first_s": 0}, "first_s"),
        ({"first_s": -1}, "first_s"),
        ({"factor": 0.5}, "factor"),
        ({"first_s": 5, "cap_s": 1}, "cap_s"),
        ({"jitter": 1.0}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"cap_s": float("nan")}, "cap_s"),
        ({"first_s": "1"}, "first_s"),
    ],
)
def test_nonsense_is_refused_naming_the_argument(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)  # type: ignore[arg-type]
