"""The Sniper with partial fills and working orders, threaded, with the Executor faked: the test
publishes the Executor's events on the bus itself (design10.md "How an order lives" 3, 4, 6, 7).

- an entry filled 3 of 10 steps then canceled or expired leaves a position of 3 steps whose
  stop and target exit exactly 3 steps;
- an exit filled in two parts closes the position once, with the PnL of both parts;
- a fill delivered twice (same trade id) changes nothing;
- a resting entry holds the coin's ticks only until OrderAccepted; then each of the coin's
  ticks goes to the venue first (MatchTick) and, on a tick clock, is evaluated only after
  TickMatched; an exit while it still works cancels it and exits what filled.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import EXECUTOR, RISK_GATE, SNIPER
from actors.sniper import Sniper
from adapters.clock import TickClock
from state.market import default_rules
from state.messages import (
    CancelOrder,
    MatchTick,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRequest,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    SubmitOrder,
    Tick,
    TickMatched,
    TimerFired,
)
from state.rules import PositionLimits
from state.store import Store
from state.types import OrderIntent, OrderType, PositionStatus
from tests.actors.test_sniper import Harness
from tests.conftest import WAIT, ProbeBus, condition

D = Decimal


def limit_at_trigger(cond: Any, price: Decimal, market: Any) -> dict[str, Any]:
    """Entries as resting limit orders at the trigger price."""
    return {"order_type": OrderType.LIMIT, "limit_price": cond.trigger_price}


class OrdersHarness(Harness):
    def __init__(self, pb: ProbeBus, store: Store, entry_terms: Any = None) -> None:
        super().__init__(pb, store, PositionLimits(max_exposure_pct=D(1)))
        self.entry_terms = entry_terms
        self.trades = 0

    def start(self) -> OrdersHarness:
        extra = {} if self.entry_terms is None else {"entry_terms": self.entry_terms}
        self.ref = Sniper.start(bus=self.pb.bus, clock=self.pb.clock, store=self.store, markets=default_rules,
                                limits=self.limits, initial_balance=D(10000), **extra)
        self.pb.bus.register(SNIPER, self.ref)
        return self

    def at(self, price: Any, ts_ms: int, coin: str = "BTC") -> Tick:
        tick = Tick(ts_init_ns=ts_ms * 1_000_000, coin=coin, price=D(str(price)), ts_ms=ts_ms)
        self.pb.bus.publish(tick)
        return tick

    def part(self, order: OrderRequest, quantity: Any, cumulative: Any, price: Any = None, fee: Any = "0",
             trade_id: str | None = None) -> OrderFilled:
        """Publish one fill of ``order`` as the Executor would."""
        self.trades += 1
        event = OrderFilled(
            ts_init_ns=self.pb.clock.now_ns(), order=order, venue_order_id="v-" + order.client_order_id,
            trade_id=trade_id or f"T{self.trades}",
            fill_price=D(str(price)) if price is not None else order.limit_price or order.reference_price,
            fill_quantity=D(str(quantity)), cumulative_quantity=D(str(cumulative)), fee=D(str(fee)),
            ts_event_ms=order.reference_ts_ms,
        )
        self.pb.bus.publish(event)
        return event

    def position(self) -> Any:
        (position,) = self.ask("snapshot").positions
        return position


@pytest.fixture
def make(probe_bus_for, tmp_path):
    harnesses: list[OrdersHarness] = []

    def factory(*, tick_clock: bool = False, entry_terms: Any = None, store: Store | None = None,
                pb: ProbeBus | None = None) -> OrdersHarness:
        if pb is None:
            pb = probe_bus_for(SNIPER)
            if tick_clock:
                pb = dataclasses.replace(pb, clock=TickClock())
        harness = OrdersHarness(pb, store or Store(tmp_path / "engine.db"), entry_terms)
        harnesses.append(harness)
        return harness.start()

    yield factory
    for harness in harnesses:
        harness.stop()


def market_entry_of_ten_steps(sniper: OrdersHarness) -> SubmitOrder:
    """A LONG at 40000 for $4000: 0.10000 BTC, ten steps of 0.01."""
    sniper.ask("add_condition", condition(trigger=39999, size=4000, stop="0.02", target="0.015"))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    assert entry.order.quantity == D("0.10000") and entry.order.order_type is OrderType.MARKET
    return entry


@pytest.mark.parametrize("ended", [OrderCanceled, OrderExpired])
def test_an_entry_filled_3_of_10_steps_then_ended_leaves_3_steps_and_the_tick_that_waited_stops_them_out(
        make, ended):
    sniper = make()
    entry = market_entry_of_ten_steps(sniper)
    sniper.part(entry.order, "0.03", "0.03", fee="0.6")
    opened = sniper.pb.wait_for(PositionOpened).position
    assert opened.quantity == D("0.03") and opened.status is PositionStatus.OPEN
    sniper.tick("BTC", 39000)  # the market entry is in flight until it ends: this tick waits
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 1

    sniper.pb.bus.publish(ended(ts_init_ns=0, order=entry.order, venue_order_id="v-1", filled_quantity=D("0.03"),
                                reason="IOC remainder"))
    changed = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change.startswith("ENTRY_ENDED"))
    assert changed.position.quantity == D("0.03") and changed.position.entry_order is None
    exit_ = sniper.submitted(OrderIntent.EXIT)  # the tick that waited: through the stop
    assert exit_.order.quantity == D("0.03") and exit_.order.reference_price == D(39000)
    sniper.part(exit_.order, "0.03", "0.03")
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.quantity == D("0.03") and closed.realized_pnl == D("0.03") * -1000 - D("0.6")


@pytest.mark.parametrize(("exit_price", "reason"), [("39200", "STOP_LOSS"), ("40600", "TAKE_PROFIT")])
def test_an_entry_filled_3_of_10_steps_then_canceled_has_a_stop_and_a_target_for_exactly_3_steps(
        make, exit_price, reason):
    sniper = make()
    entry = market_entry_of_ten_steps(sniper)
    sniper.part(entry.order, "0.03", "0.03")
    sniper.pb.bus.publish(OrderCanceled(ts_init_ns=0, order=entry.order, venue_order_id="v-2",
                                        filled_quantity=D("0.03"), reason="canceled"))
    sniper.pb.wait_for(PositionChanged, where=lambda m: m.change.startswith("ENTRY_ENDED"))
    position = sniper.position()
    assert position.quantity == D("0.03")
    assert position.stop_loss_price == D("39200.00") and position.take_profit_price == D("40600.00")
    sniper.tick("BTC", exit_price)
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.quantity == D("0.03")
    submitted = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change == "EXIT_SUBMITTED")
    assert submitted.position.exit_reason == reason


def test_an_entry_ended_with_nothing_filled_is_entry_rejected(make):
    sniper = make()
    entry = market_entry_of_ten_steps(sniper)
    sniper.pb.bus.publish(OrderExpired(ts_init_ns=0, order=entry.order, venue_order_id="v-1", filled_quantity=D(0),
                                       reason="FOK not fillable"))
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.exit_reason == "ENTRY_REJECTED: EXPIRED: FOK not fillable"
    assert sniper.ask("snapshot").positions == () and sniper.ask("snapshot").balance == D(10000)


def test_an_exit_filled_in_two_parts_closes_the_position_once_with_the_right_pnl(make):
    sniper = make()
    entry = market_entry_of_ten_steps(sniper)
    sniper.part(entry.order, "0.1", "0.1", fee="2")
    sniper.pb.wait_for(PositionOpened)
    sniper.tick("BTC", 40400)
    sniper.idle()
    sniper.ask("close_position", sniper.position().id, "MANUAL")
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.quantity == D("0.1")

    sniper.part(exit_.order, "0.04", "0.04", price="40400", fee="0.8")
    reduced = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change == "EXIT_FILLED").position
    assert reduced.status is PositionStatus.CLOSING and reduced.quantity == D("0.06")
    sniper.idle()
    assert sniper.pb.messages(PositionClosed) == []
    sniper.part(exit_.order, "0.06", "0.1", price="40300", fee="1.2")

    closed = sniper.pb.wait_for(PositionClosed, "journal")
    gross = D("0.04") * 400 + D("0.06") * 300
    assert closed.position.realized_pnl == gross - D(4)
    assert closed.position.quantity == D("0.1") and closed.position.exit_price == D(40340)
    assert closed.balance == D(10000) + gross - D(4)
    sniper.idle()
    assert sniper.pb.messages(PositionClosed, "journal") == [], "closed once"
    snap = sniper.ask("snapshot")
    assert snap.positions == () and snap.realized_pnl == gross - D(4) and snap.closed_positions == 1
    assert sniper.store.get_position(closed.position.id).realized_pnl == gross - D(4)


def test_a_fill_delivered_twice_changes_nothing(make):
    sniper = make()
    entry = market_entry_of_ten_steps(sniper)
    first = sniper.part(entry.order, "0.04", "0.04", fee="1")
    sniper.pb.bus.publish(first)  # the same trade again
    sniper.part(entry.order, "0.06", "0.1", fee="1")
    sniper.pb.bus.publish(dataclasses.replace(first, msg_id=first.msg_id))
    sniper.idle()
    position = sniper.position()
    assert position.quantity == D("0.1") and len(position.lots) == 2
    assert sniper.ask("snapshot").balance == D(9998)
    assert len(sniper.pb.messages(PositionOpened, "journal")) == 1


def test_an_exit_canceled_with_a_remainder_leaves_the_position_open_and_is_sent_again(make):
    sniper = make()
    entry = market_entry_of_ten_steps(sniper)
    sniper.part(entry.order, "0.1", "0.1")
    sniper.tick("BTC", 39100)  # through the stop
    exit_ = sniper.submitted(OrderIntent.EXIT)
    sniper.part(exit_.order, "0.07", "0.07", price="39100")
    sniper.pb.bus.publish(OrderCanceled(ts_init_ns=0, order=exit_.order, venue_order_id="v", filled_quantity=D("0.07"),
                                        reason="IOC remainder"))
    reopened = sniper.pb.wait_for(PositionChanged, where=lambda m: m.change.startswith("EXIT_FAILED")).position
    assert reopened.status is PositionStatus.OPEN and reopened.quantity == D("0.03")
    sniper.pb.clock.advance(2)
    sniper.pb.bus.tell(SNIPER, TimerFired(ts_init_ns=0, name="sweep"))
    again = sniper.pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id.endswith("-X2"))
    assert again.order.quantity == D("0.03")
    sniper.part(again.order, "0.03", "0.03", price="39000")
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.realized_pnl == D("0.07") * -900 + D("0.03") * -1000


# --- working orders ------------------------------------------------------------------------------------


def test_on_a_tick_clock_a_resting_entry_sends_each_tick_to_the_venue_first_and_waits_for_it(make):
    sniper = make(tick_clock=True, entry_terms=limit_at_trigger)
    pb = sniper.pb
    sniper.ask("add_condition", condition(trigger=39999, size=4000))
    t0 = sniper.ts
    sniper.at(40000, t0 + 1)
    entry = sniper.submitted(OrderIntent.ENTRY)
    assert entry.order.rests and entry.order.limit_price == D(39999)
    second = sniper.at(39990, t0 + 2)  # in flight until accepted: waits
    sniper.idle()
    assert pb.messages(MatchTick) == [] and sniper.ask("stats")["deferred_ticks"] == 1

    pb.bus.publish(OrderAccepted(ts_init_ns=entry.ts_init_ns, order=entry.order, venue_order_id="v-1"))
    match = pb.wait_for(MatchTick, EXECUTOR)
    assert match.tick == second
    third = sniper.at(39000, t0 + 3)  # behind the tick the venue is matching
    sniper.idle()
    stats = sniper.ask("stats")
    assert stats["matching"] and stats["deferred_ticks"] == 1 and stats["working_orders"] == [entry.order.client_order_id]
    assert sniper.ask("snapshot").working_orders == (entry.order.client_order_id,)
    assert sniper.store.get_position(entry.order.position_id).entry_order.working, "a restart knows it works"
    assert pb.messages(MatchTick) == [] and pb.messages(SubmitOrder, RISK_GATE) == []

    # the venue fills the limit on the second tick, then says it matched it
    sniper.part(entry.order, "0.1", "0.1", price="39999")
    pb.bus.publish(TickMatched(ts_init_ns=second.ts_init_ns, coin="BTC", ts_ms=second.ts_ms))
    opened = pb.wait_for(PositionOpened).position
    assert opened.entry_price == D(39999) and opened.entry_order is None
    exit_ = sniper.submitted(OrderIntent.EXIT)  # the third tick, evaluated after the fill: stop 39199.02
    assert exit_.order.reference_ts_ms == third.ts_ms and exit_.order.quantity == D("0.1")
    sniper.idle()
    assert pb.messages(MatchTick) == [], "nothing works any more: the third tick went straight on"
    assert sniper.ask("snapshot").working_orders == ()


def test_on_a_wall_clock_a_working_order_gets_every_tick_matched_without_waiting(make):
    sniper = make(entry_terms=limit_at_trigger)
    sniper.ask("add_condition", condition(trigger=39999, size=4000))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    sniper.pb.bus.publish(OrderAccepted(ts_init_ns=0, order=entry.order, venue_order_id="v-1"))
    sniper.idle()
    for price in (40010, 40020):
        sniper.tick("BTC", price)
    sniper.tick("ETH", 3000)  # no working order of ETH: nothing to match
    sniper.idle()
    assert [m.tick.price for m in sniper.pb.messages(MatchTick, EXECUTOR)] == [D(40010), D(40020)]
    assert not sniper.ask("stats")["matching"] and sniper.ask("stats")["deferred_ticks"] == 0


def test_an_exit_while_the_entry_still_works_cancels_it_and_exits_what_filled(make):
    sniper = make(entry_terms=limit_at_trigger)
    sniper.ask("add_condition", condition(trigger=39999, size=4000))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    sniper.pb.bus.publish(OrderAccepted(ts_init_ns=0, order=entry.order, venue_order_id="v-1"))
    sniper.part(entry.order, "0.03", "0.03", price="39999")
    sniper.pb.wait_for(PositionOpened)
    assert sniper.position().entry_order.working

    sniper.tick("BTC", 39100)  # through the stop while 0.07 still rests
    cancel = sniper.pb.wait_for(CancelOrder, EXECUTOR)
    assert cancel.client_order_id == entry.order.client_order_id
    sniper.idle()
    assert sniper.pb.messages(SubmitOrder, RISK_GATE) == [], "the exit waits for the entry's end"
    closing = sniper.store.get_position(entry.order.position_id)
    assert closing.status is PositionStatus.CLOSING and closing.exit_order is None, "written before the cancel"
    sniper.pb.bus.publish(OrderCanceled(ts_init_ns=0, order=entry.order, venue_order_id="v-1",
                                        filled_quantity=D("0.03"), reason="canceled"))
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.quantity == D("0.03")
    sniper.part(exit_.order, "0.03", "0.03", price="39100")
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.realized_pnl == D("0.03") * (D(39100) - D(39999))
    assert sniper.ask("snapshot").working_orders == ()


def test_a_restart_keeps_a_working_order_working_and_does_not_send_it_again(make, probe_bus_for, tmp_path):
    store = Store(tmp_path / "engine.db")
    first = make(entry_terms=limit_at_trigger, store=store)
    first.ask("add_condition", condition(trigger=39999, size=4000))
    first.tick("BTC", 40000)
    entry = first.submitted(OrderIntent.ENTRY)
    first.pb.bus.publish(OrderAccepted(ts_init_ns=0, order=entry.order, venue_order_id="v-1"))
    first.idle()
    before = first.ask("snapshot")
    assert before.working_orders == (entry.order.client_order_id,)
    first.stop()

    second = make(entry_terms=limit_at_trigger, store=store, pb=first.pb)
    assert second.ask("snapshot") == before
    second.tick("BTC", 40005)
    assert second.pb.wait_for(MatchTick, EXECUTOR).tick.price == D(40005)
    second.idle()
    assert second.pb.messages(SubmitOrder, RISK_GATE) == [], "a working order is not placed again"
    second.part(entry.order, "0.1", "0.1", price="39999")
    assert second.pb.wait_for(PositionOpened, timeout=WAIT).position.quantity == D("0.1")


def test_a_rejected_fill_of_a_working_order_cancels_it_at_the_venue(make):
    sniper = make(entry_terms=limit_at_trigger)
    sniper.ask("add_condition", condition(trigger=39999, size=4000))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    sniper.pb.bus.publish(OrderAccepted(ts_init_ns=0, order=entry.order, venue_order_id="v-1"))
    sniper.part(entry.order, "0.03", "0.03", price="0.00")
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.exit_reason.startswith("ENTRY_REJECTED: FILL_REJECTED: fill price")
    cancel = sniper.pb.wait_for(CancelOrder, EXECUTOR)
    assert (cancel.client_order_id, cancel.reason) == (entry.order.client_order_id, "FILL_REJECTED")
    assert sniper.ask("snapshot").working_orders == ()


def test_an_entry_fill_after_the_exit_closed_the_position_is_reported_not_lost_silently(make, logs):
    sniper = make(entry_terms=limit_at_trigger)
    sniper.ask("add_condition", condition(trigger=39999, size=4000))
    sniper.tick("BTC", 40000)
    entry = sniper.submitted(OrderIntent.ENTRY)
    sniper.pb.bus.publish(OrderAccepted(ts_init_ns=0, order=entry.order, venue_order_id="v-1"))
    first = sniper.part(entry.order, "0.03", "0.03", price="39999")
    sniper.ask("close_position", entry.order.position_id, "MANUAL")
    sniper.pb.wait_for(CancelOrder, EXECUTOR)
    sniper.pb.bus.publish(OrderCanceled(ts_init_ns=0, order=entry.order, venue_order_id="v-1",
                                        filled_quantity=D("0.03"), reason="canceled"))
    exit_ = sniper.submitted(OrderIntent.EXIT)
    sniper.part(exit_.order, "0.03", "0.03", price="40000")
    sniper.pb.wait_for(PositionClosed)
    sniper.pb.bus.publish(first)  # the same trade again: a duplicate, not late
    sniper.part(entry.order, "0.02", "0.05", price="39999", trade_id="T-late")  # before the cancel landed
    assert logs.wait_for("LATE_FILL: " + entry.order.client_order_id)
    assert sum("LATE_FILL" in line for line in logs.lines) == 1


def test_on_a_tick_clock_an_exit_waits_for_the_entrys_cancel_and_so_does_the_next_tick(make):
    sniper = make(tick_clock=True, entry_terms=limit_at_trigger)
    pb = sniper.pb
    sniper.ask("add_condition", condition(trigger=39999, size=4000))
    t0 = sniper.ts
    sniper.at(40000, t0 + 1)
    entry = sniper.submitted(OrderIntent.ENTRY)
    pb.bus.publish(OrderAccepted(ts_init_ns=entry.ts_init_ns, order=entry.order, venue_order_id="v-1"))
    sniper.part(entry.order, "0.03", "0.03", price="39999")
    pb.wait_for(PositionOpened)
    stop = sniper.at(39000, t0 + 2)  # through the stop (39199.02) while 0.07 still rests
    assert pb.wait_for(MatchTick, EXECUTOR).tick == stop
    pb.bus.publish(TickMatched(ts_init_ns=stop.ts_init_ns, coin="BTC", ts_ms=stop.ts_ms))
    cancel = pb.wait_for(CancelOrder, EXECUTOR)
    assert cancel.client_order_id == entry.order.client_order_id
    later = sniper.at(39500, t0 + 3)  # the cancel is in flight: this tick waits for its outcome
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 1
    assert pb.messages(SubmitOrder, RISK_GATE) == [] and pb.messages(MatchTick) == []

    sniper.part(entry.order, "0.01", "0.04", price="39999")  # it filled more before the cancel landed
    pb.bus.publish(OrderCanceled(ts_init_ns=0, order=entry.order, venue_order_id="v-1",
                                 filled_quantity=D("0.04"), reason="canceled"))
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.quantity == D("0.04") and exit_.order.client_order_id.endswith("-X1")
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 1, "the exit is in flight: the tick still waits"
    sniper.part(exit_.order, "0.04", "0.04", price="39000")
    closed = pb.wait_for(PositionClosed).position
    assert closed.quantity == D("0.04") and closed.exit_reason == "STOP_LOSS"
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 0 and sniper.ts >= later.ts_ms - 3


def test_a_restart_while_the_exit_waits_for_the_entrys_cancel_asks_again_and_sends_the_exit_once(
        make, tmp_path):
    store = Store(tmp_path / "engine.db")
    first = make(entry_terms=limit_at_trigger, store=store)
    first.ask("add_condition", condition(trigger=39999, size=4000))
    first.tick("BTC", 40000)
    entry = first.submitted(OrderIntent.ENTRY)
    first.pb.bus.publish(OrderAccepted(ts_init_ns=0, order=entry.order, venue_order_id="v-1"))
    first.part(entry.order, "0.03", "0.03", price="39999")
    first.pb.wait_for(PositionOpened)
    first.ask("close_position", entry.order.position_id, "MANUAL")
    assert first.pb.wait_for(CancelOrder, EXECUTOR).client_order_id == entry.order.client_order_id
    first.idle()
    assert first.pb.messages(SubmitOrder, RISK_GATE) == []
    first.stop()
    stored = store.get_position(entry.order.position_id)
    assert stored.status is PositionStatus.CLOSING and stored.exit_order is None
    assert stored.entry_order.cancel_requested

    second = make(entry_terms=limit_at_trigger, store=store, pb=first.pb)
    again = second.pb.wait_for(CancelOrder, EXECUTOR)  # the cancel, asked again
    assert again.client_order_id == entry.order.client_order_id
    second.idle()
    assert second.pb.messages(SubmitOrder, RISK_GATE) == [], "no exit before the entry's end"
    second.pb.bus.publish(OrderCanceled(ts_init_ns=0, order=entry.order, venue_order_id="v-1",
                                        filled_quantity=D("0.03"), reason="canceled"))
    exit_ = second.submitted(OrderIntent.EXIT)
    assert exit_.order.quantity == D("0.03") and exit_.order.client_order_id.endswith("-X1")
    second.pb.bus.publish(OrderCanceled(ts_init_ns=0, order=entry.order, venue_order_id="v-1",
                                        filled_quantity=D("0.03"), reason="canceled"))  # answered twice
    second.idle()
    assert second.pb.messages(SubmitOrder, RISK_GATE) == [], "the exit is sent once"
    second.part(exit_.order, "0.03", "0.03", price="40000", trade_id="T-exit")
    assert second.pb.wait_for(PositionClosed).position.quantity == D("0.03")
