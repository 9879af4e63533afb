"""The Executor's order lifecycle as a threaded actor: acceptance, partial fills with their
cumulative quantity, cancels, duplicates by trade id, events from the venue's own thread,
unknown outcomes, restarts, MatchTick and the shutdown's cancel. The venue is the scripted
``FakeVenue`` (tests/support/fake_venue.py); every other role is a probe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import EXECUTOR, JOURNAL, SNIPER
from actors.executor import NOT_FOUND, Executor
from adapters.errors import AmbiguousOutcome, TemporaryError
from state.messages import (
    CancelOrder,
    ExecuteOrder,
    MatchTick,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    Tick,
    TickMatched,
    TimerFired,
)
from state.order import OrderRecord, OrderUpdate
from state.types import Liquidity, OrderStatus
from tests.actors.helpers import ActorRig, order_request
from tests.conftest import WAIT
from tests.support.fake_venue import FakeVenue, limit_order

D = Decimal
LIFECYCLE = (OrderAccepted, OrderFilled, OrderCanceled, OrderExpired, OrderRejected, TickMatched)


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(EXECUTOR), tmp_path)
    yield rig
    rig.close()


def start(rig: ActorRig, venue: FakeVenue, **deps: Any) -> None:
    rig.start(Executor, store=rig.store, venue=venue, **deps)
    assert rig.ask("ping") == EXECUTOR  # answered once its start (and reconcile) is done


def execute(rig: ActorRig, order: OrderRequest, correlation_id: str | None = "c-1") -> None:
    rig.pb.bus.send(ExecuteOrder(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=correlation_id, order=order))


def match(rig: ActorRig, price: Any, coin: str = "BTC", ts_ms: int = 1_000, seq: int | None = None) -> None:
    tick = Tick(ts_init_ns=rig.pb.clock.now_ns(), coin=coin, price=D(str(price)), ts_ms=ts_ms, qty=D(1), seq=seq)
    rig.pb.bus.send(MatchTick(ts_init_ns=rig.pb.clock.now_ns(), tick=tick))


def cancel(rig: ActorRig, client_order_id: str, reason: str = "by request") -> None:
    rig.pb.bus.send(CancelOrder(ts_init_ns=rig.pb.clock.now_ns(), client_order_id=client_order_id, reason=reason))


def to_sniper(rig: ActorRig) -> list[Any]:
    """Every lifecycle message the Sniper got since the last call, in the order it got them."""
    seen = rig.pb.drain()
    rig.pb.seen.clear()
    return [m for to, m in seen if to == SNIPER and isinstance(m, LIFECYCLE)]


def names(messages: list[Any]) -> list[str]:
    return [type(m).__name__ for m in messages]


def resting(client_order_id: str = "p0001-E", quantity: Any = "10", limit: Any = "100", **kw: Any) -> OrderRequest:
    return limit_order(order_request(client_order_id, quantity=quantity, reference_price="100", **kw), limit)


# --- acceptance, partial fills, cancel -------------------------------------------------------------

def test_a_resting_order_filled_3_of_10_steps_then_canceled(rig):
    venue = FakeVenue(fill_step=D(1))
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    for number in range(3):
        match(rig, "99.5", ts_ms=1_000 + number, seq=number)
    cancel(rig, order.client_order_id)

    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderFilled", "TickMatched", "OrderFilled", "TickMatched",
                          "OrderFilled", "TickMatched", "OrderCanceled"]
    fills = [m for m in got if isinstance(m, OrderFilled)]
    assert [f.cumulative_quantity for f in fills] == [D(1), D(2), D(3)]
    assert all(f.fill_quantity == D(1) and f.fill_price == D(100) and f.liquidity is Liquidity.MAKER for f in fills)
    assert len({f.trade_id for f in fills}) == 3 and not any(f.order_complete for f in fills)
    assert all(m.order == order and m.correlation_id == "c-1" for m in got if not isinstance(m, TickMatched))
    canceled = got[-1]
    assert (canceled.filled_quantity, canceled.reason, canceled.venue_order_id) == (D(3), "canceled by request",
                                                                                    "v-p0001-E")
    assert [(m.coin, m.ts_ms, m.seq) for m in got if isinstance(m, TickMatched)] == [
        ("BTC", 1_000, 0), ("BTC", 1_001, 1), ("BTC", 1_002, 2)]
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.filled_quantity, record.fees_total) == (OrderStatus.CANCELED, D(3), D("1.26"))
    assert [f.trade_id for f in rig.store.load_fills(order.client_order_id)] == [f.trade_id for f in fills]
    assert venue.cancels == [order.client_order_id]


def test_a_resting_order_filled_in_two_parts_is_filled_with_the_last(rig):
    venue = FakeVenue(fill_step=D(4))
    start(rig, venue)
    order = resting(quantity="8")
    execute(rig, order)
    match(rig, "99")
    match(rig, "99")
    got = to_sniper(rig)
    fills = [m for m in got if isinstance(m, OrderFilled)]
    assert [(f.cumulative_quantity, f.order_complete) for f in fills] == [(D(4), False), (D(8), True)]
    assert rig.store.get_order(order.client_order_id).status is OrderStatus.FILLED
    assert rig.ask("stats")["open_orders"] == 0


def test_match_tick_publishes_the_outcomes_then_tick_matched_even_when_nothing_matched(rig):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(limit="95")
    execute(rig, order)
    match(rig, "99", seq=7)  # above the limit: nothing fills
    match(rig, "94", seq=8)
    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "TickMatched", "OrderFilled", "TickMatched"]
    assert (got[1].seq, got[3].seq) == (7, 8)
    assert venue.observed == [("BTC", D(99), D(1), 1_000), ("BTC", D(94), D(1), 1_000)]


def test_match_tick_when_the_venue_raises_still_answers_tick_matched(rig):
    venue = FakeVenue()

    def broken() -> None:
        raise ZeroDivisionError("matching bug")

    venue.on_observe = broken
    start(rig, venue)
    match(rig, "99", seq=1)
    assert names(to_sniper(rig)) == ["TickMatched"]
    assert rig.ask("ping") == EXECUTOR


# --- fills once per trade id --------------------------------------------------------------------------

def test_the_same_fill_reported_twice_gives_one_order_filled(rig):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    rig.pb.drain()

    fill = venue.fill_event(order.client_order_id, D(4), trade_id="t-dup")
    venue.emit(fill)
    venue.emit(fill)
    venue.emit(OrderUpdate(client_order_id=order.client_order_id, venue_order_id="v-p0001-E",
                           status=OrderStatus.ACCEPTED, ts_ms=1))  # a repeated acknowledgement: nothing new
    rig.pb.drain()

    fills = rig.pb.messages(OrderFilled, SNIPER)
    assert [(f.trade_id, f.cumulative_quantity) for f in fills] == [("t-dup", D(4))]
    assert len(rig.pb.messages(OrderAccepted, SNIPER)) == 1
    assert rig.ask("stats")["duplicate_fills"] == 1
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.filled_quantity, len(record.fills)) == (OrderStatus.PARTIALLY_FILLED, D(4), 1)


def test_events_from_the_venues_own_thread_go_through_the_mailbox_in_order(rig):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    rig.pb.drain()

    def websocket() -> None:
        for quantity in ("2", "3"):
            venue.emit(venue.fill_event(order.client_order_id, D(quantity)))
        venue.emit(OrderUpdate(client_order_id=order.client_order_id, venue_order_id="v-p0001-E",
                               status=OrderStatus.EXPIRED, ts_ms=2, reason="GTD"))

    thread = threading.Thread(target=websocket, name="venue-ws")
    thread.start()
    thread.join(WAIT)
    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderFilled", "OrderFilled", "OrderExpired"]
    assert [m.cumulative_quantity for m in got[1:3]] == [D(2), D(5)]
    assert (got[3].filled_quantity, got[3].reason) == (D(5), "GTD")
    assert rig.store.get_order(order.client_order_id).status is OrderStatus.EXPIRED


def test_a_fill_that_raced_the_cancel_is_published_after_the_cancel_as_the_fact_it_is(rig):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    cancel(rig, order.client_order_id)
    rig.pb.drain()
    venue.emit(venue.fill_event(order.client_order_id, D(2), trade_id="t-late"))

    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderCanceled", "OrderFilled"]
    assert got[2].cumulative_quantity == D(2)
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.filled_quantity) == (OrderStatus.CANCELED, D(2))


# --- the fill guard, per fill -----------------------------------------------------------------------------

def test_a_bad_fill_after_good_ones_ends_the_order_canceled_with_the_good_ones(rig):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    rig.pb.drain()
    venue.emit(venue.fill_event(order.client_order_id, D(3), trade_id="t-good"))
    venue.emit(venue.fill_event(order.client_order_id, D(2), trade_id="t-bad", price=D("0.00")))
    venue.emit(venue.fill_event(order.client_order_id, D(2), trade_id="t-bad", price=D("0.00")))

    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderFilled", "OrderCanceled"]
    assert got[2].filled_quantity == D(3) and got[2].reason.startswith("FILL_REJECTED: fill price Decimal('0.00')")
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.filled_quantity, record.refused_trade_ids) == (OrderStatus.CANCELED, D(3),
                                                                                 ("t-bad",))
    assert venue.cancels == [order.client_order_id], "the venue is asked to stop working the rest"
    assert rig.ask("stats")["refused_fills"] == 1


def test_a_fill_beyond_the_ordered_quantity_is_refused(rig):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    rig.pb.drain()
    venue.emit(venue.fill_event(order.client_order_id, D(8), trade_id="t-1"))
    venue.emit(venue.fill_event(order.client_order_id, D(3), trade_id="t-2"))

    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderFilled", "OrderCanceled"]
    assert "above the ordered 2" in got[2].reason and got[2].filled_quantity == D(8)


# --- unknown outcomes --------------------------------------------------------------------------------

def test_accepted_then_timeout_gives_one_order_and_its_fills(rig):
    venue = FakeVenue(submit_error=AmbiguousOutcome("read timed out"), keep_on_error=True)
    start(rig, venue)
    order = order_request("p0001-E", quantity="0.01")
    execute(rig, order)
    execute(rig, order)  # asked again meanwhile: never placed again

    got = to_sniper(rig)
    assert names(got) == ["OrderFilled", "OrderFilled"], "the fill, then the same fill for the duplicate"
    assert {f.trade_id for f in got if isinstance(f, OrderFilled)} == {venue.book["p0001-E"].fills[0].trade_id}
    assert venue.submits == ["p0001-E"], "an unknown outcome is resolved by asking, never by sending again"
    assert venue.fetches[0] == "p0001-E", "asked at once"
    (record,) = rig.store.load_orders()
    assert (record.status, len(record.fills), record.submissions) == (OrderStatus.FILLED, 1, 1)


def test_unknown_and_still_not_found_after_the_grace_period_is_rejected(rig):
    venue = FakeVenue(submit_error=AmbiguousOutcome("connection reset"))
    start(rig, venue, unknown_grace_s=30)
    order = order_request("p0001-E")
    execute(rig, order)
    rig.pb.drain()

    def reconcile() -> None:
        rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))
        rig.pb.drain()

    rig.pb.clock.advance(29)
    reconcile()
    assert rig.store.get_order("p0001-E").status is OrderStatus.UNKNOWN
    assert rig.pb.messages(OrderRejected) == []

    rig.pb.clock.advance(1)
    reconcile()
    (rejected,) = rig.pb.messages(OrderRejected, SNIPER)
    assert (rejected.order, rejected.reason, rejected.correlation_id) == (order, NOT_FOUND, "c-1")
    assert rig.store.get_order("p0001-E").status is OrderStatus.REJECTED
    assert venue.submits == ["p0001-E"] and venue.fetches == ["p0001-E"] * 3


def test_a_restart_resolves_an_unknown_order_with_what_the_venue_has(rig):
    order = order_request("p0001-E")
    venue = FakeVenue()
    venue.learn(order)
    rig.store.save_order(OrderRecord.of(order, venue="fake", now_ns=1).lose(now_ns=1))

    start(rig, venue)
    got = to_sniper(rig)
    assert names(got) == ["OrderFilled"]
    assert rig.store.get_order("p0001-E").status is OrderStatus.FILLED and venue.submits == []


# --- restarts ------------------------------------------------------------------------------------------

def test_a_restart_with_a_partially_filled_resting_order_applies_the_missed_fills_once(rig):
    venue = FakeVenue(fill_step=D(3))
    first = rig.start(Executor, store=rig.store, venue=venue)
    order = resting(quantity="10")
    execute(rig, order)
    match(rig, "99")
    before = to_sniper(rig)
    assert names(before) == ["OrderAccepted", "OrderFilled", "TickMatched"]
    rig.stop(first)

    missed = venue.fill_silently(order.client_order_id, D(2))  # filled while the engine was down
    start(rig, venue)
    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))
    after = to_sniper(rig)

    assert names(after) == ["OrderFilled"], "only the missed fill, once"
    assert (after[0].trade_id, after[0].cumulative_quantity) == (missed.trade_id, D(5))
    assert venue.submits == [order.client_order_id] and venue.binds == 2
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.filled_quantity, len(record.fills)) == (OrderStatus.PARTIALLY_FILLED, D(5), 2)

    match(rig, "99")  # working on after the restart
    assert [m.cumulative_quantity for m in to_sniper(rig) if isinstance(m, OrderFilled)] == [D(8)]


def test_the_same_execute_order_of_a_working_order_republishes_it_and_asks_the_venue(rig):
    venue = FakeVenue(fill_step=D(3))
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    match(rig, "99")
    to_sniper(rig)

    execute(rig, order)
    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderFilled"]
    assert got[1].cumulative_quantity == D(3)
    assert venue.submits == [order.client_order_id]


# --- cancels -----------------------------------------------------------------------------------------

def test_cancel_of_an_unknown_id_is_logged_and_answered_with_nothing(rig, logs):
    venue = FakeVenue()
    start(rig, venue)
    cancel(rig, "p9999-E")
    assert logs.wait_for("CANCEL_UNKNOWN_ORDER: p9999-E")
    assert to_sniper(rig) == [] and venue.cancels == []
    assert rig.ask("ping") == EXECUTOR


def test_cancel_of_a_final_order_publishes_its_recorded_outcome(rig, logs):
    venue = FakeVenue()
    start(rig, venue)
    order = order_request("p0001-E")
    execute(rig, order)
    first = to_sniper(rig)
    cancel(rig, order.client_order_id)
    assert logs.wait_for("CANCEL_FINAL_ORDER: p0001-E is already FILLED")
    again = to_sniper(rig)
    assert names(first) == names(again) == ["OrderFilled"] and again[0].trade_id == first[0].trade_id
    assert venue.cancels == []


def test_cancel_refused_by_the_venue_learns_what_happened_from_it(rig):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    rig.pb.drain()
    venue.fill_silently(order.client_order_id, D(10))  # filled, its report not yet arrived
    cancel(rig, order.client_order_id)
    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderFilled"]
    assert got[1].order_complete
    assert rig.store.get_order(order.client_order_id).status is OrderStatus.FILLED


def test_a_market_order_is_announced_by_its_fill_and_a_resting_one_by_its_acceptance(rig):
    venue = FakeVenue(rest_market=False)
    start(rig, venue)
    execute(rig, order_request("p0001-E"))
    execute(rig, resting("p0002-E", position_id="p0002"))
    assert names(to_sniper(rig)) == ["OrderFilled", "OrderAccepted"]
    statuses = {r.client_order_id: r.status for r in rig.store.load_orders()}
    assert statuses == {"p0001-E": OrderStatus.FILLED, "p0002-E": OrderStatus.ACCEPTED}


def test_a_cancel_of_an_order_the_venue_does_not_know_yet_is_sent_when_it_turns_up(rig, logs):
    venue = FakeVenue(submit_error=AmbiguousOutcome("read timed out"))
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    cancel(rig, order.client_order_id, reason="plan B")
    assert logs.wait_for("CANCEL_PENDING: p0001-E")
    assert to_sniper(rig) == []
    assert rig.store.get_order(order.client_order_id).cancel_requested == "plan B"

    placed = venue.learn(order, fill=False)  # it reached the venue after all
    venue.emit(OrderUpdate(client_order_id=order.client_order_id, venue_order_id=placed.venue_order_id,
                           status=OrderStatus.ACCEPTED, ts_ms=1))
    got = to_sniper(rig)
    assert names(got) == ["OrderAccepted", "OrderCanceled"]
    assert venue.cancels == [order.client_order_id, order.client_order_id]
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.cancel_requested) == (OrderStatus.CANCELED, None)


def test_a_cancel_whose_outcome_is_unknown_is_sent_again_by_the_reconcile_timer_while_the_order_works(rig, logs):
    venue = FakeVenue()
    start(rig, venue)
    order = resting(quantity="10")
    execute(rig, order)
    assert names(to_sniper(rig)) == ["OrderAccepted"]
    real_cancel, failures = venue.cancel, [AmbiguousOutcome("read timed out"), TemporaryError("banned until 12:00")]

    def cancel_failing_twice(client_order_id: str) -> None:
        if failures:
            venue.cancels.append(client_order_id)
            raise failures.pop(0)
        real_cancel(client_order_id)

    venue.cancel = cancel_failing_twice  # type: ignore[method-assign]
    cancel(rig, order.client_order_id, reason="plan B")
    assert logs.wait_for("CANCEL_OUTCOME_UNKNOWN: p0001-E")
    assert rig.ask("ping") == EXECUTOR
    assert rig.store.get_order(order.client_order_id).cancel_requested == "plan B"
    assert to_sniper(rig) == []

    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))  # the venue: still working
    assert logs.wait_for("CANCEL_RETRY: p0001-E")
    assert rig.ask("ping") == EXECUTOR
    assert to_sniper(rig) == [] and len(venue.cancels) == 2  # failed again (banned): still remembered

    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))
    assert rig.ask("ping") == EXECUTOR
    assert names(to_sniper(rig)) == ["OrderCanceled"]
    assert venue.cancels == [order.client_order_id] * 3
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.cancel_requested) == (OrderStatus.CANCELED, None)

    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))  # final: nothing more
    assert rig.ask("ping") == EXECUTOR
    assert len(venue.cancels) == 3


# --- shutdown ---------------------------------------------------------------------------------------------

def test_cancel_open_orders_cancels_every_working_order_but_those_kept(rig):
    venue = FakeVenue()
    start(rig, venue)
    orders = [resting(f"p000{n}-E", position_id=f"p000{n}", quantity="1") for n in range(1, 6)]
    for order in orders:
        execute(rig, order)
    rig.pb.drain()
    assert [o.client_order_id for o in rig.ask("open_orders")] == [o.client_order_id for o in orders]

    asked = rig.ask("cancel_open_orders", frozenset({"p0003-E"}))
    assert asked == ("p0001-E", "p0002-E", "p0004-E", "p0005-E")
    assert [o.client_order_id for o in rig.ask("open_orders")] == ["p0003-E"]
    canceled = rig.pb.messages(OrderCanceled, SNIPER)
    assert sorted(m.order.client_order_id for m in canceled) == list(asked)
    assert all(m.reason == "canceled by request" and m.filled_quantity == 0 for m in canceled)

    asked = rig.ask("cancel_open_orders", frozenset())
    assert asked == ("p0003-E",) and rig.ask("open_orders") == []
    statuses = {r.client_order_id: r.status for r in rig.store.load_orders()}
    assert statuses == {o.client_order_id: OrderStatus.CANCELED for o in orders}
    assert rig.ask("order", "p0003-E").status is OrderStatus.CANCELED
    assert rig.ask("order", "p9999-E") is None


def test_journal_gets_the_lifecycle_events_too(rig):
    venue = FakeVenue(fill_step=D(1))
    start(rig, venue)
    order = resting(quantity="2")
    execute(rig, order)
    match(rig, "99")
    cancel(rig, order.client_order_id)
    rig.pb.drain()
    assert [type(m).__name__ for to, m in rig.pb.seen if to == JOURNAL and isinstance(m, LIFECYCLE)] == [
        "OrderAccepted", "OrderFilled", "OrderCanceled"]


def test_a_fill_of_an_order_rejected_as_not_found_is_never_applied_and_said_loudly(rig, logs):
    venue = FakeVenue(submit_error=AmbiguousOutcome("read timed out"))
    start(rig, venue, unknown_grace_s=0)
    order = order_request("p0001-E")
    execute(rig, order)
    assert names(to_sniper(rig)) == ["OrderRejected"]  # unknown, and not found at once: no grace

    venue.learn(order, fill=False)
    venue.emit(venue.fill_event(order.client_order_id, order.quantity, trade_id="t-late"))
    assert logs.wait_for("FILL_AFTER_REJECTED: the venue reports trade t-late")
    assert to_sniper(rig) == []
    record = rig.store.get_order(order.client_order_id)
    assert (record.status, record.filled_quantity, record.refused_trade_ids) == (OrderStatus.REJECTED, 0, ("t-late",))


def test_cancel_open_orders_without_foreign_leaves_orders_never_recorded_here_alone(rig):
    venue = FakeVenue()
    start(rig, venue)
    mine = resting("p0001-E", quantity="1")
    execute(rig, mine)
    venue.learn(resting("p0002-E", position_id="p0002", quantity="1"), fill=False)  # placed by hand, say
    rig.pb.drain()

    assert rig.ask("cancel_open_orders", frozenset(), "SHUTDOWN", False) == ("p0001-E",)
    assert venue.cancels == ["p0001-E"]
    assert [o.client_order_id for o in rig.ask("open_orders")] == ["p0002-E"]
