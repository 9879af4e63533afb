"""state/store.py: order rows with their fills (one row per trade id), and the previous version's
order rows read as orders with one fill."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.order import Fill, OrderRecord
from state.store import Store
from state.types import Liquidity, OrderIntent, OrderStatus, OrderType, Side

D = Decimal


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "engine.db")
    yield opened
    opened.close()


def make_order(coid: str = "p1-E", **overrides: Any) -> OrderRecord:
    values: dict[str, Any] = dict(client_order_id=coid, position_id="p1", coin="BTC", side=Side.BUY,
                                  quantity=D("10"), intent=OrderIntent.ENTRY, reference_price=D("100"),
                                  reference_ts_ms=1, order_type=OrderType.LIMIT, limit_price=D("99.5"),
                                  created_ns=1)
    values.update(overrides)
    return OrderRecord(**values)


def fill(trade_id: str, quantity: Any, coid: str = "p1-E", price: Any = "99.5") -> Fill:
    return Fill(trade_id=trade_id, client_order_id=coid, venue_order_id="v1", quantity=D(str(quantity)),
                price=D(str(price)), fee=D("-0.002"), fee_currency="USDT", liquidity=Liquidity.MAKER, ts_ms=9)


def test_save_fill_stores_a_trade_id_once_and_says_whether_it_was_new(store: Store) -> None:
    assert store.save_fill(fill("t1", 3)) is True
    assert store.save_fill(fill("t1", 3)) is False
    assert store.save_fill(fill("t1", 5, price="1")) is False, "a known trade id is never rewritten"
    assert store.load_fills("p1-E") == [fill("t1", 3)]


def test_an_order_is_read_back_with_its_fills_in_the_order_they_were_stored(store: Store) -> None:
    record = make_order().apply_fill(fill("t2", 3)).apply_fill(fill("t1", 2))
    store.save_order(record)
    store.save_order(record)  # saved again (every outcome saves it): its fills stay once each
    again = store.get_order("p1-E")
    assert again == record
    assert [f.trade_id for f in again.fills] == ["t2", "t1"]
    assert again.status is OrderStatus.PARTIALLY_FILLED and again.filled_quantity == 5
    assert store.db.execute_sql("SELECT COUNT(*) FROM fills").fetchone()[0] == 2


def test_load_orders_brings_each_order_its_own_fills(store: Store) -> None:
    store.save_order(make_order("a-E", created_ns=1).apply_fill(fill("ta", 10, coid="a-E")))
    store.save_order(make_order("b-E", created_ns=2))
    store.save_order(make_order("c-E", created_ns=3).apply_fill(fill("tc1", 4, coid="c-E")).apply_fill(
        fill("tc2", 1, coid="c-E")))
    records = store.load_orders()
    assert [(r.client_order_id, [f.trade_id for f in r.fills]) for r in records] == [
        ("a-E", ["ta"]), ("b-E", []), ("c-E", ["tc1", "tc2"])]
    (working,) = store.load_orders([OrderStatus.PARTIALLY_FILLED])
    assert working.client_order_id == "c-E" and working.filled_quantity == 5
    assert [r.client_order_id for r in store.load_orders(latest=1)] == ["c-E"]


def _previous_version_row(store: Store, coid: str, status: str, **fill: Any) -> None:
    """An order row exactly as the previous version wrote it (one whole fill inside the row)."""
    data = {"client_order_id": coid, "position_id": "p1", "coin": "BTC", "side": "BUY", "quantity": "0.02380",
            "intent": "ENTRY", "reference_price": "42000.00", "reference_ts_ms": 1_709_294_400_000,
            "status": status, "venue": "paper", "venue_order_id": fill.get("venue_order_id"),
            "trade_id": fill.get("trade_id"), "fill_price": fill.get("fill_price"),
            "fill_quantity": fill.get("fill_quantity"), "fee": fill.get("fee"), "ts_event_ms": fill.get("ts_event_ms"),
            "reason": None, "created_ns": 5, "updated_ns": 6, "submissions": 1, "correlation_id": "c-1"}
    store.db.execute_sql("INSERT INTO orders (client_order_id, position_id, status, data) VALUES (?, ?, ?, ?)",
                         (coid, "p1", status, json.dumps(data)))


@pytest.mark.parametrize("status", ["SUBMITTING", "ACCEPTED"])
def test_a_previous_version_order_without_a_fill_is_read_as_such(store: Store, status: str) -> None:
    _previous_version_row(store, "p1-E", status)
    record = store.get_order("p1-E")
    assert record is not None and record.status is OrderStatus(status)
    assert (record.fills, record.filled_quantity, record.order_type, record.reduce_only) == ((), 0, OrderType.MARKET,
                                                                                             False)
    assert (record.submissions, record.correlation_id, record.created_ns) == (1, "c-1", 5)
    assert [r.client_order_id for r in store.load_orders([OrderStatus(status)])] == ["p1-E"]


def test_a_previous_version_filled_order_is_read_with_its_one_fill_and_saved_in_the_new_form(store: Store) -> None:
    _previous_version_row(store, "p1-E", "FILLED", venue_order_id="paper-abc", trade_id="paper-abc-1",
                          fill_price="42021.00", fill_quantity="0.02380", fee="0.500", ts_event_ms=1_709_294_400_123)
    record = store.get_order("p1-E")
    assert record is not None and record.status is OrderStatus.FILLED
    (only,) = record.fills
    assert only == Fill(trade_id="paper-abc-1", client_order_id="p1-E", venue_order_id="paper-abc",
                        quantity=D("0.02380"), price=D("42021.00"), fee=D("0.500"), fee_currency="USDT",
                        liquidity=Liquidity.TAKER, ts_ms=1_709_294_400_123)
    assert (record.filled_quantity, record.average_fill_price, record.fees_total) == (
        D("0.02380"), D("42021.00"), D("0.500"))
    assert store.load_orders([OrderStatus.FILLED]) == [record]

    store.save_order(record)
    assert store.get_order("p1-E") == record
    assert store.load_fills("p1-E") == [only]
