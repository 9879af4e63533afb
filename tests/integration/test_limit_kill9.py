"""kill -9 of an engine with a resting limit entry filled in part, then a new engine on the same
folder (issue 10, "What must hold"): the order (the Executor's record), its fills (engine store
and journal, by trade id) and the position are exactly what the paper venue's durable book
(``venue.db``) has; nothing is placed twice; the order goes on resting and a later trade fills
the rest into the same position.

The child (``limit_entry_child.py``) is killed with the fill known to the engine (``settled``),
with the fill written by the venue but its report lost with the process (``unreported``: the
restart must learn it from the venue), or at whatever moment the fill has reached (``racing``).
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.bus import EXECUTOR
from run import Engine, build_engine
from state.types import OrderStatus, PositionStatus
from tests.conftest import WAIT
from tests.support.child import kill_when_ready
from tests.integration.limit_entry_child import CONFIG, PARTIAL_QTY, TRIGGER

CHILD = Path(__file__).with_name("limit_entry_child.py")
D = Decimal


def run_child_and_kill(data_dir: Path, out: Path, mode: str) -> dict[str, Any]:
    kill_when_ready(CHILD, str(data_dir), str(out), mode)
    return json.loads(out.read_text())


def venue_book(data_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The venue's durable book as written: every order row's client id, every fill row."""
    with sqlite3.connect(data_dir / "venue.db") as db:
        ids = [row[0] for row in db.execute("SELECT client_order_id FROM orders ORDER BY seq")]
        fills = [json.loads(row[0]) for row in db.execute("SELECT data FROM fills")]
    return ids, fills


def assert_engine_agrees_with_venue(engine: Engine, order_id: str, position_id: str) -> Any:
    """The Executor's record, the store's and the journal's fills, and the position are what the
    venue has; returns the venue's view of the order."""
    assert engine.wait_idle(WAIT)
    venue_order = engine.venue.fetch_order(order_id)
    assert venue_order is not None
    venue_fills = {f.trade_id: (f.quantity, f.price, f.fee) for f in venue_order.fills}
    assert sum((q for q, _, _ in venue_fills.values()), D(0)) == venue_order.filled_quantity

    record = engine.handles[EXECUTOR].ask("order", order_id)
    assert record.status is venue_order.status
    assert record.filled_quantity == venue_order.filled_quantity
    assert {f.trade_id: (f.quantity, f.price, f.fee) for f in record.fills} == venue_fills
    stored = engine.store.load_fills(order_id)
    assert {f.trade_id: (f.quantity, f.price, f.fee) for f in stored} == venue_fills
    journaled = engine.journal.fills(client_order_id=order_id)
    assert {f["trade_id"]: (D(f["quantity"]), D(f["price"]), D(f["fee"])) for f in journaled} == venue_fills

    (position,) = engine.sniper.snapshot().positions
    assert position.id == position_id
    assert position.quantity == venue_order.filled_quantity
    assert sorted(position.trade_ids) == sorted(venue_fills)
    held = [p for p in engine.venue.positions() if p.coin == "BTC" and p.quantity > 0]
    if venue_order.filled_quantity:
        (venue_position,) = held
        assert venue_position.quantity == position.quantity
    else:
        assert held == []
    return venue_order


def assert_placed_once(engine: Engine, data_dir: Path, order_id: str) -> None:
    assert engine.venue.submissions.get(order_id, 0) == 0, "the restarted engine placed the order again"
    assert engine.handles[EXECUTOR].ask("order", order_id).submissions == 1
    ids, _ = venue_book(data_dir)
    assert ids == [order_id], "the venue's book holds one order, once"
    submitted = [e for e in engine.journal.order_events(client_order_id=order_id) if e["event"] == "SUBMITTED"]
    assert len(submitted) == 1


@pytest.mark.parametrize("mode", ["settled", "unreported", "racing"])
def test_kill_9_with_a_resting_limit_entry_filled_in_part_then_restart_agrees_with_the_venue(tmp_path, mode):
    data_dir = tmp_path / "data"
    child = run_child_and_kill(data_dir, tmp_path / "child.json", mode)
    order_id, position_id = child["order_id"], child["position_id"]
    _, fills_before = venue_book(data_dir)
    if mode in ("settled", "unreported"):
        assert [D(f["quantity"]) for f in fills_before] == [PARTIAL_QTY], "the venue filled part of the order"

    engine = build_engine(CONFIG, data_dir=data_dir).start()
    try:
        venue_order = assert_engine_agrees_with_venue(engine, order_id, position_id)
        assert venue_order.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
        assert engine.venue.open_orders() == [venue_order], "the order goes on resting"
        if mode != "racing":
            assert venue_order.status is OrderStatus.PARTIALLY_FILLED
            (position,) = engine.sniper.snapshot().positions
            assert position.quantity == PARTIAL_QTY and position.status is PositionStatus.OPEN
        assert_placed_once(engine, data_dir, order_id)

        engine.push_tick("BTC", str(TRIGGER - 10), child["last_ts_ms"] + 1000, qty="1")  # fills the rest
        venue_order = assert_engine_agrees_with_venue(engine, order_id, position_id)
        assert venue_order.status is OrderStatus.FILLED and venue_order.filled_quantity == venue_order.quantity
        (position,) = engine.sniper.snapshot().positions
        assert position.status is PositionStatus.OPEN and position.quantity == venue_order.quantity
        assert all(lot.price == TRIGGER for lot in position.lots), "maker fills at the limit"
        assert_placed_once(engine, data_dir, order_id)
        assert engine.venue.open_orders() == []
    finally:
        engine.stop()
