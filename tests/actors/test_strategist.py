"""The Strategist as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.bus import RISK_GATE, STRATEGIST
from actors.strategist import Strategist
from state.messages import ConditionRejected, ProposeCondition, ProposeSignal, TradingStateChanged
from state.types import TradingState
from tests.actors.helpers import ActorRig
from tests.conftest import condition


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(STRATEGIST), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def strategist(rig) -> Any:
    return rig.start(Strategist, strategies=("breakout",))


def test_answers_ping_with_its_role(rig, strategist):
    assert rig.ask("ping") == STRATEGIST


def test_propose_signal_then_propose_condition_to_the_risk_gate_carries_the_same_condition(rig, strategist):
    wanted = condition(coin="SOL", trigger="142.50", size=500)

    rig.pb.bus.send(ProposeSignal(ts_init_ns=rig.pb.clock.now_ns(), condition=wanted))
    proposed = rig.pb.wait_for(ProposeCondition, RISK_GATE)

    assert proposed.condition == wanted
    assert proposed.correlation_id == wanted.id, "the condition id ties the whole flow together"
    assert proposed.ts_init_ns == rig.pb.clock.now_ns()
    assert rig.ask("stats")["proposed"] == 1


def test_each_signal_is_proposed_once_in_the_order_it_came(rig, strategist):
    first, second = condition(coin="BTC"), condition(coin="ETH")

    for wanted in (first, second):
        rig.pb.bus.send(ProposeSignal(ts_init_ns=rig.pb.clock.now_ns(), condition=wanted))

    proposals = rig.pb.messages(ProposeCondition, RISK_GATE)
    assert [p.condition.id for p in proposals] == [first.id, second.id]


def test_condition_rejected_is_counted_and_trading_state_changes_are_accepted(rig, strategist):
    now = rig.pb.clock.now_ns()
    rig.pb.bus.publish(ConditionRejected(ts_init_ns=now, condition_id="c-1", reason="trading is HALTED"))
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=now, state=TradingState.HALTED, reason="test"))

    assert rig.ask("stats") == {"strategies": ["breakout"], "proposed": 0, "rejected": 1}
    assert strategist.is_alive()
