"""The RiskGate as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import EXECUTOR, JOURNAL, RISK_GATE, SNIPER, STRATEGIST
from actors.risk_gate import DAY_KEY, PEAK_KEY, RiskGate
from adapters.price_board import InMemoryPriceBoard
from state.config import RiskConfig
from state.market import default_rules
from state.messages import (
    AccountMarked,
    ArmCondition,
    ArmConditions,
    ClosePosition,
    ConditionRejected,
    EquityChecked,
    EquityMarked,
    ExecuteOrder,
    KillSwitchTriggered,
    OrderDenied,
    OrderRequest,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    ProposeCondition,
    ProposeConditions,
    SetTradingState,
    SubmitOrder,
    TradingStateChanged,
)
from state.models import PositionTrigger, TradeCondition
from state.types import TradingState, epoch_ns
from tests.actors.helpers import ActorRig, closed_position, exit_request, open_position, order_request
from tests.conftest import condition


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(RISK_GATE), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def gate(rig) -> Any:
    ref = rig.start(RiskGate, store=rig.store)
    started = rig.pb.wait_for(TradingStateChanged, SNIPER)
    assert started.state is TradingState.ACTIVE
    return ref


def submit(rig: ActorRig, order: OrderRequest, correlation_id: str = "c-flow") -> None:
    rig.pb.bus.send(SubmitOrder(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=correlation_id, order=order))


def set_state(rig: ActorRig, state: TradingState, reason: str = "test") -> None:
    rig.pb.bus.send(SetTradingState(ts_init_ns=rig.pb.clock.now_ns(), state=state, reason=reason))
    changed = rig.pb.wait_for(TradingStateChanged, SNIPER)
    assert (changed.state, changed.reason) == (state, reason)


def test_answers_ping_with_its_role(rig, gate):
    assert rig.ask("ping") == RISK_GATE


def test_propose_condition_when_valid_then_arm_condition_to_the_sniper_with_the_same_condition(rig, gate):
    wanted = condition(coin="SOL", trigger="142.5")

    rig.pb.bus.send(ProposeCondition(ts_init_ns=rig.pb.clock.now_ns(), condition=wanted))
    armed = rig.pb.wait_for(ArmCondition, SNIPER)

    assert armed.condition == wanted
    assert armed.correlation_id == wanted.id
    assert rig.pb.messages(ConditionRejected) == []


def test_propose_condition_when_already_expired_by_the_engine_clock_then_condition_rejected(rig, gate):
    stale = condition(valid_for=timedelta(hours=1))
    rig.pb.clock.advance(2 * 3600)  # engine time is past valid_until

    rig.pb.bus.send(ProposeCondition(ts_init_ns=rig.pb.clock.now_ns(), condition=stale))
    rejected = rig.pb.wait_for(ConditionRejected, STRATEGIST)

    assert rejected.condition_id == stale.id
    assert rejected.correlation_id == stale.id
    assert "valid_until" in rejected.reason
    assert rig.pb.messages(ArmCondition) == [], "an expired condition must never be armed"


def test_propose_condition_when_halted_then_condition_rejected_naming_the_state(rig, gate):
    set_state(rig, TradingState.HALTED)
    wanted = condition()

    rig.pb.bus.send(ProposeCondition(ts_init_ns=rig.pb.clock.now_ns(), condition=wanted))
    rejected = rig.pb.wait_for(ConditionRejected, STRATEGIST)

    assert rejected.condition_id == wanted.id
    assert "HALTED" in rejected.reason
    assert rig.pb.messages(ArmCondition) == []


def test_submit_entry_when_active_then_execute_order_to_the_executor_with_the_same_order(rig, gate):
    order = order_request("p0001-E")

    submit(rig, order, correlation_id="c-0001")
    execute = rig.pb.wait_for(ExecuteOrder, EXECUTOR)

    assert execute.order == order
    assert execute.correlation_id == "c-0001"
    assert rig.pb.messages(OrderDenied) == []
    assert rig.ask("stats")["passed"] == 1


@pytest.mark.parametrize("state", [TradingState.HALTED, TradingState.REDUCING])
def test_submit_entry_when_not_active_then_order_denied_to_the_sniper_and_nothing_reaches_the_executor(
    rig, gate, state
):
    set_state(rig, state)
    order = order_request("p0002-E")

    submit(rig, order, correlation_id="c-0002")
    denied = rig.pb.wait_for(OrderDenied, SNIPER)

    assert denied.order == order
    assert denied.correlation_id == "c-0002"
    assert state.value in denied.reason
    assert rig.pb.messages(ExecuteOrder) == []
    assert rig.ask("stats")["denied"] == 1


@pytest.mark.parametrize("state", [TradingState.HALTED, TradingState.REDUCING])
def test_submit_exit_when_not_active_then_it_still_passes_to_the_executor(rig, gate, state):
    set_state(rig, state)
    order = exit_request("p0003-X1")

    submit(rig, order, correlation_id="c-0003")
    execute = rig.pb.wait_for(ExecuteOrder, EXECUTOR)

    assert execute.order == order
    assert rig.pb.messages(OrderDenied) == [], "a stop must always be able to act"


def test_set_trading_state_back_to_active_lets_entries_through_again(rig, gate):
    set_state(rig, TradingState.HALTED)
    set_state(rig, TradingState.ACTIVE, reason="resumed")

    submit(rig, order_request("p0004-E"))

    assert rig.pb.wait_for(ExecuteOrder, EXECUTOR).order.client_order_id == "p0004-E"


def test_trading_state_is_persisted_so_a_new_risk_gate_on_the_same_store_starts_halted_and_announces_it(
    rig, gate
):
    set_state(rig, TradingState.HALTED, reason="kill switch")
    rig.stop(gate)

    successor = rig.start(RiskGate, store=rig.store)
    announced = rig.pb.wait_for(TradingStateChanged, SNIPER)

    assert (announced.state, announced.reason) == (TradingState.HALTED, "kill switch")
    assert rig.ask("trading_state", ref=successor) == "HALTED"
    submit(rig, order_request("p0005-E"))
    assert rig.pb.wait_for(OrderDenied, SNIPER).order.client_order_id == "p0005-E"


def test_ask_set_trading_state_with_an_unknown_state_is_a_value_error_and_changes_nothing(rig, gate):
    with pytest.raises(ValueError, match="state"):
        rig.ask("set_trading_state", "PANIC")

    assert rig.ask("trading_state") == "ACTIVE"
    assert gate.is_alive()


# --- vetting, sizing and the kill switch (the configured gate) -------------------------------------

D = Decimal
KNOWN = ("BTC", "ETH", "SOL")
NOON = epoch_ns(datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
def board() -> InMemoryPriceBoard:
    return InMemoryPriceBoard()


def start_gate(rig: ActorRig, board: InMemoryPriceBoard | None = None, **limits: Any) -> Any:
    """A RiskGate wired as run.py wires it; waits for its start announcement."""
    ref = rig.start(RiskGate, store=rig.store, limits=RiskConfig(**limits), known_coins=KNOWN,
                    markets=default_rules, board=board or InMemoryPriceBoard(),
                    initial_balance=Decimal(10000))
    rig.pb.wait_for(TradingStateChanged, SNIPER)
    return ref


def propose(rig: ActorRig, wanted: TradeCondition) -> None:
    rig.pb.bus.send(ProposeCondition(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=wanted.id, condition=wanted))


def propose_set(rig: ActorRig, *conditions: TradeCondition, strategy_id: str = "breakout", coin: str = "BTC") -> None:
    rig.pb.bus.send(ProposeConditions(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=f"{strategy_id}:{coin}",
                                      strategy_id=strategy_id, coin=coin, conditions=conditions))


@pytest.mark.parametrize(
    ("wanted", "limits", "last_price", "reason"),
    [
        (dict(coin="DOGE", trigger="0.12"), {}, None, "coin: DOGE is not traded"),
        (dict(stop="0.25"), dict(max_stop_loss_pct=D("0.20")), None, "stop_loss_pct: 0.25 is above the maximum"),
        (dict(target="0.6"), dict(max_take_profit_pct=D("0.5")), None, "take_profit_pct: 0.6 is above the maximum"),
        (dict(trigger="100", target="0.00001"), {}, None, "take_profit_pct: a LONG target at 100.00"),
        (dict(direction="SHORT", trigger="100", stop="0.00001"), {}, None, "stop_loss_pct: a SHORT stop at 100.00"),
        (dict(trigger="42000"), dict(max_trigger_distance_pct=D("0.20")), "30000", "trigger_price: 42000"),
    ],
    ids=["unknown-coin", "stop-above-max", "target-above-max", "target-on-trigger", "stop-on-trigger",
         "fat-finger"],
)
def test_propose_condition_when_vetting_fails_then_condition_rejected_with_the_reason(
    rig, board, wanted, limits, last_price, reason
):
    if last_price is not None:
        board.update("BTC", D(last_price), 0)
    start_gate(rig, board, **limits)
    bad = condition(**wanted)

    propose(rig, bad)
    rejected = rig.pb.wait_for(ConditionRejected, STRATEGIST)

    assert rejected.condition_id == bad.id
    assert rejected.correlation_id == bad.id
    assert rejected.reason.startswith(reason), rejected.reason
    assert rig.pb.wait_for(ConditionRejected, JOURNAL).condition_id == bad.id
    assert rig.pb.messages(ArmCondition) == []
    assert rig.ask("stats")["rejected"] == 1


def test_propose_condition_near_the_last_price_is_armed(rig, board):
    board.update("BTC", D("41000"), 0)
    start_gate(rig, board)
    wanted = condition(trigger="42000")

    propose(rig, wanted)

    assert rig.pb.wait_for(ArmCondition, SNIPER).condition == wanted


def test_sizing_fixed_usd_keeps_the_condition_under_the_cap(rig):
    start_gate(rig, sizing="fixed_usd", max_position_usd=D("1000"))
    wanted = condition(size=500)

    propose(rig, wanted)

    assert rig.pb.wait_for(ArmCondition, SNIPER).condition == wanted
    assert rig.pb.messages(ArmCondition) == []


def test_sizing_fixed_usd_caps_the_size_at_max_position_usd(rig):
    start_gate(rig, sizing="fixed_usd", max_position_usd=D("1000"))
    wanted = condition(size=5000)

    propose(rig, wanted)
    armed = rig.pb.wait_for(ArmCondition, SNIPER).condition

    assert armed == replace(wanted, position_size_usd=D("1000.00"))


def test_sizing_risk_pct_sets_the_size_from_equity_and_the_stop(rig):
    start_gate(rig, sizing="risk_pct", risk_per_trade_pct=D("0.01"), max_position_usd=D("100000"))
    wanted = condition(stop="0.02", size=500)

    propose(rig, wanted)
    armed = rig.pb.wait_for(ArmCondition, SNIPER).condition

    # 1 % of 10,000 at risk over a 2 % stop: 5,000; everything else unchanged.
    assert armed == replace(wanted, position_size_usd=D("5000.00"))


def test_sizing_risk_pct_follows_the_equity_the_sniper_marks(rig):
    rig.pb.clock.set_ns(NOON)
    start_gate(rig, sizing="risk_pct", risk_per_trade_pct=D("0.01"), max_position_usd=D("100000"))
    mark(rig, "20000")

    propose(rig, condition(stop="0.02", valid_for=None))

    assert rig.pb.wait_for(ArmCondition, SNIPER).condition.position_size_usd == D("10000.00")


def test_propose_conditions_arms_only_the_vetted_ones_in_one_arm_conditions(rig):
    start_gate(rig)
    long = condition(trigger="43000")
    too_wide = condition(trigger="43000", stop="0.5")
    short = condition(direction="SHORT", trigger="41000")

    propose_set(rig, long, too_wide, short)
    armed = rig.pb.wait_for(ArmConditions, SNIPER)

    assert (armed.strategy_id, armed.coin, armed.correlation_id) == ("breakout", "BTC", "breakout:BTC")
    assert armed.conditions == (long, short)
    rejected = rig.pb.wait_for(ConditionRejected, STRATEGIST)
    assert rejected.condition_id == too_wide.id and rejected.reason.startswith("stop_loss_pct")
    assert len(rig.pb.messages(ArmConditions)) == 0, "one ArmConditions per proposal"
    assert rig.pb.messages(ArmCondition) == []


def test_propose_conditions_sizes_each_condition(rig):
    start_gate(rig, sizing="fixed_usd", max_position_usd=D("300"))
    big, small = condition(trigger="43000", size=1000), condition(direction="SHORT", trigger="41000", size=100)

    propose_set(rig, big, small)
    armed = rig.pb.wait_for(ArmConditions, SNIPER)

    assert [c.position_size_usd for c in armed.conditions] == [D("300.00"), D("100")]


def test_propose_conditions_when_all_are_rejected_then_an_empty_set_replaces_the_old_one(rig):
    start_gate(rig)
    bad = condition(stop="0.5")

    propose_set(rig, bad)

    assert rig.pb.wait_for(ArmConditions, SNIPER).conditions == ()
    assert rig.pb.wait_for(ConditionRejected, STRATEGIST).condition_id == bad.id


@pytest.mark.parametrize("state", [TradingState.HALTED, TradingState.REDUCING])
def test_propose_conditions_when_not_active_then_every_condition_is_rejected_and_nothing_armed(rig, state):
    start_gate(rig)
    set_state(rig, state)
    wanted = (condition(trigger="43000"), condition(direction="SHORT", trigger="41000"))

    propose_set(rig, *wanted)

    rejected = [rig.pb.wait_for(ConditionRejected, STRATEGIST) for _ in wanted]
    assert [r.condition_id for r in rejected] == [c.id for c in wanted]
    assert all(r.reason == f"trading is {state.value}" for r in rejected)
    assert rig.pb.messages(ArmConditions) == []


# --- equity and the kill switch --------------------------------------------------------------------


def mark(rig: ActorRig, equity: str) -> None:
    rig.pb.bus.publish(AccountMarked(ts_init_ns=rig.pb.clock.now_ns(), balance=D(equity), unrealized_pnl=D(0),
                                     equity=D(equity), open_positions=0))


def opened(rig: ActorRig, position_id: str, coin: str = "BTC") -> None:
    rig.pb.bus.publish(PositionOpened(ts_init_ns=rig.pb.clock.now_ns(),
                                      position=open_position(position_id, coin=coin)))


def closing(rig: ActorRig, position_id: str) -> None:
    position = open_position(position_id).transition(
        PositionTrigger.EXIT_SUBMITTED, pending_order_id=f"{position_id}-X1", pending_quantity=D("5"),
        reference_price=D("99"), reference_ts_ms=0, exit_reason="STOP_LOSS", exit_attempts=1,
    )
    rig.pb.bus.publish(PositionChanged(ts_init_ns=rig.pb.clock.now_ns(), position=position, change="EXIT_SUBMITTED"))


def closed(rig: ActorRig, position_id: str, balance: str = "10005") -> None:
    rig.pb.bus.publish(PositionClosed(ts_init_ns=rig.pb.clock.now_ns(), position=closed_position(position_id),
                                      balance=D(balance)))


@pytest.fixture
def noon(rig) -> None:
    """Engine time at noon UTC, far from a day boundary."""
    rig.pb.clock.set_ns(NOON)


def test_kill_switch_when_equity_falls_to_the_daily_limit_then_halt_flatten_and_announce(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.05"))
    opened(rig, "p0001")
    opened(rig, "p0002", coin="ETH")
    opened(rig, "p0003")
    opened(rig, "p0004")
    closed(rig, "p0003")  # gone: nothing to close
    closing(rig, "p0004")  # its exit is already on the way
    mark(rig, "10000")  # the day's first mark sets its start
    mark(rig, "9501")
    rig.pb.drain()
    assert rig.ask("trading_state") == "ACTIVE"

    mark(rig, "9500")
    halted = rig.pb.wait_for(TradingStateChanged, SNIPER)
    killed = rig.pb.wait_for(KillSwitchTriggered, JOURNAL)

    assert halted.state is TradingState.HALTED
    assert halted.reason.startswith("KILL_SWITCH")
    assert killed.reason == halted.reason and killed.equity == D("9500")
    closes = rig.pb.messages(ClosePosition, SNIPER)
    assert [(c.position_id, c.reason) for c in closes] == [("p0001", "KILL_SWITCH"), ("p0002", "KILL_SWITCH")]
    assert rig.ask("trading_state") == "HALTED"
    assert rig.store.get_setting("trading_state") == "HALTED"


def test_kill_switch_trips_once_later_marks_change_nothing(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.05"))
    opened(rig, "p0001")
    mark(rig, "10000")
    mark(rig, "9000")
    rig.pb.wait_for(KillSwitchTriggered, JOURNAL)

    mark(rig, "8000")
    mark(rig, "7000")

    assert rig.pb.messages(KillSwitchTriggered) == []
    assert len(rig.pb.messages(ClosePosition, SNIPER)) == 1


def test_kill_switch_then_entries_are_denied_and_exits_pass(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.05"))
    mark(rig, "10000")
    mark(rig, "9000")
    rig.pb.wait_for(KillSwitchTriggered, JOURNAL)

    submit(rig, order_request("p0009-E"))
    submit(rig, exit_request("p0008-X1"))

    assert rig.pb.wait_for(OrderDenied, SNIPER).order.client_order_id == "p0009-E"
    assert rig.pb.wait_for(ExecuteOrder, EXECUTOR).order.client_order_id == "p0008-X1"


def test_kill_switch_off_when_both_limits_are_zero(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0"), max_drawdown_pct=D("0"))
    mark(rig, "10000")
    mark(rig, "1")

    rig.pb.drain()
    assert rig.pb.messages(KillSwitchTriggered) == []
    assert rig.ask("trading_state") == "ACTIVE"


def test_kill_switch_when_flat_the_closing_balance_is_the_equity(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.05"))
    opened(rig, "p0001")
    mark(rig, "10000")

    closed(rig, "p0001", balance="9400")

    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).equity == D("9400")
    assert rig.pb.messages(ClosePosition) == []


def test_ask_kill_switch_halts_announces_and_closes_every_open_position(rig, noon):
    start_gate(rig)
    opened(rig, "p0001")
    opened(rig, "p0002", coin="SOL")
    rig.pb.drain()

    assert rig.ask("kill_switch", "operator pulled the plug") == "HALTED"

    halted = rig.pb.wait_for(TradingStateChanged, SNIPER)
    assert (halted.state, halted.reason) == (TradingState.HALTED, "KILL_SWITCH: operator pulled the plug")
    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).reason == "KILL_SWITCH: operator pulled the plug"
    assert [c.position_id for c in rig.pb.messages(ClosePosition, SNIPER)] == ["p0001", "p0002"]


def test_kill_switch_closes_open_positions_learned_from_the_store_at_start(rig, noon):
    rig.store.save_position(open_position("p0007"))

    start_gate(rig)
    rig.ask("kill_switch", "test")

    assert rig.pb.wait_for(ClosePosition, SNIPER).position_id == "p0007"


def test_the_days_start_survives_a_restart(rig, noon):
    first = start_gate(rig, max_daily_loss_pct=D("0.05"))
    mark(rig, "10000")
    rig.pb.drain()
    rig.stop(first)

    start_gate(rig, max_daily_loss_pct=D("0.05"))
    assert rig.ask("stats")["day_start_equity"] == "10000"
    mark(rig, "9400")  # not the start of a new day: a 6 % loss

    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).equity == D("9400")


def test_a_new_utc_day_starts_at_the_last_equity_of_the_day_before(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.05"))
    mark(rig, "10000")
    mark(rig, "9600")  # 4 % down: yesterday's loss does not count today
    rig.pb.drain()  # the gate reads the engine clock when it handles the mark
    rig.pb.clock.advance(24 * 3600)
    mark(rig, "9300")  # the day's first mark: 3.1 % below the equity at the day change
    rig.pb.drain()
    assert rig.ask("trading_state") == "ACTIVE"
    assert rig.ask("stats")["day_start_equity"] == "9600"
    assert rig.store.get_setting(DAY_KEY) == "2024-03-02 9600"

    mark(rig, "9120")

    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).equity == D("9120")


def test_a_loss_first_seen_after_midnight_counts_for_the_new_day(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.05"))
    mark(rig, "10000")
    rig.pb.drain()
    rig.pb.clock.advance(24 * 3600)

    mark(rig, "9400")  # the new day's first mark is already 6 % down from the day change

    killed = rig.pb.wait_for(KillSwitchTriggered, JOURNAL)
    assert killed.reason.startswith("KILL_SWITCH: daily loss 6.00%")


# --- EquityMarked (between bar closes), the day fixed at start, the drawdown -----------------------


def equity_marked(rig: ActorRig, equity: str, unrealized: str = "0") -> None:
    rig.pb.bus.publish(EquityMarked(ts_init_ns=rig.pb.clock.now_ns(), balance=D(equity) - D(unrealized),
                                    unrealized_pnl=D(unrealized), equity=D(equity)))


def test_equity_marked_between_bar_closes_trips_the_kill_switch_at_once(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.01"))
    opened(rig, "p0001")
    equity_marked(rig, "9901", unrealized="-99")
    rig.pb.drain()
    assert rig.ask("trading_state") == "ACTIVE"

    equity_marked(rig, "9690", unrealized="-310")  # -3.1 % unrealized against a 1 % limit

    halted = rig.pb.wait_for(TradingStateChanged, SNIPER)
    assert halted.state is TradingState.HALTED and halted.reason.startswith("KILL_SWITCH: daily loss 3.10%")
    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).equity == D("9690")
    assert rig.pb.wait_for(ClosePosition, SNIPER).position_id == "p0001"


def test_the_first_trades_loss_counts_against_the_equity_fixed_at_start(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0.01"))
    assert rig.ask("stats")["day_start_equity"] == "10000"
    assert rig.store.get_setting(DAY_KEY) == "2024-03-01 10000"

    closed(rig, "p0001", balance="9600")  # a -4 % first trade, closed before any bar close

    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).reason.startswith("KILL_SWITCH: daily loss 4.00%")


def test_start_fixes_the_day_from_the_stored_balance_and_the_open_positions_unrealized_pnl(rig, noon):
    rig.store.save_account(balance=D("9000"))
    rig.store.save_position(replace(open_position("p0001"), unrealized_pnl=D("-100")))
    rig.store.set_setting(DAY_KEY, "2024-02-29 12000")  # yesterday's: not today's start

    start_gate(rig)

    stats = rig.ask("stats")
    assert (stats["day"], stats["day_start_equity"], stats["equity"]) == ("2024-03-01", "8900", "8900")
    assert rig.store.get_setting(DAY_KEY) == "2024-03-01 8900"
    assert rig.ask("trading_state") == "ACTIVE"


def test_start_keeps_todays_stored_start_and_trips_when_the_stored_equity_already_breaches(rig, noon):
    rig.store.save_account(balance=D("9000"))
    rig.store.save_position(open_position("p0001"))
    rig.store.set_setting(DAY_KEY, "2024-03-01 10000")  # today's: a 10 % loss already

    start_gate(rig, max_daily_loss_pct=D("0.05"))

    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).reason.startswith("KILL_SWITCH: daily loss 10.00%")
    assert rig.pb.wait_for(ClosePosition, SNIPER).position_id == "p0001"
    assert rig.ask("stats")["day_start_equity"] == "10000"


def test_drawdown_from_the_peak_halts_flattens_and_names_the_drawdown(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0"), max_drawdown_pct=D("0.10"))
    opened(rig, "p0001")
    equity_marked(rig, "12000", unrealized="2000")
    equity_marked(rig, "10801", unrealized="801")
    rig.pb.drain()
    assert rig.ask("trading_state") == "ACTIVE"
    assert rig.ask("stats")["peak_equity"] == "12000"

    equity_marked(rig, "10800", unrealized="800")

    halted = rig.pb.wait_for(TradingStateChanged, SNIPER)
    assert halted.state is TradingState.HALTED
    assert halted.reason == ("KILL_SWITCH: drawdown 10.00% (equity 10800.00 from the peak 12000.00) "
                             "reached the limit 10.00%")
    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).reason == halted.reason
    assert rig.pb.wait_for(ClosePosition, SNIPER).position_id == "p0001"


def test_the_peak_is_persisted_and_survives_a_restart(rig, noon):
    first = start_gate(rig, max_daily_loss_pct=D("0"), max_drawdown_pct=D("0.10"))
    equity_marked(rig, "12000")
    equity_marked(rig, "11000")
    rig.pb.drain()
    assert rig.store.get_setting(PEAK_KEY) == "12000"
    rig.stop(first)
    rig.store.save_account(balance=D("11000"))

    start_gate(rig, max_daily_loss_pct=D("0"), max_drawdown_pct=D("0.10"))
    assert rig.ask("stats")["peak_equity"] == "12000"
    equity_marked(rig, "10800")

    assert rig.pb.wait_for(KillSwitchTriggered, JOURNAL).reason.startswith("KILL_SWITCH: drawdown 10.00%")


def test_resuming_after_a_drawdown_halt_restarts_the_peak_and_after_another_halt_keeps_it(rig, noon):
    start_gate(rig, max_daily_loss_pct=D("0"), max_drawdown_pct=D("0.10"))
    equity_marked(rig, "12000")
    equity_marked(rig, "10000")
    rig.pb.wait_for(KillSwitchTriggered, JOURNAL)
    assert rig.pb.wait_for(TradingStateChanged, SNIPER).state is TradingState.HALTED

    set_state(rig, TradingState.ACTIVE, reason="resumed")
    equity_marked(rig, "9500")  # 5 % below the new peak of 10000
    rig.pb.drain()

    assert rig.ask("stats")["peak_equity"] == "10000"
    assert rig.store.get_setting(PEAK_KEY) == "10000"
    assert rig.ask("trading_state") == "ACTIVE"
    set_state(rig, TradingState.HALTED, reason="operator")
    set_state(rig, TradingState.ACTIVE, reason="resumed")
    assert rig.ask("stats")["peak_equity"] == "10000"


def test_every_equity_marked_is_answered_and_a_trips_commands_come_before_the_answer(rig, noon):
    """A tick clock's Sniper holds its ticks until the answer: the answer must come after what
    the report caused, so the Sniper handles a trip's close before its next tick."""
    start_gate(rig, max_daily_loss_pct=D("0.01"))
    opened(rig, "p0001")
    equity_marked(rig, "9901", unrealized="-99")
    first = rig.pb.wait_for(EquityChecked, SNIPER)
    assert rig.ask("trading_state") == "ACTIVE"

    equity_marked(rig, "9690", unrealized="-310")

    rig.pb.drain()
    to_sniper = [type(m).__name__ for to, m in rig.pb.seen if to == SNIPER]
    assert to_sniper[-3:] == ["TradingStateChanged", "ClosePosition", "EquityChecked"]
    answer = rig.pb.wait_for(EquityChecked, SNIPER)
    assert first.reported_ns == answer.reported_ns == rig.pb.clock.now_ns()
