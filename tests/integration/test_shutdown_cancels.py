"""A graceful stop cancels every order working at the venue that is not a protective exit of a
kept position, waits for the venue to confirm, and reports what it canceled (issue 10, point 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from run import Engine, build_engine
from state.messages import ExecuteOrder, OrderRequest
from state.store import Store
from state.types import OrderIntent, OrderStatus, Side
from tests.actors.helpers import order_request
from tests.conftest import WAIT, manual_config
from tests.support.fake_venue import FakeVenue, limit_order


def engine_on(tmp_path: Path, venue: FakeVenue, **sections: dict[str, Any]) -> Engine:
    return build_engine(manual_config(**sections), data_dir=tmp_path / "data", venue=venue).start()


def place(engine: Engine, order: OrderRequest) -> None:
    engine.bus.send(ExecuteOrder(ts_init_ns=engine.clock.now_ns(), correlation_id="c-" + order.position_id,
                                 order=order))


def resting_entries(count: int) -> list[OrderRequest]:
    return [limit_order(order_request(f"p{n:04d}-E", position_id=f"p{n:04d}", quantity="0.01"), "41000")
            for n in range(1, count + 1)]


def test_a_stop_with_5_resting_orders_cancels_all_5_and_persists_it(tmp_path, logs):
    venue = FakeVenue()
    engine = engine_on(tmp_path, venue)
    try:
        orders = resting_entries(5)
        for order in orders:
            place(engine, order)
        assert engine.wait_idle(WAIT)
        assert len(venue.open_orders()) == 5
        report = engine.shutdown(reason="stop requested")
    finally:
        engine.stop()

    ids = [o.client_order_id for o in orders]
    assert sorted(report["canceled_orders"]) == ids
    assert sorted(venue.cancels) == ids and venue.open_orders() == []
    assert logs.wait_for("ORDERS_CANCELED: 5 [")
    store = Store(tmp_path / "data" / "engine.db")
    try:
        assert {r.client_order_id: r.status for r in store.load_orders()} == dict.fromkeys(ids, OrderStatus.CANCELED)
    finally:
        store.close()


def test_a_stop_keeps_the_protective_exit_of_a_kept_position_and_cancels_the_rest(tmp_path, logs):
    venue = FakeVenue()
    engine = engine_on(tmp_path, venue, session={"on_stop": "keep"})
    try:
        (entry,) = resting_entries(1)
        protective = limit_order(order_request("p0009-X1", position_id="p0009", side=Side.SELL,
                                               intent=OrderIntent.EXIT, quantity="0.01"), "43000")
        place(engine, entry)
        place(engine, protective)
        assert engine.wait_idle(WAIT)
        report = engine.shutdown()
    finally:
        engine.stop()
    assert report["canceled_orders"] == [entry.client_order_id]
    assert [o.client_order_id for o in venue.open_orders()] == ["p0009-X1"]
    assert logs.wait_for("ORDERS_KEPT: 1 protective exit(s) of kept positions stay working: ['p0009-X1']")


def test_a_stop_that_flattens_cancels_the_exits_too(tmp_path):
    venue = FakeVenue()
    engine = engine_on(tmp_path, venue, session={"on_stop": "flatten"})
    try:
        exit_order = limit_order(order_request("p0009-X1", position_id="p0009", side=Side.SELL,
                                               intent=OrderIntent.EXIT, quantity="0.01"), "43000")
        place(engine, exit_order)
        assert engine.wait_idle(WAIT)
        report = engine.shutdown()
    finally:
        engine.stop()
    assert report["canceled_orders"] == ["p0009-X1"] and venue.open_orders() == []


def test_a_stop_with_nothing_working_reports_no_canceled_orders(engine, logs):
    report = engine.shutdown()
    assert report["canceled_orders"] == [] and report["exit_code"] == 0
    assert logs.wait_for("ORDERS_CANCELED: 0 []")
