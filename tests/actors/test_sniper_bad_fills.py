"""The Sniper never crashes on a fill and never leaves a position CLOSING with nothing in flight:
an absurd fill is a rejected fill, a failed exit is retried (on the next crossing tick and by the
sweep) and escalated, and ``close_position`` on a closing position asks again for its order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.sniper import EXIT_ESCALATE_AFTER, EXIT_STUCK_S
from state.messages import OrderFilled, OrderRejected, PositionChanged, PositionClosed, SubmitOrder, TimerFired
from state.types import OrderIntent, PositionStatus
from tests.actors.test_sniper import Harness, sniper, sniper_factory  # noqa: F401 - fixtures
from tests.conftest import condition

D = Decimal


def open_long(sniper: Harness):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted(OrderIntent.ENTRY))
    sniper.idle()
    (position,) = sniper.ask("snapshot").positions
    assert position.status is PositionStatus.OPEN
    return position


def reject(sniper: Harness, submit: SubmitOrder, reason: str = "PRICE_UNAVAILABLE: test") -> None:
    sniper.pb.bus.publish(OrderRejected(ts_init_ns=0, order=submit.order, reason=reason))


@pytest.mark.parametrize("price", ["0.00", "-1", "NaN", "100000"])
def test_an_absurd_exit_fill_is_rejected_and_the_position_stays_open_with_its_stop(sniper, logs, price):
    position = open_long(sniper)
    sniper.tick("BTC", 41000)  # through the stop
    exit_order = sniper.submitted(OrderIntent.EXIT)
    sniper.fill(exit_order, price=price)
    changed = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change.startswith("EXIT_FAILED"))
    assert "FILL_REJECTED: fill price" in changed.change
    assert logs.wait_for(f"FILL_REJECTED: {exit_order.order.client_order_id}")
    (still,) = sniper.ask("snapshot").positions
    assert still.status is PositionStatus.OPEN and still.pending_order_id is None
    assert sniper.store.get_position(position.id).status is PositionStatus.OPEN
    sniper.tick("BTC", 40990)  # the stop is checked again on the next tick
    retry = sniper.submitted(OrderIntent.EXIT)
    assert retry.order.client_order_id.endswith("-X2")
    sniper.fill(retry)
    sniper.pb.wait_for(PositionClosed)
    assert sniper.ask("snapshot").positions == ()


@pytest.mark.parametrize(("price", "quantity"), [("0.00", None), ("42001", "0"), ("42001", "99")])
def test_an_absurd_entry_fill_drops_the_entry_never_crashes(sniper, price, quantity):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    entry = sniper.submitted(OrderIntent.ENTRY)
    sniper.pb.bus.publish(OrderFilled(
        ts_init_ns=0, order=entry.order, venue_order_id="v-1", trade_id="t-1", fill_price=D(price),
        fill_quantity=D(quantity) if quantity is not None else entry.order.quantity, cumulative_quantity=D(quantity) if quantity is not None else entry.order.quantity, fee=D(0),
        ts_event_ms=entry.order.reference_ts_ms))
    closed = sniper.pb.wait_for(PositionClosed)
    assert closed.position.exit_reason.startswith("ENTRY_REJECTED: FILL_REJECTED")
    snap = sniper.ask("snapshot")
    assert snap.positions == () and snap.balance == D(10000)


def test_a_failed_manual_exit_is_retried_by_the_sweep_and_escalated(sniper, logs):
    position = open_long(sniper)
    sniper.ask("close_position", position.id, "MANUAL")
    for attempt in range(1, EXIT_ESCALATE_AFTER + 1):
        submit = sniper.pb.wait_for(SubmitOrder, where=lambda m, a=attempt: m.order.client_order_id.endswith(f"-X{a}"))
        reject(sniper, submit)
        sniper.idle()
        sniper.pb.bus.tell("sniper", TimerFired(ts_init_ns=0, name="sweep"))  # too early: backoff
        sniper.idle()
        assert not [m for m in sniper.pb.messages(SubmitOrder) if m.order.client_order_id.endswith(f"-X{attempt + 1}")]
        sniper.pb.clock.advance(2 ** attempt)
        sniper.pb.bus.tell("sniper", TimerFired(ts_init_ns=0, name="sweep"))
    assert logs.wait_for(f"EXIT_ESCALATED: {position.id}")
    last = sniper.pb.wait_for(SubmitOrder, where=lambda m: m.order.client_order_id.endswith(f"-X{EXIT_ESCALATE_AFTER + 1}"))
    assert last.order.intent is OrderIntent.EXIT
    sniper.fill(last)
    closed = sniper.pb.wait_for(PositionClosed)
    assert closed.position.exit_reason == "MANUAL"


def test_close_position_on_a_closing_position_asks_again_for_the_same_order(sniper):
    position = open_long(sniper)
    sniper.ask("close_position", position.id, "MANUAL")
    first = sniper.submitted(OrderIntent.EXIT)
    assert sniper.ask("close_position", position.id, "MANUAL") == position.id
    again = sniper.pb.wait_for(SubmitOrder, where=lambda m: m is not first and m.order.intent is OrderIntent.EXIT)
    assert again.order == first.order, "the same client order id: never placed twice"


def test_an_exit_with_no_outcome_is_asked_for_again_by_the_sweep(sniper, logs):
    position = open_long(sniper)
    sniper.ask("close_position", position.id, "MANUAL")
    first = sniper.submitted(OrderIntent.EXIT)
    sniper.pb.bus.tell("sniper", TimerFired(ts_init_ns=0, name="sweep"))  # notes when it was first seen
    sniper.idle()
    sniper.pb.clock.advance(EXIT_STUCK_S - 1)
    sniper.pb.bus.tell("sniper", TimerFired(ts_init_ns=0, name="sweep"))
    sniper.idle()
    assert [m.order for m in sniper.pb.messages(SubmitOrder) if m.order.intent is OrderIntent.EXIT] == [first.order]
    sniper.pb.clock.advance(1)
    sniper.pb.bus.tell("sniper", TimerFired(ts_init_ns=0, name="sweep"))
    again = sniper.pb.wait_for(SubmitOrder, where=lambda m: m is not first and m.order.intent is OrderIntent.EXIT)
    assert again.order == first.order
    assert logs.wait_for(f"EXIT_STUCK: {first.order.client_order_id}")
