"""How a triggered condition enters: at market, or with a limit order, a plan B and a scale-in leg.

A condition (``state/models.TradeCondition``) carries its entry plan as flat fields, validated
by ``entry_plan_problem``; the functions here are the pure decisions the Sniper takes on them.

- ``entry_type = "market"`` (default; any case): one market order for the whole size, as always.
- ``entry_type = "limit"``: a GTC limit order at the trigger moved by an offset, given in ticks
  (``entry_offset_ticks``) or as a fraction of the trigger (``entry_offset_pct``). A positive
  offset is what the trader accepts to pay beyond the trigger (a buy limit above it, a sell
  limit below it: the order takes at once up to that price); a negative one asks for a better
  price than the trigger (it rests). The price is rounded to the tick in the trader's favor
  (a buy down, a sell up). ``entry_timeout_s`` is how long it may work.
- **Plan B** at the time limit, for what has not filled: with ``entry_plan_b_pct`` the
  executable price (the ask for a buy, the bid for a sell, from a fresh top of book, else the
  last trade) is compared with the trigger: within that distance against the trader (or
  better) the rest is taken at market; beyond it, or without ``entry_plan_b_pct``, the rest
  is canceled. Whatever filled stays as a smaller position with its exits.
- **Scale-in**: with ``scale_in_fraction`` that share of the size is held back from the first
  leg; once the first leg filled, a second limit order for it rests at the first pullback
  level (``scale_in_pullback_pct`` below the average entry price for a long, above it for a
  short) for ``scale_in_timeout_s``, then is canceled if not filled.

``EntryPlan`` is what a position remembers of its condition's plan once it triggered (the
trigger, the legs, the deadlines on engine time and the plan B decided), so that a restart
resumes it; ``state/portfolio.py`` carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from state.market import MarketRules, Rounding
from state.types import Direction

ZERO = Decimal(0)
ONE = Decimal(1)
MAX_OFFSET_TICKS = 10_000
MAX_OFFSET_PCT = Decimal("0.10")  # a limit 10 % away from the trigger is a typing mistake
MAX_TIMEOUT_S = 7 * 24 * 3600


class EntryType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class PlanB(StrEnum):
    TAKE = "TAKE"  # take the rest at market
    CANCEL = "CANCEL"  # cancel the rest; what filled stays


ENTRY_FIELDS = (
    "entry_type", "entry_offset_ticks", "entry_offset_pct", "entry_timeout_s", "entry_plan_b_pct",
    "scale_in_fraction", "scale_in_pullback_pct", "scale_in_timeout_s",
)
"""The condition's fields that make its entry plan (all optional but ``entry_type``)."""


def entry_plan_problem(values: dict[str, Any]) -> tuple[str, str] | None:
    """``(field, why)`` for the first field of an entry plan that cannot be used, else ``None``.

    ``values`` holds the fields of ``ENTRY_FIELDS``, already parsed (``EntryType``, ``int``,
    ``Decimal`` or ``None``)."""
    kind = values["entry_type"]
    ticks, pct = values.get("entry_offset_ticks"), values.get("entry_offset_pct")
    timeout, plan_b = values.get("entry_timeout_s"), values.get("entry_plan_b_pct")
    if kind is EntryType.MARKET:
        for name in ("entry_offset_ticks", "entry_offset_pct", "entry_timeout_s", "entry_plan_b_pct"):
            if values.get(name) is not None:
                return name, "only for entry_type LIMIT (a market entry has no limit price or time limit)"
    else:
        if ticks is not None and pct is not None:
            return "entry_offset_pct", "give the offset in ticks or as a fraction, not both"
        if ticks is not None and abs(ticks) > MAX_OFFSET_TICKS:
            return "entry_offset_ticks", f"at most {MAX_OFFSET_TICKS} ticks either way, got {ticks}"
        if pct is not None and abs(pct) >= MAX_OFFSET_PCT:
            return "entry_offset_pct", f"must be within ±{MAX_OFFSET_PCT} (a fraction of the trigger), got {pct}"
        if timeout is None:
            return "entry_timeout_s", "a limit entry needs a time limit in seconds"
        if not 0 < timeout <= MAX_TIMEOUT_S:
            return "entry_timeout_s", f"must be in (0, {MAX_TIMEOUT_S}] seconds, got {timeout}"
        if plan_b is not None and not ZERO <= plan_b < MAX_OFFSET_PCT:
            return "entry_plan_b_pct", f"must be in [0, {MAX_OFFSET_PCT}) (a fraction of the trigger), got {plan_b}"
    share, pullback = values.get("scale_in_fraction"), values.get("scale_in_pullback_pct")
    scale_timeout = values.get("scale_in_timeout_s")
    if share is None:
        for name in ("scale_in_pullback_pct", "scale_in_timeout_s"):
            if values.get(name) is not None:
                return name, "only with scale_in_fraction (the share of the size held back for the second leg)"
        return None
    if not ZERO < share < ONE:
        return "scale_in_fraction", f"must be a fraction between 0 and 1 of the size, got {share}"
    if pullback is None:
        return "scale_in_pullback_pct", "a scale-in needs the pullback level (a fraction of the entry price)"
    if not ZERO < pullback < MAX_OFFSET_PCT:
        return "scale_in_pullback_pct", f"must be in (0, {MAX_OFFSET_PCT}), got {pullback}"
    if scale_timeout is None:
        return "scale_in_timeout_s", "a scale-in needs a time limit in seconds"
    if not 0 < scale_timeout <= MAX_TIMEOUT_S:
        return "scale_in_timeout_s", f"must be in (0, {MAX_TIMEOUT_S}] seconds, got {scale_timeout}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryPlan:
    """A triggered position's entry plan. ``first_leg``/``second_leg``: the quantities of the
    entry order (the limit, or at market) and of the scale-in leg (0: none). ``deadline_ms``:
    engine time (ms) at which a limit entry still working times out (``None``: market entry).
    ``plan_b``: what was decided at that time (``None`` before), ``note`` why. ``add_placed``:
    the scale-in leg was placed; ``add_deadline_ms``: when it is canceled if still working."""

    trigger_price: Decimal
    first_leg: Decimal
    timeout_s: int | None = None
    deadline_ms: int | None = None
    plan_b_pct: Decimal | None = None
    plan_b: PlanB | None = None
    note: str = ""
    second_leg: Decimal = ZERO
    pullback_pct: Decimal | None = None
    scale_in_timeout_s: int | None = None
    add_placed: bool = False
    add_deadline_ms: int | None = None

    def __post_init__(self) -> None:
        for name in ("trigger_price", "first_leg", "second_leg"):
            object.__setattr__(self, name, Decimal(getattr(self, name)))
        if self.plan_b is not None:
            object.__setattr__(self, "plan_b", PlanB(self.plan_b))


def _buys(direction: Direction) -> bool:
    return direction is Direction.LONG


def entry_limit_price(direction: Direction, trigger_price: Decimal, market: MarketRules, *,
                      offset_ticks: int | None = None, offset_pct: Decimal | None = None) -> Decimal:
    """The limit price of a limit entry: the trigger moved by the offset (positive: beyond the
    trigger, what the trader accepts to pay), rounded to the tick in the trader's favor.

    Raises ``ValueError`` when the price would not be positive."""
    if offset_ticks is not None:
        move = market.tick_size * offset_ticks
    elif offset_pct is not None:
        move = trigger_price * offset_pct
    else:
        move = ZERO
    if _buys(direction):
        price = market.round_price(trigger_price + move, Rounding.DOWN)
    else:
        price = market.round_price(trigger_price - move, Rounding.UP)
    if price <= 0:
        raise ValueError(f"entry limit price: {trigger_price} moved by {move} is {price}, not a price")
    return price


@dataclass(frozen=True, slots=True)
class Legs:
    """The quantities of a split entry: ``first`` now, ``second`` on the pullback (0: no split)."""

    first: Decimal
    second: Decimal


def split_legs(quantity: Decimal, scale_in_fraction: Decimal | None, market: MarketRules,
               price: Decimal) -> Legs:
    """The first and second legs of ``quantity``: the second is ``scale_in_fraction`` of it,
    rounded down to the step; when either leg would be below the market's minimum quantity or
    notional at ``price`` there is no split (all in the first leg)."""
    if scale_in_fraction is None:
        return Legs(quantity, ZERO)
    second = market.round_qty_down(quantity * scale_in_fraction)
    first = quantity - second

    def too_small(leg: Decimal) -> bool:
        return leg <= 0 or leg < market.min_qty or leg * price < market.min_notional

    if too_small(second) or too_small(first):
        return Legs(quantity, ZERO)
    return Legs(first, second)


def plan_b(direction: Direction, trigger_price: Decimal, executable_price: Decimal,
           max_distance_pct: Decimal | None) -> PlanB:
    """At a limit entry's time limit: take the rest at market when the executable price is at
    most ``max_distance_pct`` of the trigger against the trader (or better), else cancel it.
    Without ``max_distance_pct`` the rest is always canceled."""
    if max_distance_pct is None:
        return PlanB.CANCEL
    adverse = executable_price - trigger_price if _buys(direction) else trigger_price - executable_price
    return PlanB.TAKE if adverse <= trigger_price * max_distance_pct else PlanB.CANCEL


def executable_price(direction: Direction, *, bid: Decimal | None, ask: Decimal | None,
                     last: Decimal) -> Decimal:
    """What a market order would pay now: the ask for a buy, the bid for a sell, from a fresh
    top of book (the caller passes ``None`` for a missing or stale side), else the last trade."""
    side_price = ask if _buys(direction) else bid
    return side_price if side_price is not None and side_price > 0 else last


def scale_in_level(direction: Direction, average_entry_price: Decimal, pullback_pct: Decimal,
                   market: MarketRules) -> Decimal:
    """The second leg's limit price: ``pullback_pct`` below the average entry for a long (rounded
    down), above it for a short (rounded up)."""
    if _buys(direction):
        return market.round_price(average_entry_price * (ONE - pullback_pct), Rounding.DOWN)
    return market.round_price(average_entry_price * (ONE + pullback_pct), Rounding.UP)
