"""state/risk.py: vetting a proposed condition, sizing it, daily loss and the kill switch."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from state.config import RiskConfig
from state.market import MarketRules, default_rules
from state.models import TradeCondition
from state.risk import daily_loss_pct, kill_switch_breach, position_size, vet_condition
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


def test_vet_condition_refuses_a_trigger_off_the_tick_grid_or_below_one_tick() -> None:
    def vet(trigger: str) -> str | None:
        condition = TradeCondition(coin="BTC", direction="LONG", trigger_price=trigger, trigger_type="ABOVE",
                                   stop_loss_pct="0.02", take_profit_pct="0.015", position_size_usd=500)
        return vet_condition(condition, now_ns=0, known_coins={"BTC"}, market=default_rules("BTC"),
                             last_price=None, limits=RiskConfig())

    assert vet("42000.01") is None
    assert vet("42000.005") == "trigger_price: 42000.005 is not on the tick grid of BTC (0.01)"
    assert vet("0.001") == "trigger_price: 0.001 is below one tick (0.01) of BTC"
