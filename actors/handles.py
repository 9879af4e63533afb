"""Synchronous handles on actors for code outside them: the REPL, scripts and tests.

A handle names a role, not an actor, so it always reaches the current actor, also after a
restart (a call made while the role restarts waits for it, up to the timeout). Every call is an
``ask`` with a timeout; a ``ValueError`` raised by the actor (a bad condition, an unknown id)
comes back to the caller as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.bus import JOURNAL, RISK_GATE, SNIPER, Bus
from state.messages import Request
from state.models import SniperSnapshot, TradeCondition


class ActorHandle:
    def __init__(self, bus: Bus, role: str, timeout: float = 10.0) -> None:
        self._bus = bus
        self.role = role
        self.timeout = timeout

    def ask(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._bus.ask(
            self.role, Request(name=name, args=args, kwargs=tuple(kwargs.items())), self.timeout
        )

    def ping(self) -> str:
        return self.ask("ping")

    def stats(self) -> dict[str, Any]:
        return self.ask("stats")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.role} ({self._bus.state(self.role).value})>"


class SniperHandle(ActorHandle):
    """``engine.sniper``: arm, replace and cancel conditions, close positions, take snapshots."""

    def __init__(self, bus: Bus, timeout: float = 10.0) -> None:
        super().__init__(bus, SNIPER, timeout)

    def add_condition(self, condition: TradeCondition) -> str:
        """Vet and size one condition at the RiskGate exactly as ``engine.propose`` would (coins
        of the session, stop and target sane on the tick grid, order size, trading state), then
        arm it; returns its id. Raises ``ValueError`` naming what is wrong."""
        return self.ask("add_condition", self._vetted(condition))

    def set_conditions(
        self, conditions: Iterable[TradeCondition], strategy_id: str | None = None
    ) -> tuple[str, ...]:
        """Replace the armed conditions (all of them, or only ``strategy_id``'s) with these,
        atomically: all are vetted by the RiskGate, then validated, before any is armed."""
        return self.ask("set_conditions", tuple(self._vetted(c) for c in conditions), strategy_id)

    def _vetted(self, condition: TradeCondition) -> TradeCondition:
        """The RiskGate's vetted and sized copy of ``condition`` (``ValueError`` if rejected)."""
        if not isinstance(condition, TradeCondition):
            raise ValueError(f"condition: expected a TradeCondition, got {type(condition).__name__}")
        return self._bus.ask(RISK_GATE, Request(name="vet", args=(condition,), kwargs=()), self.timeout)

    def cancel_condition(self, condition_id: str, reason: str = "canceled") -> str:
        return self.ask("cancel_condition", condition_id, reason)

    def close_position(self, position_id: str, reason: str = "MANUAL") -> str:
        """Send a market exit for an open position at the coin's last price."""
        return self.ask("close_position", position_id, reason)

    def snapshot(self) -> SniperSnapshot:
        return self.ask("snapshot")


class RiskGateHandle(ActorHandle):
    def __init__(self, bus: Bus, timeout: float = 10.0) -> None:
        super().__init__(bus, RISK_GATE, timeout)

    def trading_state(self) -> str:
        return self.ask("trading_state")

    def set_trading_state(self, state: str, reason: str = "requested") -> str:
        return self.ask("set_trading_state", state, reason)

    def halt(self, reason: str = "requested") -> str:
        """HALTED: no new entries; exits still pass."""
        return self.set_trading_state("HALTED", reason)

    def resume(self, reason: str = "resumed") -> str:
        return self.set_trading_state("ACTIVE", reason)

    def kill_switch(self, reason: str = "requested") -> str:
        """HALT, close every open position, and end the session with exit code 99."""
        return self.ask("kill_switch", reason)


class JournalHandle(ActorHandle):
    """``engine.journal``: read the trade journal (every query flushes pending rows first)."""

    def __init__(self, bus: Bus, timeout: float = 10.0) -> None:
        super().__init__(bus, JOURNAL, timeout)

    def trades(self, coin: str | None = None, days: float | None = None, run_id: str | None = None,
               status: str | None = None) -> list[dict[str, Any]]:
        return self.ask("trades", coin=coin, days=days, run_id=run_id, status=status)

    def daily(self, days: float | None = None) -> list[dict[str, Any]]:
        return self.ask("daily", days=days)

    def orders(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return self.ask("orders", run_id=run_id)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self.ask("events", kind)

    def fills(self, run_id: str | None = None, client_order_id: str | None = None) -> list[dict[str, Any]]:
        return self.ask("fills", run_id=run_id, client_order_id=client_order_id)

    def order_events(self, client_order_id: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        return self.ask("order_events", client_order_id=client_order_id, run_id=run_id)

    def run_totals(self, run_id: str, start_equity: Any) -> dict[str, Any]:
        return self.ask("run_totals", run_id, start_equity)
