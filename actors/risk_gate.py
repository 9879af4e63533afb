"""The RiskGate: the only road to the Executor, and the account's trading state.

**Owns** the trading state (ACTIVE, REDUCING, HALTED), persisted so a halt survives any
restart; position sizing (fixed USD per condition in this version).

**Accepts** ``ProposeCondition`` (vet, then arm on the Sniper), ``SubmitOrder`` (gate, then
build the one and only ``ExecuteOrder``), ``SetTradingState``, and position events.

**Emits** ``ArmCondition`` to the Sniper, ``ExecuteOrder`` to the Executor, ``ConditionRejected``,
``OrderDenied`` (a local decision: the order never reaches a venue) and ``TradingStateChanged``.

Gate: HALTED lets no entry through (exits pass); REDUCING passes only orders that reduce a
position; ACTIVE passes everything. Exits are never denied: a stop must always be able to act.

**On crash** the restart reloads the trading state from the store and announces it again.
"""

from __future__ import annotations

from typing import Any

from actors.base import EngineActor
from actors.bus import RISK_GATE
from state.messages import (
    ArmCondition,
    ConditionRejected,
    ExecuteOrder,
    OrderDenied,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    ProposeCondition,
    SetTradingState,
    SubmitOrder,
    TradingStateChanged,
)
from state.store import Store
from state.types import TradingState

STATE_KEY = "trading_state"
REASON_KEY = "trading_state_reason"


class RiskGate(EngineActor):
    role = RISK_GATE
    crash_on_error = True

    def __init__(self, *, store: Store, **base: Any) -> None:
        super().__init__(**base)
        self._store = store
        self._state = TradingState.ACTIVE
        self._reason = ""
        self.passed = 0
        self.denied = 0

    def on_start(self) -> None:
        self._state = TradingState(self._store.get_setting(STATE_KEY) or TradingState.ACTIVE.value)
        self._reason = self._store.get_setting(REASON_KEY) or ""
        if self._state is not TradingState.ACTIVE:
            self.log.warning("TRADING_STATE: {} since before this start ({})", self._state.value, self._reason)
        self.publish(TradingStateChanged(ts_init_ns=self.now_ns(), state=self._state, reason=self._reason))

    def _on_propose_condition(self, command: ProposeCondition) -> None:
        condition = command.condition
        problem = None
        if self._state is not TradingState.ACTIVE:
            problem = f"trading is {self._state.value}"
        elif condition.valid_until_ns is not None and condition.valid_until_ns <= self.now_ns():
            problem = "valid_until: already expired"
        if problem is not None:
            self.log.warning("CONDITION_REJECTED: {}: {}", condition.id, problem)
            self.publish(ConditionRejected(ts_init_ns=self.now_ns(), correlation_id=condition.id,
                                           condition_id=condition.id, reason=problem))
            return
        self.send(ArmCondition(ts_init_ns=self.now_ns(), correlation_id=condition.id, condition=condition))

    def _on_submit_order(self, command: SubmitOrder) -> None:
        order = command.order
        if not order.reduce_only and self._state is not TradingState.ACTIVE:
            self.denied += 1
            reason = f"trading is {self._state.value}: only orders that reduce a position pass"
            self.log.warning("ORDER_DENIED: {} {}", order.client_order_id, reason)
            self.publish(OrderDenied(ts_init_ns=self.now_ns(), correlation_id=command.correlation_id,
                                     order=order, reason=reason))
            return
        self.passed += 1
        self.send(ExecuteOrder(ts_init_ns=self.now_ns(), correlation_id=command.correlation_id, order=order))

    def _on_set_trading_state(self, command: SetTradingState) -> None:
        self._set_state(command.state, command.reason)

    def _ask_set_trading_state(self, state: str, reason: str = "requested") -> str:
        command = SetTradingState(ts_init_ns=self.now_ns(), state=state, reason=reason)
        self._set_state(command.state, command.reason)
        return self._state.value

    def _ask_trading_state(self) -> str:
        return self._state.value

    def _set_state(self, state: TradingState, reason: str) -> None:
        with self._store.transaction():
            self._store.set_setting(STATE_KEY, state.value)
            self._store.set_setting(REASON_KEY, reason)
        changed = state is not self._state
        self._state, self._reason = state, reason
        if changed:
            log = self.log.critical if state is TradingState.HALTED else self.log.warning
            log("TRADING_STATE: {} ({})", state.value, reason)
        self.publish(TradingStateChanged(ts_init_ns=self.now_ns(), state=state, reason=reason))

    def _on_position_opened(self, event: PositionOpened) -> None:
        return None

    def _on_position_changed(self, event: PositionChanged) -> None:
        return None

    def _on_position_closed(self, event: PositionClosed) -> None:
        return None

    def _ask_stats(self) -> dict[str, Any]:
        return {"state": self._state.value, "reason": self._reason, "passed": self.passed, "denied": self.denied}
