"""Account-level risk rules, pure: vetting a proposed condition, sizing it, the kill switch.

The RiskGate applies them; they are tested here without threads. Percentages are fractions.

The kill switch watches equity (cash plus open positions at their marks) in an ``EquityWatch``:
the UTC day it is in, that day's starting equity, the all-time peak and the last known equity.
``observe`` is its one transition. A new UTC day starts from the *last known* equity, the
equity at the day change, not from the first observation of the new day: a loss that happened
after midnight and is first seen in that observation counts for the new day.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from state import rules
from state.config import RiskConfig
from state.entry_plan import entry_limit_price
from state.market import MarketRules
from state.models import TradeCondition
from state.types import Direction, from_epoch_ns

ZERO = Decimal(0)
CENT = Decimal("0.01")


def vet_condition(
    condition: TradeCondition,
    *,
    now_ns: int,
    known_coins: Collection[str],
    market: MarketRules,
    last_price: Decimal | None,
    limits: RiskConfig,
) -> str | None:
    """Why ``condition`` must not be armed, or ``None`` when it is sane.

    Checks: a known coin; not already expired; a trigger on the tick grid whose size buys
    an order the market accepts (quantity step, minimums); stop-loss and take-profit within the configured
    maxima and, once rounded to the tick at the trigger price, strictly on the right sides of
    it (a stop below a LONG's entry, above a SHORT's; the target beyond); a trigger price within
    ``max_trigger_distance_pct`` of the last price (a fat finger) when a price is known; for a
    limit entry, a limit price that can be computed (``entry_offset_*``). The size is the whole
    condition's (a scale-in's two legs together).
    """
    if condition.coin not in known_coins:
        return f"coin: {condition.coin} is not traded in this session (known: {', '.join(sorted(known_coins))})"
    deadline = condition.valid_until_ns
    if deadline is not None and deadline <= now_ns:
        return f"valid_until: already expired at engine time {from_epoch_ns(now_ns).isoformat()}"
    if condition.stop_loss_pct > limits.max_stop_loss_pct:
        return f"stop_loss_pct: {condition.stop_loss_pct} is above the maximum {limits.max_stop_loss_pct}"
    if condition.take_profit_pct > limits.max_take_profit_pct:
        return f"take_profit_pct: {condition.take_profit_pct} is above the maximum {limits.max_take_profit_pct}"
    trigger = condition.trigger_price
    if trigger < market.tick_size:
        return f"trigger_price: {trigger} is below one tick ({market.tick_size}) of {condition.coin}"
    if trigger % market.tick_size:
        return f"trigger_price: {trigger} is not on the tick grid of {condition.coin} ({market.tick_size})"
    quantity = rules.entry_quantity(condition.position_size_usd, trigger, market)
    size_problem = rules.order_size_problem(quantity, trigger, market)
    if size_problem is not None:
        return (f"position_size_usd: {condition.position_size_usd} buys {quantity} {condition.coin} "
                f"at {trigger}: {size_problem}")
    if condition.limit_entry:
        field = "entry_offset_ticks" if condition.entry_offset_ticks is not None else "entry_offset_pct"
        try:
            entry_limit_price(condition.direction, trigger, market, offset_ticks=condition.entry_offset_ticks,
                              offset_pct=condition.entry_offset_pct)
        except ValueError as error:
            return f"{field}: the limit price cannot be computed: {error}"
    stop = rules.stop_loss_price(condition.direction, trigger, condition.stop_loss_pct, market)
    target = rules.take_profit_price(condition.direction, trigger, condition.take_profit_pct, market)
    if condition.direction is Direction.LONG:
        if not ZERO < stop < trigger:
            return f"stop_loss_pct: a LONG stop at {stop} is not between 0 and the trigger {trigger}"
        if target <= trigger:
            return f"take_profit_pct: a LONG target at {target} is not above the trigger {trigger} (less than a tick)"
    else:
        if stop <= trigger:
            return f"stop_loss_pct: a SHORT stop at {stop} is not above the trigger {trigger} (less than a tick)"
        if not ZERO < target < trigger:
            return f"take_profit_pct: a SHORT target at {target} is not between 0 and the trigger {trigger}"
    if last_price is not None and last_price > 0:
        distance = abs(trigger - last_price) / last_price
        if distance > limits.max_trigger_distance_pct:
            return (
                f"trigger_price: {trigger} is {distance:.2%} from the last price {last_price} "
                f"(at most {limits.max_trigger_distance_pct:.0%})"
            )
    return None


def position_size(condition: TradeCondition, equity: Decimal, limits: RiskConfig) -> Decimal:
    """The USD size to arm: ``fixed_usd`` keeps the condition's size, ``risk_pct`` sizes so
    that the stop loses ``risk_per_trade_pct`` of equity; both capped at ``max_position_usd``
    and rounded down to the cent."""
    if limits.sizing == "risk_pct":
        wanted = equity * limits.risk_per_trade_pct / condition.stop_loss_pct
    else:
        wanted = condition.position_size_usd
    return min(wanted, limits.max_position_usd).quantize(CENT, rounding=ROUND_DOWN)


def daily_loss_pct(day_start_equity: Decimal, equity: Decimal) -> Decimal:
    """The loss since the day started as a fraction of that day's starting equity (0 if up)."""
    if day_start_equity <= 0 or equity >= day_start_equity:
        return ZERO
    return (day_start_equity - equity) / day_start_equity


def kill_switch_breach(day_start_equity: Decimal, equity: Decimal, limits: RiskConfig) -> str | None:
    """Why the kill switch must trip, or ``None``. ``max_daily_loss_pct = 0`` turns it off."""
    if limits.max_daily_loss_pct <= 0:
        return None
    loss = daily_loss_pct(day_start_equity, equity)
    if loss >= limits.max_daily_loss_pct:
        return (
            f"KILL_SWITCH: daily loss {loss:.2%} (equity {equity:.2f} from {day_start_equity:.2f}) "
            f"reached the limit {limits.max_daily_loss_pct:.2%}"
        )
    return None


def drawdown_pct(peak_equity: Decimal, equity: Decimal) -> Decimal:
    """The fall from the equity peak as a fraction of the peak (0 at or above it)."""
    if peak_equity <= 0 or equity >= peak_equity:
        return ZERO
    return (peak_equity - equity) / peak_equity


def drawdown_breach(peak_equity: Decimal, equity: Decimal, limits: RiskConfig) -> str | None:
    """Why the drawdown kill switch must trip, or ``None``. ``max_drawdown_pct = 0`` turns it off."""
    if limits.max_drawdown_pct <= 0:
        return None
    fall = drawdown_pct(peak_equity, equity)
    if fall >= limits.max_drawdown_pct:
        return (
            f"KILL_SWITCH: drawdown {fall:.2%} (equity {equity:.2f} from the peak {peak_equity:.2f}) "
            f"reached the limit {limits.max_drawdown_pct:.2%}"
        )
    return None


def utc_day(ns: int) -> str:
    """The UTC calendar day (``YYYY-MM-DD``) of an engine timestamp."""
    return from_epoch_ns(ns).date().isoformat()


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityWatch:
    """What the kill switch knows about equity: ``day`` (UTC, engine time) and the equity it
    started with, the highest equity ever seen (``peak``) and the last known ``equity``."""

    day: str
    day_start: Decimal
    peak: Decimal
    equity: Decimal

    @classmethod
    def start(cls, equity: Decimal, day: str, *, saved_day: tuple[str, Decimal] | None = None,
              saved_peak: Decimal | None = None) -> EquityWatch:
        """The watch when the engine starts with ``equity`` on ``day``: the saved day's start
        is kept if it is the same day, else the day starts now at ``equity``; the peak is the
        saved one or ``equity``, whichever is higher."""
        day_start = saved_day[1] if saved_day is not None and saved_day[0] == day else equity
        peak = equity if saved_peak is None else max(saved_peak, equity)
        return cls(day=day, day_start=day_start, peak=peak, equity=equity)

    def observe(self, equity: Decimal, day: str, limits: RiskConfig) -> tuple[EquityWatch, str | None]:
        """The watch after seeing ``equity`` on ``day``, and why the kill switch must trip
        (the daily loss first, then the drawdown) or ``None``. On a new day the day starts at the
        last known equity, then ``equity`` is checked against it."""
        watch = self
        if day != self.day:
            watch = replace(watch, day=day, day_start=self.equity)
        watch = replace(watch, equity=equity, peak=max(watch.peak, equity))
        breach = kill_switch_breach(watch.day_start, equity, limits) or drawdown_breach(watch.peak, equity, limits)
        return watch, breach

    def rebase_peak(self) -> EquityWatch:
        """The peak restarts at the last known equity (an operator resumed after a drawdown halt)."""
        return replace(self, peak=self.equity)


def format_day_start(day: str, equity: Decimal) -> str:
    """The stored form of a day's start: ``"YYYY-MM-DD equity"``."""
    return f"{day} {equity}"


def parse_day_start(text: str) -> tuple[str, Decimal]:
    """Read ``format_day_start``'s form back; ``ValueError`` naming the bad value."""
    day, _, equity = text.partition(" ")
    try:
        value = Decimal(equity)
    except InvalidOperation:
        raise ValueError(f"risk day start: {text!r} is not 'YYYY-MM-DD equity'") from None
    if len(day) != 10 or not value.is_finite():
        raise ValueError(f"risk day start: {text!r} is not 'YYYY-MM-DD equity'")
    return day, value


def parse_equity(text: str, name: str) -> Decimal:
    """A stored equity (the peak); ``ValueError`` naming ``name`` when it is not a number."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name}: stored value {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{name}: stored value {text!r} is not a number")
    return value
