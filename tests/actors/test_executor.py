"""The Executor as a threaded actor: every other role is a probe on a real bus, the store is real,
and the venue is the paper venue (no ledger, no slippage) or a scripted fake (tests/support/fake_venue.py).
Market orders: the lifecycle's other events are in test_executor_lifecycle.py."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from actors.bus import EXECUTOR, SNIPER
from actors.executor import Executor
from adapters.errors import AmbiguousOutcome, InsufficientFunds
from adapters.venues.paper import PaperVenue
from state.market import default_rules
from state.matching import FeeSchedule, MatchingSettings
from state.messages import ExecuteOrder, OrderAccepted, OrderFilled, OrderRejected, OrderRequest, TimerFired
from state.order import OrderRecord
from state.types import Liquidity, OrderStatus
from tests.actors.helpers import ActorRig, order_request
from tests.support.fake_venue import FakeVenue

FEE_RATE = Decimal("0.0005")


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(EXECUTOR), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def paper(rig) -> PaperVenue:
    return PaperVenue(clock=rig.pb.clock, markets=default_rules,
                      settings=MatchingSettings(slippage_bps=Decimal(0), fees=FeeSchedule(maker=Decimal(0),
                                                                                          taker=FEE_RATE)))


def execute(rig: ActorRig, order: OrderRequest, correlation_id: str | None = "c-flow") -> None:
    rig.pb.bus.send(ExecuteOrder(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=correlation_id, order=order))


def test_answers_ping_with_its_role(rig, paper):
    rig.start(Executor, store=rig.store, venue=paper)
    assert rig.ask("ping") == EXECUTOR


def test_execute_order_records_the_intent_as_submitting_before_the_venue_sees_it(rig):
    venue = FakeVenue(store=rig.store)
    rig.start(Executor, store=rig.store, venue=venue)
    order = order_request("p0001-E")

    execute(rig, order)
    rig.pb.wait_for(OrderFilled, SNIPER)

    seen = venue.record_at_submit["p0001-E"]
    assert seen is not None, "the venue saw an order the store did not know"
    assert seen.status is OrderStatus.SUBMITTING
    assert (seen.coin, seen.side, seen.quantity, seen.intent) == (order.coin, order.side, order.quantity, order.intent)
    assert seen.request() == order


def test_execute_order_when_the_paper_venue_fills_then_order_filled_to_the_sniper_with_price_and_fee(rig, paper):
    rig.start(Executor, store=rig.store, venue=paper)
    order = order_request("p0001-E", quantity="0.01", reference_price="42000")

    execute(rig, order, correlation_id="c-0001")
    filled = rig.pb.wait_for(OrderFilled, SNIPER)

    assert filled.order == order
    assert filled.correlation_id == "c-0001"
    assert filled.fill_price == Decimal("42000")
    assert filled.fill_quantity == Decimal("0.01")
    assert filled.fee == Decimal("0.21")  # 0.01 * 42000 * 0.0005
    assert filled.venue == "paper"
    assert (filled.cumulative_quantity, filled.order_complete) == (Decimal("0.01"), True)
    assert (filled.liquidity, filled.fee_currency) == (Liquidity.TAKER, "USDT")
    assert rig.pb.messages(OrderAccepted) == [], "a market order's acceptance is recorded, not announced"
    record = rig.store.get_order("p0001-E")
    assert record is not None and record.status is OrderStatus.FILLED
    assert (record.average_fill_price, record.fees_total) == (filled.fill_price, filled.fee)
    assert [f.trade_id for f in record.fills] == [filled.trade_id]
    assert record.submissions == 1


def test_same_execute_order_five_times_reaches_the_venue_once_and_republishes_the_recorded_fill(rig, paper):
    rig.start(Executor, store=rig.store, venue=paper)
    order = order_request("p0001-E")

    for _ in range(5):
        execute(rig, order)
    fills = rig.pb.messages(OrderFilled, SNIPER)

    assert paper.submissions["p0001-E"] == 1
    assert len(fills) == 5, "every duplicate gets the recorded outcome back"
    assert rig.pb.messages(OrderAccepted, SNIPER) == [], "duplicates of a filled order get the fill"
    assert {(f.trade_id, f.fill_price, f.fee) for f in fills} == {(fills[0].trade_id, fills[0].fill_price, fills[0].fee)}
    records = rig.store.load_orders()
    assert [(r.client_order_id, r.status) for r in records] == [("p0001-E", OrderStatus.FILLED)]
    assert rig.ask("stats")["submitted"] == 1


def test_execute_order_when_the_venue_refuses_it_then_order_rejected_and_the_record_is_rejected(rig):
    venue = FakeVenue(submit_error=InsufficientFunds("margin is insufficient"))
    rig.start(Executor, store=rig.store, venue=venue)
    order = order_request("p0001-E")

    execute(rig, order, correlation_id="c-0001")
    rejected = rig.pb.wait_for(OrderRejected, SNIPER)

    assert rejected.order == order
    assert rejected.correlation_id == "c-0001"
    assert "margin is insufficient" in rejected.reason
    record = rig.store.get_order("p0001-E")
    assert record is not None and record.status is OrderStatus.REJECTED
    assert record.reason == "margin is insufficient"
    assert rig.pb.messages(OrderFilled) == []


def test_execute_order_rejected_by_the_paper_venue_for_a_stale_price_is_never_submitted_again(rig, paper):
    rig.start(Executor, store=rig.store, venue=paper)
    order = order_request("p0001-E", reference_ts_ms=rig.pb.clock.now_ns() // 1_000_000 - 120_000)

    execute(rig, order)
    execute(rig, order)
    rejected = rig.pb.messages(OrderRejected, SNIPER)

    assert [r.order.client_order_id for r in rejected] == ["p0001-E", "p0001-E"]
    assert "PRICE_UNAVAILABLE" in rejected[0].reason
    assert paper.submissions["p0001-E"] == 1
    assert rig.store.get_order("p0001-E").status is OrderStatus.REJECTED


def test_ambiguous_outcome_makes_the_order_unknown_asks_at_once_and_reconcile_resolves_the_fill(rig):
    venue = FakeVenue(submit_error=AmbiguousOutcome("read timed out"))
    rig.start(Executor, store=rig.store, venue=venue)
    order = order_request("p0001-E")

    execute(rig, order)
    rig.pb.drain()

    assert rig.pb.messages(OrderFilled) == [] and rig.pb.messages(OrderRejected) == []
    record = rig.store.get_order("p0001-E")
    assert record is not None and record.status is OrderStatus.UNKNOWN
    assert record.submissions == 1 and record.unknown_since_ns == rig.pb.clock.now_ns()
    assert venue.fetches == ["p0001-E"], "asked at once"

    venue.learn(order)  # the venue did place it after all, and it filled
    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))
    filled = rig.pb.wait_for(OrderFilled, SNIPER)

    (fill,) = venue.book["p0001-E"].fills
    assert (filled.order.client_order_id, filled.trade_id, filled.fill_price, filled.fee) == (
        "p0001-E", fill.trade_id, fill.price, fill.fee)
    assert venue.submits == ["p0001-E"], "an ambiguous order is resolved by asking, never by placing it again"
    assert venue.fetches == ["p0001-E", "p0001-E"]
    assert rig.store.get_order("p0001-E").status is OrderStatus.FILLED


def test_fill_resolved_by_reconcile_keeps_the_correlation_id_of_its_execute_order(rig):
    venue = FakeVenue(submit_error=AmbiguousOutcome("read timed out"))
    rig.start(Executor, store=rig.store, venue=venue)
    order = order_request("p0001-E")
    execute(rig, order, correlation_id="c-0001")
    rig.pb.drain()

    venue.learn(order)
    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))

    assert rig.pb.wait_for(OrderFilled, SNIPER).correlation_id == "c-0001"


def test_reconcile_when_the_venue_still_does_not_know_the_order_publishes_nothing_and_never_resubmits(rig):
    venue = FakeVenue(submit_error=AmbiguousOutcome("connection reset"))
    rig.start(Executor, store=rig.store, venue=venue)
    execute(rig, order_request("p0001-E"))
    rig.pb.drain()

    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))
    rig.pb.drain()

    assert venue.fetches == ["p0001-E", "p0001-E"]
    assert venue.submits == ["p0001-E"]
    assert rig.pb.messages(OrderFilled) == [] and rig.pb.messages(OrderRejected) == []
    assert rig.store.get_order("p0001-E").status is OrderStatus.UNKNOWN


def test_reconcile_when_the_venue_reports_a_rejection_then_order_rejected_and_the_record_is_rejected(rig):
    venue = FakeVenue(submit_error=AmbiguousOutcome("read timed out"))
    rig.start(Executor, store=rig.store, venue=venue)
    order = order_request("p0001-E")
    execute(rig, order)
    rig.pb.drain()

    venue.reject_silently(order, "MIN_NOTIONAL")
    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))
    rejected = rig.pb.wait_for(OrderRejected, SNIPER)

    assert rejected.order == order
    assert rejected.reason == "MIN_NOTIONAL"
    record = rig.store.get_order("p0001-E")
    assert record.status is OrderStatus.REJECTED and record.reason == "MIN_NOTIONAL"
    assert rig.pb.messages(OrderAccepted) == [], "the venue never held it"


def test_restart_resolves_a_record_left_submitting_with_the_venue_and_publishes_the_fill(rig):
    order = order_request("p0001-E")
    venue = FakeVenue()
    placed = venue.learn(order)  # placed just before the crash
    rig.store.save_order(OrderRecord.of(order, venue=venue.name, now_ns=1))

    rig.start(Executor, store=rig.store, venue=venue)
    filled = rig.pb.wait_for(OrderFilled, SNIPER)

    (fill,) = placed.fills
    assert filled.order == order
    assert (filled.trade_id, filled.fill_price, filled.fill_quantity, filled.fee) == (
        fill.trade_id, fill.price, fill.quantity, fill.fee)
    assert venue.submits == [], "a restart never places a known intent again"
    record = rig.store.get_order("p0001-E")
    assert record.status is OrderStatus.FILLED and [f.trade_id for f in record.fills] == [fill.trade_id]


def test_restart_then_the_same_execute_order_of_an_order_the_venue_never_saw_places_it_once(rig):
    order = order_request("p0001-E")
    venue = FakeVenue()
    now = rig.pb.clock.now_ns()
    rig.store.save_order(OrderRecord.of(order, venue=venue.name, now_ns=now))  # killed before the venue got it

    rig.start(Executor, store=rig.store, venue=venue)
    assert rig.ask("ping") == EXECUTOR  # answered after its start
    assert venue.fetches == ["p0001-E"] and venue.submits == []
    assert rig.store.get_order("p0001-E").status is OrderStatus.SUBMITTING

    execute(rig, order)  # the Sniper asks again, with the same client order id
    execute(rig, order)
    fills = rig.pb.messages(OrderFilled, SNIPER)

    assert venue.submits == ["p0001-E"]
    assert len({f.trade_id for f in fills}) == 1
    assert rig.store.get_order("p0001-E").status is OrderStatus.FILLED


def test_a_record_left_submitting_that_nobody_asks_for_again_is_rejected_after_the_grace_period(rig):
    order = order_request("p0001-E")
    venue = FakeVenue()
    rig.store.save_order(OrderRecord.of(order, venue=venue.name, now_ns=rig.pb.clock.now_ns()))
    rig.start(Executor, store=rig.store, venue=venue, unknown_grace_s=10)
    assert rig.ask("ping") == EXECUTOR
    assert rig.store.get_order("p0001-E").status is OrderStatus.SUBMITTING

    rig.pb.clock.advance(10)
    rig.pb.bus.tell(EXECUTOR, TimerFired(ts_init_ns=rig.pb.clock.now_ns(), name="reconcile"))
    rejected = rig.pb.wait_for(OrderRejected, SNIPER)
    assert rejected.order == order and rejected.reason.startswith("NOT_FOUND")
    assert venue.submits == []


def test_restart_then_the_same_execute_order_gets_the_recorded_fill_without_a_new_submission(rig, paper):
    first = rig.start(Executor, store=rig.store, venue=paper)
    order = order_request("p0001-E")
    execute(rig, order)
    original = rig.pb.wait_for(OrderFilled, SNIPER)
    rig.stop(first)

    rig.start(Executor, store=rig.store, venue=paper)
    execute(rig, order)
    again = rig.pb.wait_for(OrderFilled, SNIPER)

    assert again.trade_id == original.trade_id
    assert paper.submissions["p0001-E"] == 1
