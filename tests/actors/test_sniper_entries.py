"""The Sniper carrying out entry plans, threaded, with the Executor faked (the test publishes its
events): a limit entry's time limit on the coin's ticks and on the sweep, plan B TAKE (a market
order for exactly the rest once the limit's end says what filled) and CANCEL, the scale-in leg
placed after the first leg, canceled before an exit, and a restart that resumes all of it
without sending anything twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from actors.bus import EXECUTOR, RISK_GATE, SNIPER
from actors.sniper import Sniper
from state.entry_plan import PlanB
from state.market import TopOfBook, default_rules
from state.messages import (
    CancelOrder,
    MatchTick,
    OrderAccepted,
    OrderCanceled,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    SubmitOrder,
    TimerFired,
)
from state.store import Store
from state.types import OrderIntent, OrderType, PositionStatus
from tests.actors.test_sniper_orders import OrdersHarness
from tests.conftest import ProbeBus, condition

D = Decimal
LIMIT = {"entry_type": "limit", "entry_offset_ticks": -100, "entry_timeout_s": 30}
SCALE = {"scale_in_fraction": "0.4", "scale_in_pullback_pct": "0.01", "scale_in_timeout_s": 60}


class EntriesHarness(OrdersHarness):
    def __init__(self, pb: ProbeBus, store: Store, quotes: Any = None) -> None:
        super().__init__(pb, store)
        self.quotes = quotes

    def start(self) -> EntriesHarness:
        self.ref = Sniper.start(bus=self.pb.bus, clock=self.pb.clock, store=self.store, markets=default_rules,
                                limits=self.limits, initial_balance=D(10000), quotes=self.quotes,
                                quote_max_age_ms=5_000)
        self.pb.bus.register(SNIPER, self.ref)
        return self

    def accept(self, submit: SubmitOrder) -> None:
        self.pb.bus.publish(OrderAccepted(ts_init_ns=0, order=submit.order, venue_order_id="v-" +
                                          submit.order.client_order_id))
        self.idle()

    def canceled(self, submit: SubmitOrder, filled: Any) -> None:
        self.pb.bus.publish(OrderCanceled(ts_init_ns=0, order=submit.order, venue_order_id="v",
                                          filled_quantity=D(str(filled)), reason="canceled"))

    def sent(self, suffix: str) -> list[SubmitOrder]:
        return [m for m in self.pb.messages(SubmitOrder, RISK_GATE) if m.order.client_order_id.endswith(suffix)]


@pytest.fixture
def make(probe_bus_for, tmp_path):
    harnesses: list[EntriesHarness] = []

    def factory(*, store: Store | None = None, pb: ProbeBus | None = None, quotes: Any = None) -> EntriesHarness:
        harness = EntriesHarness(pb or probe_bus_for(SNIPER), store or Store(tmp_path / "engine.db"), quotes)
        harnesses.append(harness)
        return harness.start()

    yield factory
    for harness in harnesses:
        harness.stop()


def limit_entry(sniper: EntriesHarness, **plan: Any) -> SubmitOrder:
    """A LONG above 39999 for $4000 fired at 40000: a limit 100 ticks below the trigger (39998.00) for 0.1 BTC, accepted."""
    sniper.ask("add_condition", condition(trigger=39999, size=4000, **LIMIT, **plan))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    assert entry.order.order_type is OrderType.LIMIT and entry.order.limit_price == D("39998.00")
    sniper.accept(entry)
    return entry


def test_a_limit_entry_partly_filled_at_its_time_limit_takes_exactly_the_rest_at_market(make):
    sniper = make()
    entry = limit_entry(sniper, entry_plan_b_pct="0.001")
    first = entry.order.quantity
    assert first == D("0.10000")
    sniper.part(entry.order, "0.03", "0.03", price="39998")
    sniper.pb.wait_for(PositionOpened)
    sniper.tick("BTC", 40010, step_ms=29_000)  # before the limit: no cancel
    sniper.idle()
    assert sniper.pb.messages(CancelOrder, EXECUTOR) == []
    sniper.tick("BTC", 40020, step_ms=1_000)  # at the limit: 21.00 from the trigger, within 39.999
    cancel = sniper.pb.wait_for(CancelOrder, EXECUTOR)
    assert cancel.client_order_id == entry.order.client_order_id and cancel.reason.startswith("ENTRY_TIMEOUT: ")
    assert "plan B within 0.001 of the trigger: TAKE" in cancel.reason
    stored = sniper.store.get_position(entry.order.position_id)
    assert stored.entry_plan.plan_b is PlanB.TAKE and stored.entry_order.cancel_requested, "decided, then sent"
    sniper.idle()
    assert sniper.sent("-B") == [], "the rest is known only once the cancel says what filled"

    sniper.part(entry.order, "0.01", "0.04", price="39998")  # a fill that raced the cancel
    sniper.canceled(entry, "0.04")
    take = sniper.pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id.endswith("-B"))
    assert take.order.order_type is OrderType.MARKET and take.order.quantity == D("0.06")
    sniper.part(take.order, "0.06", "0.06", price="40020")
    grown = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change == "ENTRY_FILLED"
                               and m.position.quantity == D("0.1")).position
    assert grown.entry_order is None and grown.entry_price == (D("0.04") * 39998 + D("0.06") * 40020) / D("0.1")
    sniper.idle()
    assert sniper.sent("-B") == [], "sent once"


def test_a_fresh_ask_beyond_the_plan_b_distance_cancels_and_the_position_keeps_what_filled(make):
    quote = TopOfBook(bid=D(40049), bid_qty=D(1), ask=D(40050), ask_qty=D(1), ts_ms=0)
    sniper = make(quotes=lambda coin: quote)
    entry = limit_entry(sniper, entry_plan_b_pct="0.001")
    sniper.part(entry.order, "0.03", "0.03", price="39998")
    sniper.pb.wait_for(PositionOpened)
    quote = TopOfBook(bid=D(40049), bid_qty=D(1), ask=D(40050), ask_qty=D(1), ts_ms=sniper.ts + 30_000)
    sniper.tick("BTC", 40000, step_ms=30_000)  # the last trade would take; the fresh ask (51 away) does not
    cancel = sniper.pb.wait_for(CancelOrder, EXECUTOR)
    assert "40050 (top of book)" in cancel.reason and cancel.reason.endswith("CANCEL")
    sniper.canceled(entry, "0.03")
    changed = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change.startswith("ENTRY_ENDED"))
    assert changed.position.quantity == D("0.03") and changed.position.entry_order is None
    sniper.tick("BTC", 39100)  # through the stop (39198.04): the exit covers exactly the 3 steps
    assert sniper.submitted(OrderIntent.EXIT).order.quantity == D("0.03")
    assert sniper.sent("-B") == []


def test_on_a_wall_clock_the_sweep_times_a_limit_entry_out_and_nothing_filled_closes_it(make):
    sniper = make()
    entry = limit_entry(sniper)
    sniper.pb.bus.tell(SNIPER, TimerFired(ts_init_ns=0, name="sweep"))
    sniper.idle()
    assert sniper.pb.messages(CancelOrder, EXECUTOR) == []
    sniper.pb.clock.advance(31)
    sniper.pb.bus.tell(SNIPER, TimerFired(ts_init_ns=0, name="sweep"))
    cancel = sniper.pb.wait_for(CancelOrder, EXECUTOR)
    assert cancel.client_order_id == entry.order.client_order_id
    sniper.canceled(entry, 0)
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason.startswith("ENTRY_TIMEOUT: limit 39998.00")
    snap = sniper.ask("snapshot")
    assert snap.positions == () and snap.balance == D(10000)


def test_the_scale_in_leg_follows_the_first_leg_and_an_exit_cancels_it_before_exiting_what_is_held(make):
    sniper = make()
    sniper.ask("add_condition", condition(trigger=39999, size=4000, **SCALE))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    assert entry.order.order_type is OrderType.MARKET and entry.order.quantity == D("0.06")
    sniper.part(entry.order, "0.06", "0.06", price="40000")
    add = sniper.pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id.endswith("-S"))
    assert add.order.order_type is OrderType.LIMIT and add.order.limit_price == D("39600.00")
    assert add.order.quantity == D("0.04")
    assert sniper.store.get_position(entry.order.position_id).add_order is not None, "written before it went out"
    sniper.tick("BTC", 39900)  # the add is in flight until accepted: the tick waits
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 1
    sniper.accept(add)
    assert sniper.pb.wait_for(MatchTick, EXECUTOR).tick.price == D(39900)
    sniper.part(add.order, "0.01", "0.01", price="39600")
    sniper.pb.wait_for(PositionChanged, where=lambda m: m.change == "ENTRY_FILLED")
    assert sniper.position().quantity == D("0.07")

    sniper.ask("close_position", entry.order.position_id, "MANUAL")
    cancel = sniper.pb.wait_for(CancelOrder, EXECUTOR)
    assert cancel.client_order_id == add.order.client_order_id
    sniper.idle()
    assert sniper.sent("-X1") == []  # the exit waits for the add's end
    sniper.canceled(add, "0.01")
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.quantity == D("0.07")
    sniper.part(exit_.order, "0.07", "0.07", price="39900")
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.realized_pnl == D("0.06") * -100 + D("0.01") * 300
    assert sniper.ask("snapshot").working_orders == ()


def test_the_scale_in_leg_is_canceled_at_its_time_limit(make):
    sniper = make()
    sniper.ask("add_condition", condition(trigger=39999, size=4000, **SCALE))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    sniper.part(entry.order, "0.06", "0.06", price="40000")
    add = sniper.pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id.endswith("-S"))
    sniper.accept(add)
    sniper.tick("BTC", 40100, step_ms=59_000)
    sniper.idle()
    assert sniper.pb.messages(CancelOrder, EXECUTOR) == []
    sniper.tick("BTC", 40100, step_ms=1_000)
    cancel = sniper.pb.wait_for(CancelOrder, EXECUTOR)
    assert cancel.client_order_id == add.order.client_order_id and cancel.reason.startswith("SCALE_IN_TIMEOUT")
    sniper.canceled(add, 0)
    changed = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change.startswith("ENTRY_ENDED"))
    assert changed.position.quantity == D("0.06") and changed.position.add_order is None


def test_a_restart_resumes_a_pending_plan_b_without_sending_anything_twice(make, tmp_path):
    store = Store(tmp_path / "engine.db")
    first = make(store=store)
    entry = limit_entry(first, entry_plan_b_pct="0.001")
    first.part(entry.order, "0.03", "0.03", price="39998")
    first.pb.wait_for(PositionOpened)
    first.tick("BTC", 40000, step_ms=30_000)
    first.pb.wait_for(CancelOrder, EXECUTOR)
    first.idle()
    first.stop()

    second = make(store=store, pb=first.pb)
    again = second.pb.wait_for(CancelOrder, EXECUTOR)  # the decision stands: the cancel is asked again
    assert again.client_order_id == entry.order.client_order_id
    second.idle()
    assert second.sent("-E") == [] and second.sent("-B") == []
    second.canceled(entry, "0.03")
    take = second.pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id.endswith("-B"))
    assert take.order.quantity == D("0.07")
    second.stop()

    third = make(store=store, pb=first.pb)  # the plan B order in flight: asked again with its same id
    resent = third.pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id.endswith("-B"))
    assert resent.order == take.order
    third.part(take.order, "0.07", "0.07", price="40000", trade_id="T-B")
    third.pb.wait_for(PositionChanged, where=lambda m: m.change == "ENTRY_FILLED")
    assert third.position().quantity == D("0.1")


def test_a_restart_with_a_working_scale_in_leg_sends_nothing(make, tmp_path):
    store = Store(tmp_path / "engine.db")
    first = make(store=store)
    first.ask("add_condition", condition(trigger=39999, size=4000, **SCALE))
    first.tick("BTC", 40000)
    entry = first.submitted(OrderIntent.ENTRY)
    first.part(entry.order, "0.06", "0.06", price="40000")
    add = first.pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id.endswith("-S"))
    first.accept(add)
    before = first.ask("snapshot")
    assert before.working_orders == (add.order.client_order_id,)
    first.stop()

    second = make(store=store, pb=first.pb)
    assert second.ask("snapshot") == before
    second.idle()
    assert second.pb.messages(SubmitOrder, RISK_GATE) == [] and second.pb.messages(CancelOrder, EXECUTOR) == []
    second.part(add.order, "0.04", "0.04", price="39600", trade_id="T-S")
    grown = second.pb.wait_for(PositionChanged, where=lambda m: m.change == "ENTRY_FILLED").position
    assert grown.quantity == D("0.1") and grown.add_order is None
