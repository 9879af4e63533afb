"""adapters/venues/paper.py: fills, slippage, fees, stale prices, idempotency and its ledger."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import FakeClock
from adapters.errors import InvalidOrder, PriceUnavailable
from adapters.venues.paper import PaperExchange
from state.market import default_rules
from state.messages import OrderRequest
from state.order import VenueReport
from state.rules import slipped_price
from state.store import Store
from state.types import OrderIntent, OrderStatus, Side

D = Decimal
NOW_MS = 1_700_000_000_000


def order(client_order_id: str = "p0001-E", *, side: Side = Side.BUY, price: Any = "42000.05",
          quantity: Any = "0.01", coin: str = "BTC", ts_ms: int = NOW_MS) -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id, position_id=client_order_id.split("-")[0], coin=coin, side=side,
        quantity=D(str(quantity)), intent=OrderIntent.ENTRY if side is Side.BUY else OrderIntent.EXIT,
        reference_price=D(str(price)), reference_ts_ms=ts_ms,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW_MS * 1_000_000)


def exchange(clock: FakeClock, *, slippage_bps: Any = "0", fee: Any = "0", max_age: float = 60.0,
             ledger: Any = None) -> PaperExchange:
    return PaperExchange(clock=clock, markets=default_rules, slippage_bps=D(str(slippage_bps)),
                         taker_fee_rate=D(str(fee)), max_price_age_s=max_age, ledger=ledger)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[Store]]:
    opened: list[Store] = []
    yield opened
    for store in opened:
        store.close()


# --- fills ------------------------------------------------------------------------------------


def test_fill_without_slippage_is_at_the_reference_price_whole_with_the_fee_on_the_notional(clock) -> None:
    venue = exchange(clock, fee="0.0005")

    report = venue.submit_order(order(price="42000.05", quantity="0.02"))

    assert report.status is OrderStatus.FILLED
    assert report.client_order_id == "p0001-E"
    assert (report.fill_price, report.fill_quantity) == (D("42000.05"), D("0.02"))
    assert report.fee == D("0.02") * D("42000.05") * D("0.0005") == D("0.420000500")
    assert report.ts_ms == NOW_MS
    assert report.trade_id and report.venue_order_id.startswith("paper-")


def test_buy_pays_up_by_the_slippage_rounded_up_to_the_tick(clock) -> None:
    venue = exchange(clock, slippage_bps="10")

    report = venue.submit_order(order(side=Side.BUY, price="42000.05"))

    # 42000.05 x 1.001 = 42042.05005, rounded up (against the buyer) to 42042.06.
    assert report.fill_price == D("42042.06")
    assert report.fill_price == slipped_price(Side.BUY, D("42000.05"), D("10"), default_rules("BTC"))


def test_sell_receives_less_by_the_slippage_rounded_down_to_the_tick(clock) -> None:
    venue = exchange(clock, slippage_bps="10")

    report = venue.submit_order(order("p0001-X1", side=Side.SELL, price="42000.05"))

    # 42000.05 x 0.999 = 41958.04995, rounded down (against the seller) to 41958.04.
    assert report.fill_price == D("41958.04")


def test_fee_is_charged_on_the_slipped_notional(clock) -> None:
    venue = exchange(clock, slippage_bps="10", fee="0.001")

    report = venue.submit_order(order(price="42000.05", quantity="0.5"))

    assert report.fee == D("0.5") * D("42042.06") * D("0.001")


def test_tick_size_of_the_coin_is_used_for_rounding(clock) -> None:
    venue = exchange(clock, slippage_bps="1")

    report = venue.submit_order(order(coin="SOL", price="145.123", quantity="1"))

    # SOL ticks are 0.001: 145.123 x 1.0001 = 145.1375123 -> up to 145.138.
    assert report.fill_price == D("145.138")


# --- stale prices -------------------------------------------------------------------------------


def test_reference_older_than_max_price_age_is_refused_as_price_unavailable(clock) -> None:
    venue = exchange(clock, max_age=60)
    clock.advance(61)

    with pytest.raises(PriceUnavailable, match="PRICE_UNAVAILABLE") as raised:
        venue.submit_order(order(ts_ms=NOW_MS))

    assert isinstance(raised.value, InvalidOrder), "the Executor treats it as a refusal"
    assert "61.0s old" in str(raised.value)
    recorded = venue.fetch_order("p0001-E")
    assert recorded is not None and recorded.status is OrderStatus.REJECTED
    assert recorded.fill_price is None and recorded.fee is None


def test_reference_exactly_max_price_age_old_still_fills(clock) -> None:
    venue = exchange(clock, max_age=60)
    clock.advance(60)

    report = venue.submit_order(order(ts_ms=NOW_MS))

    assert report.status is OrderStatus.FILLED
    assert report.ts_ms == NOW_MS + 60_000, "the fill is stamped with the venue's (engine) time"


def test_reference_in_the_future_of_the_engine_clock_fills_stamped_no_earlier_than_it(clock) -> None:
    venue = exchange(clock)

    report = venue.submit_order(order(ts_ms=NOW_MS + 500))

    assert report.status is OrderStatus.FILLED
    assert report.ts_ms == NOW_MS + 500


def test_a_refused_id_is_never_filled_later_even_with_a_fresh_price(clock) -> None:
    venue = exchange(clock, max_age=60)
    clock.advance(120)
    with pytest.raises(PriceUnavailable):
        venue.submit_order(order(ts_ms=NOW_MS))

    fresh = order(ts_ms=NOW_MS + 120_000)  # same client order id, now a fresh reference
    try:
        again: VenueReport | None = venue.submit_order(fresh)
    except PriceUnavailable:
        again = venue.fetch_order(fresh.client_order_id)

    assert again is not None and again.status is OrderStatus.REJECTED


# --- idempotency ---------------------------------------------------------------------------------


def test_five_submissions_of_one_id_make_one_order_and_one_fill(clock) -> None:
    venue = exchange(clock, slippage_bps="5", fee="0.0005")
    first = venue.submit_order(order())

    clock.advance(10)  # later submissions would otherwise fill at another time
    others = [venue.submit_order(order()) for _ in range(4)]

    assert all(report == first for report in others)
    assert venue.submissions["p0001-E"] == 5
    assert venue.placed_order_ids() == ["p0001-E"]
    assert venue.fetch_order("p0001-E") == first


def test_fetch_order_of_an_unknown_id_is_none(clock) -> None:
    assert exchange(clock).fetch_order("never-sent") is None


def test_different_ids_are_different_orders(clock) -> None:
    venue = exchange(clock)
    first = venue.submit_order(order("p0001-E"))
    second = venue.submit_order(order("p0002-E"))

    assert first.venue_order_id != second.venue_order_id
    assert first.trade_id != second.trade_id
    assert sorted(venue.placed_order_ids()) == ["p0001-E", "p0002-E"]


# --- the ledger ----------------------------------------------------------------------------------


def test_with_a_ledger_a_new_exchange_on_the_same_store_remembers_orders(clock, tmp_path, stores) -> None:
    path = tmp_path / "engine.db"
    stores.append(Store(path))
    before = exchange(clock, slippage_bps="10", fee="0.001", ledger=stores[0])
    filled = before.submit_order(order("p0001-E"))
    clock.advance(120)
    with pytest.raises(PriceUnavailable):
        before.submit_order(order("p0002-E", ts_ms=NOW_MS))

    stores.append(Store(path))  # a new process on the same data directory
    after = exchange(clock, slippage_bps="50", fee="0.01", ledger=stores[1])

    assert after.fetch_order("p0001-E") == filled
    rejected = after.fetch_order("p0002-E")
    assert rejected is not None and rejected.status is OrderStatus.REJECTED
    assert sorted(after.placed_order_ids()) == ["p0001-E", "p0002-E"]


def test_with_a_ledger_a_resubmission_after_a_restart_does_not_fill_again(clock, tmp_path, stores) -> None:
    path = tmp_path / "engine.db"
    stores.append(Store(path))
    filled = exchange(clock, slippage_bps="10", ledger=stores[0]).submit_order(order("p0001-E"))

    stores.append(Store(path))
    after = exchange(clock, slippage_bps="50", ledger=stores[1])
    clock.advance(30)
    again = after.submit_order(order("p0001-E", price="1"))

    assert again == filled, "the first fill is returned: same price, fee, trade id and time"
    assert again.fill_price == D("42042.06")


def test_without_a_ledger_a_new_exchange_knows_nothing(clock) -> None:
    exchange(clock).submit_order(order())

    assert exchange(clock).fetch_order("p0001-E") is None


@pytest.mark.parametrize(("price", "side"), [("0.001", Side.SELL), ("0.0000000001", Side.SELL),
                                             ("0.004", Side.BUY)])
def test_a_price_that_rounds_to_zero_is_refused_never_filled_at_0_00(clock, price, side):
    venue = exchange(clock, slippage_bps="5")
    with pytest.raises(PriceUnavailable, match="INVALID_PRICE: BTC"):
        venue.submit_order(order("p0001-X1", side=side, price=price))
    report = venue.fetch_order("p0001-X1")
    assert report is not None and report.status is OrderStatus.REJECTED and report.fill_price is None


def test_a_price_too_large_to_compute_with_is_refused_not_raised(clock):
    big = OrderRequest(client_order_id="p0001-E", position_id="p0001", coin="BTC", side=Side.BUY,
                       quantity=D("1e-8"), intent=OrderIntent.ENTRY, reference_price=D("9e17"),
                       reference_ts_ms=NOW_MS)
    with pytest.raises(PriceUnavailable, match="INVALID_PRICE"):
        exchange(clock, slippage_bps="5").submit_order(big)


def test_with_a_ledger_memory_keeps_only_the_recent_orders_and_older_ones_are_read_back(
        clock, tmp_path, stores, monkeypatch) -> None:
    monkeypatch.setattr("adapters.venues.paper.RECENT_ORDERS", 3)
    stores.append(Store(tmp_path / "engine.db"))
    venue = exchange(clock, slippage_bps="10", ledger=stores[0])
    first = venue.submit_order(order("p0001-E"))
    for number in range(2, 11):
        venue.submit_order(order(f"p{number:04d}-E"))

    assert venue.orders_in_memory == 3
    assert len(venue.submissions) == 3
    clock.advance(30)
    assert venue.fetch_order("p0001-E") == first  # forgotten in memory, found in the ledger
    assert venue.submit_order(order("p0001-E", price="1")) == first, "never filled a second time"
    assert venue.orders_in_memory == 3
    assert len(venue.placed_order_ids()) == 10


def test_without_a_ledger_memory_is_the_venues_book_and_keeps_every_order(clock, monkeypatch) -> None:
    monkeypatch.setattr("adapters.venues.paper.RECENT_ORDERS", 3)
    venue = exchange(clock)
    first = venue.submit_order(order("p0001-E"))
    for number in range(2, 11):
        venue.submit_order(order(f"p{number:04d}-E"))

    assert venue.orders_in_memory == 10
    assert venue.submit_order(order("p0001-E", price="1")) == first
