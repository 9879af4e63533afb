"""Invariants against a live venue's account (``VenueSnapshotTaken``): threaded, a probe bus."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import INVARIANTS, JOURNAL
from actors.invariants import Invariants
from state.account import AccountSnapshot, HeldPosition
from state.messages import InvariantViolated, VenueSnapshotTaken
from state.order import VenueOrder
from state.reconcile import EngineOrder, EnginePosition, EngineView
from state.types import OrderStatus, Side
from tests.actors.helpers import ActorRig


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(INVARIANTS), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def invariants(rig) -> Any:
    return rig.start(Invariants, store=rig.store)


def check(rig: ActorRig, view: EngineView, snapshot: AccountSnapshot) -> int:
    """Hand one check to the Invariants and wait until it was handled (an ask queues behind it)."""
    rig.pb.bus.send(VenueSnapshotTaken(ts_init_ns=rig.pb.clock.now_ns(), snapshot=snapshot, view=view))
    return rig.ask("stats")["venue_checks"]


LONG_1 = EngineView(positions={"BTC": EnginePosition(coin="BTC", side=Side.BUY, quantity=Decimal(1))})


def held(quantity: str, coin: str = "BTC") -> AccountSnapshot:
    return AccountSnapshot(taken_ms=1, positions=(HeldPosition(coin=coin, side=Side.BUY, quantity=Decimal(quantity)),))


def test_an_account_that_agrees_violates_nothing(rig, invariants):
    for _ in range(3):
        check(rig, LONG_1, held("1"))

    assert rig.pb.messages(InvariantViolated) == []


def test_a_difference_seen_in_two_consecutive_checks_is_reported_once(rig, invariants):
    assert check(rig, LONG_1, held("0.6")) == 1
    assert rig.pb.messages(InvariantViolated) == [], "one check may be a race: not reported yet"

    check(rig, LONG_1, held("0.6"))
    violated = rig.pb.wait_for(InvariantViolated, JOURNAL)

    assert violated.code == "VENUE_SIZE_MISMATCH"
    assert "BTC" in violated.detail and "long 1" in violated.detail and "long 0.6" in violated.detail
    check(rig, LONG_1, held("0.6"))
    assert rig.pb.messages(InvariantViolated) == [], "once while it lasts"
    assert [v.code for v in rig.ask("violations")] == ["VENUE_SIZE_MISMATCH"]


def test_a_race_seen_once_is_never_reported(rig, invariants):
    placing = EngineView(orders={})  # the snapshot saw an order the view did not know yet
    working = VenueOrder(client_order_id="p0001-E", venue_order_id="v1", coin="BTC", side=Side.BUY,
                         quantity=Decimal(1), status=OrderStatus.ACCEPTED, filled_quantity=Decimal(0))
    check(rig, placing, AccountSnapshot(taken_ms=1, open_orders=(working,)))
    known = EngineView(orders={"p0001-E": EngineOrder(client_order_id="p0001-E", coin="BTC", side=Side.BUY,
                                                      quantity=Decimal(1), filled=Decimal(0),
                                                      status=OrderStatus.ACCEPTED)})
    check(rig, known, AccountSnapshot(taken_ms=2, open_orders=(working,)))
    check(rig, known, AccountSnapshot(taken_ms=3, open_orders=(working,)))

    assert rig.pb.messages(InvariantViolated) == []


def test_an_order_placed_by_hand_and_a_position_opened_by_hand_are_reported(rig, invariants):
    by_hand = VenueOrder(client_order_id="web_1", venue_order_id="v9", coin="ETH", side=Side.SELL,
                         quantity=Decimal(2), status=OrderStatus.ACCEPTED, filled_quantity=Decimal(0))
    account = AccountSnapshot(taken_ms=1, open_orders=(by_hand,),
                              positions=(HeldPosition(coin="SOL", side=Side.SELL, quantity=Decimal(5)),))
    check(rig, EngineView(), account)
    check(rig, EngineView(), account)

    codes = {rig.pb.wait_for(InvariantViolated, JOURNAL).code for _ in range(2)}

    assert codes == {"VENUE_UNKNOWN_ORDER", "VENUE_UNKNOWN_POSITION"}
    assert rig.ask("stats")["violations"] == 2
