"""Account-level risk rules, pure: vetting a proposed condition, sizing it, the kill switch.

The RiskGate applies them; they are tested here without threads. Percentages are fractions.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import ROUND_DOWN, Decimal

from state import rules
from state.config import RiskConfig
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
    ``max_trigger_distance_pct`` of the last price (a fat finger) when a price is known.
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
