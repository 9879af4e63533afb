"""The previous paper venue (``PaperExchange``: market orders that fill whole) behind ``VenuePort``.

Interim: it lets the Executor speak the order lifecycle's port before the paper venue that
matches limit and stop orders exists; the lead replaces it with that venue. Everything the
previous venue did stays as it was (price, slippage, fee, ``PRICE_UNAVAILABLE`` and
``INVALID_PRICE`` refusals, one order per client order id, its ledger of orders across
restarts); this adapter only turns its answers into the port's vocabulary:

- ``submit``: a market order is priced and filled at once, and the sink is called on the
  caller's thread, before ``submit`` returns: ``OrderUpdate(ACCEPTED)`` then one ``Fill`` as
  TAKER. A refusal raises ``InvalidOrder`` (``PriceUnavailable``) with the venue's reason. Any
  other order type raises ``InvalidOrder`` naming it (``ORDER_TYPE_UNSUPPORTED``). A client order
  id the venue already has is not placed again and reports nothing new.
- ``fetch_order``: the venue's ledger, as a ``VenueOrder`` (FILLED with its fill, or REJECTED).
  The coin, side and quantity come from the order as it was submitted (kept for the orders of
  this process, else read from ``orders``, the engine's record of what was ordered).
- ``cancel``: every order is final as soon as it exists, so there is nothing to cancel
  (``InvalidOrder``); ``open_orders`` is always empty; market data changes nothing.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from decimal import Decimal
from typing import Protocol

from adapters.errors import InvalidOrder
from adapters.ports import VenueEventSink
from adapters.venues.paper import RECENT_ORDERS, PaperExchange
from state.messages import OrderRequest
from state.order import Fill, OrderRecord, OrderUpdate, VenueOrder, VenueReport
from state.types import Liquidity, OrderStatus, OrderType


class OrderLookup(Protocol):
    def get_order(self, client_order_id: str) -> OrderRecord | None: ...


class InterimPaperVenue:
    """``VenuePort`` over a ``PaperExchange``; ``name`` is the exchange's (``paper``)."""

    def __init__(self, exchange: PaperExchange, *, orders: OrderLookup | None = None,
                 fee_currency: str = "USDT") -> None:
        self.exchange = exchange
        self.name = exchange.name
        self._orders = orders
        self._fee_currency = fee_currency
        self._requests: OrderedDict[str, OrderRequest] = OrderedDict()  # the last RECENT_ORDERS submitted
        self._sink: VenueEventSink | None = None

    @property
    def submissions(self) -> Counter[str]:
        """How many times each client order id was submitted (of the orders kept in memory)."""
        return self.exchange.submissions

    def bind(self, sink: VenueEventSink) -> None:
        self._sink = sink

    def submit(self, order: OrderRequest) -> None:
        if order.order_type is not OrderType.MARKET:
            raise InvalidOrder(f"ORDER_TYPE_UNSUPPORTED: the paper venue fills MARKET orders only, "
                               f"not {order.order_type.value}")
        known = self.exchange.fetch_order(order.client_order_id) is not None
        self._remember(order)
        report = self.exchange.submit_order(order)  # raises PriceUnavailable for a refusal
        if known:
            return  # the same client order id again: the venue's order, nothing new to report
        sink = self._sink
        if sink is None:
            raise RuntimeError("paper venue: submit before bind(sink)")
        sink(OrderUpdate(client_order_id=order.client_order_id, venue_order_id=report.venue_order_id,
                         status=OrderStatus.ACCEPTED, ts_ms=report.ts_ms or order.reference_ts_ms))
        fill = self._fill(report)
        if fill is not None:
            sink(fill)

    def cancel(self, client_order_id: str) -> None:
        known = self.exchange.fetch_order(client_order_id)
        state = "unknown" if known is None else f"already {known.status.value}"
        raise InvalidOrder(f"CANCEL_REJECTED: {client_order_id} is {state}")

    def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        report = self.exchange.fetch_order(client_order_id)
        if report is None:
            return None
        fill = self._fill(report)
        request = self._requests.get(client_order_id)
        record = self._orders.get_order(client_order_id) if request is None and self._orders is not None else None
        source = request or record
        quantity = source.quantity if source is not None else (report.fill_quantity or Decimal(0))
        return VenueOrder(
            client_order_id=client_order_id, venue_order_id=report.venue_order_id,
            coin=source.coin if source is not None else "", side=source.side if source is not None else None,  # type: ignore[arg-type]
            quantity=quantity, status=report.status,
            filled_quantity=fill.quantity if fill is not None else Decimal(0),
            fills=(fill,) if fill is not None else (), ts_ms=report.ts_ms, reason=report.reason,
        )

    def open_orders(self, coin: str | None = None) -> list[VenueOrder]:
        return []  # market orders only: every order is final as soon as it exists

    def observe_trade(self, coin: str, price: Decimal, quantity: Decimal, ts_ms: int) -> None:
        return None

    def observe_quote(self, coin: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal,
                      ts_ms: int) -> None:
        return None

    def _remember(self, order: OrderRequest) -> None:
        self._requests[order.client_order_id] = order
        self._requests.move_to_end(order.client_order_id)
        while len(self._requests) > RECENT_ORDERS:
            self._requests.popitem(last=False)

    def _fill(self, report: VenueReport) -> Fill | None:
        if report.status is not OrderStatus.FILLED or report.fill_quantity is None or report.fill_price is None:
            return None
        return Fill(
            trade_id=report.trade_id or report.venue_order_id + "-1",
            client_order_id=report.client_order_id, venue_order_id=report.venue_order_id,
            quantity=report.fill_quantity, price=report.fill_price, fee=report.fee or Decimal(0),
            fee_currency=self._fee_currency, liquidity=Liquidity.TAKER, ts_ms=report.ts_ms or 0,
        )
