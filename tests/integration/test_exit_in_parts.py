"""An exit filled in two parts closes the position once, with the right PnL, through the whole
engine (issue 10, "What must hold": partial fills end to end).

The engine's exits are market orders, and the paper venue fills a market order whole under
both fill models (``state/matching.py``: the slippage stands for the depth), so no config makes
``PaperVenue`` fill an exit in parts. The highest level where it can happen is the whole engine
(every actor, the engine store, the journal, the session report) on a venue that fills a market
order in two trades, as a real exchange may: ``tests/support/fake_venue.FakeVenue`` with
``rest_market`` holds market orders, and the test reports their fills through the venue's sink
from its own thread, as a live venue's websocket would.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from run import Engine, build_engine
from state.journal_store import JournalStore
from state.messages import PositionClosed
from state.models import entry_order_id, exit_order_id
from state.types import PositionStatus
from tests.conftest import WAIT, condition, manual_config
from tests.support.fake_venue import FakeVenue

D = Decimal


def wait_for_order(engine: Engine, venue: FakeVenue, client_order_id: str) -> None:
    """Wait until ``client_order_id`` is on the venue's book (it is placed on the Executor's
    thread after the tick that caused it)."""
    assert engine.wait_idle(WAIT)
    assert client_order_id in venue.book, f"{client_order_id} was not placed: {sorted(venue.book)}"


def test_an_exit_filled_in_two_parts_closes_the_position_once_with_the_pnl_of_both(tmp_path, ts):
    venue = FakeVenue(rest_market=True)
    data_dir = tmp_path / "data"
    engine = build_engine(manual_config(sniper={"max_exposure_pct": 1}, risk={"max_position_usd": 10000}),
                          data_dir=data_dir, venue=venue).start()
    closes: list[Any] = []
    engine.bus.add_tap(lambda role, m: closes.append(m) if type(m) is PositionClosed and role == "journal" else None)
    try:
        cid = engine.sniper.add_condition(condition(trigger=39999, size=4000, stop="0.02", target="0.015"))
        engine.push_tick("BTC", "40000", ts())  # 0.1 BTC at market
        assert engine.wait_idle(WAIT)
        snapshot = engine.sniper.snapshot()
        (pending,) = snapshot.positions
        assert pending.condition_id == cid
        entry_id, exit_id = entry_order_id(pending.id), exit_order_id(pending.id, 1)
        wait_for_order(engine, venue, entry_id)
        assert venue.book[entry_id].order.quantity == D("0.10000")
        venue.emit(venue.fill_event(entry_id, D("0.1"), price=D("40000"), fee=D("2")))
        assert engine.wait_idle(WAIT)
        (opened,) = engine.sniper.snapshot().positions
        assert opened.status is PositionStatus.OPEN and opened.quantity == D("0.1")

        engine.push_tick("BTC", "39100", ts())  # through the stop (39200): a market exit of 0.1
        wait_for_order(engine, venue, exit_id)
        assert venue.book[exit_id].order.quantity == D("0.1")
        venue.emit(venue.fill_event(exit_id, D("0.04"), price=D("39100"), fee=D("0.8")))
        assert engine.wait_idle(WAIT)
        (reduced,) = engine.sniper.snapshot().positions
        assert reduced.status is PositionStatus.CLOSING and reduced.quantity == D("0.06")
        assert closes == [], "half an exit does not close the position"

        venue.emit(venue.fill_event(exit_id, D("0.06"), price=D("39000"), fee=D("1.2")))
        assert engine.wait_idle(WAIT)
        # A late copy of the first part (the same trade id) changes nothing.
        venue.emit(venue.book[exit_id].fills[0])
        assert engine.wait_idle(WAIT)
        snapshot = engine.sniper.snapshot()
        report = engine.shutdown()
    finally:
        engine.stop()

    gross = D("0.04") * (39100 - 40000) + D("0.06") * (39000 - 40000)  # -96
    pnl = gross - D(2) - D("0.8") - D("1.2")  # -100: every fill's fee
    assert len(closes) == 1, "closed once"
    closed = closes[0].position
    assert closed.realized_pnl == pnl and closed.quantity == D("0.1") and closed.exit_price == D("39040")
    assert closed.exit_reason == "STOP_LOSS"
    assert snapshot.positions == () and snapshot.realized_pnl == pnl and snapshot.balance == D(10000) + pnl
    assert report["total_trades"] == 1 and report["losses"] == 1
    assert D(report["realized_pnl_usd"]) == pnl and D(report["fees_paid_usd"]) == D(4)

    journal = JournalStore(data_dir / "journal.db")
    try:
        (trade,) = journal.trades()
        fills = journal.fills()
        orders = {o["client_order_id"]: o for o in journal.orders()}
    finally:
        journal.close()
    assert trade["status"] == "CLOSED" and D(trade["pnl"]) == pnl and D(trade["quantity"]) == D("0.1")
    assert D(trade["exit_price"]) == D("39040")
    assert sorted((f["client_order_id"], D(f["quantity"]), D(f["price"])) for f in fills) == sorted([
        (entry_id, D("0.1"), D("40000")), (exit_id, D("0.04"), D("39100")), (exit_id, D("0.06"), D("39000"))])
    assert orders[exit_id]["status"] == "FILLED" and D(orders[exit_id]["fill_quantity"]) == D("0.1")
