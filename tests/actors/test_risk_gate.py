"""The RiskGate as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from actors.bus import EXECUTOR, RISK_GATE, SNIPER, STRATEGIST
from actors.risk_gate import RiskGate
from state.messages import (
    ArmCondition,
    ConditionRejected,
    ExecuteOrder,
    OrderDenied,
    OrderRequest,
    ProposeCondition,
    SetTradingState,
    SubmitOrder,
    TradingStateChanged,
)
from state.types import TradingState
from tests.actors.helpers import ActorRig, exit_request, order_request
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
