"""The Executor's order record and its state machine.

An order record is written *before* the venue sees the order (status SUBMITTING), so after any
crash the intent and its client order id are known; an outcome (FILLED, REJECTED, ...) is
applied through the transition table, never by assigning a status.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from state.fsm import TransitionTable
from state.types import Liquidity, OrderIntent, OrderStatus, Side


class OrderTrigger(StrEnum):
    ACCEPT = "ACCEPT"
    FILL = "FILL"
    REJECT = "REJECT"
    CANCEL = "CANCEL"


ORDER_TRANSITIONS: TransitionTable[OrderStatus, OrderTrigger] = TransitionTable(
    "Order",
    {
        (OrderStatus.SUBMITTING, OrderTrigger.ACCEPT): OrderStatus.ACCEPTED,
        # A market order may fill before (or without) a separate acceptance.
        (OrderStatus.SUBMITTING, OrderTrigger.FILL): OrderStatus.FILLED,
        (OrderStatus.SUBMITTING, OrderTrigger.REJECT): OrderStatus.REJECTED,
        (OrderStatus.ACCEPTED, OrderTrigger.FILL): OrderStatus.FILLED,
        (OrderStatus.ACCEPTED, OrderTrigger.REJECT): OrderStatus.REJECTED,
        (OrderStatus.ACCEPTED, OrderTrigger.CANCEL): OrderStatus.CANCELED,
        # Real world possibility: a cancel races a fill and the fill wins.
        (OrderStatus.CANCELED, OrderTrigger.FILL): OrderStatus.FILLED,
    },
)

FINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELED, OrderStatus.EXPIRED})


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecord:
    client_order_id: str
    position_id: str
    coin: str
    side: Side
    quantity: Decimal
    intent: OrderIntent
    reference_price: Decimal
    reference_ts_ms: int
    status: OrderStatus = OrderStatus.SUBMITTING
    venue: str = ""
    venue_order_id: str | None = None
    trade_id: str | None = None
    fill_price: Decimal | None = None
    fill_quantity: Decimal | None = None
    fee: Decimal | None = None
    ts_event_ms: int | None = None
    reason: str | None = None
    created_ns: int = 0
    updated_ns: int = 0
    submissions: int = 0  # how many times the venue was asked to place it
    correlation_id: str | None = None  # the condition this order serves (journal, fills)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def apply(self, trigger: OrderTrigger, **changes: Any) -> OrderRecord:
        status = ORDER_TRANSITIONS.next_state(self.status, trigger)
        return replace(self, status=status, **changes)


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueReport:
    """What a venue says about one order: a fill (market orders fill whole) or a refusal."""

    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    fill_price: Decimal | None = None
    fill_quantity: Decimal | None = None
    fee: Decimal | None = None
    trade_id: str | None = None
    ts_ms: int | None = None
    reason: str | None = None


# --- what a venue reports (the venue port's vocabulary, adapters/ports.py) ------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution (one venue trade) of an order. ``trade_id`` is the venue's trade id and
    identifies the fill wherever it comes from (event stream, order query, reconciliation): a
    fill whose trade id was already applied is ignored. ``fee`` is in ``fee_currency`` (the
    quote currency on the venues we trade); a negative fee is a rebate."""

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


VenueEvent = Fill | OrderUpdate
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
