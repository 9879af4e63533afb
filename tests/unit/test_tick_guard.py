"""The Feed's checks on market data (state/tick_guard.py), without threads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from state.tick_guard import TickGuard, TickGuardSettings, grid_problem

TICK = Decimal("0.01")
NOW = 1_700_000_000_000  # ms
D = Decimal


def wall(guard: TickGuard, price: str, ts_ms: int = NOW, coin: str = "BTC", now_ms: int = NOW):
    return guard.check(coin, D(price), ts_ms, tick_size=TICK, now_ms=now_ms, tick_clock=False)


def tick_time(guard: TickGuard, price: str, ts_ms: int, coin: str = "BTC", now_ms: int = NOW):
    return guard.check(coin, D(price), ts_ms, tick_size=TICK, now_ms=now_ms, tick_clock=True)


def test_a_sane_tick_is_accepted_and_nothing_is_counted():
    guard = TickGuard()
    verdict = wall(guard, "42000.01")
    assert verdict.accepted and verdict.price == D("42000.01")
    assert guard.stats() == {"total": 0, "by_kind": {}}


@pytest.mark.parametrize("price", ["0", "-1", "NaN", "Infinity", "1e13", "1E+17"])
def test_a_price_that_is_not_finite_positive_and_sane_is_bad_price(price):
    guard = TickGuard()
    verdict = wall(guard, price)
    assert verdict.kind == "bad_price"
    assert guard.rejected["bad_price"] == 1


@pytest.mark.parametrize("price", ["0.0000000001", "0.001", "42000.005", "42000.019"])
def test_a_price_off_the_tick_grid_or_below_one_tick_is_rejected(price):
    verdict = wall(TickGuard(), price)
    assert verdict.kind == "off_grid", verdict
    assert str(Decimal(price)) in verdict.detail


def test_a_price_off_the_grid_by_rounding_only_is_snapped_to_it():
    verdict = wall(TickGuard(), "42000.0100000000001")
    assert verdict.accepted and verdict.price == D("42000.01")
    assert grid_problem(D("1e-10"), TICK) == (None, "1E-10 is below one tick (0.01)")


def test_no_grid_check_without_market_rules():
    guard = TickGuard()
    assert guard.check("BTC", D("42000.005"), NOW, tick_size=None, now_ms=NOW, tick_clock=False).accepted


def test_a_jump_beyond_the_band_is_rejected_and_the_reference_stays():
    guard = TickGuard()
    assert wall(guard, "100.00").accepted
    assert wall(guard, "111.00").kind == "jump"
    assert wall(guard, "109.00").accepted  # within 10 % of the last *accepted* price
    assert wall(guard, "91.00").kind == "jump"  # 16.5 % below 109
    assert guard.rejected["jump"] == 2


def test_a_real_move_is_accepted_at_the_kth_consecutive_agreeing_tick():
    guard = TickGuard(TickGuardSettings(confirm_ticks=3))
    wall(guard, "100.00")
    assert wall(guard, "150.00").kind == "jump"
    assert wall(guard, "151.00").kind == "jump"
    verdict = wall(guard, "150.50")
    assert verdict.accepted
    assert wall(guard, "152.00").accepted, "the move is the new reference"


def test_a_run_broken_by_a_disagreeing_tick_starts_again():
    guard = TickGuard(TickGuardSettings(confirm_ticks=2))
    wall(guard, "100.00")
    assert wall(guard, "150.00").kind == "jump"
    assert wall(guard, "300.00").kind == "jump"  # does not agree with 150: a new run
    assert wall(guard, "150.00").kind == "jump"  # nor with 300
    assert wall(guard, "150.10").accepted


def test_a_tick_back_inside_the_band_ends_a_run():
    guard = TickGuard(TickGuardSettings(confirm_ticks=2))
    wall(guard, "100.00")
    assert wall(guard, "150.00").kind == "jump"
    assert wall(guard, "101.00").accepted
    assert wall(guard, "150.00").kind == "jump", "the earlier run does not count any more"


def test_confirm_ticks_of_one_accepts_every_move():
    guard = TickGuard(TickGuardSettings(confirm_ticks=1))
    wall(guard, "100.00")
    assert wall(guard, "500.00").accepted


def test_coins_have_their_own_reference():
    guard = TickGuard()
    wall(guard, "42000.00", coin="BTC")
    assert wall(guard, "3000.00", coin="ETH").accepted


def test_a_seeded_reference_judges_the_first_tick_after_a_restart():
    guard = TickGuard()
    guard.seed("BTC", D("42000.00"), NOW)
    assert wall(guard, "0.01").kind == "jump"


@pytest.mark.parametrize(("offset_s", "kind"), [(301, "clock_ahead"), (-301, "clock_behind"),
                                                (299, None), (-299, None)])
def test_wall_clock_skew(offset_s, kind):
    verdict = wall(TickGuard(), "42000.00", ts_ms=NOW + offset_s * 1000)
    assert verdict.kind == kind


def test_tick_clock_a_tick_ten_years_ahead_cannot_move_the_clock():
    guard = TickGuard()
    assert tick_time(guard, "42000.00", NOW).accepted
    ten_years = NOW + 10 * 365 * 86_400_000
    verdict = tick_time(guard, "42000.00", ten_years)
    assert verdict.kind == "clock_ahead"
    assert tick_time(guard, "42000.01", NOW + 1).accepted, "the real ticks after it go on"


def test_tick_clock_the_first_tick_may_not_come_from_the_future_of_the_wall_clock():
    guard = TickGuard()
    assert tick_time(guard, "42000.00", NOW + 3_600_000, now_ms=NOW).kind == "clock_ahead"
    assert tick_time(guard, "42000.00", NOW - 86_400_000 * 365, now_ms=NOW).accepted, "a replay of the past"


def test_tick_clock_a_gap_confirmed_by_agreeing_ticks_is_real():
    guard = TickGuard(TickGuardSettings(confirm_ticks=3, max_tick_gap_s=3600))
    start = NOW - 10 * 86_400_000
    assert tick_time(guard, "42000.00", start).accepted
    later = start + 2 * 86_400_000  # a second replay file two days later
    assert tick_time(guard, "42000.00", later).kind == "clock_ahead"
    assert tick_time(guard, "42000.00", later + 1).kind == "clock_ahead"
    assert tick_time(guard, "42000.00", later + 2).accepted
    assert tick_time(guard, "42000.00", later + 3).accepted


def test_counts_by_kind():
    guard = TickGuard()
    wall(guard, "42000.00")
    wall(guard, "0")
    wall(guard, "0.001")
    wall(guard, "42000.00", ts_ms=NOW + 10**9)
    assert guard.stats() == {"total": 3, "by_kind": {"bad_price": 1, "clock_ahead": 1, "off_grid": 1}}
