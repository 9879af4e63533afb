"""state/bars.py: the Bar value and the per-coin BarBuilder (pure, no threads)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from state.bars import Bar, BarBuilder, bar_start, next_close_ms

D = Decimal
MINUTE = 60_000


def bar(**overrides: Any) -> Bar:
    fields: dict[str, Any] = {
        "coin": "BTC", "start_ms": 0, "end_ms": MINUTE, "open": "100", "high": "105",
        "low": "95", "close": "101", "volume": "3", "trades": 3,
    }
    fields.update(overrides)
    return Bar(**fields)


# --- Bar -------------------------------------------------------------------------------------


def test_bar_when_valid_then_numbers_are_decimal_and_the_coin_is_normalized() -> None:
    made = bar(coin=" btc ", open=100.5, high="105", low=95, close=D("101"))

    assert made.coin == "BTC"
    assert (made.open, made.high, made.low, made.close) == (D("100.5"), D("105"), D("95"), D("101"))
    assert all(isinstance(v, Decimal) for v in (made.open, made.high, made.low, made.close))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"coin": "not a coin!"}, "coin"),
        ({"open": "-1"}, "open"),
        ({"high": "0"}, "high"),
        ({"low": "nan"}, "low"),
        ({"close": "abc"}, "close"),
        ({"end_ms": 0}, "end_ms"),
        ({"end_ms": -5}, "end_ms"),
        ({"high": "100.5"}, "high/low"),  # close 101 above the high
        ({"low": "100.5"}, "high/low"),  # open 100 below the low
    ],
)
def test_bar_when_a_field_is_bad_then_value_error_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as raised:
        bar(**overrides)

    assert str(raised.value).startswith(f"{field}:"), str(raised.value)


def test_bar_is_frozen() -> None:
    made = bar()
    with pytest.raises(AttributeError):
        made.close = D("1")  # type: ignore[misc]


# --- BarBuilder -------------------------------------------------------------------------------


def feed(builder: BarBuilder, *ticks: tuple[str, str, int] | tuple[str, str, int, str]) -> list[Bar]:
    """Feed ``(coin, price, ts_ms[, qty])`` ticks; the bars they closed, in order."""
    closed = []
    for coin, price, ts_ms, *qty in ticks:
        made = builder.on_tick(coin, D(price), D(qty[0] if qty else "0"), ts_ms)
        if made is not None:
            closed.append(made)
    return closed


@pytest.mark.parametrize("seconds", [0, -60])
def test_builder_when_bar_seconds_below_one_then_value_error_names_it(seconds: int) -> None:
    with pytest.raises(ValueError, match="^bar_seconds:"):
        BarBuilder(seconds)


@pytest.mark.parametrize(
    ("ts_ms", "start"), [(0, 0), (59_999, 0), (60_000, 60_000), (61_500, 60_000), (1_700_000_012_345, 1_699_999_980_000)]
)
def test_bar_start_is_aligned_to_the_epoch(ts_ms: int, start: int) -> None:
    assert bar_start(ts_ms, MINUTE) == start


def test_builder_when_the_first_tick_is_mid_minute_then_its_bar_starts_on_the_minute() -> None:
    builder = BarBuilder(60)

    assert builder.on_tick("BTC", D("100"), D("1"), 61_500) is None
    assert builder.open_bar_start("BTC") == 60_000
    assert builder.open_bar_start("ETH") is None

    (closed,) = feed(builder, ("BTC", "101", 120_000))
    assert (closed.start_ms, closed.end_ms) == (60_000, 120_000)


def test_builder_when_a_tick_is_one_ms_before_the_end_then_the_bar_stays_open() -> None:
    builder = BarBuilder(60)

    assert feed(builder, ("BTC", "100", 60_000), ("BTC", "101", 119_999)) == []
    assert builder.open_bar_start("BTC") == 60_000


def test_builder_when_a_tick_reaches_the_end_then_the_bar_closes_without_that_tick() -> None:
    builder = BarBuilder(60)
    feed(builder, ("BTC", "100", 60_000, "1"), ("BTC", "101", 119_999, "2"))

    closed = builder.on_tick("BTC", D("999"), D("50"), 120_000)

    assert closed is not None
    assert (closed.close, closed.high, closed.volume, closed.trades) == (D("101"), D("101"), D("3"), 2)
    assert builder.open_bar_start("BTC") == 120_000, "the closing tick opens the next bar"
    (following,) = feed(builder, ("BTC", "1000", 180_000))
    assert (following.open, following.volume, following.trades) == (D("999"), D("50"), 1)


def test_builder_ohlc_volume_and_trades_are_exact_decimals() -> None:
    builder = BarBuilder(60)
    feed(
        builder,
        ("BTC", "100.10", 60_000, "0.1"),
        ("BTC", "100.30", 60_001, "0.2"),
        ("BTC", "99.90", 60_002, "0.3"),
        ("BTC", "100.20", 60_003, "0.00000001"),
    )

    (closed,) = feed(builder, ("BTC", "1", 120_000))

    assert closed == Bar(
        coin="BTC", start_ms=60_000, end_ms=120_000, open=D("100.10"), high=D("100.30"),
        low=D("99.90"), close=D("100.20"), volume=D("0.60000001"), trades=4, closed_at_ms=120_000,
    )
    assert str(closed.volume) == "0.60000001", "no float on the way"


def test_builder_when_a_single_tick_bar_closes_then_open_high_low_close_are_that_price() -> None:
    builder = BarBuilder(60)
    feed(builder, ("ETH", "3400.5", 0, "2"))

    (closed,) = feed(builder, ("ETH", "3401", 60_000))

    assert {closed.open, closed.high, closed.low, closed.close} == {D("3400.5")}
    assert (closed.volume, closed.trades) == (D("2"), 1)


def test_builder_when_minutes_have_no_trade_then_no_empty_bar_is_made() -> None:
    builder = BarBuilder(60)
    feed(builder, ("BTC", "100", 60_000))

    closed = feed(builder, ("BTC", "101", 300_500))  # three silent minutes

    assert [(b.start_ms, b.end_ms) for b in closed] == [(60_000, 120_000)]
    assert builder.open_bar_start("BTC") == 300_000
    (later,) = feed(builder, ("BTC", "102", 360_000))
    assert (later.start_ms, later.end_ms, later.open) == (300_000, 360_000, D("101"))


def test_builder_coins_are_independent() -> None:
    builder = BarBuilder(60)
    closed = feed(
        builder,
        ("BTC", "100", 60_000),
        ("ETH", "10", 60_500),
        ("BTC", "101", 120_000),  # closes BTC only
        ("ETH", "11", 119_000),  # ETH is still in its first bar
        ("ETH", "12", 180_000),  # closes ETH's bar
    )

    assert [(b.coin, b.start_ms, b.close) for b in closed] == [("BTC", 60_000, D("100")), ("ETH", 60_000, D("11"))]
    assert builder.open_bar_start("BTC") == 120_000
    assert builder.open_bar_start("ETH") == 180_000


def test_builder_bar_seconds_other_than_a_minute() -> None:
    builder = BarBuilder(5)
    closed = feed(builder, ("BTC", "1", 4_999), ("BTC", "2", 5_000), ("BTC", "3", 9_999), ("BTC", "4", 10_000))

    assert [(b.start_ms, b.end_ms, b.open, b.close) for b in closed] == [
        (0, 5_000, D("1"), D("1")), (5_000, 10_000, D("2"), D("3")),
    ]


def test_builder_when_a_tick_is_older_than_the_open_bar_then_value_error_and_the_bar_is_kept() -> None:
    builder = BarBuilder(60)
    feed(builder, ("BTC", "100", 120_000), ("BTC", "101", 130_000))

    with pytest.raises(ValueError, match="^ts_ms:"):
        builder.on_tick("BTC", D("50"), D("1"), 119_999)

    assert builder.open_bar_start("BTC") == 120_000
    (closed,) = feed(builder, ("BTC", "102", 180_000))
    assert (closed.low, closed.close, closed.trades) == (D("100"), D("101"), 2), "the refused tick left no trace"


# --- volume and trades: quantities, validated like every other (DESIGN.md section 4) ------------


def test_bar_volume_becomes_a_decimal() -> None:
    assert bar(volume="3.5").volume == D("3.5")
    assert isinstance(bar(volume="3.5").volume, Decimal)


@pytest.mark.parametrize("volume", ["nan", "-1", "lots"])
def test_bar_when_volume_is_bad_then_value_error_names_volume(volume: str) -> None:
    with pytest.raises(ValueError, match="^volume:"):
        bar(volume=volume)


def test_bar_when_trades_is_negative_then_value_error_names_trades() -> None:
    with pytest.raises(ValueError, match="^trades:"):
        bar(trades=-1)


def test_next_close_after_a_gap_is_the_end_of_the_bar_the_closing_tick_opened() -> None:
    builder = BarBuilder(60)
    feed(builder, ("BTC", "100", 60_000))
    (closed,) = feed(builder, ("BTC", "101", 200_000))  # nothing traded for two minutes
    assert closed.closed_at_ms == 200_000
    assert next_close_ms(closed, 60_000) == 240_000
    assert next_close_ms(replace(closed, closed_at_ms=None), 60_000) == closed.end_ms + 60_000
