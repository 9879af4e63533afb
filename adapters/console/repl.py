"""The interactive console: a Python REPL bound to the running engine, which keeps trading.

``python run.py --config config.toml --repl`` opens it. In scope: ``engine``, a handle per actor
(``feed``, ``strategist``, ``risk_gate``, ``sniper``, ``executor``, ``exit_monitor``,
``invariants``, ``journal``: each answers ``.ping()``, ``.stats()`` and ``.ask(name, ...)``) and
the helpers below, each with a docstring (``help(arm)``). Tab completes names and attributes.
Results are pretty-printed. Ctrl-C cancels the line being typed; Ctrl-D, ``exit()`` or
``quit()`` leaves the console, and the engine then stops gracefully with its report.

The console talks to the actors only through the engine's public API (asks with timeouts), so a
typo can never block or corrupt an actor.
"""

from __future__ import annotations

import code
import math
import pprint
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import is_dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from state.entry_plan import ENTRY_FIELDS
from state.models import TradeCondition
from state.store import jsonable
from state.types import Direction, TriggerType, coin_symbol, parse_enum, positive_decimal

BANNER = """\
Engine console ({source}{simulated}, data in {data_dir}). The engine keeps trading while you type.
  status()  conditions()  positions()  history(coin=None, days=None)  summary()
  arm(coin, direction, trigger, stop_loss_pct, take_profit_pct, size_usd, valid_for="1h")
  cancel(condition_id)  close(position_id)  halt()  resume()
  engine, and a handle per actor: feed strategist risk_gate sniper executor exit_monitor invariants journal
help(arm) explains a helper; Ctrl-D or exit() stops the engine and prints the session report."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_VALID_FOR_S = 3650 * 86400  # ten years; longer is None (never expires)
_TRIGGER = re.compile(r"^\s*(>|<|above|below)\s*([0-9.]+)\s*$", re.IGNORECASE)


def parse_duration(value: str | float | int | None) -> timedelta | None:
    """``"1h"``, ``"30m"``, ``"45s"``, ``"2d"``, a number of seconds, or ``None`` (no expiry)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"valid_for: expected e.g. '1h', '30m', '45s', '2d' or seconds, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"valid_for: must be a positive, finite duration, got {value!r}")
    if seconds > MAX_VALID_FOR_S:
        raise ValueError(f"valid_for: at most {MAX_VALID_FOR_S // 86400} days (or None: never expires), got {value!r}")
    return timedelta(seconds=seconds)


def parse_trigger(trigger: Any, last_price: Decimal | None) -> tuple[TriggerType, Decimal]:
    """``">142.5"`` / ``"above 142.5"`` / ``"<142.5"`` / ``"below 142.5"``, or a bare number:
    ABOVE if it is above the last price, BELOW if below."""
    if isinstance(trigger, str) and (match := _TRIGGER.match(trigger)):
        kind = TriggerType.ABOVE if match.group(1).lower() in (">", "above") else TriggerType.BELOW
        return kind, positive_decimal(match.group(2), "trigger")
    try:
        price = positive_decimal(trigger, "trigger")
    except ValueError as error:
        raise ValueError(f"{error} (expected '>142.5', '<142.5' or a price)") from None
    if last_price is None:
        raise ValueError(f"trigger: no price seen yet for this coin; say '>{price}' or '<{price}'")
    if price == last_price:
        raise ValueError(f"trigger: {price} is the last price; say '>{price}' or '<{price}'")
    return (TriggerType.ABOVE if price > last_price else TriggerType.BELOW), price


class Console:
    """The helpers of the console, bound to one engine (also usable from scripts)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def status(self) -> dict[str, Any]:
        """The engine at a glance: feed, trading state, balance, realized PnL, armed, open."""
        engine = self.engine
        snap = engine.sniper.snapshot()
        feed = engine.handles["feed"].stats()
        return {
            "run_id": engine.run_id,
            "feed": engine.config.feed.source + (" (SIMULATED)" if engine.source is not None and engine.source.simulated else ""),
            "ticks": feed.get("ticks"),
            "bars": feed.get("bars"),
            "prices": {coin: str(price) for coin, (price, _) in sorted(engine.board.all().items())},
            "trading_state": engine.risk_gate.trading_state(),
            "balance": str(snap.balance),
            "realized_pnl": str(snap.realized_pnl),
            "fees_paid": str(snap.fees_paid),
            "armed_conditions": len(snap.conditions),
            "open_positions": len(snap.positions),
            "restarts": {role: n for role, n in engine.restarts.items() if n},
            "stale": feed.get("stale", []),
            "top_of_book": feed.get("top_of_book", {}),
            "reconnects": (feed.get("source") or {}).get("reconnects"),
        }

    def conditions(self) -> list[dict[str, Any]]:
        """The armed conditions, oldest first."""
        return [
            {"id": c.id, "coin": c.coin, "direction": c.direction.value,
             "trigger": f"{'>' if c.trigger_type is TriggerType.ABOVE else '<'} {c.trigger_price}",
             "stop_loss_pct": str(c.stop_loss_pct), "take_profit_pct": str(c.take_profit_pct),
             "size_usd": str(c.position_size_usd), "strategy": c.strategy_id,
             "valid_until": c.valid_until.isoformat() if c.valid_until else None}
            for c in self.engine.sniper.snapshot().conditions
        ]

    def positions(self) -> list[dict[str, Any]]:
        """The active positions (pending, open, closing) with their exit levels and marks."""
        keys = ("id", "coin", "direction", "status", "entry_price", "quantity", "stop_loss_price",
                "take_profit_price", "current_price", "unrealized_pnl", "fees_paid", "condition_id")
        return [{k: jsonable(getattr(p, k)) for k in keys} for p in self.engine.sniper.snapshot().positions]

    def arm(self, coin: str, direction: str, trigger: Any, stop_loss_pct: Any, take_profit_pct: Any,
            size_usd: Any, valid_for: str | float | None = "1h", **entry: Any) -> str:
        """Arm a condition through the Strategist and the RiskGate; returns its id.

        ``arm("SOL", "long", ">142.5", 0.02, 0.015, 500, valid_for="1h")``: LONG SOL if the
        price goes above 142.50, stop-loss 2 %, take-profit 1.5 %, $500, valid for one hour.
        ``trigger`` is ``">x"``/``"<x"`` (or ``"above x"``/``"below x"``) or a bare price (above
        or below the last price decides). Percentages are fractions. ``valid_for=None`` never
        expires. ``entry`` takes the condition's entry plan (``state/entry_plan.py``), e.g.
        ``entry_type="limit", entry_offset_ticks=2, entry_timeout_s=30, entry_plan_b_pct=0.001``.
        Raises ``ValueError`` with the reason if the RiskGate or the Sniper rejects it.
        """
        unknown = sorted(set(entry) - set(ENTRY_FIELDS))
        if unknown:
            raise ValueError(f"{unknown[0]}: not an entry plan field (one of {', '.join(ENTRY_FIELDS)})")
        engine = self.engine
        coin = coin_symbol(coin)
        direction = parse_enum(Direction, direction, "direction")
        last = engine.board.last(coin)
        trigger_type, price = parse_trigger(trigger, last[0] if last else None)
        now = datetime.fromtimestamp(engine.clock.now_ns() / 1e9).astimezone()
        duration = parse_duration(valid_for)
        condition = TradeCondition(
            coin=coin, direction=direction, trigger_price=price,
            trigger_type=trigger_type, stop_loss_pct=stop_loss_pct, take_profit_pct=take_profit_pct,
            position_size_usd=size_usd, created_at=now, reasoning="armed at the console",
            valid_until=None if duration is None else now + duration, **entry,
        )
        armed = engine.propose_and_wait(condition)
        return armed.id

    def cancel(self, condition_id: str) -> str:
        """Disarm a condition by id (see ``conditions()``)."""
        return self.engine.sniper.cancel_condition(condition_id, "canceled at the console")

    def close(self, position_id: str) -> str:
        """Close an open position at market (see ``positions()``)."""
        return self.engine.sniper.close_position(position_id, "MANUAL")

    def halt(self, reason: str = "halted at the console") -> str:
        """Stop new entries (exits still work); persists across restarts until ``resume()``."""
        return self.engine.risk_gate.halt(reason)

    def resume(self, reason: str = "resumed at the console") -> str:
        """Allow entries again after ``halt()`` or a kill switch."""
        return self.engine.risk_gate.resume(reason)

    def history(self, coin: str | None = None, days: float | None = None) -> list[dict[str, Any]]:
        """Trades from the journal, newest last; filter by ``coin`` and the last ``days``."""
        return self.engine.journal.trades(coin=coin.upper() if coin else None, days=days)

    def summary(self) -> dict[str, Any]:
        """This session's totals so far and the journal's daily PnL rows."""
        engine = self.engine
        return {
            "run": engine.journal.run_totals(engine.run_id, str(engine.start_equity)),
            "daily": engine.journal.daily(),
        }

    def namespace(self) -> dict[str, Any]:
        names: dict[str, Any] = {"engine": self.engine}
        names.update(self.engine.handles)
        for helper in ("status", "conditions", "positions", "arm", "cancel", "close", "halt", "resume",
                       "history", "summary"):
            names[helper] = getattr(self, helper)
        return names


def _pretty(value: Any) -> None:
    """Show results readably: domain objects as plain data, everything else as Python does."""
    if value is None:
        return
    import builtins

    builtins._ = value  # type: ignore[attr-defined]  # as the default hook does
    shown = jsonable(value) if is_dataclass(value) and not isinstance(value, type) else value
    print(pprint.pformat(shown, width=110, sort_dicts=False))


def _enable_completion(namespace: dict[str, Any]) -> None:
    try:
        import readline
        import rlcompleter
    except ImportError:  # no readline on this platform: the console works without completion
        return
    readline.set_completer(rlcompleter.Completer(namespace).complete)
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")


class _EngineConsole(code.InteractiveConsole):
    """Leaves when the engine stops by itself (kill switch, supervisor halt) too."""

    def __init__(self, namespace: dict[str, Any], should_stop: Callable[[], bool]) -> None:
        super().__init__(namespace)
        self._should_stop = should_stop

    def raw_input(self, prompt: str = "") -> str:
        if self._should_stop():
            raise EOFError
        return super().raw_input(prompt)


def run_repl(engine: Any, *, stop_requested: threading.Event | None = None) -> None:
    """Run the console on the calling thread until the user leaves it (or the engine ends)."""
    console = Console(engine)
    namespace = console.namespace()
    _enable_completion(namespace)
    previous_hook = sys.displayhook
    sys.displayhook = _pretty
    stop = stop_requested or threading.Event()
    repl = _EngineConsole(namespace, lambda: stop.is_set() or engine.stopped or engine.killed.is_set()
                                           or engine.gave_up.is_set()
                                           or getattr(engine, "venue_halted", threading.Event()).is_set())
    simulated = " SIMULATED market" if engine.source is not None and engine.source.simulated else ""
    try:
        repl.interact(
            banner=BANNER.format(source=engine.config.feed.source, simulated=simulated, data_dir=engine.data_dir),
            exitmsg="Leaving the console: stopping the engine...",
        )
    except SystemExit:  # exit() / quit()
        print("Leaving the console: stopping the engine...", flush=True)
    finally:
        sys.displayhook = previous_hook
