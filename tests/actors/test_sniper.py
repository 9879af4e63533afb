"""The Sniper as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import JOURNAL, RISK_GATE, SNIPER
from actors.sniper import Sniper
from adapters.clock import TickClock
from state.market import default_rules
from state.bars import Bar
from state.messages import (
    AccountMarked,
    ArmCondition,
    ArmConditions,
    BarClosed,
    ClosePosition,
    ConditionArmed,
    ConditionBlocked,
    ConditionCanceled,
    ConditionExpired,
    ConditionRejected,
    ConditionsReplaced,
    ActorRestarted,
    EquityChecked,
    EquityMarked,
    FeedRecovered,
    FeedStale,
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
from state.order import Fill, OrderRecord
from state.rules import PositionLimits
from state.store import Store
from state.types import Liquidity, OrderIntent, OrderStatus, PositionStatus, TradingState
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
    def __init__(self, pb: ProbeBus, store: Store, limits: PositionLimits, await_risk_checks: bool = False) -> None:
        self.pb = pb
        self.store = store
        self.limits = limits
        self.await_risk_checks = await_risk_checks
        self.ref: Any = None
        self.ts = time.time_ns() // 1_000_000

    def start(self) -> Harness:
        self.ref = Sniper.start(
            bus=self.pb.bus, clock=self.pb.clock, store=self.store, markets=default_rules,
            limits=self.limits, initial_balance=Decimal(10000), await_risk_checks=self.await_risk_checks,
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
            fill_quantity=order.quantity, cumulative_quantity=order.quantity, fee=Decimal(str(fee)), ts_event_ms=order.reference_ts_ms,
        ))

    def idle(self) -> None:
        assert self.pb.bus.wait_idle(WAIT), self.pb.bus.outstanding()


@pytest.fixture
def sniper_factory(probe_bus_for, tmp_path) -> Iterator[Any]:
    harnesses: list[Harness] = []

    def make(store: Store | None = None, pb: ProbeBus | None = None, await_risk_checks: bool = False,
             **limits: Any) -> Harness:
        harness = Harness(pb or probe_bus_for(SNIPER), store or Store(tmp_path / "engine.db"),
                          PositionLimits(**limits), await_risk_checks)
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


def test_a_deferred_tick_stamps_what_it_causes_with_its_own_time_not_the_fills(sniper_factory, probe_bus_for):
    """On a tick clock, a tick evaluated after the fill it waited for must stamp the exit it
    triggers (and the close) with its own time: otherwise a replay's journal depends on how
    far the Feed read ahead of the venue."""
    pb = dataclasses.replace(probe_bus_for(SNIPER), clock=TickClock())
    sniper = sniper_factory(pb=pb)
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    t0 = sniper.ts

    def tick(price: str, ts_ms: int) -> None:
        pb.bus.publish(Tick(ts_init_ns=ts_ms * 1_000_000, coin="BTC", price=Decimal(price), ts_ms=ts_ms))

    tick("42001", t0 + 1)
    entry = sniper.submitted()
    assert entry.ts_init_ns == (t0 + 1) * 1_000_000
    tick("41000", t0 + 5_000)  # waits behind the entry, then hits the stop
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 1
    pb.bus.publish(OrderFilled(
        ts_init_ns=entry.ts_init_ns, order=entry.order, venue_order_id="v-1", trade_id="t-1",
        fill_price=entry.order.reference_price, fill_quantity=entry.order.quantity, cumulative_quantity=entry.order.quantity, fee=Decimal(0),
        ts_event_ms=entry.order.reference_ts_ms,
    ))
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_ts_ms == t0 + 5_000
    assert exit_.ts_init_ns == (t0 + 5_000) * 1_000_000
    changed = pb.wait_for(PositionChanged, where=lambda m: m.change == "EXIT_SUBMITTED")
    assert changed.ts_init_ns == (t0 + 5_000) * 1_000_000


def test_on_a_tick_clock_every_coin_waits_behind_an_order_so_ticks_are_evaluated_in_feed_order(
    sniper_factory, probe_bus_for
):
    """A replay is evaluated as if the venue answered at once: an ETH tick that arrives while a
    BTC order is in flight waits, so what it sees (balance, limits) never depends on latency."""
    pb = dataclasses.replace(probe_bus_for(SNIPER), clock=TickClock())
    sniper = sniper_factory(pb=pb, max_positions=1)
    btc = sniper.ask("add_condition", condition(trigger=42000, size=500))
    eth = sniper.ask("add_condition", condition(coin="ETH", trigger=3000, size=300))
    t0 = sniper.ts

    def tick(coin: str, price: str, ts_ms: int) -> None:
        pb.bus.publish(Tick(ts_init_ns=ts_ms * 1_000_000, coin=coin, price=Decimal(price), ts_ms=ts_ms))

    tick("BTC", "42001", t0 + 1)
    entry = sniper.submitted()
    assert entry.correlation_id == btc
    tick("ETH", "3001", t0 + 2)  # waits behind the BTC entry
    tick("BTC", "41000", t0 + 3)  # and so does this one, behind it
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 2
    assert pb.messages(ConditionBlocked) == []
    sniper.fill(entry)
    blocked = pb.wait_for(ConditionBlocked)
    assert blocked.condition_id == eth and "max_positions" in blocked.reason
    assert blocked.ts_init_ns == (t0 + 2) * 1_000_000
    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_ts_ms == t0 + 3
    assert [m.correlation_id for m in pb.messages(SubmitOrder, RISK_GATE)] == []  # no ETH entry


def test_on_a_wall_clock_other_coins_go_on_while_an_order_is_in_flight(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=500))
    eth = sniper.ask("add_condition", condition(coin="ETH", trigger=3000, size=300))
    sniper.tick("BTC", 42001)
    sniper.submitted()
    sniper.tick("ETH", 3001)
    assert sniper.submitted().correlation_id == eth
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
    store.save_order(OrderRecord.of(order, venue="paper", now_ns=1).apply_fill(Fill(
        trade_id="t1", client_order_id=order.client_order_id, venue_order_id="v1", quantity=order.quantity,
        price=Decimal("42001"), fee=Decimal("0.5"), fee_currency="USDT", liquidity=Liquidity.TAKER,
        ts_ms=order.reference_ts_ms)))
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


# --- ArmConditions: a strategy's set for one coin ----------------------------------------------------


def arm_set(harness: Harness, strategy_id: str, coin: str, *conditions: Any) -> None:
    harness.pb.bus.send(ArmConditions(ts_init_ns=harness.pb.clock.now_ns(), correlation_id=f"{strategy_id}:{coin}",
                                      strategy_id=strategy_id, coin=coin, conditions=tuple(conditions)))


def armed_ids(harness: Harness) -> set[str]:
    return {c.id for c in harness.ask("snapshot").conditions}


def test_arm_conditions_replaces_only_that_strategys_conditions_on_that_coin(sniper):
    a = condition(trigger=50000, strategy_id="s1")
    b = condition(direction="SHORT", trigger=30000, strategy_id="s1")
    c = condition(coin="ETH", trigger=5000, strategy_id="s1")
    d = condition(trigger=51000, strategy_id="s2")
    arm_set(sniper, "s1", "BTC", a, b)
    arm_set(sniper, "s1", "ETH", c)
    arm_set(sniper, "s2", "BTC", d)
    e = sniper.ask("add_condition", condition(trigger=52000))
    sniper.idle()
    assert armed_ids(sniper) == {a.id, b.id, c.id, d.id, e}
    assert sniper.pb.messages(ConditionCanceled) == []
    assert [m.condition.id for m in sniper.pb.messages(ConditionArmed, "journal")] == [e]  # add_condition

    f = condition(trigger=53000, strategy_id="s1")
    arm_set(sniper, "s1", "BTC", f)
    sniper.idle()

    assert armed_ids(sniper) == {c.id, d.id, e, f.id}
    replaced = sniper.pb.messages(ConditionsReplaced, "journal")
    assert [(m.strategy_id, m.coin, [c.id for c in m.armed]) for m in replaced] == [
        ("s1", "BTC", [a.id, b.id]), ("s1", "ETH", [c.id]), ("s2", "BTC", [d.id]), ("s1", "BTC", [f.id])]
    assert [sorted(m.canceled) for m in replaced] == [[], [], [], sorted([a.id, b.id])]
    assert replaced[-1].armed == (f,) and replaced[-1].correlation_id == "s1:BTC"
    assert [m.strategy_id for m in sniper.pb.messages(ConditionsReplaced, "strategist")] == ["s1", "s1", "s2", "s1"]
    # one event per replacement: no per-condition events for a set
    assert sniper.pb.messages(ConditionCanceled) == []
    assert [m.condition.id for m in sniper.pb.messages(ConditionArmed)] == [e]


def test_arm_conditions_replacement_is_durable(sniper_factory, tmp_path):
    store = Store(tmp_path / "engine.db")
    first = sniper_factory(store=store)
    old, new = condition(trigger=50000, strategy_id="s1"), condition(trigger=51000, strategy_id="s1")
    arm_set(first, "s1", "BTC", old)
    arm_set(first, "s1", "BTC", new)
    first.idle()
    first.stop()

    second = sniper_factory(store=store, pb=first.pb)

    assert armed_ids(second) == {new.id}


def test_arm_conditions_with_an_empty_set_cancels_that_strategys_conditions_on_that_coin(sniper):
    a, b = condition(trigger=50000, strategy_id="s1"), condition(coin="ETH", trigger=5000, strategy_id="s1")
    arm_set(sniper, "s1", "BTC", a)
    arm_set(sniper, "s1", "ETH", b)

    arm_set(sniper, "s1", "BTC")
    sniper.idle()

    assert armed_ids(sniper) == {b.id}
    last = sniper.pb.messages(ConditionsReplaced, "journal")[-1]
    assert (last.strategy_id, last.coin, last.armed, last.canceled) == ("s1", "BTC", (), (a.id,))


def test_arm_conditions_rejects_an_id_that_already_opened_a_position_and_arms_the_rest(sniper):
    used = condition(trigger=42000, size=1000, strategy_id="s1")
    arm_set(sniper, "s1", "BTC", used)
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted())
    sniper.pb.wait_for(PositionOpened)
    fresh = condition(direction="SHORT", trigger=40000, strategy_id="s1")

    arm_set(sniper, "s1", "BTC", used, fresh)
    rejected = sniper.pb.wait_for(ConditionRejected, "journal")

    assert rejected.condition_id == used.id
    assert "already triggered a position" in rejected.reason
    sniper.idle()
    assert armed_ids(sniper) == {fresh.id}
    assert len(sniper.ask("snapshot").positions) == 1
    assert sniper.ref.is_alive()


def test_arm_conditions_rejects_an_expired_condition_alone(sniper):
    sniper.pb.clock.set_ns(int(datetime.now().timestamp() * 1e9))
    soon = condition(trigger=50000, strategy_id="s1", valid_for=timedelta(seconds=30))
    later = condition(direction="SHORT", trigger=30000, strategy_id="s1")
    sniper.pb.clock.advance(60)

    arm_set(sniper, "s1", "BTC", soon, later)

    assert sniper.pb.wait_for(ConditionRejected, "journal").condition_id == soon.id
    sniper.idle()
    assert armed_ids(sniper) == {later.id}


def test_arm_conditions_with_the_same_id_twice_rejects_the_copy_without_crashing_the_sniper(sniper):
    twin = condition(trigger=50000, strategy_id="s1")
    other = condition(direction="SHORT", trigger=30000, strategy_id="s1")

    arm_set(sniper, "s1", "BTC", twin, other, twin)
    sniper.idle()

    rejected = sniper.pb.messages(ConditionRejected, "journal")
    assert [m.condition_id for m in rejected] == [twin.id]
    assert "appears twice" in rejected[0].reason
    assert sniper.ref.is_alive()
    assert armed_ids(sniper) == {twin.id, other.id}


# --- BarClosed: the account marked to market ---------------------------------------------------------


def close_bar(harness: Harness, coin: str = "BTC") -> None:
    end = (harness.ts // 60_000 + 1) * 60_000
    bar = Bar(coin=coin, start_ms=end - 60_000, end_ms=end, open=1, high=1, low=1, close=1, volume=0, trades=1)
    harness.pb.bus.publish(BarClosed(ts_init_ns=end * 1_000_000, bar=bar))


def account_marks(harness: Harness) -> list[tuple[Decimal, Decimal, Decimal, int]]:
    return [(m.balance, m.unrealized_pnl, m.equity, m.open_positions)
            for m in harness.pb.messages(AccountMarked, RISK_GATE)]


def test_bar_closed_when_flat_publishes_the_balance_as_equity(sniper):
    close_bar(sniper)

    marked = sniper.pb.wait_for(AccountMarked, RISK_GATE)

    assert (marked.balance, marked.unrealized_pnl, marked.equity, marked.open_positions) == (
        Decimal(10000), Decimal(0), Decimal(10000), 0)
    assert sniper.pb.wait_for(AccountMarked, "journal").equity == Decimal(10000)


def test_bar_closed_equity_is_balance_plus_unrealized_plus_entry_fees_of_open_positions(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted(), price="42000", fee="0.5")
    sniper.pb.wait_for(PositionOpened)
    sniper.tick("BTC", 42100)
    sniper.idle()

    close_bar(sniper)
    marked = sniper.pb.wait_for(AccountMarked, RISK_GATE)

    # 0.02380 BTC up 100: +2.38 gross; the 0.5 entry fee left the cash and is in unrealized too.
    assert marked.balance == Decimal("9999.5")
    assert marked.unrealized_pnl == Decimal("1.88")
    assert marked.equity == Decimal("10001.88")
    assert marked.open_positions == 1


def test_bar_closed_publishes_nothing_when_nothing_changed_since_the_last_mark(sniper):
    close_bar(sniper)
    close_bar(sniper)
    close_bar(sniper)
    assert len(account_marks(sniper)) == 1

    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted(), price="42000")
    sniper.pb.wait_for(PositionOpened)
    sniper.tick("BTC", 42100)
    sniper.idle()
    close_bar(sniper)
    close_bar(sniper)
    sniper.tick("BTC", 42200)
    sniper.idle()
    close_bar(sniper)

    marks = account_marks(sniper)
    assert [m[2] for m in marks] == [Decimal(10000), Decimal("10002.380"), Decimal("10004.760")]


# --- EquityMarked: equity for the RiskGate's kill switch between bar closes ---------------------------


D = Decimal


def equity_reports(harness: Harness) -> list[tuple[Decimal, Decimal, Decimal]]:
    return [(m.balance, m.unrealized_pnl, m.equity) for m in harness.pb.messages(EquityMarked, RISK_GATE)]


def position_id_of(harness: Harness) -> str:
    (position,) = harness.ask("snapshot").positions
    return position.id


def test_equity_marked_after_every_fill_and_at_most_once_a_second_of_tick_time_while_marks_change(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted(), price="42000", fee="0.5")
    sniper.pb.wait_for(PositionOpened)
    sniper.idle()
    assert equity_reports(sniper) == [(D("9999.5"), D("-0.5"), D("9999.5"))], "the entry fill reports"
    sniper.pb.seen.clear()

    sniper.tick("BTC", 42100)  # the first changed mark reports at once
    sniper.tick("BTC", 42200)
    sniper.tick("BTC", 42300)  # both within a second of tick time: not reported
    sniper.idle()
    assert equity_reports(sniper) == [(D("9999.5"), D("1.880"), D("10001.880"))]
    sniper.pb.seen.clear()

    sniper.tick("BTC", 42050, step_ms=1000)  # a second after the last report: the latest equity
    sniper.tick("BTC", 42050, step_ms=5000)  # the same price: no change, no report
    sniper.idle()
    assert equity_reports(sniper) == [(D("9999.5"), D("0.690"), D("10000.690"))]
    sniper.pb.seen.clear()

    sniper.ask("close_position", position_id_of(sniper), "MANUAL")
    sniper.fill(sniper.submitted(OrderIntent.EXIT), price="42050", fee="0.5")
    sniper.pb.wait_for(PositionClosed)
    sniper.idle()
    assert equity_reports(sniper) == [(D("10000.190"), D("0"), D("10000.190"))], "the exit fill reports"
    assert sniper.pb.messages(EquityMarked, JOURNAL) == [], "never journaled"


def test_equity_marked_is_not_sent_for_ticks_while_flat(sniper):
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    for price in (41000, 41100, 41200):
        sniper.tick("BTC", price, step_ms=2000)
    sniper.idle()

    assert sniper.pb.messages(EquityMarked) == []


def test_equity_marked_is_stamped_with_the_time_of_the_fill_or_tick_that_caused_it(sniper_factory, probe_bus_for):
    """On a tick clock a report carries its cause's time, also for a tick that waited behind an
    order, so the RiskGate's engine day, and a replay, depend on the tape alone."""
    pb = dataclasses.replace(probe_bus_for(SNIPER), clock=TickClock())
    sniper = sniper_factory(pb=pb)
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    t0 = sniper.ts

    def tick(price: str, ts_ms: int) -> None:
        pb.bus.publish(Tick(ts_init_ns=ts_ms * 1_000_000, coin="BTC", price=Decimal(price), ts_ms=ts_ms))

    tick("42001", t0 + 1)
    entry = sniper.submitted()
    tick("42100", t0 + 5_000)  # waits behind the entry
    sniper.idle()
    pb.bus.publish(OrderFilled(
        ts_init_ns=entry.ts_init_ns, order=entry.order, venue_order_id="v-1", trade_id="t-1",
        fill_price=entry.order.reference_price, fill_quantity=entry.order.quantity, cumulative_quantity=entry.order.quantity, fee=Decimal(0),
        ts_event_ms=entry.order.reference_ts_ms,
    ))
    sniper.idle()

    reports = pb.messages(EquityMarked, RISK_GATE)
    assert [m.ts_init_ns for m in reports] == [(t0 + 1) * 1_000_000, (t0 + 5_000) * 1_000_000]
    assert [m.equity for m in reports] == [Decimal("10000"), Decimal("10000") + Decimal("0.02380") * 99]


# --- the replay cursor ---------------------------------------------------------------------------------


REPLAY_T0 = time.time_ns() // 1_000_000


def cursor_values(store: Store) -> set[str]:
    """The persisted replay cursor value(s), whatever the account keys are called."""
    return {value for key, value in store.load_account().items() if key.startswith("replay_seq")}


def replay(harness: Harness, seq: int, price: Any, coin: str = "BTC") -> None:
    """Replayed tick #seq: its timestamp is a function of its position on the tape."""
    harness.pb.bus.publish(Tick(ts_init_ns=0, coin=coin, price=Decimal(str(price)), ts_ms=REPLAY_T0 + seq, seq=seq))


def test_replay_cursor_is_written_with_decisions_not_by_quiet_ticks(sniper_factory, tmp_path):
    store = Store(tmp_path / "engine.db")
    harness = sniper_factory(store=store)
    harness.ask("add_condition", condition(trigger=42000, size=1000))

    replay(harness, 1, 41000)
    harness.idle()
    assert cursor_values(store) == set(), "a tick that changes nothing writes nothing"

    replay(harness, 2, 42001)
    harness.submitted()
    harness.idle()
    assert cursor_values(store) == {"2"}


def test_restart_skips_replayed_ticks_at_or_before_the_persisted_cursor(sniper_factory, probe_bus_for, tmp_path):
    pb = probe_bus_for(SNIPER)
    store = Store(tmp_path / "engine.db")
    first = sniper_factory(store=store, pb=pb)
    first.ask("add_condition", condition(trigger=42000, size=1000))
    replay(first, 1, 41000)
    replay(first, 2, 42001)
    first.fill(first.submitted())
    pb.wait_for(PositionOpened)
    replay(first, 3, 42100)
    first.idle()
    first.stop()
    assert store.load_account()["replay_seq:BTC"] == "3"

    second = sniper_factory(store=store, pb=pb)
    for seq in (1, 2, 3):  # the Feed resumes from an earlier point; at 41000 each would stop out
        replay(second, seq, 41000)
    second.idle()
    assert pb.messages(SubmitOrder, RISK_GATE) == [], "ticks the Sniper already processed are skipped"
    assert second.ask("snapshot").positions[0].current_price == Decimal("42100")

    replay(second, 4, 41000)
    exit_ = second.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_ts_ms == REPLAY_T0 + 4


def test_ticks_without_a_seq_are_never_skipped(sniper_factory, tmp_path):
    store = Store(tmp_path / "engine.db")
    store.save_account(**{"replay_seq:BTC": 1_000_000, "tick_ts_ms": 0})
    harness = sniper_factory(store=store)
    harness.ask("add_condition", condition(trigger=42000, size=1000))

    harness.tick("BTC", 42001)

    assert harness.submitted().order.intent is OrderIntent.ENTRY


def test_restart_evaluates_a_replayed_tick_that_was_waiting_behind_an_order_in_flight(
    sniper_factory, probe_bus_for, tmp_path
):
    pb = probe_bus_for(SNIPER)
    store = Store(tmp_path / "engine.db")
    first = sniper_factory(store=store, pb=pb)
    first.ask("add_condition", condition(trigger=42000, size=500))
    replay(first, 1, 42001)
    entry = first.submitted()
    replay(first, 2, 41000)  # waits behind the entry
    first.idle()
    first.stop()
    assert cursor_values(store) == {"1"}

    second = sniper_factory(store=store, pb=pb)
    resent = pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id == entry.order.client_order_id)
    replay(second, 2, 41000)  # after the cursor: evaluated, after the fill
    second.fill(resent)

    exit_ = second.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_ts_ms == REPLAY_T0 + 2


def test_restart_does_not_skip_a_tick_that_was_deferred_behind_an_order_in_flight(
    sniper_factory, probe_bus_for, tmp_path
):
    pb = probe_bus_for(SNIPER)
    store = Store(tmp_path / "engine.db")
    first = sniper_factory(store=store, pb=pb)
    first.ask("add_condition", condition(trigger=42000, size=500))
    first.ask("add_condition", condition(coin="ETH", trigger=3000, size=400))
    replay(first, 1, 42001)  # BTC entry goes out
    entry = first.submitted()
    replay(first, 2, 41000)  # BTC: waits behind the entry; after the fill it must hit the stop
    replay(first, 3, 3001, coin="ETH")  # ETH triggers: a decision, the cursor is written
    first.submitted()
    first.idle()
    assert first.ask("stats")["deferred_ticks"] == 1
    first.stop()  # the process dies with tick #2 never evaluated

    second = sniper_factory(store=store, pb=pb)
    resent = pb.wait_for(SubmitOrder, RISK_GATE, where=lambda m: m.order.client_order_id == entry.order.client_order_id)
    second.fill(resent)
    pb.wait_for(PositionOpened, where=lambda m: m.position.coin == "BTC")
    replay(second, 2, 41000)  # the Feed resumes at the open bar's first tick
    replay(second, 3, 3001, coin="ETH")

    second.idle()

    # Uninterrupted, tick #2 stops the BTC position out; resumed, it must too.
    exits = [m.order for m in pb.messages(SubmitOrder, RISK_GATE) if m.order.intent is OrderIntent.EXIT]
    assert [(o.coin, o.reference_ts_ms) for o in exits] == [("BTC", REPLAY_T0 + 2)]


def test_ticks_without_a_seq_are_never_skipped_after_a_restart(sniper_factory, probe_bus_for, tmp_path):
    pb = probe_bus_for(SNIPER)
    store = Store(tmp_path / "engine.db")
    first = sniper_factory(store=store, pb=pb)
    first.ask("add_condition", condition(trigger=42000, size=1000))
    replay(first, 1_000, 42001)
    first.fill(first.submitted())
    pb.wait_for(PositionOpened)
    first.idle()
    first.stop()
    assert cursor_values(store) == {"1000"}

    second = sniper_factory(store=store, pb=pb)
    second.tick("BTC", 41000)  # a live tick (no seq): always evaluated

    assert second.submitted(OrderIntent.EXIT).order.reference_price == Decimal("41000")


# --- stale feeds ----------------------------------------------------------------------------------


def test_no_entry_on_a_stale_coin_its_condition_stays_armed_and_fires_after_recovery(sniper):
    sniper.ask("add_condition", condition(coin="BTC", trigger=42000, size=500))
    sniper.ask("add_condition", condition(coin="ETH", trigger=3000, size=300))
    sniper.pb.bus.publish(FeedStale(ts_init_ns=0, coin="BTC", silent_s=15.2))
    sniper.tick("BTC", 42001)
    sniper.tick("ETH", 3001)  # another coin is not affected

    assert sniper.submitted().order.coin == "ETH"
    blocked = sniper.pb.wait_for(ConditionBlocked, JOURNAL)
    assert blocked.reason.startswith("ORDER_BOOK_STALE")
    assert [c.coin for c in sniper.ask("snapshot").conditions] == ["BTC"]

    sniper.pb.bus.publish(FeedRecovered(ts_init_ns=0, coin="BTC", stale_s=3.0))
    sniper.tick("BTC", 42002)
    assert sniper.submitted().order.coin == "BTC"


def test_an_open_position_keeps_its_stop_while_its_feed_is_stale(sniper):
    sniper.ask("add_condition", condition(coin="BTC", trigger=42000, size=1000))
    sniper.tick("BTC", 42001)
    sniper.fill(sniper.submitted(OrderIntent.ENTRY))
    sniper.pb.wait_for(PositionOpened)
    sniper.pb.bus.publish(FeedStale(ts_init_ns=0, coin="BTC", silent_s=20.0))
    sniper.tick("BTC", 41000)  # the last good price that arrives still runs the stop
    assert sniper.submitted(OrderIntent.EXIT).order.coin == "BTC"


def test_an_empty_set_replacing_nothing_publishes_nothing(sniper):
    arm_set(sniper, "s1", "BTC")
    sniper.idle()
    assert sniper.pb.messages(ConditionsReplaced) == []
    a = condition(trigger=50000, strategy_id="s1")
    arm_set(sniper, "s1", "BTC", a)
    arm_set(sniper, "s1", "BTC")
    sniper.idle()
    assert [(m.armed, m.canceled) for m in sniper.pb.messages(ConditionsReplaced, "journal")] == [((a,), ()), ((), (a.id,))]


def test_the_very_set_already_armed_armed_again_changes_and_announces_nothing(sniper):
    """A bar delivered again after a restart is proposed again: the same conditions, as sized,
    replacing themselves. Nothing happened, so nothing is announced (a journal then equals an
    uninterrupted run's) and a require_cross condition keeps the side it has seen."""
    a = condition(trigger=50000, strategy_id="s1", require_cross=True)
    b = condition(direction="SHORT", trigger=30000, strategy_id="s1")
    arm_set(sniper, "s1", "BTC", a, b)
    sniper.tick("BTC", 49000)  # a has now seen the price below its level
    arm_set(sniper, "s1", "BTC", b, a)  # the same set, in another order
    sniper.idle()
    assert [(m.armed, m.canceled) for m in sniper.pb.messages(ConditionsReplaced, "journal")] == [((a, b), ())]

    sniper.tick("BTC", 50001)  # it fires: it still knows it was below
    assert sniper.submitted(OrderIntent.ENTRY).order.coin == "BTC"

    changed = dataclasses.replace(b, trigger_price=Decimal("29000"))
    arm_set(sniper, "s1", "BTC", changed)
    sniper.idle()
    assert [m.armed for m in sniper.pb.messages(ConditionsReplaced, "journal")][-1] == (changed,)


# --- a tick clock waits for the RiskGate's answer to each report ---------------------------------------


def _filled_long_waiting_for_its_check(sniper_factory: Any, probe_bus_for: Any) -> tuple[Any, EquityMarked, int]:
    """On a tick clock, with ``await_risk_checks``: a LONG filled at 42001 (stop 2 %), its
    report sent, and a tick through the stop held until the RiskGate answers that report."""
    pb = dataclasses.replace(probe_bus_for(SNIPER), clock=TickClock())
    sniper = sniper_factory(pb=pb, await_risk_checks=True)
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    t0 = sniper.ts
    pb.bus.publish(Tick(ts_init_ns=(t0 + 1) * 1_000_000, coin="BTC", price=Decimal("42001"), ts_ms=t0 + 1))
    sniper.fill(sniper.submitted(OrderIntent.ENTRY))
    report = pb.wait_for(EquityMarked, RISK_GATE)
    pb.bus.publish(Tick(ts_init_ns=(t0 + 5_000) * 1_000_000, coin="BTC", price=Decimal("41000"), ts_ms=t0 + 5_000))
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 1, "the tick waits for the answer"
    assert not [
        m for m in sniper.pb.messages(SubmitOrder, RISK_GATE) if m.order.intent is OrderIntent.EXIT]
    return sniper, report, t0


def test_on_a_tick_clock_a_trips_close_comes_before_the_ticks_that_waited_for_the_answer(
        sniper_factory, probe_bus_for):
    sniper, report, _ = _filled_long_waiting_for_its_check(sniper_factory, probe_bus_for)
    (position,) = sniper.ask("snapshot").positions
    bus = sniper.pb.bus
    bus.send(ClosePosition(ts_init_ns=report.ts_init_ns, position_id=position.id, reason="KILL_SWITCH"))
    bus.publish(EquityChecked(ts_init_ns=report.ts_init_ns, reported_ns=report.ts_init_ns))

    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_price == Decimal("42001"), "closed at the tripping price, not the later tick's"
    sniper.idle()
    assert sniper.ask("stats")["deferred_ticks"] == 1, "the held tick now waits behind the exit"


def test_on_a_tick_clock_the_held_ticks_go_on_once_the_report_is_answered(sniper_factory, probe_bus_for):
    sniper, report, t0 = _filled_long_waiting_for_its_check(sniper_factory, probe_bus_for)
    sniper.pb.bus.publish(EquityChecked(ts_init_ns=report.ts_init_ns, reported_ns=report.ts_init_ns))

    exit_ = sniper.submitted(OrderIntent.EXIT)
    assert exit_.order.reference_ts_ms == t0 + 5_000  # the held tick, through the stop


def test_a_risk_gate_restart_ends_the_wait_for_an_answer_it_will_never_give(sniper_factory, probe_bus_for):
    sniper, _, t0 = _filled_long_waiting_for_its_check(sniper_factory, probe_bus_for)
    sniper.pb.bus.publish(ActorRestarted(ts_init_ns=0, role=RISK_GATE, restarts=1, reason="crashed"))

    assert sniper.submitted(OrderIntent.EXIT).order.reference_ts_ms == t0 + 5_000


def test_without_await_risk_checks_a_tick_clock_does_not_wait_for_answers(sniper_factory, probe_bus_for):
    pb = dataclasses.replace(probe_bus_for(SNIPER), clock=TickClock())
    sniper = sniper_factory(pb=pb)
    sniper.ask("add_condition", condition(trigger=42000, size=1000))
    t0 = sniper.ts
    pb.bus.publish(Tick(ts_init_ns=(t0 + 1) * 1_000_000, coin="BTC", price=Decimal("42001"), ts_ms=t0 + 1))
    sniper.fill(sniper.submitted(OrderIntent.ENTRY))
    pb.wait_for(EquityMarked, RISK_GATE)
    pb.bus.publish(Tick(ts_init_ns=(t0 + 5_000) * 1_000_000, coin="BTC", price=Decimal("41000"), ts_ms=t0 + 5_000))

    assert sniper.submitted(OrderIntent.EXIT).order.reference_ts_ms == t0 + 5_000
