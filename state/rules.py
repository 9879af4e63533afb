"""Pure trading rules: triggers, exit levels, sizing, PnL, fees and position limits.

Each rule is applied in exactly one place in the engine (the Sniper for all of these) and is
tested here without threads. No rule reads a clock, a file or a global.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from state.market import MarketRules, Rounding
from state.types import Direction, ExitReason, Side, TriggerType

ONE = Decimal(1)
ZERO = Decimal(0)


# --- triggers -----------------------------------------------------------------------------

def crosses(trigger_type: TriggerType, trigger_price: Decimal, price: Decimal) -> bool:
    """ABOVE fires strictly above the level, BELOW strictly below it."""
    if trigger_type is TriggerType.ABOVE:
        return price > trigger_price
    return price < trigger_price


def is_on_reset_side(trigger_type: TriggerType, trigger_price: Decimal, price: Decimal) -> bool:
    """True when ``price`` is at or on the far side of the level, so that a later move past
    it is a real crossing (used by ``require_cross`` conditions)."""
    if trigger_type is TriggerType.ABOVE:
        return price <= trigger_price
    return price >= trigger_price


# --- entries and exit levels -----------------------------------------------------------------

def entry_side(direction: Direction) -> Side:
    return Side.BUY if direction is Direction.LONG else Side.SELL


def exit_side(direction: Direction) -> Side:
    return Side.SELL if direction is Direction.LONG else Side.BUY


def entry_quantity(size_usd: Decimal, price: Decimal, market: MarketRules) -> Decimal:
    """``size_usd / price`` rounded down to the coin's quantity step."""
    return market.round_qty_down(size_usd / price)


def order_size_problem(quantity: Decimal, price: Decimal, market: MarketRules) -> str | None:
    """Why the venue would refuse an order of ``quantity`` at ``price``, or ``None``."""
    if quantity <= 0:
        return (f"rounds to no quantity at all (quantity step {market.qty_step}, "
                f"minimum notional {market.min_notional})")
    if quantity < market.min_qty:
        return f"{quantity} is below the minimum quantity {market.min_qty}"
    if quantity * price < market.min_notional:
        return f"{quantity} x {price} is below the minimum notional {market.min_notional}"
    return None


def stop_loss_price(
    direction: Direction, entry_price: Decimal, stop_loss_pct: Decimal, market: MarketRules
) -> Decimal:
    """The stop level, rounded to the tick toward the entry (never to the riskier side).

    LONG 42000 with a 2 % stop gives 41160; SHORT 42000 gives 42840.
    """
    if direction is Direction.LONG:
        return market.round_price(entry_price * (ONE - stop_loss_pct), Rounding.UP)
    return market.round_price(entry_price * (ONE + stop_loss_pct), Rounding.DOWN)


def take_profit_price(
    direction: Direction, entry_price: Decimal, take_profit_pct: Decimal, market: MarketRules
) -> Decimal:
    """The take-profit level, rounded to the tick toward the entry."""
    if direction is Direction.LONG:
        return market.round_price(entry_price * (ONE + take_profit_pct), Rounding.DOWN)
    return market.round_price(entry_price * (ONE - take_profit_pct), Rounding.UP)


def exit_levels(
    direction: Direction,
    entry_price: Decimal,
    stop_loss_pct: Decimal,
    take_profit_pct: Decimal,
    market: MarketRules,
) -> tuple[Decimal, Decimal | None]:
    """Stop and target from the fill price. A level that rounding would put on or past the
    entry (a stop narrower than one tick) is pushed to the nearest tick beyond the entry. A
    SHORT target that would be zero or below (an entry one tick above zero) is ``None``."""
    stop = stop_loss_price(direction, entry_price, stop_loss_pct, market)
    target: Decimal | None = take_profit_price(direction, entry_price, take_profit_pct, market)
    tick = market.tick_size
    if direction is Direction.LONG:
        stop = min(stop, market.round_price(entry_price - tick, Rounding.DOWN))
        target = max(target, market.round_price(entry_price + tick, Rounding.UP))
    else:
        stop = max(stop, market.round_price(entry_price + tick, Rounding.UP))
        target = min(target, market.round_price(entry_price - tick, Rounding.DOWN))
        if target <= 0:
            target = None
    return stop, target


def exit_trigger(
    direction: Direction,
    price: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
) -> ExitReason | None:
    """Which exit a price hits. The stop is checked first: a price that somehow satisfies
    both (it cannot with valid levels) is treated as a stop."""
    if direction is Direction.LONG:
        if stop_loss is not None and price <= stop_loss:
            return ExitReason.STOP_LOSS
        if take_profit is not None and price >= take_profit:
            return ExitReason.TAKE_PROFIT
    else:
        if stop_loss is not None and price >= stop_loss:
            return ExitReason.STOP_LOSS
        if take_profit is not None and price <= take_profit:
            return ExitReason.TAKE_PROFIT
    return None


# --- money ---------------------------------------------------------------------------------

def gross_pnl(direction: Direction, quantity: Decimal, entry: Decimal, price: Decimal) -> Decimal:
    """quantity x (price - entry) for LONG, quantity x (entry - price) for SHORT."""
    if direction is Direction.LONG:
        return quantity * (price - entry)
    return quantity * (entry - price)


def net_pnl(
    direction: Direction, quantity: Decimal, entry: Decimal, price: Decimal, fees: Decimal
) -> Decimal:
    return gross_pnl(direction, quantity, entry, price) - fees


def taker_fee(quantity: Decimal, price: Decimal, fee_rate: Decimal) -> Decimal:
    return quantity * price * fee_rate


def slipped_price(
    side: Side, reference_price: Decimal, slippage_bps: Decimal, market: MarketRules
) -> Decimal:
    """The reference price moved by ``slippage_bps`` against the trader, rounded to the tick
    against the trader too (a buy pays up, a sell receives less)."""
    move = reference_price * slippage_bps / Decimal(10_000)
    if side is Side.BUY:
        return market.round_price(reference_price + move, Rounding.UP)
    return market.round_price(reference_price - move, Rounding.DOWN)


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"))


# --- position-structure limits ---------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class PositionLimits:
    max_positions: int = 5
    max_per_coin: int = 1
    max_exposure_pct: Decimal = Decimal("0.10")

    def __post_init__(self) -> None:
        if self.max_positions < 1:
            raise ValueError(f"max_positions: must be at least 1, got {self.max_positions}")
        if self.max_per_coin < 1:
            raise ValueError(f"max_per_coin: must be at least 1, got {self.max_per_coin}")
        if not ZERO < self.max_exposure_pct <= ONE:
            raise ValueError(
                f"max_exposure_pct: must be in (0, 1], got {self.max_exposure_pct}"
            )


@dataclass(frozen=True, slots=True)
class ActiveExposure:
    coin: str
    exposure_usd: Decimal


def entry_limit_breach(
    coin: str,
    size_usd: Decimal,
    active: Iterable[ActiveExposure],
    balance: Decimal,
    limits: PositionLimits,
) -> str | None:
    """Why a new entry would break a position-structure limit, or ``None`` if it fits.

    ``active`` lists the open and pending positions (pending entries count at their
    requested size).
    """
    positions = list(active)
    if len(positions) >= limits.max_positions:
        return f"max_positions: {len(positions)} of {limits.max_positions} already active"
    same_coin = sum(1 for p in positions if p.coin == coin)
    if same_coin >= limits.max_per_coin:
        return f"max_per_coin: {same_coin} of {limits.max_per_coin} already active on {coin}"
    exposure = sum((p.exposure_usd for p in positions), ZERO)
    cap = balance * limits.max_exposure_pct
    if exposure + size_usd > cap:
        return (
            f"max_exposure_pct: {exposure} open or pending + {size_usd} new would exceed "
            f"{cap} ({limits.max_exposure_pct} of balance {balance})"
        )
    return None
