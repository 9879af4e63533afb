"""state/order.py: the order record, its transition table, fills by trade id and venue updates."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal
from typing import Any

import pytest

from state.fsm import InvalidTransition
from state.messages import OrderRequest
from state.order import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    ORDER_TRANSITIONS,
    Fill,
    OrderRecord,
    OrderTrigger,
    OrderUpdate,
    Overfill,
)
from state.types import Liquidity, OrderIntent, OrderStatus, OrderType, Side, TimeInForce

D = Decimal
S, U, A, P = OrderStatus.SUBMITTING, OrderStatus.UNKNOWN, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED
F, C, E, R = OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED
T = OrderTrigger

ALLOWED_ORDER_TRANSITIONS = {
    (S, T.ACCEPT): A, (S, T.PARTIAL_FILL): P, (S, T.FILL): F, (S, T.CANCEL): C, (S, T.EXPIRE): E,
    (S, T.REJECT): R, (S, T.TIMEOUT): U,
    (U, T.ACCEPT): A, (U, T.PARTIAL_FILL): P, (U, T.FILL): F, (U, T.CANCEL): C, (U, T.EXPIRE): E,
    (U, T.REJECT): R,
    (A, T.PARTIAL_FILL): P, (A, T.FILL): F, (A, T.CANCEL): C, (A, T.EXPIRE): E, (A, T.REJECT): R,
    (P, T.PARTIAL_FILL): P, (P, T.FILL): F, (P, T.CANCEL): C, (P, T.EXPIRE): E,
    (C, T.PARTIAL_FILL): C, (C, T.FILL): F,  # a fill that raced the cancel happened
    (E, T.PARTIAL_FILL): E, (E, T.FILL): F,
}
FORBIDDEN_ORDER_PAIRS = [
    pair for pair in itertools.product(OrderStatus, OrderTrigger) if pair not in ALLOWED_ORDER_TRANSITIONS
]


def make_order(**overrides: Any) -> OrderRecord:
    values: dict[str, Any] = dict(
        client_order_id="p1-E",
        position_id="p1",
        coin="BTC",
        side=Side.BUY,
        quantity=D("10"),
        intent=OrderIntent.ENTRY,
        reference_price=D("100"),
        reference_ts_ms=1,
    )
    values.update(overrides)
    return OrderRecord(**values)


def fill(trade_id: str, quantity: Any, price: Any = "100", fee: Any = "0.01", **overrides: Any) -> Fill:
    values: dict[str, Any] = dict(
        trade_id=trade_id, client_order_id="p1-E", venue_order_id="v1", quantity=D(str(quantity)),
        price=D(str(price)), fee=D(str(fee)), fee_currency="USDT", liquidity=Liquidity.MAKER, ts_ms=7,
    )
    values.update(overrides)
    return Fill(**values)


def update(status: OrderStatus, reason: str | None = None, coid: str = "p1-E") -> OrderUpdate:
    return OrderUpdate(client_order_id=coid, venue_order_id="v1", status=status, ts_ms=5, reason=reason)


# --- the table ----------------------------------------------------------------------------------------

def test_order_table_when_listed_then_holds_exactly_the_allowed_transitions() -> None:
    assert dict(ORDER_TRANSITIONS.items()) == ALLOWED_ORDER_TRANSITIONS


@pytest.mark.parametrize(("status", "trigger", "expected"),
                         [(s, t, n) for (s, t), n in ALLOWED_ORDER_TRANSITIONS.items()],
                         ids=lambda v: getattr(v, "value", v))
def test_apply_when_allowed_trigger_then_next_status_and_changes_applied(
        status: OrderStatus, trigger: OrderTrigger, expected: OrderStatus) -> None:
    record = make_order(status=status)
    after = record.apply(trigger, reason="why", updated_ns=9)
    assert after.status is expected
    assert (after.reason, after.updated_ns) == ("why", 9)
    assert record.status is status  # the old record is untouched


@pytest.mark.parametrize(("status", "trigger"), FORBIDDEN_ORDER_PAIRS, ids=lambda v: getattr(v, "value", v))
def test_apply_when_trigger_not_allowed_then_invalid_transition(status: OrderStatus, trigger: OrderTrigger) -> None:
    with pytest.raises(InvalidTransition, match=rf"^Order: {status.value} -> {trigger.value}"):
        make_order(status=status).apply(trigger)


@pytest.mark.parametrize("status", [F, R])
def test_filled_and_rejected_take_no_trigger_at_all(status: OrderStatus) -> None:
    for trigger in OrderTrigger:
        with pytest.raises(InvalidTransition):
            make_order(status=status).apply(trigger)


def test_final_and_open_statuses_split_every_status() -> None:
    assert FINAL_STATUSES == {F, C, E, R}
    assert OPEN_STATUSES == {S, U, A, P}
    assert [make_order(status=s).is_final for s in (S, U, A, P, F, C, E, R)] == [False] * 4 + [True] * 4


def test_order_record_when_new_then_submitting_with_nothing_filled() -> None:
    record = make_order()
    assert (record.status, record.submissions, record.filled_quantity, record.fills) == (S, 0, 0, ())
    assert record.fees_total == 0 and record.average_fill_price is None and not record.is_final


def test_order_record_status_when_assigned_directly_then_frozen_error() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_order().status = OrderStatus.FILLED  # type: ignore[misc]


# --- the request it was made of ---------------------------------------------------------------------------

@pytest.mark.parametrize("request_", [
    OrderRequest(client_order_id="p1-E", position_id="p1", coin="BTC", side=Side.BUY, quantity=D("0.5"),
                 intent=OrderIntent.ENTRY, reference_price=D("100"), reference_ts_ms=3),
    OrderRequest(client_order_id="p1-E", position_id="p1", coin="BTC", side=Side.BUY, quantity=D("0.5"),
                 intent=OrderIntent.ENTRY, reference_price=D("100"), reference_ts_ms=3, order_type=OrderType.LIMIT,
                 limit_price=D("99.5"), post_only=True),
    OrderRequest(client_order_id="p1-X1", position_id="p1", coin="BTC", side=Side.SELL, quantity=D("0.5"),
                 intent=OrderIntent.EXIT, reference_price=D("100"), reference_ts_ms=3,
                 order_type=OrderType.STOP_LIMIT, stop_price=D("98"), limit_price=D("97.5"),
                 time_in_force=TimeInForce.GTC),
], ids=["market", "post-only-limit", "stop-limit-exit"])
def test_record_of_a_request_gives_the_same_request_back(request_: OrderRequest) -> None:
    record = OrderRecord.of(request_, venue="paper", now_ns=11, correlation_id="c-1")
    assert record.request() == request_
    assert (record.status, record.venue, record.created_ns, record.correlation_id) == (S, "paper", 11, "c-1")
    assert record.reduce_only is (request_.intent is OrderIntent.EXIT)


def test_a_record_without_reduce_only_reads_it_from_the_intent() -> None:
    assert make_order(intent=OrderIntent.EXIT, side=Side.SELL).reduce_only is True
    assert make_order().reduce_only is False


# --- fills -------------------------------------------------------------------------------------------

def test_partial_fills_then_the_last_one_fills_the_order_with_totals_and_average_price() -> None:
    record = make_order().apply_update(update(A))
    record = record.apply_fill(fill("t1", 3, "100"))
    assert (record.status, record.filled_quantity, record.remaining) == (P, 3, 7)
    record = record.apply_fill(fill("t2", 7, "110", fee="0.02"))
    assert (record.status, record.filled_quantity, record.remaining) == (F, 10, 0)
    assert record.average_fill_price == D(107)  # (3 * 100 + 7 * 110) / 10
    assert record.fees_total == D("0.03") and record.fee_currency == "USDT"
    assert [f.trade_id for f in record.fills] == ["t1", "t2"]
    assert record.fills[-1].ts_ms == 7


def test_a_market_fill_without_acceptance_fills_the_submitted_order_at_its_price() -> None:
    record = make_order().apply_fill(fill("t1", 10, "100.05"), now_ns=4)
    assert (record.status, record.average_fill_price, record.venue_order_id, record.updated_ns) == (
        F, D("100.05"), "v1", 4)


def test_a_trade_id_applied_before_is_ignored() -> None:
    once = make_order().apply_fill(fill("t1", 3))
    assert once.apply_fill(fill("t1", 3)) is once
    assert once.apply_fill(fill("t1", 5, "120")) is once, "the trade id decides, not the numbers"
    assert once.filled_quantity == 3


def test_a_refused_trade_id_is_never_applied_later() -> None:
    record = make_order().refuse_fill(fill("bad", 3, "0"))
    assert record.refused_trade_ids == ("bad",) and record.knows_trade("bad")
    assert record.apply_fill(fill("bad", 3)) is record
    assert record.refuse_fill(fill("bad", 3)) is record


def test_an_overfill_is_refused_and_changes_nothing() -> None:
    record = make_order().apply_fill(fill("t1", 8))
    with pytest.raises(Overfill, match="t2 of 3 would fill 11 of the ordered 10"):
        record.apply_fill(fill("t2", 3))
    assert record.filled_quantity == 8 and record.status is P


@pytest.mark.parametrize("quantity", ["0", "-1", "NaN"])
def test_a_fill_without_quantity_is_refused(quantity: str) -> None:
    with pytest.raises(ValueError, match="has no quantity"):
        make_order().apply_fill(fill("t1", quantity))


def test_a_fill_of_another_order_is_refused() -> None:
    with pytest.raises(ValueError, match="applied to order p1-E"):
        make_order().apply_fill(fill("t1", 1, client_order_id="p2-E"))


@pytest.mark.parametrize("status", [F, R])
def test_nothing_fills_after_filled_or_rejected(status: OrderStatus) -> None:
    with pytest.raises(InvalidTransition):
        make_order(status=status).apply_fill(fill("t9", 1))


def test_partial_fill_then_cancel_keeps_what_filled() -> None:
    record = make_order().apply_update(update(A)).apply_fill(fill("t1", 3))
    canceled = record.apply_update(update(C, "by request"), now_ns=8)
    assert (canceled.status, canceled.filled_quantity, canceled.reason, canceled.updated_ns) == (C, 3, "by request", 8)


@pytest.mark.parametrize("final", [C, E])
def test_a_fill_after_cancel_or_expiry_is_recorded_as_the_fact_it_is(final: OrderStatus) -> None:
    ended = make_order().apply_fill(fill("t1", 3)).apply_update(update(final))
    late = ended.apply_fill(fill("t2", 2))
    assert (late.status, late.filled_quantity) == (final, 5), "part of it filled, the rest is over"
    completed = late.apply_fill(fill("t3", 5))
    assert (completed.status, completed.filled_quantity) == (F, 10), "the fill completed it: it filled"


# --- venue updates ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "status", "expected"), [
    (S, A, A), (S, C, C), (S, E, E), (S, R, R),
    (U, A, A), (U, C, C), (U, E, E), (U, R, R),
    (A, C, C), (A, E, E), (A, R, R), (P, C, C), (P, E, E),
])
def test_an_update_moves_the_order_as_the_table_says(start: OrderStatus, status: OrderStatus,
                                                     expected: OrderStatus) -> None:
    after = make_order(status=start, unknown_since_ns=3).apply_update(update(status, "venue's reason"), now_ns=6)
    assert after.status is expected and after.venue_order_id == "v1" and after.unknown_since_ns is None
    assert after.reason == (None if status is A else "venue's reason")


@pytest.mark.parametrize(("start", "status"), [
    (A, A), (P, A), (F, A), (C, A), (E, A), (R, A),  # an acceptance read back after it moved on
    (C, C), (E, E), (R, R),  # the same final status again
    (F, C), (F, E), (F, R),  # the fill won the race against the cancel
    (R, C), (C, E), (C, R),  # already over
])
def test_an_update_that_says_nothing_new_returns_the_record_itself(start: OrderStatus, status: OrderStatus) -> None:
    record = make_order(status=start)
    assert record.apply_update(update(status)) is record


def test_a_rejection_after_fills_is_refused() -> None:
    record = make_order().apply_fill(fill("t1", 3))
    with pytest.raises(InvalidTransition):
        record.apply_update(update(R, "margin"))


@pytest.mark.parametrize("status", [F, P, S, U])
def test_an_update_never_carries_a_filled_or_local_status(status: OrderStatus) -> None:
    with pytest.raises(ValueError, match="fills come as fills"):
        make_order().apply_update(update(status))


def test_an_update_of_another_order_is_refused() -> None:
    with pytest.raises(ValueError, match="applied to order p1-E"):
        make_order().apply_update(update(A, coid="p2-E"))


# --- unknown outcomes -----------------------------------------------------------------------------------

def test_a_lost_outcome_is_unknown_since_then_and_left_by_what_the_venue_answers() -> None:
    lost = make_order().lose(now_ns=50, reason="UNKNOWN: timeout")
    assert (lost.status, lost.unknown_since_ns, lost.reason) == (U, 50, "UNKNOWN: timeout")
    assert lost.apply_fill(fill("t1", 10)).status is F
    assert lost.apply_fill(fill("t1", 4)).status is P
    assert lost.apply_update(update(A)).status is A
    assert lost.reject("NOT_FOUND", now_ns=90).status is R


@pytest.mark.parametrize("status", [A, P, F, C, E, R, U])
def test_only_a_submitted_order_can_lose_its_outcome(status: OrderStatus) -> None:
    with pytest.raises(InvalidTransition):
        make_order(status=status).lose(now_ns=1)
