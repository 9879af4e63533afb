"""state/risk.py: vetting a proposed condition, sizing it, daily loss, drawdown and the kill switch."""

from __future__ import annotations

from datetime import timedelta
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from state.config import RiskConfig
from state.market import MarketRules, default_rules
from state.models import TradeCondition
from state.risk import (
    EquityWatch,
    daily_loss_pct,
    drawdown_breach,
    drawdown_pct,
    format_day_start,
    kill_switch_breach,
    parse_day_start,
    parse_equity,
    position_size,
    utc_day,
    vet_condition,
)
from state.types import from_epoch_ns

D = Decimal
NOW_NS = 1_700_000_000_000_000_000
NOW = from_epoch_ns(NOW_NS)
MARKET = MarketRules(coin="BTC", tick_size=D("0.01"), qty_step=D("0.00001"), min_notional=D("5"))
KNOWN = frozenset({"BTC", "ETH"})
LIMITS = RiskConfig()


def cond(direction: str = "LONG", trigger: Any = "100", stop: Any = "0.02", target: Any = "0.03",
         size: Any = "500", coin: str = "BTC", valid_for: timedelta | None = timedelta(hours=1)) -> TradeCondition:
    return TradeCondition(
        coin=coin, direction=direction, trigger_price=trigger,
        trigger_type="ABOVE" if direction == "LONG" else "BELOW",
        stop_loss_pct=stop, take_profit_pct=target, position_size_usd=size,
        created_at=NOW - timedelta(hours=2),
        valid_until=None if valid_for is None else NOW + valid_for,
    )


def vet(condition: TradeCondition, *, last_price: Any = None, limits: RiskConfig = LIMITS,
        known: frozenset[str] = KNOWN) -> str | None:
    return vet_condition(
        condition, now_ns=NOW_NS, known_coins=known, market=MARKET,
        last_price=None if last_price is None else D(str(last_price)), limits=limits,
    )


# --- vetting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["LONG", "SHORT"])
def test_vet_when_sane_then_none(direction: str) -> None:
    assert vet(cond(direction), last_price="100") is None


@pytest.mark.parametrize("direction", ["LONG", "SHORT"])
@pytest.mark.parametrize("entry", [
    {"entry_type": "limit", "entry_timeout_s": 30},
    {"entry_type": "limit", "entry_offset_ticks": -3, "entry_timeout_s": 30, "entry_plan_b_pct": "0.002"},
    {"scale_in_fraction": "0.5", "scale_in_pullback_pct": "0.01", "scale_in_timeout_s": 60},
    {"entry_type": "limit", "entry_offset_pct": "0.001", "entry_timeout_s": 30,
     "scale_in_fraction": "0.3", "scale_in_pullback_pct": "0.01", "scale_in_timeout_s": 60},
])
def test_vet_when_a_limit_entry_or_a_scale_in_then_accepted(entry: dict[str, Any], direction: str) -> None:
    condition = replace(cond(direction), **entry)
    assert vet(condition, last_price="100") is None


def test_vet_when_the_limit_price_cannot_be_computed_then_refused_naming_the_offset() -> None:
    # 100 less 10,000 ticks of 0.01 is 0: not a price
    condition = replace(cond(), entry_type="limit", entry_offset_ticks=-10_000, entry_timeout_s=30)
    reason = vet(condition, last_price="100") or ""
    assert reason.startswith("entry_offset_ticks: the limit price cannot be computed"), reason


def test_vet_when_no_expiry_and_no_last_price_then_none() -> None:
    assert vet(cond(valid_for=None)) is None


def test_vet_when_the_coin_is_not_traded_then_the_reason_names_coin_and_lists_the_known() -> None:
    reason = vet(cond(coin="DOGE"))

    assert reason is not None and reason.startswith("coin: DOGE")
    assert "BTC, ETH" in reason


@pytest.mark.parametrize("valid_for", [timedelta(0), timedelta(seconds=-1)])
def test_vet_when_expired_at_engine_time_then_valid_until(valid_for: timedelta) -> None:
    reason = vet(cond(valid_for=valid_for))

    assert reason is not None and reason.startswith("valid_until: already expired")


def test_vet_when_valid_one_microsecond_past_engine_time_then_accepted() -> None:
    assert vet(cond(valid_for=timedelta(microseconds=1))) is None


def test_vet_when_the_stop_is_above_the_maximum_then_stop_loss_pct() -> None:
    reason = vet(cond(stop="0.25"), limits=RiskConfig(max_stop_loss_pct=D("0.20")))

    assert reason is not None and reason.startswith("stop_loss_pct: 0.25 is above the maximum 0.20")


def test_vet_when_the_stop_equals_the_maximum_then_accepted() -> None:
    assert vet(cond(stop="0.20"), limits=RiskConfig(max_stop_loss_pct=D("0.20"))) is None


def test_vet_when_the_take_profit_is_above_the_maximum_then_take_profit_pct() -> None:
    reason = vet(cond(target="0.6"), limits=RiskConfig(max_take_profit_pct=D("0.5")))

    assert reason is not None and reason.startswith("take_profit_pct: 0.6 is above the maximum 0.5")


@pytest.mark.parametrize(
    ("direction", "stop", "target", "field", "words"),
    [
        # 100 x (1 - 0.00001) = 99.999 rounds UP (toward the entry) to 100.00: on the trigger.
        ("LONG", "0.00001", "0.03", "stop_loss_pct", "a LONG stop at 100.00"),
        # 100 x 1.00001 = 100.001 rounds DOWN to 100.00: no profit at all.
        ("LONG", "0.02", "0.00001", "take_profit_pct", "a LONG target at 100.00"),
        ("SHORT", "0.00001", "0.03", "stop_loss_pct", "a SHORT stop at 100.00"),
        ("SHORT", "0.02", "0.00001", "take_profit_pct", "a SHORT target at 100.00"),
    ],
)
def test_vet_when_rounding_at_the_trigger_puts_a_level_on_the_trigger_then_that_field(
    direction: str, stop: str, target: str, field: str, words: str
) -> None:
    reason = vet(cond(direction, stop=stop, target=target))

    assert reason is not None and reason.startswith(f"{field}: {words}"), reason


@pytest.mark.parametrize("direction", ["LONG", "SHORT"])
def test_vet_when_the_levels_are_one_tick_from_the_trigger_then_accepted(direction: str) -> None:
    # 100 x 0.0001 = 0.01: exactly one tick either side.
    assert vet(cond(direction, stop="0.0001", target="0.0001")) is None


def test_vet_when_the_trigger_is_too_far_from_the_last_price_then_trigger_price() -> None:
    reason = vet(cond(trigger="125"), last_price="100", limits=RiskConfig(max_trigger_distance_pct=D("0.20")))

    assert reason is not None and reason.startswith("trigger_price: 125 is 25.00% from the last price 100")


@pytest.mark.parametrize("trigger", ["120", "80"])
def test_vet_when_the_trigger_is_exactly_at_the_distance_limit_then_accepted(trigger: str) -> None:
    assert vet(cond(trigger=trigger, stop="0.02"), last_price="100",
               limits=RiskConfig(max_trigger_distance_pct=D("0.20"))) is None


def test_vet_when_no_last_price_then_any_distance_is_accepted() -> None:
    assert vet(cond(trigger="1000000")) is None


def test_vet_checks_in_the_documented_order_coin_first() -> None:
    everything_wrong = cond(coin="DOGE", stop="0.5", valid_for=timedelta(0))

    reason = vet(everything_wrong, last_price="1")

    assert reason is not None and reason.startswith("coin:")


# --- sizing -------------------------------------------------------------------------------------


def test_position_size_fixed_usd_keeps_the_conditions_size_rounded_down_to_the_cent() -> None:
    limits = RiskConfig(sizing="fixed_usd", max_position_usd=D("1000"))

    assert position_size(cond(size="500"), D("10000"), limits) == D("500.00")
    assert position_size(cond(size="123.456"), D("10000"), limits) == D("123.45")


def test_position_size_fixed_usd_is_capped_at_max_position_usd() -> None:
    limits = RiskConfig(sizing="fixed_usd", max_position_usd=D("1000"))

    assert position_size(cond(size="5000"), D("10000"), limits) == D("1000.00")


def test_position_size_risk_pct_loses_risk_per_trade_of_equity_at_the_stop() -> None:
    limits = RiskConfig(sizing="risk_pct", risk_per_trade_pct=D("0.01"), max_position_usd=D("100000"))

    # 1 % of 10,000 = 100 at risk; a 2 % stop gives 5,000; the condition's own size is ignored.
    assert position_size(cond(stop="0.02", size="1"), D("10000"), limits) == D("5000.00")
    # 100 / 0.03 = 3333.333... rounded down to the cent.
    assert position_size(cond(stop="0.03"), D("10000"), limits) == D("3333.33")
    # Equity moves the size.
    assert position_size(cond(stop="0.02"), D("20000"), limits) == D("10000.00")


def test_position_size_risk_pct_is_capped_at_max_position_usd() -> None:
    limits = RiskConfig(sizing="risk_pct", risk_per_trade_pct=D("0.01"), max_position_usd=D("1000"))

    assert position_size(cond(stop="0.02"), D("10000"), limits) == D("1000.00")


# --- daily loss and the kill switch -------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "equity", "loss"),
    [("10000", "9500", "0.05"), ("10000", "10000", "0"), ("10000", "12000", "0"), ("0", "-5", "0"),
     ("8000", "7000", "0.125")],
)
def test_daily_loss_pct(start: str, equity: str, loss: str) -> None:
    assert daily_loss_pct(D(start), D(equity)) == D(loss)


def test_kill_switch_breach_when_the_loss_reaches_the_limit_then_a_kill_switch_reason() -> None:
    limits = RiskConfig(max_daily_loss_pct=D("0.05"))

    reason = kill_switch_breach(D("10000"), D("9500"), limits)

    assert reason is not None and reason.startswith("KILL_SWITCH: daily loss 5.00%")
    assert "9500.00" in reason and "10000.00" in reason


def test_kill_switch_breach_when_the_loss_is_below_the_limit_then_none() -> None:
    assert kill_switch_breach(D("10000"), D("9500.01"), RiskConfig(max_daily_loss_pct=D("0.05"))) is None
    assert kill_switch_breach(D("10000"), D("10500"), RiskConfig(max_daily_loss_pct=D("0.05"))) is None


def test_kill_switch_breach_when_the_limit_is_zero_then_off_even_at_total_loss() -> None:
    assert kill_switch_breach(D("10000"), D("0"), RiskConfig(max_daily_loss_pct=D("0"))) is None


# --- drawdown from the peak ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peak", "equity", "fall"),
    [("10000", "8000", "0.2"), ("10000", "10000", "0"), ("10000", "10001", "0"), ("0", "-5", "0")],
)
def test_drawdown_pct(peak: str, equity: str, fall: str) -> None:
    assert drawdown_pct(D(peak), D(equity)) == D(fall)


def test_drawdown_breach_at_the_limit_names_the_drawdown_the_equity_and_the_peak() -> None:
    reason = drawdown_breach(D("12000"), D("10800"), RiskConfig(max_drawdown_pct=D("0.10")))

    assert reason == ("KILL_SWITCH: drawdown 10.00% (equity 10800.00 from the peak 12000.00) "
                      "reached the limit 10.00%")


def test_drawdown_breach_below_the_limit_or_off_then_none() -> None:
    assert drawdown_breach(D("12000"), D("10800.01"), RiskConfig(max_drawdown_pct=D("0.10"))) is None
    assert drawdown_breach(D("12000"), D("0"), RiskConfig(max_drawdown_pct=D("0"))) is None


def test_the_default_limits_have_the_drawdown_on_at_20_percent() -> None:
    assert RiskConfig().max_drawdown_pct == D("0.20")
    assert RiskConfig().mark_report_ms == 1000


# --- the equity watch: the day's start, the peak, observe -------------------------------------------

DAILY_1 = RiskConfig(max_daily_loss_pct=D("0.01"), max_drawdown_pct=D("0"))


def watch(equity: str = "10000", day: str = "2024-03-01", **saved: Any) -> EquityWatch:
    return EquityWatch.start(D(equity), day, **saved)


def test_start_without_anything_saved_begins_the_day_and_the_peak_at_the_equity() -> None:
    assert watch("10000") == EquityWatch(day="2024-03-01", day_start=D("10000"), peak=D("10000"),
                                         equity=D("10000"))


def test_start_on_the_saved_day_keeps_its_start_and_on_another_day_starts_afresh() -> None:
    same = watch("9950", saved_day=("2024-03-01", D("10000")))
    other = watch("9950", saved_day=("2024-02-29", D("10000")))

    assert same.day_start == D("10000")
    assert other.day_start == D("9950")


def test_start_keeps_the_saved_peak_unless_the_equity_is_higher() -> None:
    assert watch("9000", saved_peak=D("11000")).peak == D("11000")
    assert watch("12000", saved_peak=D("11000")).peak == D("12000")


def test_observe_a_loss_within_the_limit_moves_the_equity_only() -> None:
    after, breach = watch().observe(D("9901"), "2024-03-01", DAILY_1)

    assert breach is None
    assert after == EquityWatch(day="2024-03-01", day_start=D("10000"), peak=D("10000"), equity=D("9901"))


def test_observe_a_loss_at_the_daily_limit_is_a_breach() -> None:
    _, breach = watch().observe(D("9900"), "2024-03-01", DAILY_1)

    assert breach is not None and breach.startswith("KILL_SWITCH: daily loss 1.00%")


def test_observe_the_first_trades_loss_counts_against_the_start_fixed_before_it() -> None:
    """The day starts when the engine starts, not at the first observation (a -4 % first trade)."""
    _, breach = watch("10000").observe(D("9600"), "2024-03-01", DAILY_1)

    assert breach is not None and "daily loss 4.00%" in breach


def test_observe_a_new_day_starts_at_the_last_known_equity_so_yesterdays_loss_does_not_count() -> None:
    yesterday, _ = watch().observe(D("9950"), "2024-03-01", DAILY_1)

    today, breach = yesterday.observe(D("9900"), "2024-03-02", DAILY_1)

    assert breach is None  # 0.5 % below 9950
    assert (today.day, today.day_start, today.equity) == ("2024-03-02", D("9950"), D("9900"))


def test_observe_a_loss_first_seen_in_a_new_day_counts_for_that_day() -> None:
    """The new day's start is the equity at the day change, not the (already lower) first
    observation: otherwise a loss made just after midnight would never count."""
    yesterday, _ = watch().observe(D("10000"), "2024-03-01", DAILY_1)

    today, breach = yesterday.observe(D("9800"), "2024-03-02", DAILY_1)

    assert today.day_start == D("10000")
    assert breach is not None and "daily loss 2.00%" in breach


def test_observe_raises_the_peak_and_measures_the_drawdown_from_it_across_days() -> None:
    limits = RiskConfig(max_daily_loss_pct=D("0"), max_drawdown_pct=D("0.10"))
    up, _ = watch().observe(D("12000"), "2024-03-01", limits)
    next_day, breach = up.observe(D("10801"), "2024-03-02", limits)
    assert breach is None and next_day.peak == D("12000")

    _, breach = next_day.observe(D("10800"), "2024-03-03", limits)

    assert breach is not None and breach.startswith("KILL_SWITCH: drawdown 10.00%")


def test_observe_names_the_daily_loss_when_both_limits_are_reached() -> None:
    limits = RiskConfig(max_daily_loss_pct=D("0.01"), max_drawdown_pct=D("0.01"))

    _, breach = watch().observe(D("9000"), "2024-03-01", limits)

    assert breach is not None and breach.startswith("KILL_SWITCH: daily loss")


def test_rebase_peak_restarts_the_peak_at_the_last_equity() -> None:
    fallen, _ = watch().observe(D("7000"), "2024-03-01", DAILY_1)

    assert fallen.rebase_peak().peak == D("7000")


def test_utc_day_of_an_engine_timestamp() -> None:
    assert utc_day(NOW_NS) == "2023-11-14"
    assert utc_day(1_709_251_199_999_000_000) == "2024-02-29"  # the last millisecond before March


def test_day_start_round_trips_and_a_bad_stored_value_is_a_clear_error() -> None:
    assert parse_day_start(format_day_start("2024-03-01", D("10000.50"))) == ("2024-03-01", D("10000.50"))
    with pytest.raises(ValueError, match="risk day start"):
        parse_day_start("2024-03-01 lots")
    with pytest.raises(ValueError, match="risk_equity_peak"):
        parse_equity("NaN", "risk_equity_peak")


def test_vet_condition_refuses_a_trigger_off_the_tick_grid_or_below_one_tick() -> None:
    def vet(trigger: str) -> str | None:
        condition = TradeCondition(coin="BTC", direction="LONG", trigger_price=trigger, trigger_type="ABOVE",
                                   stop_loss_pct="0.02", take_profit_pct="0.015", position_size_usd=500)
        return vet_condition(condition, now_ns=0, known_coins={"BTC"}, market=default_rules("BTC"),
                             last_price=None, limits=RiskConfig())

    assert vet("42000.01") is None
    assert vet("42000.005") == "trigger_price: 42000.005 is not on the tick grid of BTC (0.01)"
    assert vet("0.001") == "trigger_price: 0.001 is below one tick (0.01) of BTC"
