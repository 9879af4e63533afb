"""Breakout: trade the break of the last ``lookback_bars`` bars' range.

At every bar close of a coin, once ``lookback_bars`` bars have closed, the strategy replaces its
conditions on that coin with a LONG ABOVE the highest high and a SHORT BELOW the lowest low of
the last ``lookback_bars`` closed bars, with the configured stop, take-profit and size, valid
until the next bar close (after a gap in trading: until the end of the bar the closing tick
opened, so the pair is alive when trading resumes). It does so whether or not a position is open; the Sniper's per-coin
limit keeps the pair from firing while one is.

Condition ids are derived from the coin and the bar's end time, and ``created_at`` is the bar's
end, so two replays of the same data propose identical conditions.

Every condition carries the table's entry plan (``state/entry_plan.py``, the same keys and
meaning as ``TradeCondition``'s): ``entry_type`` (``"market"`` by default, or ``"limit"``),
``entry_offset_ticks`` or ``entry_offset_pct``, ``entry_timeout_s``, ``entry_plan_b_pct``,
``scale_in_fraction``, ``scale_in_pullback_pct``, ``scale_in_timeout_s``. Without them the
conditions enter at market, as they always did.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from state.bars import Bar, next_close_ms
from state.entry_plan import ENTRY_FIELDS, EntryType, entry_plan_problem
from state.models import TradeCondition
from state.strategies.base import ReplaceConditions, StrategyContext, StrategySettingsError
from state.types import Direction, TriggerType, from_epoch_ns, parse_enum, to_decimal, whole_number

_WHOLE_ENTRY_FIELDS = ("entry_offset_ticks", "entry_timeout_s", "scale_in_timeout_s")
_OWN_FIELDS = ("lookback_bars", "stop_loss_pct", "take_profit_pct", "position_size_usd")


def _parse_entry_field(key: str, value: Any) -> Any:
    """One entry-plan key parsed as ``TradeCondition`` parses it; ``ValueError`` naming the key."""
    if key == "entry_type":
        return parse_enum(EntryType, value, key)
    if key in _WHOLE_ENTRY_FIELDS:
        return whole_number(value, key)
    return to_decimal(value, key)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakoutSettings:
    lookback_bars: int = 20
    stop_loss_pct: Decimal = Decimal("0.005")
    take_profit_pct: Decimal = Decimal("0.005")
    position_size_usd: Decimal = Decimal("100")
    # The entry plan of every condition (state/entry_plan.py); market by default.
    entry_type: EntryType = EntryType.MARKET
    entry_offset_ticks: int | None = None
    entry_offset_pct: Decimal | None = None
    entry_timeout_s: int | None = None
    entry_plan_b_pct: Decimal | None = None
    scale_in_fraction: Decimal | None = None
    scale_in_pullback_pct: Decimal | None = None
    scale_in_timeout_s: int | None = None

    def entry_plan(self) -> dict[str, Any]:
        """The entry-plan fields every condition gets (``TradeCondition``'s names)."""
        return {name: getattr(self, name) for name in ENTRY_FIELDS}

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> BreakoutSettings:
        """Validate a ``[strategist.breakout]`` table; every problem at once."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        known = _OWN_FIELDS + ENTRY_FIELDS
        entry_problems = 0
        for key, value in raw.items():
            if key not in known:
                problems.append(f"{key}: unknown key (known: {', '.join(known)})")
            elif key in ENTRY_FIELDS:
                try:
                    values[key] = _parse_entry_field(key, value)
                except ValueError as error:
                    problems.append(str(error))
                    entry_problems += 1
            elif key == "lookback_bars":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                    problems.append(f"lookback_bars: must be a whole number from 1 to 10000, not {value!r}")
                else:
                    values[key] = value
            else:
                try:
                    number = to_decimal(value, key)
                except ValueError:
                    problems.append(f"{key}: must be a number, not {value!r}")
                    continue
                upper = Decimal("1") if key != "position_size_usd" else None
                if number <= 0 or (upper is not None and number >= upper):
                    bound = "between 0 and 1 (a fraction: 0.005 is 0.5 %)" if upper else "greater than 0"
                    problems.append(f"{key}: must be {bound}, not {value!r}")
                else:
                    values[key] = number
        if entry_problems == 0:  # each key parsed: now whether they make a plan together
            plan = {name: values.get(name) for name in ENTRY_FIELDS}
            plan["entry_type"] = values.get("entry_type", EntryType.MARKET)
            problem = entry_plan_problem(plan)
            if problem is not None:
                problems.append(f"{problem[0]}: {problem[1]}")
        if problems:
            raise StrategySettingsError(problems)
        return cls(**values)


class Breakout:
    """See the module docstring. State: the last ``lookback_bars`` bars of each coin."""

    strategy_id = "breakout"

    def __init__(self, settings: BreakoutSettings, context: StrategyContext) -> None:
        self.settings = settings
        self.bar_ms = context.bar_seconds * 1000
        self._bars: dict[str, deque[Bar]] = {}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: StrategyContext) -> Breakout:
        return cls(BreakoutSettings.parse(settings), context)

    def warm_up(self, bars: Iterable[Bar]) -> None:
        for bar in bars:
            self._remember(bar)

    def on_bar(self, bar: Bar) -> ReplaceConditions | None:
        window = self._remember(bar)
        if len(window) < self.settings.lookback_bars:
            return None
        high, low = breakout_levels(window)
        return ReplaceConditions(
            strategy_id=self.strategy_id,
            coin=bar.coin,
            conditions=breakout_conditions(bar, high, low, self.settings, self.bar_ms),
        )

    def _remember(self, bar: Bar) -> deque[Bar]:
        window = self._bars.get(bar.coin)
        if window is None:
            window = self._bars[bar.coin] = deque(maxlen=self.settings.lookback_bars)
        if window and bar.end_ms <= window[-1].end_ms:
            return window  # already seen (a warm-up overlapping live bars)
        window.append(bar)
        return window


def breakout_levels(bars: Iterable[Bar]) -> tuple[Decimal, Decimal]:
    """(highest high, lowest low) of ``bars``."""
    window = list(bars)
    if not window:
        raise ValueError("bars: need at least one bar")
    return max(b.high for b in window), min(b.low for b in window)


def breakout_conditions(
    bar: Bar, high: Decimal, low: Decimal, settings: BreakoutSettings, bar_ms: int
) -> tuple[TradeCondition, ...]:
    """The LONG-above-high and SHORT-below-low pair made at ``bar``'s close, valid until the
    next bar close (after a gap in trading, the end of the bar the closing tick opened)."""
    created = from_epoch_ns(bar.end_ms * 1_000_000)
    valid_until = from_epoch_ns(next_close_ms(bar, bar_ms) * 1_000_000)
    common: dict[str, Any] = {
        "coin": bar.coin,
        "stop_loss_pct": settings.stop_loss_pct,
        "take_profit_pct": settings.take_profit_pct,
        "position_size_usd": settings.position_size_usd,
        "strategy_id": Breakout.strategy_id,
        "created_at": created,
        "valid_until": valid_until,
        **settings.entry_plan(),
    }
    lookback = settings.lookback_bars
    return (
        TradeCondition(
            id=f"bo-{bar.coin}-{bar.end_ms}-L", direction=Direction.LONG, trigger_type=TriggerType.ABOVE,
            trigger_price=high, reasoning=f"breakout above the {lookback}-bar high {high}", **common,
        ),
        TradeCondition(
            id=f"bo-{bar.coin}-{bar.end_ms}-S", direction=Direction.SHORT, trigger_type=TriggerType.BELOW,
            trigger_price=low, reasoning=f"breakout below the {lookback}-bar low {low}", **common,
        ),
    )
