"""The Journal as a threaded actor: every other role is a probe on a real bus, the journal store is
a real SQLite file, and messages are built from real ``Position`` and ``OrderRequest`` objects in
the order the Sniper, the RiskGate and the Executor send them.

To see rows *buffered* (not yet written) the tests hold the Journal inside its first write with
a gate in the store, queue more mail behind it, then release it: the queued rows are buffered
because no flush comes, and only a later flush (stop, crash, query) can write them. Reads made
by the test itself go through the store on the test's own connection, so they see only what
the Journal committed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import peewee
import pytest

from actors.bus import JOURNAL
from actors.handles import JournalHandle
from actors.journal import FLUSH_ROWS, Journal
from state.journal_store import JournalBatch, JournalStore
from state.messages import (
    AccountMarked,
    InjectCrash,
    InvariantViolated,
    KillSwitchTriggered,
    Message,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    SetTradingState,
    SubmitOrder,
    TimerFired,
    TradingStateChanged,
)
from state.models import Position, PositionTrigger, entry_order_id, exit_order_id
from state.report import daily_rows
from state.store import Store, jsonable
from state.types import OrderIntent, TradingState, from_epoch_ns
from tests.actors.helpers import ActorRig, FailureNotices, open_position, order_filled, order_request
from tests.conftest import WAIT

D = Decimal
DAY1 = 1_709_294_400_000_000_000  # 2024-03-01 12:00:00 UTC: a replayed day, far from the FakeClock
SECOND = 1_000_000_000
HOUR = 3_600 * SECOND
RUN = "run-1"


# --- a store with a gate -----------------------------------------------------------------------------

class GatedStore(JournalStore):
    """A real journal store whose ``write`` call number ``block_call`` waits for ``release`` and
    whose call number ``fail_call`` raises like a locked database. ``batches`` records the
    correlation ids of the events of every batch written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.block_call: int | None = None
        self.fail_call: int | None = None
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[str | None]] = []

    def write(self, batch: JournalBatch) -> None:
        self.calls += 1
        call = self.calls
        if call == self.block_call:
            self.entered.set()
            assert self.release.wait(WAIT), "test never released the gate"
        if call == self.fail_call:
            raise peewee.OperationalError("database is locked")
        super().write(batch)
        self.batches.append([row.correlation_id for row in batch.events])


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(JOURNAL), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def store(tmp_path) -> Iterator[JournalStore]:
    opened = JournalStore(tmp_path / "journal.db")
    yield opened
    opened.close()


@pytest.fixture
def gated(tmp_path) -> Iterator[GatedStore]:
    opened = GatedStore(tmp_path / "gated.db")
    yield opened
    opened.close()


@pytest.fixture
def journal(rig, store) -> Any:
    return rig.start(Journal, journal_store=store, run_id=RUN)


# --- message builders: one position's life, as the engine's actors tell it ----------------------------

def flush(rig: ActorRig) -> None:
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="flush"))
    rig.pb.drain()


def violation(rig: ActorRig, tag: str) -> InvariantViolated:
    """A small event routed only to the Journal, told by its correlation id ``tag``."""
    return InvariantViolated(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=tag, code="TEST", detail=tag)


def request(position_id: str, intent: OrderIntent, reference: Any, *, coin: str = "BTC", quantity: Any = "5",
            attempt: int = 1) -> OrderRequest:
    entry = intent is OrderIntent.ENTRY
    return OrderRequest(
        client_order_id=entry_order_id(position_id) if entry else exit_order_id(position_id, attempt),
        position_id=position_id, coin=coin, side="BUY" if entry else "SELL", quantity=D(str(quantity)),
        intent=intent, reference_price=D(str(reference)), reference_ts_ms=DAY1 // 1_000_000,
    )


def fill(order: OrderRequest, price: Any, fee: Any, ts_ns: int, *, condition_id: str) -> OrderFilled:
    return OrderFilled(
        ts_init_ns=ts_ns, correlation_id=condition_id, order=order, venue_order_id=f"v-{order.client_order_id}",
        trade_id=f"t-{order.client_order_id}", fill_price=D(str(price)), fill_quantity=order.quantity, cumulative_quantity=order.quantity,
        fee=D(str(fee)), ts_event_ms=ts_ns // 1_000_000, venue="paper",
    )


def pending(position_id: str, coin: str = "BTC") -> Position:
    return Position(
        id=position_id, coin=coin, direction="LONG", size_usd=D("500"), condition_id=f"c-{position_id}",
        strategy_id="breakout", reasoning="range break", stop_loss_pct=D("0.02"), take_profit_pct=D("0.015"),
        pending_order_id=entry_order_id(position_id),
    )


@dataclass
class Trip:
    """Tells one position's life to the Journal through the real bus routes."""

    rig: ActorRig

    def _send(self, message: Message) -> None:
        self.rig.pb.bus.send(message)

    def _publish(self, message: Message) -> None:
        self.rig.pb.bus.publish(message)

    def open(self, position_id: str, ts_ns: int, *, coin: str = "BTC", reference: Any = "100",
             price: Any = "100.02", fee: Any = "0.25") -> Position:
        position = pending(position_id, coin)
        order = request(position_id, OrderIntent.ENTRY, reference, coin=coin)
        self._send(SubmitOrder(ts_init_ns=ts_ns, correlation_id=position.condition_id, order=order))
        filled = fill(order, price, fee, ts_ns, condition_id=position.condition_id)
        self._publish(filled)
        entry = filled.fill_price
        opened = position.transition(
            PositionTrigger.ENTRY_FILLED, entry_price=entry, entry_time=from_epoch_ns(ts_ns).astimezone(),
            quantity=order.quantity, stop_loss_price=(entry * D("0.98")).quantize(D("0.01")),
            take_profit_price=(entry * D("1.015")).quantize(D("0.01")), current_price=entry,
            fees_paid=filled.fee, unrealized_pnl=-filled.fee, pending_order_id=None,
        )
        self._publish(PositionOpened(ts_init_ns=ts_ns, correlation_id=opened.condition_id, position=opened))
        return opened

    def start_exit(self, position: Position, ts_ns: int, *, reference: Any, unrealized: Any = None,
                   reason: str = "TAKE_PROFIT") -> Position:
        assert position.entry_price is not None
        ref = D(str(reference))
        marked = position.quantity * (ref - position.entry_price) - position.fees_paid
        closing = position.transition(
            PositionTrigger.EXIT_SUBMITTED, pending_order_id=exit_order_id(position.id, 1),
            pending_quantity=position.quantity, reference_price=ref, exit_reason=reason, exit_attempts=1,
            current_price=ref, unrealized_pnl=D(str(unrealized)) if unrealized is not None else marked,
        )
        self._publish(PositionChanged(ts_init_ns=ts_ns, correlation_id=closing.condition_id, position=closing,
                                      change="EXIT_SUBMITTED"))
        order = request(position.id, OrderIntent.EXIT, ref, coin=position.coin, quantity=position.quantity)
        self._send(SubmitOrder(ts_init_ns=ts_ns, correlation_id=closing.condition_id, order=order))
        return closing

    def finish_exit(self, closing: Position, ts_ns: int, *, price: Any, fee: Any = "0.25",
                    balance: Any) -> Position:
        assert closing.entry_price is not None and closing.reference_price is not None
        order = request(closing.id, OrderIntent.EXIT, closing.reference_price, coin=closing.coin,
                        quantity=closing.quantity)
        filled = fill(order, price, fee, ts_ns, condition_id=closing.condition_id)
        self._publish(filled)
        gross = closing.quantity * (filled.fill_price - closing.entry_price)
        fees = closing.fees_paid + filled.fee
        closed = closing.transition(
            PositionTrigger.EXIT_FILLED, exit_price=filled.fill_price, exit_time=from_epoch_ns(ts_ns).astimezone(),
            realized_pnl=gross - fees, fees_paid=fees, current_price=filled.fill_price, unrealized_pnl=D(0),
            pending_order_id=None, pending_quantity=None,
        )
        self._publish(PositionClosed(ts_init_ns=ts_ns, correlation_id=closed.condition_id, position=closed,
                                     balance=D(str(balance))))
        return closed

    def close(self, position: Position, ts_ns: int, *, reference: Any, price: Any, balance: Any,
              fee: Any = "0.25") -> Position:
        closing = self.start_exit(position, ts_ns, reference=reference)
        return self.finish_exit(closing, ts_ns, price=price, fee=fee, balance=balance)

    def reject_entry(self, position_id: str, ts_ns: int, *, denied: bool = False) -> Position:
        position = pending(position_id)
        order = request(position_id, OrderIntent.ENTRY, "100")
        self._send(SubmitOrder(ts_init_ns=ts_ns, correlation_id=position.condition_id, order=order))
        reason = "daily loss limit" if denied else "insufficient margin"
        kind = OrderDenied if denied else OrderRejected
        self._publish(kind(ts_init_ns=ts_ns, correlation_id=position.condition_id, order=order, reason=reason))
        failed = position.transition(PositionTrigger.ENTRY_FAILED, exit_reason=f"ENTRY_REJECTED: {reason}",
                                     pending_order_id=None)
        self._publish(PositionClosed(ts_init_ns=ts_ns, correlation_id=failed.condition_id, position=failed,
                                     balance=D("10000")))
        return failed

    def mark(self, ts_ns: int, equity: Any, *, unrealized: Any = "0", open_positions: int = 0) -> None:
        equity, unrealized = D(str(equity)), D(str(unrealized))
        self._publish(AccountMarked(ts_init_ns=ts_ns, balance=equity - unrealized, unrealized_pnl=unrealized,
                                    equity=equity, open_positions=open_positions))


@pytest.fixture
def trip(rig) -> Trip:
    return Trip(rig)


def hold_journal_in_its_first_write(rig: ActorRig, store: GatedStore) -> None:
    store.block_call = 1
    rig.pb.bus.publish(violation(rig, "a"))
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="flush"))
    assert store.entered.wait(WAIT), "the Journal never wrote the first row"


def stored(store: JournalStore) -> list[str | None]:
    return [row["correlation_id"] for row in store.events()]


# --- the events table ------------------------------------------------------------------------------------

def test_answers_ping_with_its_role(rig, journal):
    assert rig.ask("ping") == JOURNAL


def test_events_are_written_to_the_events_table_with_kind_correlation_id_and_data(rig, journal, store):
    now = rig.pb.clock.now_ns()
    order = order_request("p0001-E")
    rig.pb.bus.publish(order_filled(order, trade_id="t-1", correlation_id="c-0001", ts_init_ns=now))
    rig.pb.bus.publish(PositionOpened(ts_init_ns=now, correlation_id="c-0001", position=open_position("p0001")))
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=now, state=TradingState.HALTED, reason="test"))
    rig.pb.drain()
    assert store.events() == [], "rows are batched until the flush timer, off the order path"
    flush(rig)

    rows = store.events()

    assert [(r["kind"], r["correlation_id"]) for r in rows] == [
        ("OrderFilled", "c-0001"), ("PositionOpened", "c-0001"), ("TradingStateChanged", None)]
    assert all(r["ts_ns"] == now and r["run_id"] == RUN for r in rows)
    assert rows[0]["data"]["trade_id"] == "t-1"
    assert rows[0]["data"]["order"]["client_order_id"] == "p0001-E"
    assert rows[0]["data"]["fill_price"] == "42000", "Decimals are kept exact, as text"
    assert rows[1]["data"]["position"]["id"] == "p0001"
    assert all("msg_id" not in r["data"] and len(r["msg_id"]) == 36 for r in rows), "msg_id has its own column"


def test_audit_copies_of_commands_sent_on_the_bus_are_journaled(rig, journal, store):
    now = rig.pb.clock.now_ns()
    rig.pb.bus.send(SubmitOrder(ts_init_ns=now, correlation_id="c-0002", order=order_request("p0002-E")))
    rig.pb.bus.send(SetTradingState(ts_init_ns=now, state="HALTED", reason="kill switch"))
    flush(rig)

    rows = store.events()

    assert [(r["kind"], r["correlation_id"]) for r in rows] == [("SubmitOrder", "c-0002"), ("SetTradingState", None)]
    assert rows[1]["data"]["state"] == "HALTED"
    (order,) = store.orders()
    assert (order["client_order_id"], order["status"], order["run_id"]) == ("p0002-E", "REQUESTED", RUN)


def test_ask_events_answers_the_rows_of_one_kind(rig, journal):
    rig.pb.bus.publish(violation(rig, "v-1"))
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=rig.pb.clock.now_ns(), state="ACTIVE", reason="x"))

    rows = rig.ask("events", "InvariantViolated")

    assert [(r["kind"], r["correlation_id"]) for r in rows] == [("InvariantViolated", "v-1")]


def test_timer_fired_flushes_and_is_not_itself_journaled(rig, journal, store):
    rig.pb.bus.publish(violation(rig, "v-1"))
    flush(rig)

    assert [r["kind"] for r in store.events()] == ["InvariantViolated"]


def test_a_message_of_a_type_it_does_not_know_becomes_an_events_row_only(rig, journal, store):
    @dataclass(frozen=True, slots=True, kw_only=True)
    class SomethingNew(Message):
        price: Decimal

    rig.pb.bus.tell(JOURNAL, SomethingNew(ts_init_ns=DAY1, correlation_id="n-1", price=D("1.50")))
    rig.pb.bus.tell(JOURNAL, "not even a message")

    rows = rig.ask("events")

    assert [(r["kind"], r["data"]) for r in rows] == [
        ("SomethingNew", {"ts_init_ns": DAY1, "correlation_id": "n-1", "price": "1.50"}),
        ("str", {"repr": "'not even a message'"}),
    ]
    assert rig.ref.is_alive()


def test_two_identical_message_sequences_give_identical_event_data(rig, tmp_path):
    stores = [JournalStore(tmp_path / f"replay-{n}.db") for n in (1, 2)]
    for number, replay_store in enumerate(stores):
        ref = rig.start(Journal, journal_store=replay_store, run_id=f"replay-{number}")
        trip = Trip(rig)  # every message built afresh: new msg_ids, same content
        trip.mark(DAY1, "10000")
        position = trip.open("p1", DAY1 + SECOND)
        trip.close(position, DAY1 + HOUR, reference="101.50", price="101.49", balance="10006.85")
        trip.reject_entry("p2", DAY1 + 2 * HOUR)
        rig.ask("events")  # flushes
        rig.stop(ref)

    first, second = ([(r["kind"], r["ts_ns"], r["data"]) for r in s.events()] for s in stores)
    assert first == second and len(first) == 11
    assert {r["msg_id"] for r in stores[0].events()}.isdisjoint(r["msg_id"] for r in stores[1].events())
    for replay_store in stores:
        replay_store.close()


# --- trades, orders, daily rows ------------------------------------------------------------------------------

def test_a_position_opened_then_closed_gives_one_closed_trade_with_pnl_fees_order_ids_and_venue(rig, journal, trip):
    opened = trip.open("p1", DAY1, reference="100", price="100.02", fee="0.25")

    (open_row,) = rig.ask("trades")
    assert (open_row["status"], open_row["entry_price"], open_row["venue"]) == ("OPEN", "100.02", "paper")
    assert open_row["pnl"] is None and open_row["opened_ts_ns"] == DAY1

    trip.close(opened, DAY1 + HOUR, reference="101.50", price="101.49", fee="0.25", balance="10006.85")

    (row,) = rig.ask("trades")
    assert row["status"] == "CLOSED"
    assert row["pnl"] == "6.85", "5 x (101.49 - 100.02) less 0.50 of fees"
    assert row["fees"] == "0.50"
    assert row["pnl_pct"] == "0.01369726", "of the 500.10 entry notional"
    assert (row["entry_order_id"], row["exit_order_id"], row["venue"]) == ("p1-E", "p1-X1", "paper")
    assert (row["exit_price"], row["exit_reason"], row["run_id"]) == ("101.49", "TAKE_PROFIT", RUN)
    assert (row["opened_ts_ns"], row["closed_ts_ns"]) == (DAY1, DAY1 + HOUR)
    assert (row["strategy_id"], row["reasoning"], row["condition_id"]) == ("breakout", "range break", "c-p1")

    orders = {o["client_order_id"]: o for o in rig.ask("orders")}
    assert {k: orders["p1-E"][k] for k in ("status", "fill_price", "fee", "slippage_bps", "venue")} == {
        "status": "FILLED", "fill_price": "100.02", "fee": "0.25", "slippage_bps": "2.0000", "venue": "paper"}
    assert orders["p1-X1"]["slippage_bps"] == "0.9852", "sold 0.01 under the 101.50 reference"

    (day,) = rig.ask("daily")
    assert (day["date"], day["trades"], day["wins"], day["realized_pnl"], day["fees"]) == (
        "2024-03-01", 1, 1, "6.85", "0.50")

    totals = rig.ask("run_totals", RUN, "10000")
    assert totals == {"total_trades": 1, "wins": 1, "losses": 0, "realized_pnl_usd": "6.85",
                      "fees_paid_usd": "0.50", "slippage_avg_bps": "1.4926", "max_drawdown_pct": "0.0000"}


def test_a_rejected_entry_gives_a_rejected_row_and_no_trade_in_the_run_totals(rig, journal, trip):
    trip.reject_entry("p1", DAY1)
    trip.reject_entry("p2", DAY1 + SECOND, denied=True)

    rows = rig.ask("trades")
    orders = rig.ask("orders")

    assert [(r["position_id"], r["status"], r["pnl"]) for r in rows] == [("p1", "REJECTED", None), ("p2", "REJECTED", None)]
    assert rows[0]["exit_reason"] == "ENTRY_REJECTED: insufficient margin"
    assert [(o["client_order_id"], o["status"], o["reason"]) for o in orders] == [
        ("p1-E", "REJECTED", "insufficient margin"), ("p2-E", "DENIED", "daily loss limit")]
    assert rig.ask("run_totals", RUN, "10000")["total_trades"] == 0
    assert rig.ask("daily") == [], "a rejected entry is not a trade of the day"


def test_order_accepted_keeps_the_venue_order_id_and_a_final_status_is_never_overwritten(rig, journal):
    order = request("p1", OrderIntent.ENTRY, "100")
    bus = rig.pb.bus
    bus.send(SubmitOrder(ts_init_ns=DAY1, correlation_id="c-p1", order=order))
    bus.publish(OrderAccepted(ts_init_ns=DAY1, correlation_id="c-p1", order=order, venue_order_id="v-9"))
    assert rig.ask("orders")[0]["venue_order_id"] == "v-9"
    bus.publish(fill(order, "100", "0.25", DAY1 + 1, condition_id="c-p1"))
    bus.send(SubmitOrder(ts_init_ns=DAY1 + 2, correlation_id="c-p1", order=order))  # a late duplicate
    bus.publish(OrderRejected(ts_init_ns=DAY1 + 3, correlation_id="c-p1", order=order, reason="late"))

    (row,) = rig.ask("orders")

    assert (row["status"], row["ts_ns"], row["reason"], row["slippage_bps"]) == ("FILLED", DAY1 + 1, None, "0.0000")


def test_a_close_seen_twice_counts_once(rig, journal, trip):
    opened = trip.open("p1", DAY1)
    closed = trip.close(opened, DAY1 + HOUR, reference="101.50", price="101.49", balance="10006.85")
    rig.pb.bus.publish(PositionClosed(ts_init_ns=DAY1 + 2 * HOUR, correlation_id="c-p1", position=closed,
                                      balance=D("10006.85")))

    (day,) = rig.ask("daily")

    assert day["trades"] == 1
    assert rig.ask("trades")[0]["closed_ts_ns"] == DAY1 + HOUR


def test_daily_rows_are_keyed_by_the_engine_day_of_the_messages(rig, journal, trip, store):
    assert abs(rig.pb.clock.now_ns() - DAY1) > 90 * 24 * HOUR, "the clock is months away from the replayed days"
    trip.mark(DAY1, "10000")
    btc = trip.open("p1", DAY1 + SECOND)
    eth = trip.open("p2", DAY1 + 2 * SECOND, coin="ETH", reference="50", price="50")
    trip.mark(DAY1 + HOUR, "10040", unrealized="40")
    trip.close(btc, DAY1 + 2 * HOUR, reference="101.50", price="101.49", balance="10006.60")
    trip.mark(DAY1 + 3 * HOUR, "9980", unrealized="-26.60")
    trip.mark(DAY1 + 11 * HOUR, "9990", unrealized="-16.60")  # 23:00 UTC, still March 1st
    trip.close(eth, DAY1 + 13 * HOUR, reference="49", price="49", balance="10001.35")  # March 2nd
    rig.pb.bus.publish(KillSwitchTriggered(ts_init_ns=DAY1 + 14 * HOUR, reason="drawdown", equity=D("10001.35")))
    trip.mark(DAY1 + 15 * HOUR, "10001.35")

    days = rig.ask("daily")

    assert [d["date"] for d in days] == ["2024-03-01", "2024-03-02"]
    first, second = days
    assert (first["starting_equity"], first["ending_equity"], first["unrealized_pnl"]) == ("10000", "9990", "-16.60")
    assert (first["trades"], first["wins"], first["realized_pnl"], first["kill_switch"]) == (1, 1, "6.85", False)
    assert first["max_drawdown_pct"] == "0.5976", "10040 down to 9980"
    assert (second["starting_equity"], second["ending_equity"], second["trades"], second["losses"]) == (
        "9990", "10001.35", 1, 1)
    assert second["realized_pnl"] == "-5.50" and second["kill_switch"] is True
    assert [d["date"] for d in rig.ask("daily", 1)] == ["2024-03-02"], "the last engine day, not today"
    assert {t["position_id"] for t in rig.ask("trades", None, 0.5)} == {"p2"}

    marks = [(s["ts_ns"], s["equity"], s["unrealized_pnl"]) for s in store.equity() if s["kind"] == "MARK"]
    closes = [(t["closed_ts_ns"], t["pnl"], t["fees"]) for t in store.trades(status="CLOSED")]
    kills = [e["ts_ns"] for e in store.events("KillSwitchTriggered")]
    assert days == jsonable(daily_rows(marks, closes, kills)), "incremental rows == rows from the tables"


def test_run_totals_agree_with_the_trades_table_and_the_equity_curve(rig, journal, trip, store):
    trip.mark(DAY1, "10000")
    first = trip.open("p1", DAY1 + SECOND)
    second = trip.open("p2", DAY1 + 2 * SECOND, coin="ETH", reference="50", price="50.01")
    trip.mark(DAY1 + HOUR, "10020", unrealized="20")
    closing = trip.start_exit(second, DAY1 + 2 * HOUR, reference="51", unrealized="4.70")  # its last mark
    trip.close(first, DAY1 + 2 * HOUR, reference="98", price="97.99", balance="9989.10")
    trip.finish_exit(closing, DAY1 + 3 * HOUR, price="51", balance="9993.80")
    trip.reject_entry("p3", DAY1 + 4 * HOUR)
    trip.mark(DAY1 + 5 * HOUR, "9993.80")

    handle = JournalHandle(rig.pb.bus, WAIT)  # what engine.journal is
    totals = handle.run_totals(RUN, "10000")

    trades = [t for t in handle.trades(run_id=RUN) if t["status"] == "CLOSED"]
    assert totals["total_trades"] == len(trades) == 2
    assert D(totals["realized_pnl_usd"]) == sum(D(t["pnl"]) for t in trades) == D("-6.20")
    assert D(totals["fees_paid_usd"]) == sum(D(t["fees"]) for t in trades) == D("1.00")
    assert (totals["wins"], totals["losses"]) == (1, 1)
    curve = [(s["kind"], s["equity"]) for s in store.equity(run_id=RUN)]
    assert curve == [("MARK", "10000"), ("MARK", "10020"), ("CLOSE", "9994.05"), ("CLOSE", "9993.80"),
                     ("MARK", "9993.80")], "after p1 closes, p2 counts with its last known mark (4.70 + 0.25 fees)"
    assert totals["max_drawdown_pct"] == "0.2615", "10020 down to 9993.80"


# --- batching -------------------------------------------------------------------------------------------------

def test_nothing_is_written_before_a_flush_and_everything_after(rig, journal, trip, store):
    position = trip.open("p1", DAY1)
    trip.mark(DAY1 + 1, "10000")
    rig.pb.drain()
    assert (store.events(), store.trades(), store.orders(), store.equity()) == ([], [], [], [])

    flush(rig)

    assert [e["kind"] for e in store.events()] == ["SubmitOrder", "OrderFilled", "PositionOpened", "AccountMarked"]
    assert [t["position_id"] for t in store.trades()] == [position.id]
    assert [o["status"] for o in store.orders()] == ["FILLED"]
    assert len(store.equity()) == 1 and len(store.daily()) == 1


def test_the_500th_buffered_row_writes_the_batch(rig, journal, store):
    for n in range(FLUSH_ROWS - 1):
        rig.pb.bus.publish(violation(rig, f"v-{n}"))
    rig.pb.drain()
    assert store.events() == []

    rig.pb.bus.publish(violation(rig, "last"))
    rig.pb.drain()

    assert len(store.events()) == FLUSH_ROWS


def test_a_query_writes_the_buffer_before_answering(rig, journal, trip, store):
    trip.open("p1", DAY1)
    rig.pb.drain()
    assert store.trades() == []

    assert [t["position_id"] for t in rig.ask("trades", "BTC")] == ["p1"]
    assert len(store.events()) == 3
    assert rig.ask("stats")["buffered"] == 0


def test_the_flush_timer_runs_the_engine_stores_checkpoint(rig, store):
    checkpoints = []
    rig.start(Journal, journal_store=store, run_id=RUN, checkpoint=lambda: checkpoints.append(1))
    flush(rig)
    flush(rig)

    assert checkpoints == [1, 1]


def test_buffered_rows_are_written_when_the_journal_is_stopped(rig, gated):
    ref = rig.start(Journal, journal_store=gated, run_id=RUN)
    hold_journal_in_its_first_write(rig, gated)
    rig.pb.bus.publish(violation(rig, "b"))
    rig.pb.bus.publish(violation(rig, "c"))
    stopping = ref.stop(block=False)  # queued behind b and c

    gated.release.set()
    assert stopping.get(timeout=WAIT)

    assert stored(gated) == ["a", "b", "c"]
    assert gated.batches == [["a"], ["b", "c"]], "b and c were buffered and written by the stop"


def test_a_crash_still_writes_the_buffered_rows(rig, gated):
    notices = FailureNotices()
    ref = rig.start(Journal, journal_store=gated, run_id=RUN, on_failure_notice=notices)
    hold_journal_in_its_first_write(rig, gated)
    rig.pb.bus.publish(violation(rig, "b"))
    rig.pb.bus.publish(violation(rig, "c"))
    rig.pb.bus.tell(JOURNAL, InjectCrash(ts_init_ns=rig.pb.clock.now_ns(), reason="poison"))

    gated.release.set()

    assert ref.actor_stopped.wait(WAIT), "InjectCrash did not kill the Journal"
    assert notices.wait(), "on_failure never finished"
    assert [role for role, _ in notices.notices] == [JOURNAL]
    assert stored(gated) == ["a", "b", "c"]
    assert gated.batches == [["a"], ["b", "c"]], "b and c were buffered and written by on_failure"


def test_rows_of_a_batch_whose_write_failed_are_written_when_the_journal_closes(rig, gated):
    notices = FailureNotices()
    rig.start(Journal, journal_store=gated, run_id=RUN, on_failure_notice=notices)
    hold_journal_in_its_first_write(rig, gated)
    gated.fail_call = 2  # the batch b, c, d meets a locked database once
    for tag in ("b", "c", "d"):
        rig.pb.bus.publish(violation(rig, tag))
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="flush"))

    gated.release.set()

    assert notices.wait(), "the failed write should crash the Journal (a state owner)"
    assert stored(gated) == ["a", "b", "c", "d"], "the failed batch stayed buffered and on_failure wrote it"


# --- restart ----------------------------------------------------------------------------------------------------

def test_a_restart_after_a_crash_loses_nothing_and_rebuilds_what_it_keeps_in_memory(rig, store, trip):
    notices = FailureNotices()
    first = rig.start(Journal, journal_store=store, run_id=RUN, on_failure_notice=notices)
    trip.mark(DAY1, "10000")
    btc = trip.open("p1", DAY1 + SECOND)
    eth = trip.open("p2", DAY1 + 2 * SECOND, coin="ETH", reference="50", price="50")
    trip.start_exit(eth, DAY1 + 3 * SECOND, reference="50.50", unrealized="2.25")  # exit then refused
    rig.pb.bus.publish(PositionChanged(
        ts_init_ns=DAY1 + 4 * SECOND, correlation_id="c-p2", change="EXIT_FAILED: venue down",
        position=eth.transition(PositionTrigger.EXIT_SUBMITTED, pending_order_id="p2-X1", exit_attempts=1,
                                unrealized_pnl=D("2.25")).transition(PositionTrigger.EXIT_FAILED,
                                                                     pending_order_id=None)))
    flush(rig)  # written
    trip.mark(DAY1 + 11 * HOUR, "10005", unrealized="5")  # buffered only
    rig.pb.bus.tell(JOURNAL, InjectCrash(ts_init_ns=rig.pb.clock.now_ns(), reason="poison"))
    assert first.actor_stopped.wait(WAIT) and notices.wait()
    assert [s["equity"] for s in store.equity()] == ["10000", "10005"], "on_failure wrote the buffered mark"

    rig.start(Journal, journal_store=store, run_id=RUN)  # the supervisor's restart
    trip.close(btc, DAY1 + 13 * HOUR, reference="101.50", price="101.49", balance="10006.60")  # next day

    trades = {t["position_id"]: t for t in rig.ask("trades")}
    assert trades["p1"]["status"] == "CLOSED" and trades["p1"]["opened_ts_ns"] == DAY1 + SECOND
    assert trades["p2"]["status"] == "OPEN" and trades["p2"]["unrealized_pnl"] == "2.25"
    assert store.equity()[-1]["equity"] == "10009.10", "p2's share (2.25 + 0.25 fees) was rebuilt"
    days = {d["date"]: d for d in rig.ask("daily")}
    assert days["2024-03-02"]["starting_equity"] == "10005", "the last mark before the day was rebuilt"
    assert days["2024-03-02"]["trades"] == 1 and days["2024-03-01"]["trades"] == 0
    kinds = [e["kind"] for e in rig.ask("events")]
    assert kinds.count("PositionOpened") == 2 and kinds.count("PositionClosed") == 1


def test_on_start_a_difference_between_open_trades_and_the_engine_positions_is_reported_not_patched(
        rig, store, tmp_path, logs):
    """With the outbox nothing the Sniper decided can be missing from the journal, so a
    difference on start is a bug to report loudly (JOURNAL_MISMATCH), never rows to invent with
    the restart's timestamps."""
    engine_store = Store(tmp_path / "engine.db")
    try:
        t0 = 1_700_000_000_000_000_000
        first = rig.start(Journal, journal_store=store, run_id="before")
        Trip(rig).open("p-journaled", t0)  # an OPEN trade the engine store knows nothing of
        flush(rig)
        first.stop()
        opened = pending("p-open").transition(
            PositionTrigger.ENTRY_FILLED, entry_price=D("100"), entry_time=from_epoch_ns(t0).astimezone(),
            quantity=D("5"), stop_loss_price=D("98"), take_profit_price=D("101.5"), current_price=D("100"),
            fees_paid=D("0.25"), unrealized_pnl=D("-0.25"), pending_order_id=None,
        )
        engine_store.save_position(opened)  # written behind the Journal's back (no outbox row)

        rig.start(Journal, journal_store=store, run_id="after", outbox=engine_store)

        assert logs.wait_for("JOURNAL_MISMATCH: position p-open is active in the engine store")
        assert logs.wait_for("JOURNAL_MISMATCH: trade p-journaled is OPEN in the journal")
        rows = {row["position_id"]: row for row in rig.ask("trades")}
        assert set(rows) == {"p-journaled"}, "nothing is invented"
    finally:
        engine_store.close()
