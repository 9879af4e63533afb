"""state/rules.py: triggers, exit levels, sizing, PnL, slippage and position limits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from state.market import MarketRules
from state.rules import (
    ActiveExposure,
    PositionLimits,
    crosses,
    entry_limit_breach,
    entry_quantity,
    entry_side,
    exit_levels,
    exit_side,
    exit_trigger,
    gross_pnl,
    is_on_reset_side,
    order_size_problem,
    net_pnl,
    slipped_price,
    stop_loss_price,
    take_profit_price,
    taker_fee,
    to_cents,
)
from state.types import Direction, ExitReason, Side, TriggerType

D = Decimal
LONG, SHORT = Direction.LONG, Direction.SHORT
ABOVE, BELOW = TriggerType.ABOVE, TriggerType.BELOW


def cent_market(**overrides: str) -> MarketRules:
    fields = {"coin": "BTC", "tick_size": "0.01", "qty_step": "0.00001", "min_notional": "5"}
    fields.update(overrides)
    return MarketRules(**{k: (D(v) if k != "coin" else v) for k, v in fields.items()})


MARKET = cent_market()


# --- triggers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("price", "fires"), [("41999", False), ("42000", False), ("42000.01", True), ("42001", True)])
def test_crosses_when_above_then_fires_only_strictly_above_the_level(price: str, fires: bool) -> None:
    assert crosses(ABOVE, D("42000"), D(price)) is fires


@pytest.mark.parametrize(("price", "fires"), [("42001", False), ("42000", False), ("41999.99", True), ("41999", True)])
def test_crosses_when_below_then_fires_only_strictly_below_the_level(price: str, fires: bool) -> None:
    assert crosses(BELOW, D("42000"), D(price)) is fires


@pytest.mark.parametrize(
    ("trigger_type", "price", "reset"),
    [(ABOVE, "41999", True), (ABOVE, "42000", True), (ABOVE, "42001", False),
     (BELOW, "42001", True), (BELOW, "42000", True), (BELOW, "41999", False)],
)
def test_is_on_reset_side_when_at_or_beyond_the_level_then_true(
    trigger_type: TriggerType, price: str, reset: bool
) -> None:
    assert is_on_reset_side(trigger_type, D("42000"), D(price)) is reset


def test_sides_when_direction_given_then_entry_and_exit_are_opposite() -> None:
    assert (entry_side(LONG), exit_side(LONG)) == (Side.BUY, Side.SELL)
    assert (entry_side(SHORT), exit_side(SHORT)) == (Side.SELL, Side.BUY)


# --- exit levels ----------------------------------------------------------------------------


def test_stop_loss_price_when_long_42000_with_2_pct_then_exactly_41160() -> None:
    stop = stop_loss_price(LONG, D("42000"), D("0.02"), MARKET)
    assert stop == D("41160")
    assert str(stop) == "41160.00"


def test_stop_loss_price_when_short_42000_with_2_pct_then_exactly_42840() -> None:
    assert stop_loss_price(SHORT, D("42000"), D("0.02"), MARKET) == D("42840")


def test_take_profit_price_when_aligned_then_exact() -> None:
    assert take_profit_price(LONG, D("42000"), D("0.03"), MARKET) == D("43260")
    assert take_profit_price(SHORT, D("42000"), D("0.03"), MARKET) == D("40740")


# entry 100.37 with 1.5 %: 100.37 * 0.985 = 98.86445 and 100.37 * 1.015 = 101.87555
def test_stop_loss_price_when_long_and_not_aligned_then_rounds_up_toward_entry() -> None:
    assert stop_loss_price(LONG, D("100.37"), D("0.015"), MARKET) == D("98.87")


def test_stop_loss_price_when_short_and_not_aligned_then_rounds_down_toward_entry() -> None:
    assert stop_loss_price(SHORT, D("100.37"), D("0.015"), MARKET) == D("101.87")


def test_take_profit_price_when_long_and_not_aligned_then_rounds_down_toward_entry() -> None:
    assert take_profit_price(LONG, D("100.37"), D("0.015"), MARKET) == D("101.87")


def test_take_profit_price_when_short_and_not_aligned_then_rounds_up_toward_entry() -> None:
    assert take_profit_price(SHORT, D("100.37"), D("0.015"), MARKET) == D("98.87")


def test_exit_levels_when_normal_pcts_then_equal_the_separate_rules() -> None:
    stop, target = exit_levels(LONG, D("100.37"), D("0.015"), D("0.015"), MARKET)
    assert (stop, target) == (D("98.87"), D("101.87"))


@pytest.mark.parametrize("pct", ["0.00001", "0.00004999", "0.0000001"])
def test_exit_levels_when_pct_narrower_than_a_tick_then_levels_one_tick_off_entry(pct: str) -> None:
    entry = D("100.00")
    long_stop, long_target = exit_levels(LONG, entry, D(pct), D(pct), MARKET)
    assert long_stop == D("99.99")
    assert long_target == D("100.01")
    short_stop, short_target = exit_levels(SHORT, entry, D(pct), D(pct), MARKET)
    assert short_stop == D("100.01")
    assert short_target == D("99.99")


@pytest.mark.parametrize("direction", [LONG, SHORT])
@pytest.mark.parametrize("entry", ["42000", "100.37", "0.05", "1"])
@pytest.mark.parametrize("pct", ["0.000001", "0.0001", "0.02", "0.5"])
def test_exit_levels_when_any_pct_then_never_on_or_through_entry(
    direction: Direction, entry: str, pct: str
) -> None:
    price = D(entry)
    stop, target = exit_levels(direction, price, D(pct), D(pct), MARKET)
    if direction is LONG:
        assert stop < price < target
    else:
        assert target < price < stop


# --- exit trigger ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "price", "expected"),
    [
        (LONG, "41160", ExitReason.STOP_LOSS),
        (LONG, "41000", ExitReason.STOP_LOSS),
        (LONG, "41160.01", None),
        (LONG, "43259.99", None),
        (LONG, "43260", ExitReason.TAKE_PROFIT),
        (LONG, "44000", ExitReason.TAKE_PROFIT),
    ],
)
def test_exit_trigger_when_long_price_reaches_a_level_then_that_reason(
    direction: Direction, price: str, expected: ExitReason | None
) -> None:
    assert exit_trigger(direction, D(price), D("41160"), D("43260")) is expected


@pytest.mark.parametrize(
    ("price", "expected"),
    [("42840", ExitReason.STOP_LOSS), ("43000", ExitReason.STOP_LOSS), ("42839.99", None),
     ("40740.01", None), ("40740", ExitReason.TAKE_PROFIT), ("40000", ExitReason.TAKE_PROFIT)],
)
def test_exit_trigger_when_short_price_reaches_a_level_then_that_reason(
    price: str, expected: ExitReason | None
) -> None:
    assert exit_trigger(SHORT, D(price), D("42840"), D("40740")) is expected


@pytest.mark.parametrize(
    ("direction", "stop", "target"), [(LONG, "105", "95"), (SHORT, "95", "105")]
)
def test_exit_trigger_when_price_satisfies_both_levels_then_stop_checked_first(
    direction: Direction, stop: str, target: str
) -> None:
    assert exit_trigger(direction, D("100"), D(stop), D(target)) is ExitReason.STOP_LOSS


@pytest.mark.parametrize("direction", [LONG, SHORT])
def test_exit_trigger_when_no_levels_then_none(direction: Direction) -> None:
    assert exit_trigger(direction, D("1"), None, None) is None
    assert exit_trigger(direction, D("1000000"), None, None) is None


# --- money ------------------------------------------------------------------------------------


def test_gross_pnl_when_long_then_quantity_times_price_minus_entry() -> None:
    assert gross_pnl(LONG, D("2"), D("100"), D("110")) == D("20")
    assert gross_pnl(LONG, D("2"), D("100"), D("90")) == D("-20")


def test_gross_pnl_when_short_then_quantity_times_entry_minus_price() -> None:
    assert gross_pnl(SHORT, D("2"), D("100"), D("90")) == D("20")
    assert gross_pnl(SHORT, D("2"), D("100"), D("110")) == D("-20")


def test_net_pnl_when_fees_then_subtracted_from_gross_for_both_directions() -> None:
    assert net_pnl(LONG, D("0.5"), D("42000"), D("43000"), D("21.25")) == D("478.75")
    assert net_pnl(SHORT, D("0.5"), D("42000"), D("43000"), D("21.25")) == D("-521.25")


def test_taker_fee_when_notional_then_fee_rate_times_notional() -> None:
    assert taker_fee(D("0.5"), D("42000"), D("0.0005")) == D("10.5")


def test_to_cents_when_sub_cent_amount_then_quantized_to_two_places() -> None:
    assert str(to_cents(D("1.5"))) == "1.50"


@pytest.mark.parametrize(
    ("size", "price", "expected"),
    [("1000", "42000", "0.02380"), ("500", "142.5", "3.50877"), ("100", "3", "33.33333")],
)
def test_entry_quantity_when_not_divisible_then_rounded_down_to_step(
    size: str, price: str, expected: str
) -> None:
    quantity = entry_quantity(D(size), D(price), MARKET)
    assert quantity == D(expected)
    assert quantity * D(price) <= D(size)


def test_entry_quantity_when_step_is_coarse_then_never_exceeds_budget() -> None:
    market = cent_market(qty_step="1")
    assert entry_quantity(D("99"), D("10"), market) == D("9")


@pytest.mark.parametrize(
    ("quantity", "price", "meets"),
    [("0.5", "10", True), ("0.499", "10", False), ("1", "5", True), ("0", "100", False),
     ("0.00001", "42000", False)],
)
def test_order_size_problem_when_notional_at_or_above_minimum_then_none(
    quantity: str, price: str, meets: bool
) -> None:
    assert (order_size_problem(D(quantity), D(price), MARKET) is None) is meets


def test_order_size_problem_when_quantity_zero_and_minimum_zero_then_still_a_problem() -> None:
    problem = order_size_problem(D(0), D("100"), cent_market(min_notional="0"))
    assert problem == "rounds to no quantity at all (quantity step 0.00001, minimum notional 0)"


def test_order_size_problem_when_below_the_minimum_quantity_then_it_says_so() -> None:
    market = cent_market(qty_step="0.0001", min_qty="0.001", min_notional="10")
    assert order_size_problem(D("0.0009"), D("42000"), market) == "0.0009 is below the minimum quantity 0.001"
    assert order_size_problem(D("0.001"), D("42000"), market) is None


def test_order_size_problem_when_below_the_minimum_notional_then_it_names_both_numbers() -> None:
    assert order_size_problem(D("0.0001"), D("42000"), MARKET) == \
        "0.0001 x 42000 is below the minimum notional 5"


# --- slippage -----------------------------------------------------------------------------------


def test_slipped_price_when_buy_then_moves_up_by_bps() -> None:
    assert slipped_price(Side.BUY, D("42000"), D("5"), MARKET) == D("42021")


def test_slipped_price_when_sell_then_moves_down_by_bps() -> None:
    assert slipped_price(Side.SELL, D("42000"), D("5"), MARKET) == D("41979")


# 100.01 * 5 bps = 0.050005: a buy at 100.060005 pays 100.07, a sell at 99.959995 gets 99.95
def test_slipped_price_when_buy_not_aligned_then_rounds_up_against_trader() -> None:
    assert slipped_price(Side.BUY, D("100.01"), D("5"), MARKET) == D("100.07")


def test_slipped_price_when_sell_not_aligned_then_rounds_down_against_trader() -> None:
    assert slipped_price(Side.SELL, D("100.01"), D("5"), MARKET) == D("99.95")


@pytest.mark.parametrize("side", list(Side))
def test_slipped_price_when_zero_bps_and_aligned_then_unchanged(side: Side) -> None:
    assert slipped_price(side, D("100.01"), D("0"), MARKET) == D("100.01")


# --- position limits ------------------------------------------------------------------------------


def exposures(*pairs: tuple[str, str]) -> list[ActiveExposure]:
    return [ActiveExposure(coin, D(usd)) for coin, usd in pairs]


LIMITS = PositionLimits(max_positions=3, max_per_coin=1, max_exposure_pct=D("0.10"))
BALANCE = D("10000")  # exposure cap 1000


def test_entry_limit_breach_when_within_all_limits_then_none() -> None:
    active = exposures(("ETH", "300"), ("SOL", "200"))
    assert entry_limit_breach("BTC", D("400"), active, BALANCE, LIMITS) is None


def test_entry_limit_breach_when_nothing_active_then_none() -> None:
    assert entry_limit_breach("BTC", D("1000"), [], BALANCE, LIMITS) is None


def test_entry_limit_breach_when_max_positions_reached_then_names_max_positions() -> None:
    active = exposures(("ETH", "10"), ("SOL", "10"), ("XRP", "10"))
    reason = entry_limit_breach("BTC", D("10"), active, BALANCE, LIMITS)
    assert reason is not None and reason.startswith("max_positions:")


def test_entry_limit_breach_when_one_below_max_positions_then_allowed() -> None:
    active = exposures(("ETH", "10"), ("SOL", "10"))
    assert entry_limit_breach("BTC", D("10"), active, BALANCE, LIMITS) is None


def test_entry_limit_breach_when_coin_already_active_then_names_max_per_coin() -> None:
    reason = entry_limit_breach("BTC", D("10"), exposures(("BTC", "10")), BALANCE, LIMITS)
    assert reason is not None and reason.startswith("max_per_coin:")


def test_entry_limit_breach_when_max_per_coin_two_then_second_on_coin_allowed() -> None:
    limits = PositionLimits(max_positions=5, max_per_coin=2, max_exposure_pct=D("0.5"))
    assert entry_limit_breach("BTC", D("10"), exposures(("BTC", "10")), BALANCE, limits) is None
    active = exposures(("BTC", "10"), ("BTC", "10"))
    assert entry_limit_breach("BTC", D("10"), active, BALANCE, limits).startswith("max_per_coin:")


def test_entry_limit_breach_when_open_pending_and_new_exceed_cap_then_names_max_exposure_pct() -> None:
    active = exposures(("ETH", "600"), ("SOL", "300"))  # 900 open or pending
    reason = entry_limit_breach("BTC", D("100.01"), active, BALANCE, LIMITS)
    assert reason is not None and reason.startswith("max_exposure_pct:")


def test_entry_limit_breach_when_exactly_at_exposure_cap_then_allowed() -> None:
    active = exposures(("ETH", "600"), ("SOL", "300"))
    assert entry_limit_breach("BTC", D("100"), active, BALANCE, LIMITS) is None


def test_entry_limit_breach_when_new_entry_alone_exceeds_cap_then_refused() -> None:
    reason = entry_limit_breach("BTC", D("1000.01"), [], BALANCE, LIMITS)
    assert reason is not None and reason.startswith("max_exposure_pct:")


def test_entry_limit_breach_when_active_is_a_generator_then_counted_once() -> None:
    active = (e for e in exposures(("ETH", "600"), ("SOL", "300")))
    assert entry_limit_breach("BTC", D("100"), active, BALANCE, LIMITS) is None


def test_position_limits_when_defaults_then_valid() -> None:
    limits = PositionLimits()
    assert (limits.max_positions, limits.max_per_coin, limits.max_exposure_pct) == (5, 1, D("0.10"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_positions", 0), ("max_positions", -1), ("max_per_coin", 0),
     ("max_exposure_pct", D("0")), ("max_exposure_pct", D("-0.1")), ("max_exposure_pct", D("1.01"))],
)
def test_position_limits_when_out_of_range_then_value_error_names_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        PositionLimits(**{field: value})


def test_position_limits_when_exposure_pct_is_one_then_allowed() -> None:
    assert PositionLimits(max_exposure_pct=D("1")).max_exposure_pct == 1
