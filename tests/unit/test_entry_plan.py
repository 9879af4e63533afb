"""Entry plans: limit price with offset, plan B, scale-in legs, and the condition's validation."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from state.entry_plan import (
    EntryType,
    Legs,
    PlanB,
    entry_limit_price,
    executable_price,
    plan_b,
    scale_in_level,
    split_legs,
)
from state.market import MarketRules
from state.models import TradeCondition
from state.store import decode, encode
from state.types import Direction

BTC = MarketRules(coin="BTC", tick_size=D("0.10"), qty_step=D("0.001"), min_notional=D("5"))


def condition(**entry: object) -> TradeCondition:
    return TradeCondition(coin="BTC", direction="LONG", trigger_price="30000", trigger_type="ABOVE",
                          stop_loss_pct="0.02", take_profit_pct="0.03", position_size_usd="500", **entry)


# --- limit price ---------------------------------------------------------------------------------

def test_limit_price_when_no_offset_then_the_trigger() -> None:
    assert entry_limit_price(Direction.LONG, D("30000"), BTC) == D("30000.0")


def test_limit_price_when_offset_in_ticks_then_beyond_the_trigger_for_both_sides() -> None:
    assert entry_limit_price(Direction.LONG, D("30000"), BTC, offset_ticks=3) == D("30000.3")
    assert entry_limit_price(Direction.SHORT, D("30000"), BTC, offset_ticks=3) == D("29999.7")


def test_limit_price_when_negative_offset_then_better_than_the_trigger() -> None:
    assert entry_limit_price(Direction.LONG, D("30000"), BTC, offset_ticks=-2) == D("29999.8")
    assert entry_limit_price(Direction.SHORT, D("30000"), BTC, offset_ticks=-2) == D("30000.2")


def test_limit_price_when_offset_is_a_fraction_then_rounded_in_the_traders_favor() -> None:
    # 30000.05 * 1.0001 = 30003.050005: a buy rounds down, a sell up
    assert entry_limit_price(Direction.LONG, D("30000.05"), BTC, offset_pct=D("0.0001")) == D("30003.0")
    # 30000.05 * (1 - 0.0001) = 29997.049995 -> sell rounds up to 29997.1
    assert entry_limit_price(Direction.SHORT, D("30000.05"), BTC, offset_pct=D("0.0001")) == D("29997.1")


def test_limit_price_when_it_would_not_be_positive_then_value_error() -> None:
    with pytest.raises(ValueError, match="not a price"):
        entry_limit_price(Direction.LONG, D("0.2"), BTC, offset_ticks=-5)


# --- plan B ----------------------------------------------------------------------------------------

def test_plan_b_when_within_distance_against_the_trader_then_take() -> None:
    assert plan_b(Direction.LONG, D("30000"), D("30015"), D("0.0005")) is PlanB.TAKE  # 15 <= 15
    assert plan_b(Direction.SHORT, D("30000"), D("29985"), D("0.0005")) is PlanB.TAKE


def test_plan_b_when_beyond_distance_then_cancel() -> None:
    assert plan_b(Direction.LONG, D("30000"), D("30015.1"), D("0.0005")) is PlanB.CANCEL
    assert plan_b(Direction.SHORT, D("30000"), D("29984.9"), D("0.0005")) is PlanB.CANCEL


def test_plan_b_when_price_better_than_trigger_then_take() -> None:
    assert plan_b(Direction.LONG, D("30000"), D("29900"), D("0")) is PlanB.TAKE


def test_plan_b_when_no_distance_configured_then_always_cancel() -> None:
    assert plan_b(Direction.LONG, D("30000"), D("30000"), None) is PlanB.CANCEL


def test_executable_price_when_quote_then_the_side_that_takes_else_last() -> None:
    assert executable_price(Direction.LONG, bid=D("99"), ask=D("101"), last=D("100")) == D("101")
    assert executable_price(Direction.SHORT, bid=D("99"), ask=D("101"), last=D("100")) == D("99")
    assert executable_price(Direction.LONG, bid=None, ask=None, last=D("100")) == D("100")


# --- scale-in --------------------------------------------------------------------------------------

def test_split_legs_when_fraction_then_second_leg_rounded_down_to_the_step() -> None:
    assert split_legs(D("0.017"), D("0.5"), BTC, D("30000")) == Legs(D("0.009"), D("0.008"))


def test_split_legs_when_a_leg_would_be_below_min_notional_then_no_split() -> None:
    assert split_legs(D("0.0003"), D("0.5"), BTC, D("30000")) == Legs(D("0.0003"), D("0"))


def test_split_legs_when_no_scale_in_then_one_leg() -> None:
    assert split_legs(D("0.017"), None, BTC, D("30000")) == Legs(D("0.017"), D("0"))


def test_scale_in_level_when_long_then_below_rounded_down_and_short_above_rounded_up() -> None:
    assert scale_in_level(Direction.LONG, D("30000.05"), D("0.01"), BTC) == D("29700.0")
    assert scale_in_level(Direction.SHORT, D("30000.05"), D("0.01"), BTC) == D("30300.1")


# --- the condition's fields --------------------------------------------------------------------------

def test_condition_when_no_entry_fields_then_market() -> None:
    assert condition().entry_type is EntryType.MARKET
    assert not condition().limit_entry


def test_condition_when_limit_with_everything_then_parsed_and_survives_the_store_codec() -> None:
    c = condition(entry_type="limit", entry_offset_ticks="2", entry_timeout_s=30, entry_plan_b_pct="0.001",
                  scale_in_fraction=0.5, scale_in_pullback_pct="0.01", scale_in_timeout_s=600)
    assert c.entry_type is EntryType.LIMIT and c.entry_offset_ticks == 2
    assert c.scale_in_fraction == D("0.5")
    assert decode(TradeCondition, encode(c)) == c


@pytest.mark.parametrize(("fields", "named"), [
    ({"entry_offset_ticks": 2}, "entry_offset_ticks"),
    ({"entry_timeout_s": 10}, "entry_timeout_s"),
    ({"entry_plan_b_pct": "0.001"}, "entry_plan_b_pct"),
    ({"entry_type": "limit"}, "entry_timeout_s"),
    ({"entry_type": "limit", "entry_timeout_s": 0}, "entry_timeout_s"),
    ({"entry_type": "limit", "entry_timeout_s": 1.5}, "entry_timeout_s"),
    ({"entry_type": "limit", "entry_timeout_s": True}, "entry_timeout_s"),
    ({"entry_type": "limit", "entry_timeout_s": 5, "entry_offset_ticks": 1, "entry_offset_pct": "0.001"},
     "entry_offset_pct"),
    ({"entry_type": "limit", "entry_timeout_s": 5, "entry_offset_pct": "0.5"}, "entry_offset_pct"),
    ({"entry_type": "limit", "entry_timeout_s": 5, "entry_offset_ticks": 10**6}, "entry_offset_ticks"),
    ({"entry_type": "limit", "entry_timeout_s": 5, "entry_plan_b_pct": "-0.001"}, "entry_plan_b_pct"),
    ({"entry_type": "stop"}, "entry_type"),
    ({"scale_in_fraction": "1"}, "scale_in_fraction"),
    ({"scale_in_fraction": "0.5"}, "scale_in_pullback_pct"),
    ({"scale_in_fraction": "0.5", "scale_in_pullback_pct": "0.01"}, "scale_in_timeout_s"),
    ({"scale_in_pullback_pct": "0.01"}, "scale_in_pullback_pct"),
    ({"scale_in_fraction": "NaN"}, "scale_in_fraction"),
])
def test_condition_when_entry_plan_unusable_then_value_error_names_the_field(fields: dict, named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named}:"):
        condition(**fields)
