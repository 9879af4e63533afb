"""The Strategist: where slow decisions become proposed conditions.

**Owns** the strategy plugins (``state/strategies``) and their indicator state, and a read model
of the trading state.

**Accepts** ``BarClosed`` (fed to every strategy, in order), ``ProposeSignal`` from outside the
hot path (the REPL, scripts, an agent), and condition and trading-state events.

**Emits** ``ProposeConditions`` (a strategy's complete set for one coin) and ``ProposeCondition``
(a signal from outside) to the RiskGate, which vets, sizes and arms them on the Sniper. While
trading is not ACTIVE strategies still see every bar (their indicators stay current) but
nothing is proposed.

**On crash** (a derived actor: a failing message is logged and skipped; one strategy failing on a
bar does not stop the others) the restart builds fresh strategies and warms them up from the
bars the Feed stored, so indicator state is not lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from actors.base import EngineActor
from actors.bus import STRATEGIST
from state.messages import (
    BarClosed,
    ConditionCanceled,
    ConditionExpired,
    ConditionRejected,
    ConditionTriggered,
    ConditionsReplaced,
    ProposeCondition,
    ProposeConditions,
    ProposeSignal,
    TradingStateChanged,
)
from state.store import Store
from state.strategies import Strategy
from state.types import TradingState

WARMUP_BARS = 500  # bars per coin a restart feeds back, at most this many bar periods old


class Strategist(EngineActor):
    role = STRATEGIST
    crash_on_error = False

    def __init__(
        self,
        *,
        make_strategies: Callable[[], Sequence[Strategy]] = tuple,
        store: Store | None = None,
        bar_seconds: int = 60,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self._make_strategies = make_strategies
        self._store = store
        self._bar_ms = bar_seconds * 1000
        self._strategies: list[Strategy] = []
        self._trading_state = TradingState.ACTIVE
        self.bars = 0
        self.proposed = 0
        self.rejected = 0
        self.strategy_errors = 0

    def on_start(self) -> None:
        self._strategies = list(self._make_strategies())
        if self._store is None or not self._strategies:
            return
        since = self.now_ns() // 1_000_000 - WARMUP_BARS * self._bar_ms
        bars = self._store.load_bars(since_end_ms=since, per_coin=WARMUP_BARS)
        for strategy in self._strategies:
            strategy.warm_up(bars)
        if bars:
            self.log.info("WARMUP_COMPLETE: {} stored bar(s) fed to {}", len(bars),
                          ", ".join(s.strategy_id for s in self._strategies))

    def _on_bar_closed(self, event: BarClosed) -> None:
        self.bars += 1
        for strategy in self._strategies:
            try:
                decision = strategy.on_bar(event.bar)
            except Exception:  # noqa: BLE001 - one plugin's bug must not silence the others
                self.strategy_errors += 1
                self.log.exception("STRATEGY_ERROR: {} failed on the {} bar ending {}; skipped",
                                   strategy.strategy_id, event.bar.coin, event.bar.end_ms)
                continue
            if decision is None or self._trading_state is not TradingState.ACTIVE:
                continue
            self.proposed += len(decision.conditions)
            self.send(ProposeConditions(
                ts_init_ns=self.now_ns(), correlation_id=f"{decision.strategy_id}:{decision.coin}",
                strategy_id=decision.strategy_id, coin=decision.coin, conditions=decision.conditions,
            ))

    def _on_propose_signal(self, signal: ProposeSignal) -> None:
        self.proposed += 1
        self.send(ProposeCondition(ts_init_ns=self.now_ns(), correlation_id=signal.condition.id,
                                   condition=signal.condition))

    def _on_condition_rejected(self, event: ConditionRejected) -> None:
        self.rejected += 1

    def _on_condition_canceled(self, event: ConditionCanceled) -> None:
        return None

    def _on_conditions_replaced(self, event: ConditionsReplaced) -> None:
        return None

    def _on_condition_expired(self, event: ConditionExpired) -> None:
        return None

    def _on_condition_triggered(self, event: ConditionTriggered) -> None:
        return None

    def _on_trading_state_changed(self, event: TradingStateChanged) -> None:
        self._trading_state = event.state

    def _ask_stats(self) -> dict[str, Any]:
        return {"strategies": [s.strategy_id for s in self._strategies], "bars": self.bars,
                "proposed": self.proposed, "rejected": self.rejected, "strategy_errors": self.strategy_errors}
