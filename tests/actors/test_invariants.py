"""Invariants as a threaded actor: every other role is a probe on a real bus, the store is real."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import INVARIANTS, JOURNAL
from actors.invariants import Invariants
from state.messages import (
    ActorRestarted,
    InvariantViolated,
    OrderDenied,
    OrderRejected,
    PositionClosed,
    PositionOpened,
)
from state.order import Fill, OrderRecord
from state.types import Liquidity
from tests.actors.helpers import ActorRig, closed_position, exit_request, open_position, order_filled, order_request


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(INVARIANTS), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def invariants(rig) -> Any:
    return rig.start(Invariants, store=rig.store)


def no_violations(rig: ActorRig) -> None:
    assert rig.pb.messages(InvariantViolated) == []
    assert rig.ask("violations") == ()


def test_answers_ping_with_its_role(rig, invariants):
    assert rig.ask("ping") == INVARIANTS


def test_a_normal_fill_violates_nothing(rig, invariants):
    rig.pb.bus.publish(order_filled(order_request("p0001-E"), trade_id="t-1"))

    no_violations(rig)


def test_the_same_fill_seen_twice_with_the_same_trade_id_violates_nothing(rig, invariants):
    fill = order_filled(order_request("p0001-E"), trade_id="t-1")
    rig.pb.bus.publish(fill)
    rig.pb.bus.publish(fill)  # the Executor republishes a recorded outcome for a duplicate order

    no_violations(rig)


def test_same_client_order_id_filled_with_two_trade_ids_then_duplicate_fill_to_the_journal(rig, invariants):
    order = order_request("p0001-E")
    rig.pb.bus.publish(order_filled(order, trade_id="t-1", correlation_id="c-0001"))
    rig.pb.bus.publish(order_filled(order, trade_id="t-2", correlation_id="c-0001"))

    violated = rig.pb.wait_for(InvariantViolated, JOURNAL)

    assert violated.code == "DUPLICATE_FILL"
    assert "p0001-E" in violated.detail and "t-1" in violated.detail and "t-2" in violated.detail
    assert violated.correlation_id == "c-0001"
    assert [v.code for v in rig.ask("violations")] == ["DUPLICATE_FILL"]
    assert invariants.is_alive(), "a detector reports; it never stops the engine itself"


def test_duplicate_fill_is_detected_against_fills_recorded_before_it_started(rig):
    order = order_request("p0001-E")
    rig.store.save_order(filled_record(order, "t-before"))
    rig.start(Invariants, store=rig.store)

    rig.pb.bus.publish(order_filled(order, trade_id="t-after"))
    violated = rig.pb.wait_for(InvariantViolated, JOURNAL)

    assert violated.code == "DUPLICATE_FILL"
    assert "t-before" in violated.detail


def test_order_denied_for_an_exit_order_then_exit_denied_to_the_journal(rig, invariants):
    order = exit_request("p0001-X1")
    rig.pb.bus.publish(OrderDenied(ts_init_ns=rig.pb.clock.now_ns(), correlation_id="c-0001", order=order,
                                   reason="trading is HALTED"))

    violated = rig.pb.wait_for(InvariantViolated, JOURNAL)

    assert violated.code == "EXIT_DENIED"
    assert "p0001-X1" in violated.detail and "trading is HALTED" in violated.detail
    assert violated.correlation_id == "c-0001"


def test_order_denied_for_an_entry_order_violates_nothing(rig, invariants):
    rig.pb.bus.publish(OrderDenied(ts_init_ns=rig.pb.clock.now_ns(), order=order_request("p0001-E"),
                                   reason="trading is HALTED"))

    no_violations(rig)


def test_an_order_rejected_by_the_venue_violates_nothing(rig, invariants):
    rig.pb.bus.publish(OrderRejected(ts_init_ns=rig.pb.clock.now_ns(), order=exit_request(), reason="venue down"))

    no_violations(rig)


def test_position_opened_with_a_notional_beyond_its_size_then_oversized_position(rig, invariants):
    fine = open_position("p0001", size_usd="500", entry_price="100", quantity="5.09")  # within 2 %
    oversized = open_position("p0002", size_usd="500", entry_price="100", quantity="6", condition_id="c-0002")
    for position in (fine, oversized):
        rig.pb.bus.publish(PositionOpened(ts_init_ns=rig.pb.clock.now_ns(), position=position))

    violated = rig.pb.wait_for(InvariantViolated, JOURNAL)

    assert (violated.code, violated.correlation_id) == ("OVERSIZED_POSITION", "c-0002")
    assert [v.code for v in rig.ask("violations")] == ["OVERSIZED_POSITION"]


def test_position_closed_leaving_a_negative_balance_then_negative_balance(rig, invariants):
    rig.pb.bus.publish(PositionClosed(ts_init_ns=rig.pb.clock.now_ns(), position=closed_position("p0001"),
                                      balance=Decimal("0")))
    rig.pb.bus.publish(PositionClosed(ts_init_ns=rig.pb.clock.now_ns(), position=closed_position("p0002"),
                                      balance=Decimal("-0.01")))

    violated = rig.pb.wait_for(InvariantViolated, JOURNAL)

    assert violated.code == "NEGATIVE_BALANCE"
    assert "p0002" in violated.detail
    assert len(rig.ask("violations")) == 1


def test_actor_restarted_violates_nothing(rig, invariants):
    rig.pb.bus.publish(ActorRestarted(ts_init_ns=rig.pb.clock.now_ns(), role="sniper", restarts=1, reason="x"))

    no_violations(rig)


def filled_record(order: Any, trade_id: str) -> OrderRecord:
    return OrderRecord.of(order, venue="paper", now_ns=1).apply_fill(Fill(
        trade_id=trade_id, client_order_id=order.client_order_id, venue_order_id="v-" + order.client_order_id,
        quantity=order.quantity, price=order.reference_price, fee=Decimal(0), fee_currency="USDT",
        liquidity=Liquidity.TAKER, ts_ms=order.reference_ts_ms))


def test_memory_keeps_the_latest_fills_and_an_older_duplicate_is_still_found_in_the_store(rig, monkeypatch):
    monkeypatch.setattr("actors.invariants.FILLS_KEPT", 3)
    monkeypatch.setattr("actors.invariants.VIOLATIONS_KEPT", 2)
    rig.start(Invariants, store=rig.store)
    orders = [order_request(f"p{number:04d}-E") for number in range(1, 9)]
    for order in orders:
        rig.store.save_order(filled_record(order, f"t-{order.client_order_id}"))  # as the Executor does
        rig.pb.bus.publish(order_filled(order, trade_id=f"t-{order.client_order_id}"))
    assert rig.ask("stats")["fills_kept"] == 3
    no_violations(rig)

    for attempt in range(3):  # the oldest order, long forgotten in memory, filled again
        rig.pb.bus.publish(order_filled(orders[0], trade_id=f"t-again-{attempt}"))

    assert rig.pb.wait_for(InvariantViolated, JOURNAL).code == "DUPLICATE_FILL"
    assert rig.ask("stats")["fills_kept"] == 3
    assert rig.ask("stats")["violations"] == 3
    assert [v.detail.split()[-1] for v in rig.ask("violations")] == ["t-again-1", "t-again-2"]


def test_an_order_filled_in_parts_with_several_trade_ids_violates_nothing(rig, invariants):
    order = order_request("p0001-E", quantity="0.03")
    for number in (1, 2, 3):
        part = order_filled(order, trade_id=f"t-{number}")
        rig.pb.bus.publish(replace(part, fill_quantity=Decimal("0.01"), cumulative_quantity=Decimal(number) / 100))
    rig.pb.bus.publish(order_filled(order, trade_id="t-2"))  # a part published again

    no_violations(rig)
    rig.pb.bus.publish(order_filled(order, trade_id="t-4"))  # once complete, another trade id is a double fill
    assert rig.pb.wait_for(InvariantViolated, JOURNAL).detail == "p0001-E filled as t-1, t-2, t-3 and as t-4"
