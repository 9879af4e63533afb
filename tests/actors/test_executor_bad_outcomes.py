"""The Executor never crashes on an order and never hands on an absurd fill: a venue that raises
what it should not, or reports a fill at 0.00, becomes a rejection with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest

from actors.bus import EXECUTOR, SNIPER
from actors.executor import Executor
from adapters.errors import InvalidOrder
from state.messages import ExecuteOrder, OrderFilled, OrderRejected, OrderRequest
from state.order import Fill, OrderUpdate, VenueOrder
from state.types import Liquidity, OrderStatus
from tests.actors.helpers import ActorRig, order_request


class OddVenue:
    """A venue that raises ``error`` on submit, or reports ``fill`` (price, quantity) for it."""

    name = "odd"

    def __init__(self, *, error: Exception | None = None, fill: tuple[Any, Any] | None = None) -> None:
        self.error = error
        self.fill = fill
        self.submits: list[str] = []
        self.cancels: list[str] = []
        self.sink: Any = None

    def bind(self, sink: Any) -> None:
        self.sink = sink

    def submit(self, order: OrderRequest) -> None:
        self.submits.append(order.client_order_id)
        if self.error is not None:
            raise self.error
        assert self.fill is not None
        self.sink(OrderUpdate(client_order_id=order.client_order_id, venue_order_id="v-1",
                              status=OrderStatus.ACCEPTED, ts_ms=order.reference_ts_ms))
        self.sink(Fill(trade_id="t-1", client_order_id=order.client_order_id, venue_order_id="v-1",
                       price=self.fill[0], quantity=self.fill[1], fee=Decimal(0), fee_currency="USDT",
                       liquidity=Liquidity.TAKER, ts_ms=order.reference_ts_ms))

    def cancel(self, client_order_id: str) -> None:
        self.cancels.append(client_order_id)
        raise InvalidOrder("nothing to cancel")

    def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        return None

    def open_orders(self, coin: str | None = None) -> list[VenueOrder]:
        return []

    def observe_trade(self, *args: Any) -> None:
        return None

    def observe_quote(self, *args: Any) -> None:
        return None


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(EXECUTOR), tmp_path)
    yield rig
    rig.close()


def execute(rig: ActorRig, order: OrderRequest) -> None:
    rig.pb.bus.send(ExecuteOrder(ts_init_ns=rig.pb.clock.now_ns(), correlation_id="c-1", order=order))


@pytest.mark.parametrize("error", [InvalidOperation([]), ZeroDivisionError("x"), RuntimeError("adapter bug")],
                         ids=["InvalidOperation", "ZeroDivisionError", "RuntimeError"])
def test_a_venue_raising_what_it_should_not_is_a_rejection_and_the_executor_lives_on(rig, error):
    venue = OddVenue(error=error)
    rig.start(Executor, store=rig.store, venue=venue)
    for number in (1, 2, 3, 4):  # as many as would have exceeded the restart limit
        execute(rig, order_request(f"p000{number}-E", position_id=f"p000{number}"))
    rejected = [rig.pb.wait_for(OrderRejected, SNIPER, where=lambda m, n=n: m.order.client_order_id == f"p000{n}-E")
                for n in (1, 2, 3, 4)]
    assert all(r.reason.startswith(f"VENUE_ERROR: {type(error).__name__}") for r in rejected)
    assert rig.ask("ping") == EXECUTOR
    record = rig.store.get_order("p0004-E")
    assert record is not None and record.status is OrderStatus.REJECTED


@pytest.mark.parametrize(("price", "quantity", "why"), [
    (Decimal("0.00"), Decimal("0.01"), "fill price"),
    (Decimal("-1"), Decimal("0.01"), "fill price"),
    (Decimal("NaN"), Decimal("0.01"), "fill price"),
    (Decimal("84000"), Decimal("0.01"), "reference price"),
    (Decimal("42000"), Decimal("0"), "fill quantity"),
    (Decimal("42000"), Decimal("0.02"), "above the ordered"),
])
def test_an_absurd_fill_is_recorded_and_published_as_a_rejection(rig, price, quantity, why):
    rig.start(Executor, store=rig.store, venue=OddVenue(fill=(price, quantity)))
    execute(rig, order_request("p0001-E", quantity="0.01", reference_price="42000"))
    rejected = rig.pb.wait_for(OrderRejected, SNIPER)
    assert rejected.reason.startswith("FILL_REJECTED: ") and why in rejected.reason
    assert rig.pb.messages(OrderFilled, SNIPER) == []
    record = rig.store.get_order("p0001-E")
    assert record is not None and record.status is OrderStatus.REJECTED


def test_a_stored_fill_at_zero_from_an_older_version_is_never_handed_on_as_a_fill(rig):
    order = order_request("p0001-X1", position_id="p0001", side="SELL", intent="EXIT", reference_price="0.01")
    data = {"client_order_id": order.client_order_id, "position_id": order.position_id, "coin": order.coin,
            "side": "SELL", "quantity": str(order.quantity), "intent": "EXIT", "reference_price": "0.01",
            "reference_ts_ms": order.reference_ts_ms, "status": "FILLED", "venue": "odd", "venue_order_id": None,
            "trade_id": "t-1", "fill_price": "0.00", "fill_quantity": str(order.quantity), "fee": "0",
            "ts_event_ms": None, "reason": None, "created_ns": 0, "updated_ns": 0, "submissions": 0,
            "correlation_id": None}  # a row exactly as the previous version wrote it
    rig.store.db.execute_sql("INSERT INTO orders (client_order_id, position_id, status, data) VALUES (?, ?, ?, ?)",
                             (order.client_order_id, order.position_id, "FILLED", json.dumps(data)))
    venue = OddVenue(error=RuntimeError("must not be asked"))
    rig.start(Executor, store=rig.store, venue=venue)
    execute(rig, order)
    rejected = rig.pb.wait_for(OrderRejected, SNIPER)
    assert rejected.reason.startswith("FILL_REJECTED: fill price Decimal('0.00')")
    assert venue.submits == []
