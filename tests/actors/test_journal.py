"""The Journal as a threaded actor: every other role is a probe on a real bus, the store is real.

To see rows *buffered* (not yet written) the tests hold the Journal inside its first write with
a gate in the store, queue more mail behind it, then release it: the queued rows are buffered
because the mailbox is not empty, and only a later flush (stop, crash) can write them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest

from actors.bus import JOURNAL
from actors.journal import Journal
from state.messages import (
    InjectCrash,
    InvariantViolated,
    PositionOpened,
    SetTradingState,
    SubmitOrder,
    TimerFired,
    TradingStateChanged,
)
from state.store import Store
from state.types import TradingState
from tests.actors.helpers import ActorRig, FailureNotices, open_position, order_filled, order_request
from tests.conftest import WAIT


class GatedStore(Store):
    """A real store whose ``append_events`` call number ``block_call`` waits for ``release``
    and whose call number ``fail_call`` raises like a locked database."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.block_call: int | None = None
        self.fail_call: int | None = None
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def append_events(self, rows: list[dict[str, Any]]) -> None:
        self.calls += 1
        call = self.calls
        if call == self.block_call:
            self.entered.set()
            assert self.release.wait(WAIT), "test never released the gate"
        if call == self.fail_call:
            raise peewee.OperationalError("database is locked")
        self.batches.append([row["correlation_id"] for row in rows])
        super().append_events(rows)


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(JOURNAL), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def journal(rig) -> Any:
    return rig.start(Journal, store=rig.store)


@pytest.fixture
def gated(tmp_path) -> GatedStore:
    return GatedStore(tmp_path / "gated.db")


def violation(rig: ActorRig, tag: str) -> InvariantViolated:
    """A small event routed only to the Journal, told by its correlation id ``tag``."""
    return InvariantViolated(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=tag, code="TEST", detail=tag)


def hold_journal_in_its_first_write(rig: ActorRig, store: GatedStore) -> None:
    store.block_call = 1
    rig.pb.bus.publish(violation(rig, "a"))
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="flush"))
    assert store.entered.wait(WAIT), "the Journal never wrote the first row"


def stored(store: Store) -> list[str | None]:
    return [row["correlation_id"] for row in store.load_events()]


def test_answers_ping_with_its_role(rig, journal):
    assert rig.ask("ping") == JOURNAL


def test_events_are_written_to_the_events_table_with_kind_correlation_id_and_data(rig, journal):
    now = rig.pb.clock.now_ns()
    order = order_request("p0001-E")
    rig.pb.bus.publish(order_filled(order, trade_id="t-1", correlation_id="c-0001", ts_init_ns=now))
    rig.pb.bus.publish(PositionOpened(ts_init_ns=now, correlation_id="c-0001", position=open_position("p0001")))
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=now, state=TradingState.HALTED, reason="test"))
    rig.pb.drain()
    assert rig.store.load_events() == [], "rows are batched until the flush timer, off the order path"
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=now, name="flush"))
    rig.pb.drain()

    rows = rig.store.load_events()

    assert [(r["kind"], r["correlation_id"]) for r in rows] == [
        ("OrderFilled", "c-0001"), ("PositionOpened", "c-0001"), ("TradingStateChanged", None)]
    assert all(r["ts_ns"] == now for r in rows)
    assert rows[0]["data"]["trade_id"] == "t-1"
    assert rows[0]["data"]["order"]["client_order_id"] == "p0001-E"
    assert rows[0]["data"]["fill_price"] == "42000", "Decimals are kept exact, as text"
    assert rows[1]["data"]["position"]["id"] == "p0001"


def test_audit_copies_of_commands_sent_on_the_bus_are_journaled(rig, journal):
    now = rig.pb.clock.now_ns()
    rig.pb.bus.send(SubmitOrder(ts_init_ns=now, correlation_id="c-0002", order=order_request("p0002-E")))
    rig.pb.bus.send(SetTradingState(ts_init_ns=now, state="HALTED", reason="kill switch"))
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=now, name="flush"))
    rig.pb.drain()

    rows = rig.store.load_events()

    assert [(r["kind"], r["correlation_id"]) for r in rows] == [("SubmitOrder", "c-0002"), ("SetTradingState", None)]
    assert rows[1]["data"]["state"] == "HALTED"


def test_ask_events_answers_the_rows_of_one_kind(rig, journal):
    rig.pb.bus.publish(violation(rig, "v-1"))
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=rig.pb.clock.now_ns(), state="ACTIVE", reason="x"))

    rows = rig.ask("events", "InvariantViolated")

    assert [(r["kind"], r["correlation_id"]) for r in rows] == [("InvariantViolated", "v-1")]


def test_timer_fired_flushes_and_is_not_itself_journaled(rig, journal):
    rig.pb.bus.publish(violation(rig, "v-1"))
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="flush"))
    rig.pb.drain()

    assert [r["kind"] for r in rig.store.load_events()] == ["InvariantViolated"]


def test_buffered_rows_are_written_when_the_journal_is_stopped(rig, gated):
    ref = rig.start(Journal, store=gated)
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
    ref = rig.start(Journal, store=gated, on_failure_notice=notices)
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
    rig.start(Journal, store=gated, on_failure_notice=notices)
    hold_journal_in_its_first_write(rig, gated)
    gated.fail_call = 2  # the batch b, c, d meets a locked database once
    for tag in ("b", "c", "d"):
        rig.pb.bus.publish(violation(rig, tag))
    rig.pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="flush"))

    gated.release.set()

    assert notices.wait(), "the failed write should crash the Journal (a state owner)"
    assert {"b", "c"} <= set(stored(gated)), f"rows of handled messages lost: stored {stored(gated)}"
