"""adapters/venues/paper.py PaperVenue, market orders with no quote and no newer trade (how the
engine trades by default): price, slippage, fees, stale and unusable prices, one order per
client order id, its durable book (state/venue_store.py) and its memory. Thread-free: the
venue calls its sink on the caller's thread."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import adapters.venues.paper as paper_module
from adapters.clock import FakeClock
from adapters.errors import InvalidOrder, PriceUnavailable
from adapters.venues.paper import PaperVenue
from state.market import default_rules
from state.matching import FeeSchedule, MatchingSettings, venue_order_id
from state.messages import OrderRequest
from state.order import Fill, OrderUpdate, VenueOrder
from state.rules import slipped_price
from state.types import Liquidity, OrderIntent, OrderStatus, Side
from state.venue_store import VenueStore

D = Decimal
NOW_MS = 1_700_000_000_000


def order(client_order_id: str = "p0001-E", *, side: Side = Side.BUY, price: Any = "42000.05",
          quantity: Any = "0.01", coin: str = "BTC", ts_ms: int = NOW_MS) -> OrderRequest:
    """A market entry (a sell is a short entry: an exit would need a position to reduce)."""
    return OrderRequest(
        client_order_id=client_order_id, position_id=client_order_id.split("-")[0], coin=coin, side=side,
        quantity=D(str(quantity)), intent=OrderIntent.ENTRY, reference_price=D(str(price)), reference_ts_ms=ts_ms,
    )


class Sink(list):
    def __call__(self, event: Any) -> None:
        self.append(event)

    def fills(self) -> list[Fill]:
        return [e for e in self if isinstance(e, Fill)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW_MS * 1_000_000)


@pytest.fixture
def stores() -> Iterator[list[VenueStore]]:
    opened: list[VenueStore] = []
    yield opened
    for store in opened:
        store.close()


def venue(clock: FakeClock, *, slippage_bps: Any = "0", fee: Any = "0", max_age_s: int = 60,
          ledger: VenueStore | None = None) -> tuple[PaperVenue, Sink]:
    settings = MatchingSettings(slippage_bps=D(str(slippage_bps)), fees=FeeSchedule(maker=D(0), taker=D(str(fee))),
                                max_price_age_ms=max_age_s * 1000)
    v = PaperVenue(clock=clock, markets=default_rules, settings=settings, ledger=ledger)
    sink = Sink()
    v.bind(sink)
    return v, sink


def ledger_at(stores: list[VenueStore], path: Path) -> VenueStore:
    store = VenueStore(path, owner="engine-1")
    stores.append(store)
    return store


def filled(v: PaperVenue, client_order_id: str = "p0001-E") -> Fill:
    known = v.fetch_order(client_order_id)
    assert known is not None and known.status is OrderStatus.FILLED
    (fill,) = known.fills
    return fill


# --- fills ------------------------------------------------------------------------------------


def test_fill_without_slippage_is_at_the_reference_price_whole_with_the_fee_on_the_notional(clock) -> None:
    v, sink = venue(clock, fee="0.0005")

    v.submit(order(price="42000.05", quantity="0.02"))

    accepted, fill = sink
    assert isinstance(accepted, OrderUpdate) and accepted.status is OrderStatus.ACCEPTED
    assert isinstance(fill, Fill) and fill.client_order_id == "p0001-E"
    assert (fill.price, fill.quantity) == (D("42000.05"), D("0.02"))
    assert fill.fee == D("0.02") * D("42000.05") * D("0.0005") == D("0.420000500")
    assert fill.ts_ms == accepted.ts_ms == NOW_MS
    assert fill.liquidity is Liquidity.TAKER
    assert fill.venue_order_id.startswith("paper-") and fill.trade_id == fill.venue_order_id + "-1"
    known = v.fetch_order("p0001-E")
    assert known is not None and known.status is OrderStatus.FILLED and known.filled_quantity == D("0.02")


def test_buy_pays_up_by_the_slippage_rounded_up_to_the_tick(clock) -> None:
    v, sink = venue(clock, slippage_bps="10")

    v.submit(order(side=Side.BUY, price="42000.05"))

    # 42000.05 x 1.001 = 42042.05005, rounded up (against the buyer) to 42042.06.
    (fill,) = sink.fills()
    assert fill.price == D("42042.06")
    assert fill.price == slipped_price(Side.BUY, D("42000.05"), D("10"), default_rules("BTC"))


def test_sell_receives_less_by_the_slippage_rounded_down_to_the_tick(clock) -> None:
    v, sink = venue(clock, slippage_bps="10")

    v.submit(order("p0001-S", side=Side.SELL, price="42000.05"))

    # 42000.05 x 0.999 = 41958.04995, rounded down (against the seller) to 41958.04.
    (fill,) = sink.fills()
    assert fill.price == D("41958.04")


def test_fee_is_charged_on_the_slipped_notional(clock) -> None:
    v, sink = venue(clock, slippage_bps="10", fee="0.001")

    v.submit(order(price="42000.05", quantity="0.5"))

    (fill,) = sink.fills()
    assert fill.fee == D("0.5") * D("42042.06") * D("0.001")


def test_tick_size_of_the_coin_is_used_for_rounding(clock) -> None:
    v, sink = venue(clock, slippage_bps="1")

    v.submit(order(coin="SOL", price="145.123", quantity="1"))

    # SOL ticks are 0.001: 145.123 x 1.0001 = 145.1375123 -> up to 145.138.
    (fill,) = sink.fills()
    assert fill.price == D("145.138")


# --- stale prices -------------------------------------------------------------------------------


def test_reference_older_than_max_price_age_is_refused_as_price_unavailable(clock) -> None:
    v, sink = venue(clock, max_age_s=60)
    clock.advance(61)

    with pytest.raises(PriceUnavailable, match="PRICE_UNAVAILABLE") as raised:
        v.submit(order(ts_ms=NOW_MS))

    assert isinstance(raised.value, InvalidOrder), "the Executor treats it as a refusal"
    assert "61.0s old" in str(raised.value)
    assert sink == []
    recorded = v.fetch_order("p0001-E")
    assert recorded is not None and recorded.status is OrderStatus.REJECTED
    assert (recorded.filled_quantity, recorded.fills) == (0, ())


def test_reference_exactly_max_price_age_old_still_fills(clock) -> None:
    v, sink = venue(clock, max_age_s=60)
    clock.advance(60)

    v.submit(order(ts_ms=NOW_MS))

    fill = filled(v)
    assert sink.fills() == [fill]
    assert fill.ts_ms == NOW_MS + 60_000, "the fill is stamped with the venue's (engine) time"


def test_reference_in_the_future_of_the_engine_clock_fills_stamped_no_earlier_than_it(clock) -> None:
    v, sink = venue(clock)

    v.submit(order(ts_ms=NOW_MS + 500))

    assert filled(v).ts_ms == NOW_MS + 500
    assert [e.ts_ms for e in sink] == [NOW_MS + 500, NOW_MS + 500]


def test_a_refused_id_is_never_filled_later_even_with_a_fresh_price(clock) -> None:
    v, sink = venue(clock, max_age_s=60)
    clock.advance(120)
    with pytest.raises(PriceUnavailable):
        v.submit(order(ts_ms=NOW_MS))

    fresh = order(ts_ms=NOW_MS + 120_000)  # same client order id, now a fresh reference
    with pytest.raises(PriceUnavailable, match="PRICE_UNAVAILABLE"):
        v.submit(fresh)  # the venue's refusal again, not a new attempt

    again = v.fetch_order(fresh.client_order_id)
    assert again is not None and again.status is OrderStatus.REJECTED and again.fills == ()
    assert sink == []


# --- one order per client order id ---------------------------------------------------------------


def test_five_submissions_of_one_id_make_one_order_and_one_fill_that_later_ones_never_change(clock) -> None:
    v, sink = venue(clock, slippage_bps="5", fee="0.0005")
    v.submit(order())
    first = v.fetch_order("p0001-E")

    clock.advance(10)  # later submissions would otherwise fill at another time
    for _ in range(4):
        v.submit(order(price="43000"))

    assert [type(e) for e in sink] == [OrderUpdate, Fill]
    assert v.fetch_order("p0001-E") == first
    assert v.submissions["p0001-E"] == 5
    assert v.placed_order_ids() == ["p0001-E"]


def test_different_ids_are_different_orders(clock) -> None:
    v, sink = venue(clock)
    v.submit(order("p0001-E"))
    v.submit(order("p0002-E"))

    first, second = sink.fills()
    assert (first.client_order_id, second.client_order_id) == ("p0001-E", "p0002-E")
    assert first.venue_order_id != second.venue_order_id
    assert first.trade_id != second.trade_id
    assert sorted(v.placed_order_ids()) == ["p0001-E", "p0002-E"]


# --- the durable book ------------------------------------------------------------------------------


def test_with_a_ledger_a_new_venue_on_the_same_book_remembers_orders(clock, tmp_path, stores) -> None:
    path = tmp_path / "venue.db"
    before, _ = venue(clock, slippage_bps="10", fee="0.001", ledger=ledger_at(stores, path))
    before.submit(order("p0001-E"))
    kept = before.fetch_order("p0001-E")
    clock.advance(120)
    with pytest.raises(PriceUnavailable):
        before.submit(order("p0002-E", ts_ms=NOW_MS))

    # a new process on the same data directory, with other settings
    after, sink = venue(clock, slippage_bps="50", fee="0.01", ledger=ledger_at(stores, path))

    assert after.fetch_order("p0001-E") == kept
    assert filled(after).price == D("42042.06")
    rejected = after.fetch_order("p0002-E")
    assert rejected is not None and rejected.status is OrderStatus.REJECTED
    assert rejected.reason is not None and "PRICE_UNAVAILABLE" in rejected.reason
    assert sorted(after.placed_order_ids()) == ["p0001-E", "p0002-E"]
    assert sink == []


def test_with_a_ledger_a_resubmission_after_a_restart_does_not_fill_again(clock, tmp_path, stores) -> None:
    path = tmp_path / "venue.db"
    before, _ = venue(clock, slippage_bps="10", ledger=ledger_at(stores, path))
    before.submit(order("p0001-E"))
    first = filled(before)

    after, sink = venue(clock, slippage_bps="50", ledger=ledger_at(stores, path))
    clock.advance(30)
    after.submit(order("p0001-E", price="1", ts_ms=NOW_MS + 30_000))

    assert sink == [], "the venue has the order: nothing new is reported"
    assert filled(after) == first, "the first fill stays: same price, fee, trade id and time"
    assert first.price == D("42042.06")


def test_without_a_ledger_a_new_venue_knows_nothing(clock) -> None:
    v, _ = venue(clock)
    v.submit(order())

    other, _ = venue(clock)
    assert other.fetch_order("p0001-E") is None


# --- prices that cannot be used ------------------------------------------------------------------


@pytest.mark.parametrize(("price", "side"), [("0.001", Side.SELL), ("0.0000000001", Side.SELL),
                                             ("0.004", Side.BUY)])
def test_a_price_that_rounds_to_zero_is_refused_never_filled_at_0_00(clock, price, side) -> None:
    v, sink = venue(clock, slippage_bps="5")
    with pytest.raises(PriceUnavailable, match="INVALID_PRICE: BTC"):
        v.submit(order("p0001-E", side=side, price=price))
    known = v.fetch_order("p0001-E")
    assert known is not None and known.status is OrderStatus.REJECTED and known.fills == ()
    assert sink == []


def test_a_price_too_large_to_compute_with_is_refused_not_raised(clock) -> None:
    v, sink = venue(clock, slippage_bps="5")
    with pytest.raises(PriceUnavailable, match="INVALID_PRICE"):
        v.submit(order(price="9e17", quantity="0.00001"))
    assert sink == []


# --- memory ----------------------------------------------------------------------------------------


def test_with_a_ledger_memory_keeps_only_the_recent_orders_and_older_ones_are_read_back(
        clock, tmp_path, stores, monkeypatch) -> None:
    monkeypatch.setattr(paper_module, "RECENT_ORDERS", 3)
    v, sink = venue(clock, slippage_bps="10", ledger=ledger_at(stores, tmp_path / "venue.db"))
    v.submit(order("p0001-E"))
    first = v.fetch_order("p0001-E")
    for number in range(2, 11):
        v.submit(order(f"p{number:04d}-E"))

    assert v.orders_in_memory == 3
    assert len(v.submissions) == 3
    clock.advance(30)
    read_back: VenueOrder | None = v.fetch_order("p0001-E")  # forgotten in memory, found in the ledger
    assert read_back == first
    v.submit(order("p0001-E", price="1", ts_ms=NOW_MS + 30_000))
    assert len(sink.fills()) == 10, "never filled a second time"
    assert v.fetch_order("p0001-E") == first
    assert v.orders_in_memory == 3
    assert len(v.placed_order_ids()) == 10


def test_without_a_ledger_memory_is_the_venues_book_and_keeps_every_order(clock, monkeypatch) -> None:
    monkeypatch.setattr(paper_module, "RECENT_ORDERS", 3)
    v, sink = venue(clock)
    v.submit(order("p0001-E"))
    first = v.fetch_order("p0001-E")
    for number in range(2, 11):
        v.submit(order(f"p{number:04d}-E"))

    assert v.orders_in_memory == 10
    v.submit(order("p0001-E", price="1"))
    assert len(sink.fills()) == 10
    assert v.fetch_order("p0001-E") == first
