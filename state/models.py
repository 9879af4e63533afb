"""Trade conditions and positions: the facts the Sniper owns.

``TradeCondition`` is what a slow decision-maker asks for ("LONG SOL if price > 142.50, stop 2 %,
take-profit 1.5 %, $500, valid 1 h"). ``Position`` is what the engine holds after a condition
triggered. Both are frozen; the Sniper changes a position by building the next one with
``dataclasses.replace`` through the transition table below, so any instance can be handed to
another actor as a snapshot.

Numbers accept int, float, str or Decimal and are held as ``Decimal``. Datetimes may be naive
(local time) or aware. Bad values raise ``ValueError`` naming the field: wrong types, booleans,
NaN, infinity, numbers too large to compute with (``state.types.to_decimal``), a trigger price
above ``MAX_PRICE`` or a size above ``MAX_SIZE_USD`` (10**12), a take-profit above 100 (10,000 %),
datetimes outside 1970-9000 (``datetime.min``/``max``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from state.entry_plan import ENTRY_FIELDS, EntryPlan, EntryType, entry_plan_problem
from state.fsm import TransitionTable
from state.types import (
    MAX_PRICE,
    MAX_SIZE_USD,
    Direction,
    ExitReason,
    OrderIntent,
    OrderType,
    PositionStatus,
    TimeInForce,
    TriggerType,
    coin_symbol,
    datetime_value,
    epoch_ns,
    fraction,
    identifier,
    parse_enum,
    positive_decimal,
    require_text,
    to_decimal,
    whole_number,
)

ZERO = Decimal(0)


# A take-profit above 100x the entry (10,000 %) is a typing mistake, not a plan.
MAX_TAKE_PROFIT_PCT = Decimal(100)


def new_condition_id() -> str:
    return "c-" + uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeCondition:
    """An armed instruction: enter ``direction`` on ``coin`` when the price crosses a level.

    ``trigger_type`` ABOVE fires when price > ``trigger_price``; BELOW when price <
    ``trigger_price``. With ``require_cross`` the price must first be seen on the other side
    (at or beyond the level), so a condition armed while the market is already past its
    level waits for a real crossing instead of firing on the next tick.
    Percentages are fractions: ``stop_loss_pct=0.02`` is a 2 % stop.
    """

    coin: str
    direction: Direction
    trigger_price: Decimal
    trigger_type: TriggerType
    stop_loss_pct: Decimal
    take_profit_pct: Decimal
    position_size_usd: Decimal
    id: str = field(default_factory=new_condition_id)
    strategy_id: str = "manual"
    reasoning: str = ""
    valid_until: datetime | None = None
    created_at: datetime = field(default_factory=datetime.now)
    require_cross: bool = False
    # How it enters (state/entry_plan.py): market by default; limit with offset, time limit,
    # plan B; an optional scale-in leg on the first pullback.
    entry_type: EntryType = EntryType.MARKET
    entry_offset_ticks: int | None = None
    entry_offset_pct: Decimal | None = None
    entry_timeout_s: int | None = None
    entry_plan_b_pct: Decimal | None = None
    scale_in_fraction: Decimal | None = None
    scale_in_pullback_pct: Decimal | None = None
    scale_in_timeout_s: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "id", identifier(self.id, "id"))
        set_(self, "coin", coin_symbol(self.coin))
        set_(self, "direction", parse_enum(Direction, self.direction, "direction"))
        set_(self, "trigger_type", parse_enum(TriggerType, self.trigger_type, "trigger_type"))
        set_(self, "trigger_price", positive_decimal(self.trigger_price, "trigger_price", MAX_PRICE))
        set_(self, "stop_loss_pct", fraction(self.stop_loss_pct, "stop_loss_pct"))
        take_profit = positive_decimal(self.take_profit_pct, "take_profit_pct", MAX_TAKE_PROFIT_PCT)
        if self.direction is Direction.SHORT and take_profit >= 1:
            raise ValueError(
                f"take_profit_pct: a SHORT cannot gain 100 % or more, got {self.take_profit_pct!r}"
            )
        set_(self, "take_profit_pct", take_profit)
        set_(
            self,
            "position_size_usd",
            positive_decimal(self.position_size_usd, "position_size_usd", MAX_SIZE_USD),
        )
        set_(self, "strategy_id", identifier(self.strategy_id, "strategy_id"))
        set_(self, "reasoning", require_text(self.reasoning, "reasoning"))
        set_(self, "created_at", datetime_value(self.created_at, "created_at"))
        if self.valid_until is not None:
            valid_until = datetime_value(self.valid_until, "valid_until")
            if epoch_ns(valid_until) <= epoch_ns(self.created_at):
                raise ValueError(
                    f"valid_until: must be after created_at ({self.created_at.isoformat()}), "
                    f"got {valid_until.isoformat()}"
                )
            set_(self, "valid_until", valid_until)
        if not isinstance(self.require_cross, bool):
            raise ValueError(f"require_cross: expected True or False, got {self.require_cross!r}")
        self._check_entry_plan()

    def _check_entry_plan(self) -> None:
        set_ = object.__setattr__
        set_(self, "entry_type", parse_enum(EntryType, self.entry_type, "entry_type"))
        for name in ("entry_offset_ticks", "entry_timeout_s", "scale_in_timeout_s"):
            if getattr(self, name) is not None:
                set_(self, name, whole_number(getattr(self, name), name))
        for name in ("entry_offset_pct", "entry_plan_b_pct", "scale_in_fraction", "scale_in_pullback_pct"):
            if getattr(self, name) is not None:
                set_(self, name, to_decimal(getattr(self, name), name))
        problem = entry_plan_problem({name: getattr(self, name) for name in ENTRY_FIELDS})
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")

    @property
    def limit_entry(self) -> bool:
        return self.entry_type is EntryType.LIMIT

    @property
    def valid_until_ns(self) -> int | None:
        return None if self.valid_until is None else epoch_ns(self.valid_until)


class PositionTrigger(StrEnum):
    ENTRY_FILLED = "ENTRY_FILLED"
    ENTRY_FAILED = "ENTRY_FAILED"
    EXIT_SUBMITTED = "EXIT_SUBMITTED"
    EXIT_FAILED = "EXIT_FAILED"
    EXIT_FILLED = "EXIT_FILLED"


POSITION_TRANSITIONS: TransitionTable[PositionStatus, PositionTrigger] = TransitionTable(
    "Position",
    {
        (PositionStatus.PENDING, PositionTrigger.ENTRY_FILLED): PositionStatus.OPEN,
        # The venue refused the entry: the position never existed.
        (PositionStatus.PENDING, PositionTrigger.ENTRY_FAILED): PositionStatus.CLOSED,
        # An exit (a close, the kill switch) of a position whose entry rests on the book: the
        # entry is canceled first; if it filled nothing the position never existed.
        (PositionStatus.PENDING, PositionTrigger.EXIT_SUBMITTED): PositionStatus.CLOSING,
        (PositionStatus.CLOSING, PositionTrigger.ENTRY_FAILED): PositionStatus.CLOSED,
        (PositionStatus.OPEN, PositionTrigger.EXIT_SUBMITTED): PositionStatus.CLOSING,
        # The exit was refused: the position is still held and its exits stay armed.
        (PositionStatus.CLOSING, PositionTrigger.EXIT_FAILED): PositionStatus.OPEN,
        (PositionStatus.CLOSING, PositionTrigger.EXIT_FILLED): PositionStatus.CLOSED,
    },
)


def position_id_for(condition_id: str) -> str:
    """Deterministic position id for the position a condition opens (at most 20 chars)."""
    return "p" + hashlib.sha256(condition_id.encode()).hexdigest()[:19]


def entry_order_id(position_id: str) -> str:
    return f"{position_id}-E"


def plan_b_order_id(position_id: str) -> str:
    """The market order that takes the rest of a timed-out limit entry (plan B TAKE)."""
    return f"{position_id}-B"


def scale_in_order_id(position_id: str) -> str:
    """The scale-in leg's limit order."""
    return f"{position_id}-S"


def exit_order_id(position_id: str, attempt: int) -> str:
    return f"{position_id}-X{attempt}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lot:
    """One entry fill still held (FIFO): ``quantity`` is what is left of it after the exits
    that depleted it (oldest lots first), ``price`` its fill price, ``fee`` the fee that fill
    paid (whole, informational: fees are accounted per position), ``ts_ms`` the fill's venue
    time and ``trade_id`` the venue's trade id (``None`` for the one lot an older version's
    position is read back as)."""

    quantity: Decimal
    price: Decimal
    fee: Decimal = ZERO
    ts_ms: int = 0
    trade_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", positive_decimal(self.quantity, "lot quantity"))
        object.__setattr__(self, "price", positive_decimal(self.price, "lot price"))
        object.__setattr__(self, "fee", to_decimal(self.fee, "lot fee"))


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionOrder:
    """An order of a position that is not final yet (in flight or working), with what it asks,
    so a restart can ask for it again (same client order id) or cancel it. ``filled`` is the
    quantity of it applied to the position so far; ``working``: the venue accepted it and it
    rests on its book (a resting order, ``OrderRequest.rests``)."""

    client_order_id: str
    intent: OrderIntent
    quantity: Decimal
    reference_price: Decimal
    reference_ts_ms: int
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    post_only: bool = False
    filled: Decimal = ZERO
    working: bool = False
    cancel_requested: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "intent", parse_enum(OrderIntent, self.intent, "intent"))
        set_(self, "order_type", parse_enum(OrderType, self.order_type, "order_type"))
        set_(self, "time_in_force", parse_enum(TimeInForce, self.time_in_force, "time_in_force"))
        set_(self, "quantity", positive_decimal(self.quantity, "quantity"))
        set_(self, "filled", to_decimal(self.filled, "filled"))
        if not ZERO <= self.filled <= self.quantity:
            raise ValueError(f"filled: must be within [0, {self.quantity}], got {self.filled}")

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def rests(self) -> bool:
        """Whether it can rest on the venue's book (anything but a market or IOC/FOK order)."""
        return self.order_type is not OrderType.MARKET and self.time_in_force is TimeInForce.GTC


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """A position and its exit plan. ``entry_price`` is ``None`` until the entry's first fill.

    A position changes only through its fills (``state/portfolio.py``). ``lots`` are the entry
    fills still held, oldest first (FIFO); ``quantity`` is what is held (the sum of the lots:
    entry fills less exit fills) and, once CLOSED, the quantity the position held (the sum of
    its entry fills). ``entry_price`` is the average price of the entry fills (the exit levels
    are computed from it), ``exit_price`` the average price of the exit fills so far.
    ``realized_gross`` is the gross PnL of the exit fills so far (per lot, FIFO) and
    ``exited_quantity`` their quantity; ``trade_ids`` the venue trade ids applied (a fill is
    applied once). ``fees_paid`` is every fee charged so far; ``unrealized_pnl`` is the lots
    marked to market at ``current_price`` less ``fees_paid``; ``realized_pnl`` (once CLOSED)
    ``realized_gross - fees_paid``.

    ``entry_order`` / ``add_order`` / ``exit_order`` are its orders not final yet (in flight or
    working): the entry (``-E``; after a limit entry's plan B TAKE, the market order for the rest,
    ``-B``), the scale-in leg (``-S``) and the exit. ``entry_plan`` (``None`` for a plain market
    entry, as every position an older version stored) is the condition's plan being carried out.
    ``pending_order_id`` names the order the status waits for (the entry while PENDING, the
    exit while CLOSING), ``pending_quantity`` its quantity and ``reference_price`` the price
    of the tick that caused the latest order. A position stored without lots (an older
    version) is read as one lot of its quantity at its entry price.

    Spot fees (``state/fees.py``): ``fees_coin`` is the fees charged in the coin itself (a spot
    BUY's fee in the base asset), which the lots and ``quantity`` are net of; they count in
    ``fees_paid`` at their fill's price. ``dust`` (once CLOSED) is what was held but could not be
    sold (below the quantity step, ``min_qty`` or ``min_notional``): left in the account, written
    off at its entry cost in ``realized_gross``.
    """

    id: str
    coin: str
    direction: Direction
    size_usd: Decimal
    condition_id: str
    strategy_id: str
    reasoning: str
    stop_loss_pct: Decimal
    take_profit_pct: Decimal
    status: PositionStatus = PositionStatus.PENDING
    entry_price: Decimal | None = None
    entry_time: datetime | None = None
    quantity: Decimal = Decimal(0)
    stop_loss_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    current_price: Decimal | None = None
    unrealized_pnl: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    realized_pnl: Decimal | None = None
    exit_price: Decimal | None = None
    exit_time: datetime | None = None
    exit_reason: str | None = None
    pending_order_id: str | None = None
    pending_quantity: Decimal | None = None
    reference_price: Decimal | None = None
    reference_ts_ms: int | None = None
    exit_attempts: int = 0
    lots: tuple[Lot, ...] = ()
    trade_ids: tuple[str, ...] = ()
    realized_gross: Decimal = ZERO
    exited_quantity: Decimal = ZERO
    entry_order: PositionOrder | None = None
    exit_order: PositionOrder | None = None
    add_order: PositionOrder | None = None
    entry_plan: EntryPlan | None = None
    fees_coin: Decimal = ZERO
    dust: Decimal = ZERO

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "coin", coin_symbol(self.coin))
        set_(self, "direction", parse_enum(Direction, self.direction, "direction"))
        set_(self, "status", parse_enum(PositionStatus, self.status, "status"))
        set_(self, "size_usd", positive_decimal(self.size_usd, "size_usd"))
        for name in ("entry_price", "stop_loss_price", "take_profit_price", "current_price"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, positive_decimal(value, name))
        for name in ("unrealized_pnl", "fees_paid", "quantity", "realized_gross", "exited_quantity", "fees_coin",
                     "dust"):
            set_(self, name, to_decimal(getattr(self, name), name))
        if self.quantity < 0:
            raise ValueError(f"quantity: must not be negative, got {self.quantity}")
        set_(self, "lots", tuple(self.lots))
        set_(self, "trade_ids", tuple(self.trade_ids))
        # A PENDING position's exit (a close) waits for its resting entry's end: nothing held yet.
        unfilled_closing = (self.status is PositionStatus.CLOSING and self.entry_price is None and self.quantity == 0
                            and self.exit_order is None and self.entry_order is not None)
        if self.status in (PositionStatus.OPEN, PositionStatus.CLOSING) and not unfilled_closing:
            if self.entry_price is None or self.quantity <= 0:
                raise ValueError(
                    f"entry_price: an {self.status.value} position needs an entry price "
                    f"and a positive quantity (position {self.id})"
                )
            if not self.lots:  # an older version's position: one lot of its quantity
                ts_ms = 0 if self.entry_time is None else epoch_ns(self.entry_time) // 1_000_000
                set_(self, "lots", (Lot(quantity=self.quantity, price=self.entry_price,
                                        fee=self.fees_paid, ts_ms=ts_ms),))
            held = sum((lot.quantity for lot in self.lots), ZERO)
            if held != self.quantity:
                raise ValueError(f"lots: hold {held}, the quantity is {self.quantity} (position {self.id})")
            _check_exit_sides(self)

    @property
    def is_active(self) -> bool:
        return self.status is not PositionStatus.CLOSED

    @property
    def exposure_usd(self) -> Decimal:
        """Notional at entry of what is held once filled (the requested size while the entry
        is pending, and at least that while a partly filled entry still works)."""
        if self.entry_price is None:
            return self.size_usd
        held = self.quantity * self.entry_price
        if self.entry_order is not None or self.add_order is not None:
            return max(held, self.size_usd)
        return held

    @property
    def orders(self) -> tuple[PositionOrder, ...]:
        """Its orders not final yet: the entry's, the scale-in leg's, then the exit's."""
        return tuple(o for o in (self.entry_order, self.add_order, self.exit_order) if o is not None)

    def transition(self, trigger: PositionTrigger, **changes: Any) -> Position:
        status = POSITION_TRANSITIONS.next_state(self.status, trigger)
        return replace(self, status=status, **changes)


def _check_exit_sides(position: Position) -> None:
    entry = position.entry_price
    stop, target = position.stop_loss_price, position.take_profit_price
    assert entry is not None
    if position.direction is Direction.LONG:
        if stop is not None and stop >= entry:
            raise ValueError(f"stop_loss_price: a LONG stop must be below entry {entry}, got {stop}")
        if target is not None and target <= entry:
            raise ValueError(
                f"take_profit_price: a LONG target must be above entry {entry}, got {target}"
            )
    else:
        if stop is not None and stop <= entry:
            raise ValueError(
                f"stop_loss_price: a SHORT stop must be above entry {entry}, got {stop}"
            )
        if target is not None and target >= entry:
            raise ValueError(
                f"take_profit_price: a SHORT target must be below entry {entry}, got {target}"
            )


def account_equity(balance: Decimal, positions: Iterable[Position]) -> Decimal:
    """Cash plus the filled positions marked to market. A position's ``unrealized_pnl`` is net
    of its entry fee, which cash has already paid, so the fee is added back once."""
    return balance + sum(
        (p.unrealized_pnl + p.fees_paid for p in positions if p.status is not PositionStatus.PENDING),
        Decimal(0),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SniperSnapshot:
    """An immutable view of everything the Sniper owns at one instant.

    ``positions`` holds the active positions (PENDING, OPEN, CLOSING); closed ones are in the
    store and the journal. ``balance`` is cash: initial balance plus realized PnL, plus the
    gross PnL of partial exits and less the fees of positions still open.
    ``working_orders``: the client order ids resting on the venue's book (accepted, not final),
    in position order.
    """

    conditions: tuple[TradeCondition, ...]
    positions: tuple[Position, ...]
    balance: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal = Decimal(0)
    closed_positions: int = 0
    working_orders: tuple[str, ...] = ()

    @property
    def equity(self) -> Decimal:
        return account_equity(self.balance, self.positions)


__all__ = [
    "ExitReason",
    "account_equity",
    "Lot",
    "Position",
    "PositionOrder",
    "PositionStatus",
    "PositionTrigger",
    "POSITION_TRANSITIONS",
    "SniperSnapshot",
    "TradeCondition",
    "entry_order_id",
    "exit_order_id",
    "plan_b_order_id",
    "position_id_for",
    "scale_in_order_id",
]
