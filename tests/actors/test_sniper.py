"""The Sniper as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import RISK_GATE, SNIPER
from actors.sniper import Sniper
from state.market import default_rules
from state.messages import (
    ArmCondition,
    ClosePosition,
    ConditionBlocked,
    ConditionExpired,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    Request,
    SubmitOrder,
    Tick,
    TimerFired,
    TradingStateChanged,
)
from state.order import OrderRecord
from state.rules import PositionLimits
from state.store import Store
from state.types import OrderIntent, OrderStatus, PositionStatus, TradingState
from tests.conftest import WAIT, ProbeBus, condition



class CountingStore(Store):
    """A real store that counts writes, to prove a quiet tick writes nothing."""

    writes = 0

    def save_position(self, position: Any) -> None:
        self.writes += 1
        super().save_position(position)

    def save_condition(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        super().save_condition(*args, **kwargs)

    def delete_condition(self, condition_id: str) -> None:
        self.writes += 1
        super().delete_condition(condition_id)

    def save_account(self, **values: Any) -> None:
        self.writes += 1
        super().save_account(**values)


class Harness:
    def __init__(self, pb: ProbeBus, store: Store, limits: PositionLimits) -> None:
        self.pb = pb
        self.store = store
        self.limits = limits
        self.ref: Any = None
        self.ts = time.time_ns() // 1_000_000

    def start(self) -> Harness:
        self.ref = Sniper.start(
            bus=self.pb.bus, clock=self.pb.clock, store=self.store, markets=default_rules,
            limits=self.limits, initial_balance=Decimal(10000),
        )
        self.pb.bus.register(SNIPER, self.ref)
        return self

    def stop(self) -> None:
        if self.ref is not None and self.ref.is_alive():
            self.ref.stop(block=True, timeout=WAIT)

    def ask(self, name: str, *args: Any) -> Any:
        return self.ref.ask(Request(name=name, args=args), timeout=WAIT)

    def tick(self, coin: str, price: Any, step_ms: int = 1) -> None:
        self.ts += step_ms
        self.pb.bus.publish(Tick(ts_init_ns=0, coin=coin, price=Decimal(str(price)), ts_ms=self.ts))

    def submitted(self, intent: OrderIntent | None = None) -> SubmitOrder:
        return self.pb.wait_for(
            SubmitOrder, RISK_GATE,
            where=lambda m: intent is None or m.order.intent is intent,
        )

    def fill(self, submit: SubmitOrder, price: Any | None = None, fee: Any = "0") -> None:
        order = submit.order
        self.pb.bus.publish(OrderFilled(
            ts_init_ns=0, order=order, venue_order_id="v-" + order.client_order_id,
            trade_id="t-" + order.client_order_id,
            fill_price=Decimal(str(price)) if price is not None else order.reference_price,
            fill_quantity=order.quantity, fee=Decimal(str(fee)), ts_event_ms=order.reference_ts_ms,
        ))

    def idle(self) -> None:
        assert self.pb.bus.wait_idle(WAIT), self.pb.bus.outstanding()


@pytest.fixture
def sniper_factory(probe_bus_for, tmp_path) -> Iterator[Any]:
    harnesses: list[Harness] = []

    def make(store: Store | None = None, pb: ProbeBus | None = None, **limits: Any) -> Harness:
        harness = Harness(pb or probe_bus_for(SNIPER), store or Store(tmp_path / "engine.db"),
                          PositionLimits(**limits))
        harnesses.append(harness)
        return harness.start()

    yield make
    for harness in harnesses:
        harness.stop()


@pytest.fixture
def sniper(sniper_factory) -> Harness:
    return sniper_factory()


def test_tick_below_an_above_trigger_sends_nothing_then_above_sends_the_entry(sniper):
    cid = sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 41999)
    sniper.idle()
    assert sniper.pb.messages(SubmitOrder) == []
    sniper.tick("BTC", 42001)
    submit = sniper.submitted()
    assert submit.correlation_id == cid
    assert submit.order.intent is OrderIntent.ENTRY
    assert submit.order.quantity == Decimal("0.02380")
    assert submit.order.reference_price == Decimal("42001")
    assert submit.order.client_order_id.endswith("-E")


def test_fill_opens_the_position_at_the_fill_price_with_exit_levels_from_it(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted(), price="42000", fee="0.5")
    opened = sniper.pb.wait_for(PositionOpened).position
    assert opened.entry_price == Decimal("42000")
    assert opened.stop_loss_price == Decimal("41160.00")
    assert opened.take_profit_price == Decimal("42630.00")
    assert opened.unrealized_pnl == Decimal("-0.5")
    assert sniper.ask("snapshot").balance == Decimal("9999.5")


def test_ticks_during_an_entry_in_flight_are_checked_against_the_stop_after_the_fill(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    entry = sniper.submitted()
    sniper.tick("BTC", 41000)  # arrives before the fill: must not be lost or skipped
    sniper.tick("BTC", 41500)
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 2
    sniper.fill(entry)
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_price == Decimal("41000")
    assert exit_.order.client_order_id.endswith("-X1")
    sniper.idle()
    # 41500 waits again behind the exit; the exit fill closes the position.
    sniper.fill(exit_)
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.exit_reason == "STOP_LOSS"
    assert sniper.ask("stats")["deferred_ticks"] == 0


def test_stop_is_checked_before_take_profit(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted())
    sniper.pb.wait_for(PositionOpened)
    sniper.tick("BTC", 41160)
    exit_ = sniper.submitted(OrderIntent.EXIT)
    changed = sniper.pb.wait_for(PositionChanged)
    assert changed.position.exit_reason == "STOP_LOSS"
    assert exit_.order.side.value == "SELL"


def test_entry_rejected_by_the_venue_closes_the_pending_position_and_frees_the_coin(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    entry = sniper.submitted()
    sniper.pb.bus.publish(OrderRejected(ts_init_ns=0, order=entry.order, reason="PRICE_UNAVAILABLE"))
    closed = sniper.pb.wait_for(PositionClosed).position
    assert closed.status is PositionStatus.CLOSED
    assert closed.exit_reason.startswith("ENTRY_REJECTED")
    snap = sniper.ask("snapshot")
    assert snap.positions == () and snap.conditions == () and snap.balance == Decimal(10000)


def test_entry_denied_by_the_risk_gate_never_opens(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    entry = sniper.submitted()
    sniper.pb.bus.publish(OrderDenied(ts_init_ns=0, order=entry.order, reason="trading is HALTED"))
    sniper.pb.wait_for(PositionClosed)
    assert sniper.ask("snapshot").positions == ()


def test_exit_rejected_keeps_the_position_open_and_the_next_tick_retries_with_a_new_id(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted())
    sniper.tick("BTC", 41000)
    first = sniper.submitted(OrderIntent.EXIT)
    sniper.pb.bus.publish(OrderRejected(ts_init_ns=0, order=first.order, reason="venue busy"))
    sniper.idle()
    (position,) = sniper.ask("snapshot").positions
    assert position.status is PositionStatus.OPEN
    sniper.tick("BTC", 40900)
    second = sniper.submitted(OrderIntent.EXIT)
    assert first.order.client_order_id.endswith("-X1")
    assert second.order.client_order_id.endswith("-X2")


def test_duplicate_fill_is_applied_once(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    entry = sniper.submitted()
    sniper.fill(entry, fee="1")
    sniper.fill(entry, fee="1")
    sniper.idle()
    assert len(sniper.pb.messages(PositionOpened, "journal")) == 1
    assert sniper.ask("snapshot").balance == Decimal(9999)


def test_halted_trading_blocks_entries_and_keeps_conditions_armed(sniper):
    sniper.pb.bus.publish(TradingStateChanged(ts_init_ns=0, state=TradingState.HALTED, reason="test"))
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    blocked = sniper.pb.wait_for(ConditionBlocked)
    assert "HALTED" in blocked.reason
    sniper.idle()
    assert sniper.pb.messages(SubmitOrder) == []
    sniper.pb.bus.publish(TradingStateChanged(ts_init_ns=0, state=TradingState.ACTIVE, reason="resume"))
    sniper.tick("BTC", 42002)
    assert sniper.submitted().order.intent is OrderIntent.ENTRY


def test_sweep_expires_conditions_by_the_engine_clock_without_ticks(sniper):
    sniper.pb.clock.set_ns(int(datetime.now().timestamp() * 1e9))
    cid = sniper.ask("add_condition", condition(trigger=42000, valid_for=timedelta(seconds=30)))
    sniper.pb.clock.advance(31)
    sniper.pb.bus.tell(SNIPER, TimerFired(ts_init_ns=0, name="sweep"))
    assert sniper.pb.wait_for(ConditionExpired).condition_id == cid
    assert sniper.ask("snapshot").conditions == ()


def test_require_cross_waits_for_the_price_to_come_from_the_other_side(sniper):
    sniper.tick("BTC", 42500)
    sniper.idle()
    sniper.ask("add_condition", condition(trigger=42000, size=1000, require_cross=True))
    sniper.tick("BTC", 42600)  # already above: not a crossing
    sniper.idle()
    assert sniper.pb.messages(SubmitOrder) == []
    sniper.tick("BTC", 41900)
    sniper.tick("BTC", 42100)  # a real crossing
    assert sniper.submitted().order.reference_price == Decimal("42100")


def test_set_conditions_replaces_only_that_strategys_conditions(sniper):
    keep = sniper.ask("add_condition", condition(trigger=50000, strategy_id="other"))
    sniper.ask("set_conditions", (condition(trigger=51000, strategy_id="s1"),), "s1")
    new = sniper.ask("set_conditions", (condition(trigger=52000, strategy_id="s1"),), "s1")
    ids = [c.id for c in sniper.ask("snapshot").conditions]
    assert ids == [keep, *new]


def test_set_conditions_validates_all_before_arming_any(sniper):
    good = condition(trigger=50000)
    bad = condition(trigger=50000, size="0.01")
    with pytest.raises(ValueError, match="minimum notional"):
        sniper.ask("set_conditions", (good, bad), None)
    assert sniper.ask("snapshot").conditions == ()


def test_arm_condition_command_with_a_bad_condition_is_rejected_not_crashing(sniper):
    from state.messages import ConditionRejected

    sniper.pb.bus.send(ArmCondition(ts_init_ns=0, condition=condition(size="0.01")))
    assert "minimum notional" in sniper.pb.wait_for(ConditionRejected).reason
    assert sniper.ref.is_alive()


def test_close_position_command_exits_at_the_last_price(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted())
    opened = sniper.pb.wait_for(PositionOpened).position
    sniper.tick("BTC", 42100)
    sniper.pb.bus.send(ClosePosition(ts_init_ns=0, position_id=opened.id, reason="MANUAL"))
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_price == Decimal("42100")
    with pytest.raises(ValueError, match="not an active position"):
        sniper.ask("close_position", "nope", "MANUAL")


def test_quiet_tick_writes_nothing(sniper_factory, tmp_path):
    store = CountingStore(tmp_path / "counting.db")
    harness = sniper_factory(store=store)
    for n in range(20):
        harness.ask("add_condition", condition(coin="BTC", trigger=60000 + n, size=1000))
        harness.ask("add_condition", condition(coin="BTC", direction="SHORT", trigger=30000 - n, size=1000))
    before = store.writes
    for price in range(41000, 41100):
        harness.tick("BTC", price)
        harness.tick("ETH", price)
    harness.idle()
    assert store.writes == before


def stop_with_an_entry_in_flight(sniper_factory, pb: ProbeBus, store: Store) -> SubmitOrder:
    """Arm, trigger, and stop the Sniper before the entry's outcome arrives."""
    first = sniper_factory(store=store, pb=pb)
    first.ask("add_condition", condition(trigger=42000, size=1000))
    first.tick("BTC", 42001)
    entry = first.submitted()
    first.stop()
    return entry


def test_restart_applies_a_fill_the_executor_recorded_while_it_was_down(sniper_factory, probe_bus_for, tmp_path):
    pb = probe_bus_for(SNIPER)
    store = Store(tmp_path / "engine.db")
    order = stop_with_an_entry_in_flight(sniper_factory, pb, store).order
    store.save_order(OrderRecord(
        client_order_id=order.client_order_id, position_id=order.position_id, coin=order.coin,
        side=order.side, quantity=order.quantity, intent=order.intent,
        reference_price=order.reference_price, reference_ts_ms=order.reference_ts_ms,
        status=OrderStatus.FILLED, venue="paper", venue_order_id="v1", trade_id="t1",
        fill_price=Decimal("42001"), fill_quantity=order.quantity, fee=Decimal("0.5"),
        ts_event_ms=order.reference_ts_ms,
    ))
    second = sniper_factory(store=store, pb=pb)
    opened = pb.wait_for(PositionOpened).position
    assert opened.entry_price == Decimal("42001")
    assert second.ask("snapshot").positions[0].status is PositionStatus.OPEN


def test_restart_resends_an_order_unknown_to_the_executor_with_the_same_id(sniper_factory, probe_bus_for, tmp_path):
    pb = probe_bus_for(SNIPER)
    store = Store(tmp_path / "engine.db")
    entry = stop_with_an_entry_in_flight(sniper_factory, pb, store)
    sniper_factory(store=store, pb=pb)
    again = pb.wait_for(SubmitOrder, RISK_GATE)
    assert again.order == entry.order
