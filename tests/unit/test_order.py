"""state/order.py: the order record and its transition table."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal
from typing import Any

import pytest

from state.fsm import InvalidTransition
from state.order import FINAL_STATUSES, ORDER_TRANSITIONS, OrderRecord, OrderTrigger
from state.types import OrderIntent, OrderStatus, Side

ALLOWED_ORDER_TRANSITIONS = {
    (OrderStatus.SUBMITTING, OrderTrigger.ACCEPT): OrderStatus.ACCEPTED,
    (OrderStatus.SUBMITTING, OrderTrigger.FILL): OrderStatus.FILLED,
    (OrderStatus.SUBMITTING, OrderTrigger.REJECT): OrderStatus.REJECTED,
    (OrderStatus.ACCEPTED, OrderTrigger.FILL): OrderStatus.FILLED,
    (OrderStatus.ACCEPTED, OrderTrigger.REJECT): OrderStatus.REJECTED,
    (OrderStatus.ACCEPTED, OrderTrigger.CANCEL): OrderStatus.CANCELED,
    (OrderStatus.CANCELED, OrderTrigger.FILL): OrderStatus.FILLED,  # a fill wins a cancel race
}
FORBIDDEN_ORDER_PAIRS = [
    pair for pair in itertools.product(OrderStatus, OrderTrigger)
    if pair not in ALLOWED_ORDER_TRANSITIONS
]


def make_order(**overrides: Any) -> OrderRecord:
    values: dict[str, Any] = dict(
        client_order_id="p1-E",
        position_id="p1",
        coin="BTC",
        side=Side.BUY,
        quantity=Decimal("0.5"),
        intent=OrderIntent.ENTRY,
        reference_price=Decimal("42000"),
        reference_ts_ms=1,
    )
    values.update(overrides)
    return OrderRecord(**values)


def test_order_table_when_listed_then_holds_exactly_the_allowed_transitions() -> None:
    assert dict(ORDER_TRANSITIONS.items()) == ALLOWED_ORDER_TRANSITIONS


@pytest.mark.parametrize(
    ("status", "trigger", "expected"),
    [(s, t, n) for (s, t), n in ALLOWED_ORDER_TRANSITIONS.items()],
    ids=lambda v: getattr(v, "value", v),
)
def test_apply_when_allowed_trigger_then_next_status_and_changes_applied(
    status: OrderStatus, trigger: OrderTrigger, expected: OrderStatus
) -> None:
    record = make_order(status=status)
    after = record.apply(trigger, reason="why", updated_ns=9)
    assert after.status is expected
    assert (after.reason, after.updated_ns) == ("why", 9)
    assert record.status is status  # the old record is untouched


@pytest.mark.parametrize(
    ("status", "trigger"), FORBIDDEN_ORDER_PAIRS, ids=lambda v: getattr(v, "value", v)
)
def test_apply_when_trigger_not_allowed_then_invalid_transition(
    status: OrderStatus, trigger: OrderTrigger
) -> None:
    with pytest.raises(InvalidTransition, match=rf"^Order: {status.value} -> {trigger.value}"):
        make_order(status=status).apply(trigger)


def test_apply_when_filled_then_no_further_trigger_accepted() -> None:
    filled = make_order().apply(OrderTrigger.FILL, fill_price=Decimal("42021"))
    for trigger in OrderTrigger:
        with pytest.raises(InvalidTransition):
            filled.apply(trigger)


def test_apply_when_market_order_path_then_submitting_accepted_filled() -> None:
    record = make_order().apply(OrderTrigger.ACCEPT, venue_order_id="v1").apply(
        OrderTrigger.FILL, fill_price=Decimal("42021"), fill_quantity=Decimal("0.5")
    )
    assert record.status is OrderStatus.FILLED
    assert record.venue_order_id == "v1"
    assert record.fill_quantity == Decimal("0.5")


@pytest.mark.parametrize(
    ("status", "final"),
    [(OrderStatus.SUBMITTING, False), (OrderStatus.ACCEPTED, False), (OrderStatus.FILLED, True),
     (OrderStatus.REJECTED, True), (OrderStatus.CANCELED, True)],
)
def test_is_final_when_status_then_true_only_for_filled_rejected_canceled(
    status: OrderStatus, final: bool
) -> None:
    assert make_order(status=status).is_final is final


def test_final_statuses_when_listed_then_cover_every_status_except_in_flight_ones() -> None:
    assert set(OrderStatus) - FINAL_STATUSES == {OrderStatus.SUBMITTING, OrderStatus.ACCEPTED,
                                                 OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN}


def test_order_record_when_new_then_submitting_with_no_submissions() -> None:
    record = make_order()
    assert record.status is OrderStatus.SUBMITTING
    assert record.submissions == 0
    assert not record.is_final


def test_order_record_status_when_assigned_directly_then_frozen_error() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_order().status = OrderStatus.FILLED  # type: ignore[misc]
