"""The engine store's outbox (state/store.py): append, read and delete in seq order, a seq never
reused, the codec's round trip of every message the bus routes to the Journal, undecodable rows
named by seq, and deferred commits (a decision and what it announces commit together). One
thread; a second connection (plain sqlite3) shows what is committed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.bus import EVENT_ROUTES, JOURNAL, JOURNAL_TAP
from state import messages as m
from state.bars import Bar
from state.models import Position, TradeCondition
from state.reconcile import Difference, DifferenceKind
from state.store import OutboxDecodeError, OutboxRow, Store, encode_message
from state.types import OrderIntent, PositionStatus, Side, TradingState

D = Decimal
T = 1_582_329_600_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "engine.db")
    try:
        yield opened
    finally:
        opened.close()


def committed(store: Store, sql: str) -> Any:
    """What another connection sees (committed rows only)."""
    with sqlite3.connect(store.path) as db:
        return db.execute(sql).fetchone()[0]


def expired(cid: str, ts: int = T) -> m.ConditionExpired:
    return m.ConditionExpired(ts_init_ns=ts, correlation_id=cid, condition_id=cid)


# --- samples of every Journal-bound message --------------------------------------------------------

CONDITION = TradeCondition(
    id="c-1", coin="BTC", direction="LONG", trigger_price="9700.5", trigger_type="ABOVE", stop_loss_pct="0.002",
    take_profit_pct="0.003", position_size_usd="100", strategy_id="breakout", reasoning="range — ünïcode",
    created_at=datetime(2020, 2, 22, tzinfo=timezone.utc), valid_until=datetime(2020, 2, 22, 0, 1, tzinfo=timezone.utc),
)
POSITION = Position(
    id="p-1", coin="BTC", direction="SHORT", size_usd=D("100"), condition_id="c-1", strategy_id="breakout",
    reasoning="r", stop_loss_pct=D("0.002"), take_profit_pct=D("0.003"), status=PositionStatus.OPEN,
    entry_price=D("9700.50"), entry_time=datetime(2020, 2, 22, 0, 0, 5, 123456, tzinfo=timezone(timedelta(hours=1))),
    quantity=D("0.01030"), stop_loss_price=D("9719.90"), take_profit_price=D("9671.40"), fees_paid=D("0.0499"),
)
ORDER = m.OrderRequest(client_order_id="p-1-E", position_id="p-1", coin="BTC", side=Side.SELL,
                       quantity=D("0.01030"), intent=OrderIntent.ENTRY, reference_price=D("9700.5"),
                       reference_ts_ms=1_582_329_605_123)
SAMPLES: dict[type, Any] = {
    m.FeedFinished: m.FeedFinished(ts_init_ns=T, source="replay", ticks=12, bad_rows=1),
    m.FeedStale: m.FeedStale(ts_init_ns=T, coin="BTC", silent_s=15.5, last_price=D("9700.1")),
    m.FeedRecovered: m.FeedRecovered(ts_init_ns=T, coin="BTC", stale_s=3.25),
    m.ConditionArmed: m.ConditionArmed(ts_init_ns=T, correlation_id="c-1", condition=CONDITION),
    m.ConditionsReplaced: m.ConditionsReplaced(ts_init_ns=T, strategy_id="breakout", coin="BTC",
                                               armed=(CONDITION,), canceled=("c-0",)),
    m.FeedGaveUp: m.FeedGaveUp(ts_init_ns=T, source="binance", waited_s=300.0,
                               detail="3 connect attempt(s) to wss://***@127.0.0.1:9 (0 opened, 3 failed)"),
    m.ConditionRejected: m.ConditionRejected(ts_init_ns=T, condition_id="c-1", reason="too far"),
    m.ConditionCanceled: m.ConditionCanceled(ts_init_ns=T, condition_id="c-1", reason="replaced"),
    m.ConditionExpired: expired("c-1"),
    m.ConditionTriggered: m.ConditionTriggered(ts_init_ns=T, condition=CONDITION, price=D("9701"),
                                               ts_ms=1_582_329_605_123, position_id="p-1"),
    m.ConditionBlocked: m.ConditionBlocked(ts_init_ns=T, condition_id="c-1", reason="max_per_coin"),
    m.OrderDenied: m.OrderDenied(ts_init_ns=T, order=ORDER, reason="HALTED"),
    m.OrderAccepted: m.OrderAccepted(ts_init_ns=T, order=ORDER, venue_order_id="v-1"),
    m.OrderFilled: m.OrderFilled(ts_init_ns=T, order=ORDER, venue_order_id="v-1", trade_id="t-1",
                                 fill_price=D("9700.40"), fill_quantity=D("0.01030"), cumulative_quantity=D("0.01030"), fee=D("0.0499"),
                                 ts_event_ms=1_582_329_605_123),
    m.OrderRejected: m.OrderRejected(ts_init_ns=T, order=ORDER, reason="insufficient margin"),
    m.OrderCanceled: m.OrderCanceled(ts_init_ns=T, order=ORDER, venue_order_id="v-1", filled_quantity=D("0.003"),
                                     reason="entry time limit"),
    m.OrderExpired: m.OrderExpired(ts_init_ns=T, order=ORDER, venue_order_id="v-1", filled_quantity=D(0),
                                   reason="post-only order would take liquidity"),
    m.CancelOrder: m.CancelOrder(ts_init_ns=T, correlation_id="c-1", client_order_id="p-1-E", reason="shutdown"),
    m.PositionOpened: m.PositionOpened(ts_init_ns=T, correlation_id="c-1", position=POSITION),
    m.PositionChanged: m.PositionChanged(ts_init_ns=T, position=POSITION, change="STOP_ADJUSTED"),
    m.PositionClosed: m.PositionClosed(ts_init_ns=T, position=POSITION, balance=D("9999.95")),
    m.TradingStateChanged: m.TradingStateChanged(ts_init_ns=T, state=TradingState.REDUCING, reason="why"),
    m.AccountMarked: m.AccountMarked(ts_init_ns=T, balance=D("9999.9"), unrealized_pnl=D("-0.05"),
                                     equity=D("9999.85"), open_positions=1),
    m.KillSwitchTriggered: m.KillSwitchTriggered(ts_init_ns=T, reason="daily loss", equity=D("9500")),
    m.ActorRestarted: m.ActorRestarted(ts_init_ns=T, role="sniper", restarts=2, reason="boom"),
    m.InvariantViolated: m.InvariantViolated(ts_init_ns=T, code="CASH", detail="negative"),
    m.VenueAlert: m.VenueAlert(ts_init_ns=T, kind="BANNED", message="418 until 12:00", until_ms=1_700_000_000_000),
    m.VenueReconciled: m.VenueReconciled(
        ts_init_ns=T, differences=(Difference(kind=DifferenceKind.SIZE_MISMATCH, coin="BTC", message="1 vs 2",
                                              engine_side=Side.BUY, engine_quantity=D(1), venue_quantity=D(2)),),
        blocked={"BTC": "SIZE_MISMATCH: 1 vs 2"}, fills_applied=("t-9",), fills_since_ms=1_582_329_000_000),
    m.BlockCoins: m.BlockCoins(ts_init_ns=T, coins={"BTC": "SIZE_MISMATCH: 1 vs 2"}),
    m.SubmitOrder: m.SubmitOrder(ts_init_ns=T, correlation_id="c-1", order=ORDER),
    m.ExecuteOrder: m.ExecuteOrder(ts_init_ns=T, correlation_id="c-1", order=ORDER),
    m.ClosePosition: m.ClosePosition(ts_init_ns=T, position_id="p-1", reason="KILL_SWITCH"),
    m.AdjustStop: m.AdjustStop(ts_init_ns=T, position_id="p-1", stop_loss_price=D("9710.00")),
    m.SetTradingState: m.SetTradingState(ts_init_ns=T, state="HALTED", reason="supervisor"),
    m.CancelCondition: m.CancelCondition(ts_init_ns=T, condition_id="c-1", reason="manual"),
}


def journal_bound() -> set[type]:
    return {kind for kind, roles in EVENT_ROUTES.items() if JOURNAL in roles} | set(JOURNAL_TAP)


def test_the_samples_cover_every_message_the_bus_routes_to_the_journal():
    missing = sorted(kind.__name__ for kind in journal_bound() - set(SAMPLES))
    assert not missing, f"add a sample of {missing} to SAMPLES: the outbox codec must round-trip it"


@pytest.mark.parametrize("kind", sorted(SAMPLES, key=lambda k: k.__name__), ids=lambda k: k.__name__)
def test_every_journal_bound_message_comes_back_from_the_outbox_equal_and_of_its_type(store, kind):
    message = SAMPLES[kind]
    seq = store.append_outbox("run-a", message)
    (row,) = store.read_outbox(seq - 1)
    back = row.message()
    assert type(back) is kind and back == message and back.msg_id == message.msg_id
    assert (row.seq, row.run_id, row.ts_ns, row.kind) == (seq, "run-a", T, kind.__name__)


def test_a_bar_inside_a_message_round_trips_too(store):
    closed = m.BarClosed(ts_init_ns=T, bar=Bar(coin="BTC", start_ms=0, end_ms=60_000, open=D("1"), high=D("2"),
                                               low=D("0.5"), close=D("1.5"), volume=D("3"), trades=4))
    store.append_outbox("r", closed)
    assert store.read_outbox(0)[0].message() == closed


# --- the table --------------------------------------------------------------------------------------

def test_rows_come_back_in_seq_order_after_a_cursor_and_in_chunks(store):
    seqs = [store.append_outbox("r", expired(f"c-{n}", T + n)) for n in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [r.seq for r in store.read_outbox(seqs[1], limit=2)] == seqs[2:4]
    assert [r.message().condition_id for r in store.read_outbox(0)] == [f"c-{n}" for n in range(5)]
    assert store.read_outbox(seqs[-1]) == []


def test_deleted_rows_never_give_their_seq_to_a_new_row_so_a_cursor_stays_valid(store, tmp_path):
    first = [store.append_outbox("r", expired(f"c-{n}")) for n in range(3)]
    assert store.delete_outbox(first[-1]) == 3 and store.outbox_size() == 0
    store.close()
    reopened = Store(tmp_path / "engine.db")
    try:
        later = reopened.append_outbox("r", expired("c-9"))
        assert later > first[-1], "AUTOINCREMENT: a consumer whose cursor is at the deleted rows sees the new one"
        assert [r.seq for r in reopened.read_outbox(first[-1])] == [later]
        assert reopened.outbox_id == store.outbox_id != ""
    finally:
        reopened.close()


def test_two_stores_have_different_outbox_ids(tmp_path):
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    try:
        assert a.outbox_id != b.outbox_id
    finally:
        a.close(), b.close()


def test_a_row_that_cannot_be_decoded_raises_an_error_naming_its_seq_and_kind():
    row = OutboxRow(seq=41, run_id="old", ts_ns=T, kind="PositionMoved", data=b"\x80\x05not a pickle")
    with pytest.raises(OutboxDecodeError, match=r"outbox row 41 \(PositionMoved\): cannot decode"):
        row.message()
    lying = OutboxRow(seq=42, run_id="old", ts_ns=T, kind="PositionOpened", data=encode_message(expired("c")))
    with pytest.raises(OutboxDecodeError, match="outbox row 42: holds a ConditionExpired, its kind says PositionOpened"):
        lying.message()


def test_a_row_outside_any_transaction_is_committed_at_once(store):
    store.append_outbox("r", expired("c"))
    assert committed(store, "SELECT COUNT(*) FROM outbox") == 1


def test_inside_a_transaction_the_row_commits_with_the_decision_or_not_at_all(store):
    with store.transaction():
        store.set_setting("decision", "1")
        store.append_outbox("r", expired("c"))
        assert committed(store, "SELECT COUNT(*) FROM outbox") == 0
    assert committed(store, "SELECT COUNT(*) FROM outbox") == 1
    with pytest.raises(RuntimeError), store.transaction():
        store.set_setting("decision", "2")
        store.append_outbox("r", expired("d"))
        raise RuntimeError("the decision fails")
    assert committed(store, "SELECT COUNT(*) FROM outbox") == 1
    assert store.get_setting("decision") == "1"


# --- deferred commits ------------------------------------------------------------------------------

def test_while_deferring_a_decision_stays_uncommitted_until_the_end_with_what_it_announced(store):
    with store.deferring():
        assert not store.deferred_open()
        with store.transaction():
            store.set_setting("decision", "1")
        assert store.deferred_open(), "the block ended but its transaction stays open"
        store.append_outbox("r", expired("c"))  # published after the block, as actors do
        with store.transaction():
            store.set_setting("second", "2")  # a savepoint in the same transaction
        assert committed(store, "SELECT COUNT(*) FROM settings WHERE key IN ('decision', 'second')") == 0
        assert committed(store, "SELECT COUNT(*) FROM outbox") == 0
    assert not store.deferred_open()
    assert committed(store, "SELECT COUNT(*) FROM settings WHERE key IN ('decision', 'second')") == 2
    assert committed(store, "SELECT COUNT(*) FROM outbox") == 1


def test_a_handler_that_raises_while_deferring_commits_neither_its_decision_nor_its_announcements(store):
    with pytest.raises(RuntimeError), store.deferring():
        with store.transaction():
            store.set_setting("decision", "1")
        store.append_outbox("r", expired("c"))
        raise RuntimeError("crash after the decision")
    assert store.get_setting("decision") is None and store.outbox_size() == 0
    assert not store.deferred_open()


def test_a_failing_block_while_deferring_undoes_only_itself(store):
    with store.deferring():
        with store.transaction():
            store.set_setting("kept", "1")
        with pytest.raises(ValueError), store.transaction():
            store.set_setting("undone", "1")
            raise ValueError("this block only")
        store.append_outbox("r", expired("c"))
    assert store.get_setting("kept") == "1" and store.get_setting("undone") is None
    assert store.outbox_size() == 1


def test_without_a_transaction_a_deferring_thread_still_commits_each_write_at_once(store):
    """The Executor's write-ahead order record must be durable before the venue sees it."""
    with store.deferring():
        store.set_setting("write_ahead", "1")
        assert committed(store, "SELECT COUNT(*) FROM settings WHERE key = 'write_ahead'") == 1
        assert not store.deferred_open()
