"""Chaos: crash each actor while the engine trades; it comes back and trading goes on."""

from __future__ import annotations

import pytest

from actors.bus import ROLES, RoleState
from run import EXIT_HALTED
from state.types import PositionStatus, TradingState
from tests.conftest import WAIT, condition

RESTART_DEADLINE_S = 1.0  # "the actor comes back within a second"


def settle(engine) -> None:
    assert engine.wait_idle(WAIT), f"engine not idle: {engine.bus.outstanding()}"


@pytest.mark.parametrize("role", ROLES)
def test_crash_while_trading_then_the_actor_is_back_within_a_second_and_trading_goes_on(make_engine, ts, role):
    engine = make_engine()
    # Trading: one position open on BTC, ticks flowing.
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=300))
    engine.push_tick("BTC", "42001", ts())
    settle(engine)
    (btc,) = engine.sniper.snapshot().positions

    engine.inject_crash(role)
    for price in ("42010", "42020", "42030"):  # ticks keep coming while it restarts
        engine.push_tick("BTC", price, ts())
    assert engine.wait_for_restart(role, 1, timeout=RESTART_DEADLINE_S), f"{role} not back within 1s"
    assert engine.bus.state(role) is RoleState.UP
    settle(engine)

    # A later condition, through the whole Strategist -> RiskGate -> Sniper path, triggers and exits.
    later = condition(coin="ETH", trigger=3000, size=300, target="0.01")
    engine.propose(later)
    settle(engine)
    assert later.id in [c.id for c in engine.sniper.snapshot().conditions]
    engine.push_tick("ETH", "3001", ts())
    settle(engine)
    eth = [p for p in engine.sniper.snapshot().positions if p.coin == "ETH"]
    assert [p.status for p in eth] == [PositionStatus.OPEN]
    engine.push_tick("ETH", "3100", ts())
    settle(engine)
    closed = engine.store.get_position(eth[0].id)
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason == "TAKE_PROFIT"

    # The BTC position was managed all along: its stop still works.
    engine.push_tick("BTC", "41000", ts())
    settle(engine)
    assert engine.store.get_position(btc.id).exit_reason == "STOP_LOSS"
    assert engine.sniper.snapshot().positions == ()
    assert engine.restarts[role] == 1
    assert engine.handles["invariants"].ask("violations") == ()


def test_sniper_crash_with_two_positions_and_three_conditions_comes_back_identical(engine, ts):
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=200))
    engine.sniper.add_condition(condition(coin="ETH", direction="SHORT", trigger=3000, size=200))
    for coin, trigger in (("SOL", 200), ("BTC", 50000), ("ETH", 5000)):
        engine.sniper.add_condition(condition(coin=coin, trigger=trigger, size=200))
    engine.push_tick("BTC", "42001", ts())
    engine.push_tick("ETH", "2999", ts())
    engine.push_tick("BTC", "42100", ts())
    settle(engine)
    before = engine.sniper.snapshot()
    assert len(before.positions) == 2 and len(before.conditions) == 3

    engine.inject_crash("sniper")
    assert engine.wait_for_restart("sniper", 1, timeout=RESTART_DEADLINE_S)
    after = engine.sniper.snapshot()
    assert after == before

    engine.push_tick("BTC", "40000", ts())  # the stop still works after the restart
    settle(engine)
    assert [p.coin for p in engine.sniper.snapshot().positions] == ["ETH"]


def test_messages_queued_behind_a_crash_are_delivered_to_the_successor(engine, ts):
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=200))
    engine.inject_crash("sniper")
    engine.push_tick("BTC", "42001", ts())  # in the dead actor's mailbox or held: never lost
    assert engine.wait_for_restart("sniper", 1, timeout=RESTART_DEADLINE_S)
    settle(engine)
    (position,) = engine.sniper.snapshot().positions
    assert position.entry_price == 42001


def test_restart_intensity_exceeded_halts_trading_and_stops_in_order(make_engine, ts, logs):
    engine = make_engine(supervisor={"max_restarts": 2, "within_s": 60})
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=200))
    engine.push_tick("BTC", "42001", ts())
    settle(engine)
    for count in (1, 2):
        engine.inject_crash("feed")
        assert engine.wait_for_restart("feed", count, timeout=WAIT)
    engine.inject_crash("feed")  # third failure within the window: past the limit
    assert engine.wait_stopped(WAIT), "engine did not stop after the restart limit"
    assert engine.exit_code == EXIT_HALTED
    assert logs.wait_for("ENGINE_HALT: restart intensity exceeded for feed")
    assert all(engine.bus.state(role) is RoleState.STOPPED for role in ROLES)
    assert engine.store.db.is_closed()

    # The halt is durable: a new engine on the same data refuses entries but keeps the position.
    again = make_engine(data_dir=engine.data_dir)
    assert again.risk_gate.trading_state() == TradingState.HALTED.value
    (position,) = again.sniper.snapshot().positions
    again.sniper.add_condition(condition(coin="ETH", trigger=3000, size=200))
    again.push_tick("ETH", "3001", ts())
    again.push_tick("BTC", "41000", ts())  # exits still pass while HALTED
    settle(again)
    snap = again.sniper.snapshot()
    assert snap.positions == ()
    assert [c.coin for c in snap.conditions] == ["ETH"]
    assert again.store.get_position(position.id).exit_reason == "STOP_LOSS"


def test_crash_in_on_start_is_noticed_by_polling_and_retried(make_engine, ts, monkeypatch):
    from actors.exit_monitor import ExitMonitor

    engine = make_engine()
    failures = {"left": 1}
    original = ExitMonitor.on_start

    def flaky_on_start(self):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("boom in on_start")
        original(self)

    monkeypatch.setattr(ExitMonitor, "on_start", flaky_on_start)
    engine.inject_crash("exit_monitor")
    assert engine.wait_for_restart("exit_monitor", 1, timeout=WAIT)
    assert engine.bus.state("exit_monitor") is RoleState.UP
