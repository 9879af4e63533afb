"""The Executor's order record and its state machine, pure and thread-free.

An order record is written *before* the venue sees the order (status SUBMITTING), so after any
crash the intent and its client order id are known. What the venue reports changes it only
through the transition table (``ORDER_TRANSITIONS``), never by assigning a status:

- ``apply_update(update)``: ACCEPTED, CANCELED, EXPIRED, REJECTED from the venue. An update
  that says nothing new (a repeated acceptance, an acceptance read back after fills, a cancel
  that lost the race against the last fill) returns the record itself, unchanged.
- ``apply_fill(fill)``: one venue trade. A fill whose trade id was already applied (or already
  refused by the fill guard) returns the record itself, unchanged, wherever it comes from (the
  event stream, ``fetch_order`` at start or on the reconcile timer). A fill that would take the
  filled quantity above the ordered one raises ``Overfill``; nothing changes.
- ``lose(now_ns)``: a submit whose outcome could not be learned (a timeout): UNKNOWN, left by
  what the venue answers for the client id (accepted, filled, canceled, expired, rejected).

A fill after CANCELED or EXPIRED (it raced the cancel at the venue) is recorded as the fact it
is: its quantity counts; the order stays CANCELED/EXPIRED, or becomes FILLED if it completed
it. Nothing fills after FILLED (that would be an overfill) or REJECTED (refused: nothing of it
exists at the venue).

The record holds its fills (``fills``, in the order applied) and what they add up to:
``filled_quantity``, ``average_fill_price``, ``fees_total``. The store keeps the fills in their
own table keyed by trade id (``state/store.py``). Records written by the previous version (one
``trade_id`` / ``fill_price`` / ``fill_quantity`` / ``fee`` in the row) are read as an order
with that one fill.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from state.fsm import InvalidTransition, TransitionTable
from state.messages import OrderRequest
from state.types import Liquidity, OrderIntent, OrderStatus, OrderType, Side, TimeInForce

ZERO = Decimal(0)


class OrderTrigger(StrEnum):
    ACCEPT = "ACCEPT"  # the venue holds the order
    PARTIAL_FILL = "PARTIAL_FILL"  # a fill that leaves some of the order open
    FILL = "FILL"  # the fill that completes the order
    CANCEL = "CANCEL"  # by request, an IOC remainder, or the fill guard's stop
    EXPIRE = "EXPIRE"  # by the venue: FOK not fillable, post-only that would take, time in force
    REJECT = "REJECT"  # the venue refused it (nothing of it filled), or it was never placed
    TIMEOUT = "TIMEOUT"  # the submit's outcome could not be learned


_S, _U, _A, _P = OrderStatus.SUBMITTING, OrderStatus.UNKNOWN, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED
_F, _C, _E, _R = OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED
_T = OrderTrigger

ORDER_TRANSITIONS: TransitionTable[OrderStatus, OrderTrigger] = TransitionTable(
    "Order",
    {
        # Submitted (recorded before the venue sees it). A venue may skip the acknowledgement:
        # a market order fills at once, an IOC is canceled, a FOK or post-only expires.
        (_S, _T.ACCEPT): _A, (_S, _T.PARTIAL_FILL): _P, (_S, _T.FILL): _F, (_S, _T.CANCEL): _C,
        (_S, _T.EXPIRE): _E, (_S, _T.REJECT): _R, (_S, _T.TIMEOUT): _U,
        # Unknown: left by what the venue answers for the client id.
        (_U, _T.ACCEPT): _A, (_U, _T.PARTIAL_FILL): _P, (_U, _T.FILL): _F, (_U, _T.CANCEL): _C,
        (_U, _T.EXPIRE): _E, (_U, _T.REJECT): _R,
        # Working at the venue.
        (_A, _T.PARTIAL_FILL): _P, (_A, _T.FILL): _F, (_A, _T.CANCEL): _C, (_A, _T.EXPIRE): _E,
        (_A, _T.REJECT): _R,  # e.g. a stop refused when it triggers
        (_P, _T.PARTIAL_FILL): _P, (_P, _T.FILL): _F, (_P, _T.CANCEL): _C, (_P, _T.EXPIRE): _E,
        # A fill that raced the cancel (or the expiry) and lost nothing: it happened.
        (_C, _T.PARTIAL_FILL): _C, (_C, _T.FILL): _F,
        (_E, _T.PARTIAL_FILL): _E, (_E, _T.FILL): _F,
    },
)

FINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELED, OrderStatus.EXPIRED})
OPEN_STATUSES = frozenset(set(OrderStatus) - FINAL_STATUSES)
"""Not final: SUBMITTING, UNKNOWN, ACCEPTED, PARTIALLY_FILLED (the Executor reconciles these)."""

_UPDATE_TRIGGERS = {
    OrderStatus.ACCEPTED: OrderTrigger.ACCEPT,
    OrderStatus.CANCELED: OrderTrigger.CANCEL,
    OrderStatus.EXPIRED: OrderTrigger.EXPIRE,
    OrderStatus.REJECTED: OrderTrigger.REJECT,
}


class Overfill(ValueError):
    """A fill that would take an order's filled quantity above its ordered quantity."""


# --- what a venue reports (the venue port's vocabulary, adapters/ports.py) ------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution (one venue trade) of an order. ``trade_id`` is the venue's trade id and
    identifies the fill wherever it comes from (event stream, order query, reconciliation): a
    fill whose trade id was already applied is ignored. ``fee`` is in ``fee_currency``: the quote
    currency, or on spot the coin itself (a BUY's fee) or a third currency (BNB); what the engine
    makes of each is ``state/fees.py``. A negative fee is a rebate."""

    trade_id: str
    client_order_id: str
    venue_order_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity
    ts_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdate:
    """A change of an order's status at the venue other than a fill: ACCEPTED, CANCELED,
    EXPIRED or REJECTED, with the venue's reason. A venue emits fills as ``Fill``; the
    filled statuses follow from them."""

    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    ts_ms: int
    reason: str | None = None


class NoticeKind(StrEnum):
    BANNED = "BANNED"  # 418 or 429: no request until ``until_ms``
    BAN_LIFTED = "BAN_LIFTED"
    STREAM_DOWN = "STREAM_DOWN"  # the private stream is lost; in-flight orders are polled
    STREAM_UP = "STREAM_UP"
    AUTH_FAILED = "AUTH_FAILED"  # keys refused while running: trading must halt


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueNotice:
    """Something that happened to the venue connection, not to one order. Pushed through the
    venue's sink beside ``Fill`` and ``OrderUpdate``."""

    kind: NoticeKind
    message: str
    ts_ms: int
    until_ms: int | None = None


VenueEvent = Fill | OrderUpdate | VenueNotice
"""What a venue pushes to the Executor through the sink it was bound to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueOrder:
    """The venue's view of one order, as ``fetch_order`` / ``open_orders`` answer: its status,
    filled quantity and every fill so far."""

    client_order_id: str
    venue_order_id: str
    coin: str
    side: Side
    quantity: Decimal
    status: OrderStatus
    filled_quantity: Decimal
    fills: tuple[Fill, ...] = ()
    ts_ms: int | None = None
    reason: str | None = None


# --- the Executor's record of one order ------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecord:
    """One order as the Executor knows it: the request (everything an ``OrderRequest`` carries),
    its status, the venue's id, every fill applied (by trade id) and their totals."""

    client_order_id: str
    position_id: str
    coin: str
    side: Side
    quantity: Decimal
    intent: OrderIntent
    reference_price: Decimal
    reference_ts_ms: int
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    post_only: bool = False
    reduce_only: bool | None = None  # None (a row of the previous version): ``intent is EXIT``
    status: OrderStatus = OrderStatus.SUBMITTING
    venue: str = ""
    venue_order_id: str | None = None
    filled_quantity: Decimal = ZERO
    average_fill_price: Decimal | None = None
    fees_total: Decimal = ZERO
    fee_currency: str | None = None
    fills: tuple[Fill, ...] = ()
    refused_trade_ids: tuple[str, ...] = ()  # fills the fill guard refused: never applied, never again
    cancel_requested: str | None = None  # a cancel asked before the venue knew the order: sent when it does
    reason: str | None = None
    created_ns: int = 0
    updated_ns: int = 0
    unknown_since_ns: int | None = None  # engine time the outcome became UNKNOWN (the grace period)
    submissions: int = 0  # how many times the venue was asked to place it
    correlation_id: str | None = None  # the condition this order serves (journal, fills)

    def __post_init__(self) -> None:
        if self.reduce_only is None:
            object.__setattr__(self, "reduce_only", self.intent is OrderIntent.EXIT)
        object.__setattr__(self, "fills", tuple(self.fills))
        object.__setattr__(self, "refused_trade_ids", tuple(self.refused_trade_ids))

    @classmethod
    def of(cls, order: OrderRequest, *, venue: str, now_ns: int, correlation_id: str | None = None) -> OrderRecord:
        """The write-ahead record of ``order`` (SUBMITTING), before the venue sees it."""
        return cls(
            client_order_id=order.client_order_id, position_id=order.position_id, coin=order.coin,
            side=order.side, quantity=order.quantity, intent=order.intent,
            reference_price=order.reference_price, reference_ts_ms=order.reference_ts_ms,
            order_type=order.order_type, time_in_force=order.time_in_force, limit_price=order.limit_price,
            stop_price=order.stop_price, post_only=order.post_only, reduce_only=order.reduce_only,
            venue=venue, created_ns=now_ns, updated_ns=now_ns, correlation_id=correlation_id,
        )

    def request(self) -> OrderRequest:
        """The ``OrderRequest`` this record was made of (equal to the one the Sniper sent)."""
        return OrderRequest(
            client_order_id=self.client_order_id, position_id=self.position_id, coin=self.coin,
            side=self.side, quantity=self.quantity, intent=self.intent,
            reference_price=self.reference_price, reference_ts_ms=self.reference_ts_ms,
            order_type=self.order_type, time_in_force=self.time_in_force, limit_price=self.limit_price,
            stop_price=self.stop_price, post_only=self.post_only, reduce_only=self.reduce_only,
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def accepted(self) -> bool:
        """Whether the venue is known to hold (or to have held) the order."""
        return self.status not in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN, OrderStatus.REJECTED)

    def knows_trade(self, trade_id: str) -> bool:
        """Whether a fill with ``trade_id`` was applied or refused already."""
        return trade_id in self.refused_trade_ids or any(f.trade_id == trade_id for f in self.fills)

    # --- transitions ----------------------------------------------------------------------------

    def apply(self, trigger: OrderTrigger, **changes: Any) -> OrderRecord:
        """The record after ``trigger`` (``InvalidTransition`` when the table does not allow it)."""
        status = ORDER_TRANSITIONS.next_state(self.status, trigger)
        return replace(self, status=status, **changes)

    def lose(self, now_ns: int, reason: str | None = None) -> OrderRecord:
        """The submit's outcome could not be learned: UNKNOWN since ``now_ns``."""
        return self.apply(OrderTrigger.TIMEOUT, unknown_since_ns=now_ns, updated_ns=now_ns, reason=reason)

    def reject(self, reason: str, now_ns: int, venue_order_id: str | None = None) -> OrderRecord:
        return self.apply(OrderTrigger.REJECT, reason=reason, updated_ns=now_ns,
                          venue_order_id=venue_order_id or self.venue_order_id)

    def apply_update(self, update: OrderUpdate, now_ns: int | None = None) -> OrderRecord:
        """The record after the venue's ``update``, or the record itself when the update says
        nothing new: an acceptance of an order already accepted (or further along), a cancel or
        expiry of an order already final (the fill won the race; the fill guard stopped it),
        a rejection of an order already final. ``InvalidTransition`` for an update the table
        refuses (a rejection after fills); ``ValueError`` for another order's update or a
        status an update never carries."""
        if update.client_order_id != self.client_order_id:
            raise ValueError(f"update of {update.client_order_id} applied to order {self.client_order_id}")
        trigger = _UPDATE_TRIGGERS.get(update.status)
        if trigger is None:
            raise ValueError(f"{self.client_order_id}: an update carries ACCEPTED, CANCELED, EXPIRED or REJECTED, "
                             f"not {update.status.value} (fills come as fills)")
        if trigger is OrderTrigger.ACCEPT and self.status not in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
            return self
        if trigger is not OrderTrigger.ACCEPT and self.is_final:
            return self
        changes: dict[str, Any] = {"venue_order_id": self.venue_order_id or update.venue_order_id or None,
                                   "updated_ns": self.updated_ns if now_ns is None else now_ns,
                                   "unknown_since_ns": None}
        if trigger is not OrderTrigger.ACCEPT:
            changes["reason"] = update.reason or update.status.value
        return self.apply(trigger, **changes)

    def apply_fill(self, fill: Fill, now_ns: int | None = None) -> OrderRecord:
        """The record after ``fill``, or the record itself when its trade id was applied (or
        refused) before. ``Overfill`` when it would fill more than ordered; ``ValueError`` for a
        fill of another order or of no quantity; ``InvalidTransition`` after FILLED or
        REJECTED. Nothing changes when it raises."""
        if fill.client_order_id != self.client_order_id:
            raise ValueError(f"fill {fill.trade_id} of {fill.client_order_id} applied to order {self.client_order_id}")
        if self.knows_trade(fill.trade_id):
            return self
        if not (isinstance(fill.quantity, Decimal) and fill.quantity.is_finite() and fill.quantity > 0):
            raise ValueError(f"{self.client_order_id}: fill {fill.trade_id} has no quantity ({fill.quantity!r})")
        if self.status in (OrderStatus.FILLED, OrderStatus.REJECTED):
            raise InvalidTransition(f"Order: {self.status.value} -> fill {fill.trade_id} is not allowed")
        filled = self.filled_quantity + fill.quantity
        if filled > self.quantity:
            raise Overfill(f"{self.client_order_id}: fill {fill.trade_id} of {fill.quantity} would fill {filled} "
                           f"of the ordered {self.quantity}")
        trigger = OrderTrigger.FILL if filled == self.quantity else OrderTrigger.PARTIAL_FILL
        fills = (*self.fills, fill)
        average = fill.price if not self.fills else sum((f.price * f.quantity for f in fills), ZERO) / filled
        return self.apply(
            trigger,
            fills=fills,
            filled_quantity=filled,
            average_fill_price=average,
            fees_total=self.fees_total + fill.fee,
            fee_currency=self.fee_currency or fill.fee_currency,
            venue_order_id=self.venue_order_id or fill.venue_order_id or None,
            updated_ns=self.updated_ns if now_ns is None else now_ns,
            unknown_since_ns=None,
        )

    def refuse_fill(self, fill: Fill) -> OrderRecord:
        """Remember that the fill guard refused ``fill`` (it is never applied, also when the
        venue reports it again)."""
        if self.knows_trade(fill.trade_id):
            return self
        return replace(self, refused_trade_ids=(*self.refused_trade_ids, fill.trade_id))

