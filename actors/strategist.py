"""The Strategist: where slow decisions become proposed conditions.

**Owns** the strategy plugins and their indicator state (none are configured yet: the
breakout strategy arrives with the paper-session work) and a read model of the trading state.

**Accepts** ``ProposeSignal`` from outside the hot path (the REPL, scripts, an inbox or an
agent), plus condition and trading-state events it may learn from.

**Emits** ``ProposeCondition`` to the RiskGate, which vets it and arms it on the Sniper.

**On crash** (a derived actor: a failing message is logged and skipped) the restart starts
with empty indicator state; strategies rebuild it from the bars that follow.
"""

from __future__ import annotations

from typing import Any

from actors.base import EngineActor
from actors.bus import STRATEGIST
from state.messages import (
    ConditionCanceled,
    ConditionExpired,
    ConditionRejected,
    ConditionTriggered,
    ProposeCondition,
    ProposeSignal,
    TradingStateChanged,
)
from state.types import TradingState


class Strategist(EngineActor):
    role = STRATEGIST
    crash_on_error = False

    def __init__(self, *, strategies: tuple[str, ...] = (), **base: Any) -> None:
        super().__init__(**base)
        self._strategies = strategies
        self._trading_state = TradingState.ACTIVE
        self.proposed = 0
        self.rejected = 0

    def _on_propose_signal(self, signal: ProposeSignal) -> None:
        self.proposed += 1
        self.send(ProposeCondition(ts_init_ns=self.now_ns(), correlation_id=signal.condition.id,
                                   condition=signal.condition))

    def _on_condition_rejected(self, event: ConditionRejected) -> None:
        self.rejected += 1

    def _on_condition_canceled(self, event: ConditionCanceled) -> None:
        return None

    def _on_condition_expired(self, event: ConditionExpired) -> None:
        return None

    def _on_condition_triggered(self, event: ConditionTriggered) -> None:
        return None

    def _on_trading_state_changed(self, event: TradingStateChanged) -> None:
        self._trading_state = event.state

    def _ask_stats(self) -> dict[str, Any]:
        return {"strategies": list(self._strategies), "proposed": self.proposed, "rejected": self.rejected}
