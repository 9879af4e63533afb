"""adapters/venues/paper_interim.py: the previous paper venue behind VenuePort (market orders)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import FakeClock
from adapters.errors import InvalidOrder, PriceUnavailable
from adapters.venues.paper import PaperExchange
from adapters.venues.paper_interim import InterimPaperVenue
from state.market import default_rules
from state.messages import OrderRequest
from state.order import Fill, OrderRecord, OrderUpdate
from state.store import Store
from state.types import Liquidity, OrderIntent, OrderStatus, OrderType, Side, TimeInForce

D = Decimal
NOW_MS = 1_700_000_000_000


def order(client_order_id: str = "p0001-E", **overrides: Any) -> OrderRequest:
    values: dict[str, Any] = dict(client_order_id=client_order_id, position_id="p0001", coin="BTC", side=Side.BUY,
                                  quantity=D("0.01"), intent=OrderIntent.ENTRY, reference_price=D("42000"),
                                  reference_ts_ms=NOW_MS)
    values.update(overrides)
    return OrderRequest(**values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "engine.db")
    yield opened
    opened.close()


def venue_on(ledger: Store | None = None, *, fee: str = "0.0005") -> tuple[InterimPaperVenue, list[Any]]:
    exchange = PaperExchange(clock=FakeClock(NOW_MS * 1_000_000), markets=default_rules, slippage_bps=D(0),
                             taker_fee_rate=D(fee), ledger=ledger)
    venue = InterimPaperVenue(exchange, orders=ledger)
    events: list[Any] = []
    venue.bind(events.append)
    return venue, events


def test_a_market_order_is_accepted_then_filled_whole_as_taker_inside_submit() -> None:
    venue, events = venue_on()
    venue.submit(order())
    accepted, fill = events
    assert accepted == OrderUpdate(client_order_id="p0001-E", venue_order_id=fill.venue_order_id,
                                   status=OrderStatus.ACCEPTED, ts_ms=NOW_MS)
    assert isinstance(fill, Fill) and fill.trade_id == fill.venue_order_id + "-1"
    assert (fill.quantity, fill.price, fill.fee, fill.fee_currency, fill.liquidity) == (
        D("0.01"), D("42000"), D("0.21"), "USDT", Liquidity.TAKER)
    assert venue.open_orders() == [] and venue.name == "paper"


def test_the_same_client_order_id_again_is_one_order_and_reports_nothing_new() -> None:
    venue, events = venue_on()
    for _ in range(5):
        venue.submit(order())
    assert len(events) == 2 and venue.submissions["p0001-E"] == 5
    found = venue.fetch_order("p0001-E")
    assert found is not None and found.status is OrderStatus.FILLED and len(found.fills) == 1


@pytest.mark.parametrize(("kind", "extra"), [
    (OrderType.LIMIT, {"limit_price": D("41000")}),
    (OrderType.STOP_MARKET, {"stop_price": D("41000")}),
    (OrderType.STOP_LIMIT, {"stop_price": D("41000"), "limit_price": D("40900")}),
])
def test_anything_but_a_market_order_is_refused_naming_its_type(kind: OrderType, extra: dict[str, Any]) -> None:
    venue, events = venue_on()
    with pytest.raises(InvalidOrder, match=f"ORDER_TYPE_UNSUPPORTED: .* not {kind.value}"):
        venue.submit(order(order_type=kind, **extra))
    assert events == [] and venue.fetch_order("p0001-E") is None


def test_an_ioc_market_order_fills_as_a_market_order() -> None:
    venue, events = venue_on()
    venue.submit(order(time_in_force=TimeInForce.IOC))
    assert [type(e).__name__ for e in events] == ["OrderUpdate", "Fill"]


def test_a_stale_reference_price_is_refused_and_remembered_as_rejected() -> None:
    venue, events = venue_on()
    with pytest.raises(PriceUnavailable, match="PRICE_UNAVAILABLE"):
        venue.submit(order(reference_ts_ms=NOW_MS - 120_000))
    assert events == []
    found = venue.fetch_order("p0001-E")
    assert found is not None and found.status is OrderStatus.REJECTED and "PRICE_UNAVAILABLE" in found.reason
    assert (found.filled_quantity, found.fills) == (0, ())


def test_cancel_is_refused_since_every_order_is_final_at_once() -> None:
    venue, _ = venue_on()
    venue.submit(order())
    with pytest.raises(InvalidOrder, match="already FILLED"):
        venue.cancel("p0001-E")
    with pytest.raises(InvalidOrder, match="unknown"):
        venue.cancel("p0002-E")


def test_after_a_restart_the_ledger_answers_with_what_was_ordered(store: Store) -> None:
    before, _ = venue_on(store)
    request = order(side=Side.SELL, intent=OrderIntent.EXIT)
    store.save_order(OrderRecord.of(request, venue="paper", now_ns=1))  # the Executor's write-ahead record
    before.submit(request)

    after, events = venue_on(store)  # a new process: nothing in memory
    found = after.fetch_order("p0001-E")
    assert found is not None
    assert (found.coin, found.side, found.quantity, found.status, found.filled_quantity) == (
        "BTC", Side.SELL, D("0.01"), OrderStatus.FILLED, D("0.01"))
    after.submit(request)
    assert events == [], "never a second order for the id"
    assert after.fetch_order("p0002-E") is None
