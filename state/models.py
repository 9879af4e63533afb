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

from state.entry_plan import ENTRY_FIELDS, EntryType, entry_plan_problem
from state.fsm import TransitionTable
from state.types import (
    MAX_PRICE,
    MAX_SIZE_USD,
    Direction,
    ExitReason,
    PositionStatus,
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


def exit_order_id(position_id: str, attempt: int) -> str:
    return f"{position_id}-X{attempt}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """A position and its exit plan. ``entry_price`` is ``None`` while the entry is in flight.

    ``quantity`` is the filled quantity; ``fees_paid`` the fees charged so far;
    ``unrealized_pnl`` is mark-to-market at ``current_price`` less ``fees_paid``.
    ``pending_order_id`` names the order in flight (entry or exit) and ``reference_price``
    the price of the tick that caused it.
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
        for name in ("unrealized_pnl", "fees_paid", "quantity"):
            set_(self, name, to_decimal(getattr(self, name), name))
        if self.quantity < 0:
            raise ValueError(f"quantity: must not be negative, got {self.quantity}")
        if self.status in (PositionStatus.OPEN, PositionStatus.CLOSING):
            if self.entry_price is None or self.quantity <= 0:
                raise ValueError(
                    f"entry_price: an {self.status.value} position needs an entry price "
                    f"and a positive quantity (position {self.id})"
                )
            _check_exit_sides(self)

    @property
    def is_active(self) -> bool:
        return self.status is not PositionStatus.CLOSED

    @property
    def exposure_usd(self) -> Decimal:
        """Notional at entry once filled; the requested size while the entry is pending."""
        if self.entry_price is None:
            return self.size_usd
        return self.quantity * self.entry_price

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
    store and the journal. ``balance`` is cash: initial balance plus realized PnL, less the
    entry fees of positions still open.
    """

    conditions: tuple[TradeCondition, ...]
    positions: tuple[Position, ...]
    balance: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal = Decimal(0)
    closed_positions: int = 0

    @property
    def equity(self) -> Decimal:
        return account_equity(self.balance, self.positions)


__all__ = [
    "ExitReason",
    "account_equity",
    "Position",
    "PositionStatus",
    "PositionTrigger",
    "POSITION_TRANSITIONS",
    "SniperSnapshot",
    "TradeCondition",
    "entry_order_id",
    "exit_order_id",
    "position_id_for",
]
