"""state/types.py: number, identifier, enum and time parsing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from state.types import (
    Direction,
    OrderStatus,
    TriggerType,
    client_order_id,
    coin_symbol,
    epoch_ns,
    fraction,
    from_epoch_ns,
    identifier,
    parse_enum,
    positive_decimal,
    to_decimal,
)

# --- to_decimal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, "42"),
        (-7, "-7"),
        ("42000.50", "42000.50"),
        ("  0.02 ", "0.02"),
        (Decimal("1.230"), "1.230"),
        (0.1, "0.1"),
        (142.5, "142.5"),
        (1e-05, "0.00001"),
    ],
)
def test_to_decimal_when_given_int_float_str_or_decimal_then_returns_exact_decimal(
    value: object, expected: str
) -> None:
    result = to_decimal(value, "price")
    assert isinstance(result, Decimal)
    assert result == Decimal(expected)


def test_to_decimal_when_given_float_then_goes_through_repr_not_binary_expansion() -> None:
    result = to_decimal(0.1, "price")
    assert str(result) == "0.1"
    assert result != Decimal(0.1)  # the binary expansion 0.1000000000000000055...


def test_to_decimal_when_given_decimal_then_keeps_its_exponent() -> None:
    assert str(to_decimal(Decimal("0.020"), "stop_loss_pct")) == "0.020"


@pytest.mark.parametrize(
    "value",
    [True, False, None, "abc", "", float("nan"), float("inf"), float("-inf"), "NaN",
     "Infinity", "-Infinity", Decimal("NaN"), Decimal("Infinity"), [1], object()],
    ids=repr,
)
def test_to_decimal_when_not_a_finite_number_then_value_error_names_the_field(
    value: object,
) -> None:
    with pytest.raises(ValueError, match=r"^trigger_price: "):
        to_decimal(value, "trigger_price")


def test_to_decimal_when_refusing_then_message_shows_the_offending_value() -> None:
    with pytest.raises(ValueError, match="'abc'"):
        to_decimal("abc", "price")


# --- positive_decimal and fraction ---------------------------------------------------------


@pytest.mark.parametrize("value", [1, "0.00000001", 0.5, Decimal("42000")])
def test_positive_decimal_when_greater_than_zero_then_accepted(value: object) -> None:
    assert positive_decimal(value, "size") > 0


@pytest.mark.parametrize("value", [0, "0", -1, "-0.01", Decimal("-5")])
def test_positive_decimal_when_zero_or_negative_then_value_error_names_the_field(
    value: object,
) -> None:
    with pytest.raises(ValueError, match=r"^position_size_usd: must be greater than 0"):
        positive_decimal(value, "position_size_usd")


@pytest.mark.parametrize("value", ["0.02", 0.5, "0.999999", Decimal("0.000001")])
def test_fraction_when_strictly_between_zero_and_one_then_accepted(value: object) -> None:
    assert Decimal(0) < fraction(value, "stop_loss_pct") < Decimal(1)


@pytest.mark.parametrize("value", [0, "0", 1, "1", "1.0", 2, -0.1, "-0.02"])
def test_fraction_when_zero_one_or_outside_then_value_error_mentions_fraction(
    value: object,
) -> None:
    with pytest.raises(ValueError, match=r"^stop_loss_pct: .*fraction"):
        fraction(value, "stop_loss_pct")


# --- identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("btc", "BTC"), (" Sol ", "SOL"), ("1000PEPE", "1000PEPE")])
def test_coin_symbol_when_lower_or_padded_then_normalized_to_upper(raw: str, expected: str) -> None:
    assert coin_symbol(raw) == expected


@pytest.mark.parametrize("raw", ["BTC/USDT", "BTC-USDT", "", "   ", "B TC", "X" * 21, 5, None])
def test_coin_symbol_when_pair_or_garbage_then_value_error_names_coin(raw: object) -> None:
    with pytest.raises(ValueError, match=r"^coin: "):
        coin_symbol(raw)


@pytest.mark.parametrize("raw", ["a", "p0123456789abcdef012-E", "A_b-9", "x" * 36])
def test_client_order_id_when_up_to_36_safe_chars_then_accepted(raw: str) -> None:
    assert client_order_id(raw) == raw


@pytest.mark.parametrize("raw", ["", "x" * 37, "has space", "dot.ted", "colon:id", "ü", 12, None])
def test_client_order_id_when_too_long_or_unsafe_chars_then_value_error(raw: object) -> None:
    with pytest.raises(ValueError, match=r"^client_order_id: "):
        client_order_id(raw)


def test_identifier_when_64_chars_then_accepted_and_65_refused() -> None:
    assert identifier("a" * 64, "id") == "a" * 64
    with pytest.raises(ValueError, match=r"^id: "):
        identifier("a" * 65, "id")


# --- enums ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["long", "LONG", "Long", " long ", Direction.LONG])
def test_parse_enum_when_any_case_then_returns_member(raw: object) -> None:
    assert parse_enum(Direction, raw, "direction") is Direction.LONG


def test_parse_enum_when_other_enums_value_then_still_parsed_by_value() -> None:
    assert parse_enum(OrderStatus, "filled", "status") is OrderStatus.FILLED


@pytest.mark.parametrize("raw", ["sideways", "", None, 1, TriggerType.ABOVE])
def test_parse_enum_when_unknown_then_value_error_lists_allowed_values(raw: object) -> None:
    with pytest.raises(ValueError, match=r"^direction: must be one of LONG\|SHORT"):
        parse_enum(Direction, raw, "direction")


# --- time ---------------------------------------------------------------------------------------


def test_epoch_ns_when_aware_utc_then_exact_nanoseconds() -> None:
    moment = datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)
    assert epoch_ns(moment) == 1_704_067_200_123_456_000


def test_epoch_ns_when_aware_in_other_zone_then_same_instant_as_utc() -> None:
    utc = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)
    tokyo = utc.astimezone(timezone(timedelta(hours=9)))
    assert epoch_ns(tokyo) == epoch_ns(utc)


def test_epoch_ns_when_naive_then_read_as_local_time(local_utc_plus_3: timezone) -> None:
    naive = datetime(2024, 1, 1, 12, 0)
    assert epoch_ns(naive) == epoch_ns(naive.replace(tzinfo=local_utc_plus_3))
    # and therefore not as UTC: 12:00 at UTC+3 is three hours before 12:00 UTC
    assert epoch_ns(naive.replace(tzinfo=timezone.utc)) - epoch_ns(naive) == 3 * 3600 * 10**9


def test_from_epoch_ns_when_round_tripped_then_same_instant_as_aware_utc() -> None:
    ns = 1_704_067_200_123_456_000
    moment = from_epoch_ns(ns)
    assert moment.tzinfo is not None
    assert moment == datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)
    assert epoch_ns(moment) == ns
