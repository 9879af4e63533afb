"""The bus with an outbox attached (actors/bus.py): the Journal's copies are appended to the engine
store on the sender's thread instead of reaching a mailbox; a handler's decision commits together
with what it sends, and its deliveries wait for that commit. Every role is a probe; the test's
own thread plays the sending actor."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from actors.bus import JOURNAL, RISK_GATE, SNIPER, STRATEGIST
from state.messages import ConditionExpired, FeedFinished, SubmitOrder, TimerFired
from state.store import Store, StoreOutbox
from tests.actors.helpers import order_request
from tests.conftest import ProbeBus

T = 1_582_329_600_000_000_000


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    opened = Store(tmp_path / "engine.db")
    yield opened
    opened.close()


@pytest.fixture
def pb(probe_bus_for, store) -> ProbeBus:
    probes = probe_bus_for("none")  # every role is a probe, the Journal's too
    probes.bus.set_outbox(StoreOutbox(store, "run-a"))
    return probes


def committed_kinds(store: Store) -> list[str]:
    with sqlite3.connect(store.path) as db:
        return [row[0] for row in db.execute("SELECT kind FROM outbox ORDER BY seq")]


def expired(cid: str = "c-1") -> ConditionExpired:
    return ConditionExpired(ts_init_ns=T, correlation_id=cid, condition_id=cid)


def test_the_journal_copy_goes_to_the_outbox_the_other_roles_get_theirs_and_taps_see_it(pb, store):
    seen: list[tuple[str, str]] = []
    pb.bus.add_tap(lambda role, message: seen.append((role, type(message).__name__)))
    event = expired()
    pb.bus.publish(event)
    assert pb.wait_for(ConditionExpired, STRATEGIST) == event
    pb.drain()
    assert pb.messages(ConditionExpired, JOURNAL) == [], "not in the Journal's mailbox"
    (row,) = store.read_outbox(0)
    assert row.message() == event and row.run_id == "run-a"
    assert sorted(seen) == [(JOURNAL, "ConditionExpired"), (STRATEGIST, "ConditionExpired")]


def test_an_audit_copy_of_a_command_goes_to_the_outbox(pb, store):
    command = SubmitOrder(ts_init_ns=T, correlation_id="c-1", order=order_request())
    pb.bus.send(command)
    assert pb.wait_for(SubmitOrder, RISK_GATE) == command
    assert [row.message() for row in store.read_outbox(0)] == [command]


def test_what_is_told_to_the_journal_by_role_still_goes_to_its_mailbox(pb, store):
    pb.bus.tell(JOURNAL, TimerFired(ts_init_ns=T, name="flush"))
    assert pb.wait_for(TimerFired, JOURNAL).name == "flush"
    assert store.outbox_size() == 0


def test_a_handlers_decision_commits_with_what_it_sent_and_only_then_is_it_delivered(pb, store):
    with pb.bus.deferring():  # what EngineActor.on_receive does around a handler
        with store.transaction():
            store.set_setting("decision", "made")
        pb.bus.publish(expired())  # sent after the block, as actors do
        pb.bus.send(SubmitOrder(ts_init_ns=T, correlation_id="c-1", order=order_request()))
        assert committed_kinds(store) == [], "neither the decision nor its messages are committed yet"
        assert pb.bus.outstanding()[STRATEGIST] == pb.bus.outstanding()[RISK_GATE] == 0, "nor delivered"
    assert committed_kinds(store) == ["ConditionExpired", "SubmitOrder"]
    assert pb.wait_for(ConditionExpired, STRATEGIST) and pb.wait_for(SubmitOrder, RISK_GATE)


def test_a_handler_that_raises_after_its_decision_commits_and_delivers_nothing(pb, store):
    with pytest.raises(RuntimeError), pb.bus.deferring():
        with store.transaction():
            store.set_setting("decision", "made")
        pb.bus.publish(expired())
        raise RuntimeError("crash")
    pb.drain()
    assert store.get_setting("decision") is None and store.outbox_size() == 0
    assert pb.messages(ConditionExpired) == []


def test_before_any_decision_a_handler_delivers_at_once(pb, store):
    with pb.bus.deferring():
        pb.bus.publish(expired())
        assert committed_kinds(store) == ["ConditionExpired"]
        assert pb.wait_for(ConditionExpired, STRATEGIST)


def test_a_message_published_while_the_thread_holds_the_bus_lock_is_appended_when_it_lets_go(pb, store):
    """A ``when_idle`` action runs under the bus lock; appending there could deadlock with a
    sender that holds SQLite's write lock and waits for the bus lock."""
    finished = FeedFinished(ts_init_ns=T, source="replay", ticks=3)
    during: list[int] = []

    def action() -> None:
        pb.bus.publish(finished)
        during.append(store.outbox_size())

    pb.bus.when_idle((SNIPER,), action)
    assert during == [0] and [row.message() for row in store.read_outbox(0)] == [finished]


def test_without_an_outbox_the_journal_gets_its_copies_in_its_mailbox(probe_bus_for):
    pb = probe_bus_for("none")
    with pb.bus.deferring():
        pb.bus.publish(expired())
    assert pb.wait_for(ConditionExpired, JOURNAL)
