"""state/market.py: per-coin rules and directional rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from state.market import GENERIC_MARKET, MarketRules, Rounding, default_rules, round_to_increment

D = Decimal


@pytest.mark.parametrize(
    ("value", "increment", "rounding", "expected"),
    [
        ("42000.123", "0.01", Rounding.UP, "42000.13"),
        ("42000.123", "0.01", Rounding.DOWN, "42000.12"),
        ("42000.129", "0.01", Rounding.DOWN, "42000.12"),  # down, not to nearest
        ("42000.121", "0.01", Rounding.UP, "42000.13"),  # up, not to nearest
        ("0.123456", "0.001", Rounding.UP, "0.124"),
        ("0.123456", "0.001", Rounding.DOWN, "0.123"),
        ("17", "5", Rounding.UP, "20"),
        ("17", "5", Rounding.DOWN, "15"),
        ("1.07", "0.25", Rounding.UP, "1.25"),
        ("1.07", "0.25", Rounding.DOWN, "1.00"),
    ],
)
def test_round_to_increment_when_not_aligned_then_rounds_in_stated_direction(
    value: str, increment: str, rounding: Rounding, expected: str
) -> None:
    result = round_to_increment(D(value), D(increment), rounding)
    assert result == D(expected)
    assert str(result) == expected


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize(("value", "increment"), [("42000.12", "0.01"), ("20", "5"), ("1.25", "0.25")])
def test_round_to_increment_when_already_aligned_then_unchanged(
    value: str, increment: str, rounding: Rounding
) -> None:
    assert round_to_increment(D(value), D(increment), rounding) == D(value)


def test_round_to_increment_when_result_then_has_the_increments_exponent() -> None:
    assert str(round_to_increment(D("41160.0000"), D("0.01"), Rounding.UP)) == "41160.00"


def test_round_price_when_market_rules_then_uses_the_tick() -> None:
    rules = MarketRules(coin="BTC", tick_size=D("0.1"), qty_step=D("0.001"), min_notional=D(5))
    assert rules.round_price(D("100.01"), Rounding.UP) == D("100.1")
    assert rules.round_price(D("100.09"), Rounding.DOWN) == D("100.0")


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0.0238095238", "0.02380"), ("0.000019999", "0.00001"), ("0.000009", "0.00000"),
     ("1.23456789", "1.23456"), ("2", "2.00000")],
)
def test_round_qty_down_when_any_quantity_then_rounded_down_to_step(
    quantity: str, expected: str
) -> None:
    rules = default_rules("BTC")
    result = rules.round_qty_down(D(quantity))
    assert result == D(expected)
    assert result <= D(quantity)


def test_default_rules_when_btc_then_binance_futures_filters() -> None:
    rules = default_rules("btc")
    assert rules.coin == "BTC"
    assert rules.tick_size == D("0.01")
    assert rules.qty_step == D("0.00001")
    assert rules.min_notional == D("5")


def test_default_rules_when_unknown_coin_then_generic_rules() -> None:
    rules = default_rules("NEWCOIN")
    assert rules.coin == "NEWCOIN"
    assert rules.tick_size == D(GENERIC_MARKET["tick_size"])
    assert rules.qty_step == D(GENERIC_MARKET["qty_step"])
    assert rules.min_notional == D(GENERIC_MARKET["min_notional"])


def test_default_rules_when_overrides_then_they_replace_only_the_given_fields() -> None:
    rules = default_rules("BTC", {"tick_size": "0.1"})
    assert rules.tick_size == D("0.1")
    assert rules.qty_step == D("0.00001")
    assert rules.min_notional == D("5")


def test_default_rules_when_overrides_given_then_module_defaults_not_mutated() -> None:
    default_rules("BTC", {"tick_size": "0.5"})
    assert default_rules("BTC").tick_size == D("0.01")


@pytest.mark.parametrize(
    ("field", "value"), [("tick_size", "0"), ("qty_step", "-1"), ("min_notional", "-5"),
                         ("tick_size", "abc")]
)
def test_market_rules_when_invalid_field_then_value_error_names_it(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        default_rules("BTC", {field: value})


def test_market_rules_when_coin_is_a_pair_then_value_error() -> None:
    with pytest.raises(ValueError, match=r"^coin:"):
        MarketRules(coin="BTC/USDT", tick_size=D("0.01"), qty_step=D("0.001"), min_notional=D(5))


def test_market_rules_when_zero_min_notional_then_allowed() -> None:
    assert default_rules("BTC", {"min_notional": 0}).min_notional == 0
