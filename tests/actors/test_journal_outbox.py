"""The Journal consuming the engine store's outbox (a threaded actor on a probe bus whose outbox
is a real engine store): rows in seq order with the time and run of the decision, exactly once
across a crash between its commit and the outbox delete and across a crash before its commit,
re-sent copies and repeated announcements recorded once, undecodable rows reported and kept.
Messages are appended to the outbox directly, as the bus does on the sender's thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import peewee
import pykka
import pytest

from actors.bus import JOURNAL
from actors.journal import Journal
from state.journal_store import JournalBatch, JournalStore
from state.messages import AccountMarked, ConditionBlocked, InjectCrash, InvariantViolated, TimerFired, TradingStateChanged
from state.store import Store
from state.types import TradingState
from tests.actors.helpers import ActorRig, FailureNotices
from tests.actors.test_journal import DAY1, SECOND, Trip

D = Decimal


class FailingStore(JournalStore):
    """A journal store whose next ``fail_writes`` writes raise like a locked database."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.fail_writes = 0

    def write(self, batch: JournalBatch) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise peewee.OperationalError("database is locked")
        super().write(batch)


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(JOURNAL), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def engine_store(tmp_path) -> Iterator[Store]:
    opened = Store(tmp_path / "engine.db")
    yield opened
    opened.close()


@pytest.fixture
def store(tmp_path) -> Iterator[FailingStore]:
    opened = FailingStore(tmp_path / "journal.db")
    yield opened
    opened.close()


class OutboxTrip(Trip):
    """``Trip``'s messages appended to the outbox as run ``run_id`` (what the bus does)."""

    def __init__(self, rig: ActorRig, outbox: Store, run_id: str) -> None:
        super().__init__(rig)
        self.outbox, self.run_id = outbox, run_id

    def _send(self, message: Any) -> None:
        self.outbox.append_outbox(self.run_id, message)

    _publish = _send


def start(rig: ActorRig, store: JournalStore, outbox: Store, run_id: str = "journal-run", **extra: Any) -> Any:
    return rig.start(Journal, journal_store=store, run_id=run_id, outbox=outbox, **extra)


def kinds(store: JournalStore) -> list[str]:
    return [row["kind"] for row in store.events()]


def test_rows_come_from_the_outbox_with_the_time_and_run_of_the_decision_and_consumed_rows_go(
        rig, store, engine_store):
    trip = OutboxTrip(rig, engine_store, "decider-run")
    position = trip.open("p1", DAY1)
    trip.close(position, DAY1 + SECOND, reference="101", price="101", balance="10004.75")
    start(rig, store, engine_store)

    (trade,) = rig.ask("trades")
    assert trade["status"] == "CLOSED" and trade["run_id"] == "decider-run"
    assert (trade["opened_ts_ns"], trade["closed_ts_ns"]) == (DAY1, DAY1 + SECOND)
    events = rig.ask("events")
    assert [e["kind"] for e in events] == ["SubmitOrder", "OrderFilled", "PositionOpened", "PositionChanged",
                                           "SubmitOrder", "OrderFilled", "PositionClosed"]
    assert {e["run_id"] for e in events} == {"decider-run"}
    assert [o["status"] for o in rig.ask("orders")] == ["FILLED", "FILLED"]
    rig.stop()
    assert engine_store.outbox_size() == 0, "consumed rows are deleted from the engine store"
    assert store.load_cursor(engine_store.outbox_id) == engine_store.append_outbox("x", AccountMarked(
        ts_init_ns=DAY1, balance=D(1), unrealized_pnl=D(0), equity=D(1), open_positions=0)) - 1


def test_each_request_consumes_what_was_appended_before_it(rig, store, engine_store):
    start(rig, store, engine_store)
    for n in range(3):
        engine_store.append_outbox("r", InvariantViolated(ts_init_ns=DAY1 + n, correlation_id=f"v{n}", code="T",
                                                          detail=str(n)))
        assert [e["correlation_id"] for e in rig.ask("events")] == [f"v{i}" for i in range(n + 1)]


def test_a_crash_between_the_journal_commit_and_the_outbox_delete_records_nothing_twice(
        rig, store, engine_store, monkeypatch):
    trip = OutboxTrip(rig, engine_store, "r1")
    trip.open("p1", DAY1)
    monkeypatch.setattr(Store, "delete_outbox", lambda self, through: (_ for _ in ()).throw(OSError("killed")))
    first = start(rig, store, engine_store)  # its deletes fail: as if killed right after each commit
    assert len(rig.ask("events")) == 3  # consumed and committed with the cursor
    first.stop()
    assert engine_store.outbox_size() == 3
    monkeypatch.undo()

    start(rig, store, engine_store)
    assert [e["kind"] for e in rig.ask("events")] == ["SubmitOrder", "OrderFilled", "PositionOpened"], \
        "the cursor skips them"
    assert engine_store.outbox_size() == 0, "and the next start deletes them"


def test_a_crash_before_the_journal_commit_leaves_the_rows_in_the_outbox_for_the_next_start(
        rig, store, engine_store):
    notices = FailureNotices()
    store.fail_writes = 1_000  # every write fails: nothing reaches the journal
    OutboxTrip(rig, engine_store, "r1").open("p1", DAY1)
    first = rig.start(Journal, journal_store=store, run_id="j", outbox=engine_store, register=False,
                      on_failure_notice=notices)
    try:  # on_start could not write either: it may have died of that before this arrives
        first.tell(InjectCrash(ts_init_ns=DAY1, reason="killed"))
    except pykka.ActorDeadError:
        pass
    assert notices.wait() or not first.is_alive()
    assert store.events() == [] and store.load_cursor(engine_store.outbox_id) == 0
    assert engine_store.outbox_size() == 3, "nothing is deleted before it is in the journal"

    store.fail_writes = 0
    start(rig, store, engine_store)
    assert [e["kind"] for e in rig.ask("events")] == ["SubmitOrder", "OrderFilled", "PositionOpened"]
    assert [t["status"] for t in rig.ask("trades")] == ["OPEN"]


def test_a_failed_write_crashes_the_journal_and_its_successor_writes_the_rows_once(rig, store, engine_store):
    notices = FailureNotices()
    first = rig.start(Journal, journal_store=store, run_id="j", outbox=engine_store, on_failure_notice=notices)
    assert rig.ask("ping", ref=first) == JOURNAL
    store.fail_writes = 1
    engine_store.append_outbox("r", InvariantViolated(ts_init_ns=DAY1, correlation_id="v", code="T", detail="x"))
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=DAY1, name="flush"))
    assert notices.wait(), "a state owner crashes on a failed write"
    assert store.events() == [] and engine_store.outbox_size() == 1

    start(rig, store, engine_store)  # the supervisor's restart
    assert [e["correlation_id"] for e in rig.ask("events")] == ["v"]


def test_an_undecodable_row_is_reported_and_recorded_with_its_seq_and_the_next_rows_go_on(
        rig, store, engine_store, logs):
    engine_store.db.execute_sql("INSERT INTO outbox (run_id, ts_ns, kind, data) VALUES (?, ?, ?, ?)",
                                ("older-version", DAY1, "PositionMoved", b"\x80\x05garbage"))
    engine_store.append_outbox("r", InvariantViolated(ts_init_ns=DAY1 + 1, correlation_id="after", code="T",
                                                      detail="x"))
    start(rig, store, engine_store)
    bad, good = rig.ask("events")
    assert bad["kind"] == "OutboxUndecodable" and bad["run_id"] == "older-version" and bad["ts_ns"] == DAY1
    assert bad["data"]["seq"] == 1 and bad["data"]["kind"] == "PositionMoved"
    assert bytes.fromhex(bad["data"]["data_hex"]) == b"\x80\x05garbage", "kept, not dropped"
    assert good["correlation_id"] == "after"
    assert logs.wait_for("JOURNAL_OUTBOX_UNDECODABLE: outbox row 1 (PositionMoved)")
    assert rig.ask("stats")["undecodable"] == 1


def test_after_a_restart_a_message_re_sent_exactly_as_before_is_recorded_once(rig, store, engine_store):
    before = OutboxTrip(rig, engine_store, "killed-run")
    before.open("p1", DAY1)
    first = start(rig, store, engine_store)
    rig.ask("events")
    first.stop()
    again = OutboxTrip(rig, engine_store, "restarted-run")
    start(rig, store, engine_store)
    assert rig.ask("ping") == JOURNAL  # started (in the engine the Journal starts before the others)
    again.open("p1", DAY1)  # a restart re-does the entry: the same order, fill and opening, same time
    new = InvariantViolated(ts_init_ns=DAY1, correlation_id="new", code="T", detail="not seen before")
    engine_store.append_outbox("restarted-run", new)
    events = rig.ask("events")
    assert [e["kind"] for e in events] == ["SubmitOrder", "OrderFilled", "PositionOpened", "InvariantViolated"]
    assert {e["run_id"] for e in events[:3]} == {"killed-run"}
    assert rig.ask("stats")["duplicates"] == 3


def test_a_re_send_already_in_the_outbox_behind_what_the_killed_run_left_is_recorded_once(
        rig, store, engine_store):
    """The other actors do not wait for the Journal's start: a restarted Sniper's re-send can be
    in the outbox behind the killed run's unconsumed rows, and be consumed in the same flush."""
    OutboxTrip(rig, engine_store, "killed-run").open("p1", DAY1)  # never consumed: killed first
    OutboxTrip(rig, engine_store, "restarted-run").open("p1", DAY1)  # re-done before the Journal starts
    start(rig, store, engine_store, run_id="restarted-run")
    events = rig.ask("events")
    assert [e["kind"] for e in events] == ["SubmitOrder", "OrderFilled", "PositionOpened"]
    assert {e["run_id"] for e in events} == {"killed-run"}
    assert rig.ask("stats")["duplicates"] == 3


def test_an_announcement_equal_to_the_last_one_of_its_subject_is_not_recorded_again(rig, store, engine_store):
    def mark(ts: int, equity: str) -> AccountMarked:
        return AccountMarked(ts_init_ns=ts, balance=D(equity), unrealized_pnl=D(0), equity=D(equity),
                             open_positions=0)

    def state(ts: int, value: TradingState) -> TradingStateChanged:
        return TradingStateChanged(ts_init_ns=ts, state=value, reason="")

    def blocked(ts: int, cid: str) -> ConditionBlocked:
        return ConditionBlocked(ts_init_ns=ts, condition_id=cid, reason="max_per_coin")

    first = start(rig, store, engine_store)
    for message in (state(DAY1, TradingState.ACTIVE), mark(DAY1, "100"), blocked(DAY1, "c1")):
        engine_store.append_outbox("killed-run", message)
    rig.ask("events")
    first.stop()
    start(rig, store, engine_store)
    assert rig.ask("ping") == JOURNAL  # the restarted process's actors announce again, later:
    for message in (state(DAY1 + 5, TradingState.ACTIVE), mark(DAY1 + 5, "100"), blocked(DAY1 + 6, "c1"),
                    blocked(DAY1 + 7, "c2"), mark(DAY1 + 8, "101"), mark(DAY1 + 9, "100"),
                    state(DAY1 + 10, TradingState.HALTED), blocked(DAY1 + 11, "c1")):
        engine_store.append_outbox("restarted-run", message)
    recorded = [(e["kind"], e["ts_ns"] - DAY1) for e in rig.ask("events")]
    assert recorded == [
        ("TradingStateChanged", 0), ("AccountMarked", 0), ("ConditionBlocked", 0),
        ("ConditionBlocked", 7), ("AccountMarked", 8), ("AccountMarked", 9),
        ("TradingStateChanged", 10), ("ConditionBlocked", 11),  # a new trading state: blocks are news again
    ]
    assert [json.loads(json.dumps(row["equity"])) for row in store.equity()] == ["100", "101", "100"]
