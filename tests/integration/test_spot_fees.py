"""Spot fees through the whole engine (Sniper, Executor, journal, session report) on a venue that
charges them as Binance and Bybit spot do: ``tests/support/fake_venue.FakeVenue`` with
``rest_market`` holds market orders and the test reports their fills, with the fee currency a
spot venue uses, from its own thread as a live venue's websocket would.

- A BUY whose fee is charged in the coin: the position holds the net quantity, its exit sells
  that (floored to the quantity step, never the 0.01 the account no longer has) and closes; what
  the floor leaves is dust (``DUST_LEFT``), in the closed position and the report.
- A fee in BNB: the quantity stays whole, the fee is not in the PnL, the report lists it by
  currency and ``FEE_UNVALUED`` is logged once.
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


def placed(engine: Engine, venue: FakeVenue, client_order_id: str) -> Decimal:
    """The quantity of ``client_order_id`` once it is on the venue's book."""
    assert engine.wait_idle(WAIT)
    assert client_order_id in venue.book, f"{client_order_id} was not placed: {sorted(venue.book)}"
    return venue.book[client_order_id].order.quantity


def start(tmp_path: Any) -> tuple[Engine, FakeVenue, list[Any]]:
    venue = FakeVenue(rest_market=True)
    engine = build_engine(manual_config(), data_dir=tmp_path / "data", venue=venue).start()
    closes: list[Any] = []
    engine.bus.add_tap(lambda role, m: closes.append(m) if type(m) is PositionClosed and role == "journal" else None)
    return engine, venue, closes


def test_a_long_whose_buy_fee_is_in_the_coin_exits_with_the_net_quantity_and_closes(tmp_path, ts, logs):
    engine, venue, closes = start(tmp_path)
    try:
        engine.sniper.add_condition(condition(trigger=39999, size=400, stop="0.02", target="0.015"))
        engine.push_tick("BTC", "40000", ts())  # 0.01 BTC at market
        assert engine.wait_idle(WAIT)
        (pending,) = engine.sniper.snapshot().positions
        entry_id, exit_id = entry_order_id(pending.id), exit_order_id(pending.id, 1)
        assert placed(engine, venue, entry_id) == D("0.01000")
        # Binance spot: 0.01 BTC bought, 0.000015 BTC of it taken as the fee: 0.009985 BTC arrive.
        venue.emit(venue.fill_event(entry_id, D("0.01"), price=D("40000"), fee=D("0.000015"), fee_currency="BTC"))
        assert engine.wait_idle(WAIT)
        (opened,) = engine.sniper.snapshot().positions
        assert opened.status is PositionStatus.OPEN and opened.quantity == D("0.009985")
        assert opened.fees_paid == D("0.6")  # 0.000015 BTC at 40000

        engine.push_tick("BTC", "39100", ts())  # through the stop (39200): the exit sells what is held
        assert placed(engine, venue, exit_id) == D("0.00998")  # floored to the 0.00001 step, not 0.01
        venue.emit(venue.fill_event(exit_id, D("0.00998"), price=D("39100"), fee=D("0.390218"), fee_currency="USDT"))
        assert engine.wait_idle(WAIT)
        snapshot = engine.sniper.snapshot()
        report = engine.shutdown()
    finally:
        engine.stop()

    gross = D("0.00998") * (39100 - 40000) - D("0.000005") * 40000  # the dust written off at its cost
    fees = D("0.6") + D("0.390218")
    assert len(closes) == 1
    closed = closes[0].position
    assert closed.status is PositionStatus.CLOSED and closed.dust == D("0.000005")
    assert closed.realized_pnl == gross - fees and closed.exit_reason == "STOP_LOSS"
    assert snapshot.positions == () and snapshot.balance == D(10000) + gross - fees
    assert "DUST_LEFT: " in logs.text() and "FEE_UNVALUED" not in logs.text()
    assert D(report["realized_pnl_usd"]) == gross - fees and D(report["fees_paid_usd"]) == fees
    assert report["dust"] == {"BTC": "0.000005"} and report["fees_other"] == {} and report["mismatches"] == []

    journal = JournalStore(tmp_path / "data" / "journal.db")
    try:
        (trade,) = journal.trades()
        orders = {o["client_order_id"]: o for o in journal.orders()}
        currencies = sorted(f["fee_currency"] for f in journal.fills())
    finally:
        journal.close()
    assert D(trade["pnl"]) == gross - fees and D(trade["fees"]) == fees
    assert D(orders[entry_id]["fill_quantity"]) == D("0.01")  # the order traded 0.01: only the holding is net
    assert currencies == ["BTC", "USDT"]


def test_a_fee_in_bnb_leaves_the_quantity_whole_and_is_listed_not_counted(tmp_path, ts, logs):
    engine, venue, closes = start(tmp_path)
    try:
        engine.sniper.add_condition(condition(trigger=39999, size=400, stop="0.02", target="0.015"))
        engine.push_tick("BTC", "40000", ts())
        assert engine.wait_idle(WAIT)
        (pending,) = engine.sniper.snapshot().positions
        entry_id, exit_id = entry_order_id(pending.id), exit_order_id(pending.id, 1)
        placed(engine, venue, entry_id)
        venue.emit(venue.fill_event(entry_id, D("0.01"), price=D("40000"), fee=D("0.0006"), fee_currency="BNB"))
        assert engine.wait_idle(WAIT)
        (opened,) = engine.sniper.snapshot().positions
        assert opened.quantity == D("0.01") and opened.fees_paid == 0

        engine.push_tick("BTC", "40700", ts())  # the target (40599.98)
        assert placed(engine, venue, exit_id) == D("0.01")
        venue.emit(venue.fill_event(exit_id, D("0.01"), price=D("40700"), fee=D("0.0007"), fee_currency="BNB"))
        assert engine.wait_idle(WAIT)
        report = engine.shutdown()
    finally:
        engine.stop()

    (closed,) = [c.position for c in closes]
    assert closed.realized_pnl == D(7) and closed.dust == 0
    assert report["fees_other"] == {"BNB": "0.0013"} and D(report["fees_paid_usd"]) == 0
    assert D(report["realized_pnl_usd"]) == D(7) and report["mismatches"] == []
    assert len([line for line in logs.lines if "FEE_UNVALUED" in line]) == 1  # once per currency


def test_a_holding_under_the_minimum_notional_closes_with_its_dust_and_sends_no_exit(tmp_path, ts, logs):
    venue = FakeVenue(rest_market=True)
    config = manual_config(markets={"BTC": {"min_notional": 395}})
    engine = build_engine(config, data_dir=tmp_path / "data", venue=venue).start()
    closes: list[Any] = []
    engine.bus.add_tap(lambda role, m: closes.append(m) if type(m) is PositionClosed and role == "journal" else None)
    try:
        engine.sniper.add_condition(condition(trigger=39999, size=400, stop="0.02", target="0.015"))
        engine.push_tick("BTC", "40000", ts())
        assert engine.wait_idle(WAIT)
        (pending,) = engine.sniper.snapshot().positions
        entry_id = entry_order_id(pending.id)
        placed(engine, venue, entry_id)
        venue.emit(venue.fill_event(entry_id, D("0.01"), price=D("40000"), fee=D("0.00001"), fee_currency="BTC"))
        assert engine.wait_idle(WAIT)

        engine.push_tick("BTC", "39100", ts())  # the stop: 0.00999 x 39100 = 390.609, under 395
        assert engine.wait_idle(WAIT)
        snapshot = engine.sniper.snapshot()
        report = engine.shutdown()
    finally:
        engine.stop()

    assert sorted(venue.book) == [entry_id], "no exit the venue would refuse"
    (closed,) = [c.position for c in closes]
    assert closed.status is PositionStatus.CLOSED and closed.dust == D("0.00999") and closed.exit_reason == "STOP_LOSS"
    loss = -(D("0.00999") * 40000) - D("0.4")  # written off at its cost, and the fee (0.00001 BTC at 40000)
    assert closed.realized_pnl == loss and snapshot.positions == () and snapshot.balance == D(10000) + loss
    assert "DUST_LEFT: " in logs.text() and report["total_trades"] == 1 and report["dust"] == {"BTC": "0.00999"}
    assert D(report["realized_pnl_usd"]) == loss and report["mismatches"] == []
