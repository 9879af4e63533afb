"""A deterministic paper venue behind the same port the ccxt adapter implements.

Market orders fill whole at the order's reference price (the price of the tick that caused
it) moved by ``slippage_bps`` against the trader, with ``taker_fee`` charged on the notional.
A reference price that is missing or older than ``max_price_age_s`` of engine time is refused
as ``PRICE_UNAVAILABLE``. A price that cannot be computed, rounds to 0 (a reference price
below one tick) or fails ``state/fill_guard.py`` is refused as ``INVALID_PRICE``: the venue
never reports a fill at 0.00. Submitting a client order id again returns the first result: five
submissions, one order, one fill.

With a ``ledger`` (the engine passes its store) the venue remembers every order it has seen
across restarts of the process, as a real exchange does: after a ``kill -9`` an order that
reached the venue is found by ``fetch_order`` and never filled twice. Memory stays bounded over
a session of any length: the ledger is the venue's book, and only the last ``RECENT_ORDERS``
orders (and their submission counts) are kept in memory; an older one is read back from the
ledger when asked for. Without a ledger (tests, benchmarks) memory is all the venue has, so it
keeps every order.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from adapters.errors import PriceUnavailable
from adapters.ports import Clock
from state.market import MarketRules
from state.fill_guard import fill_problem
from state.messages import OrderRequest
from state.order import VenueReport
from state.rules import slipped_price, taker_fee
from state.types import OrderStatus


RECENT_ORDERS = 1_000  # with a ledger: orders kept in memory (the rest are read back from it)


class VenueLedger(Protocol):
    def save_venue_report(self, venue: str, report: VenueReport) -> None: ...

    def get_venue_report(self, venue: str, client_order_id: str) -> VenueReport | None: ...

    def load_venue_reports(self, venue: str) -> list[VenueReport]: ...


class PaperExchange:
    name = "paper"

    def __init__(
        self,
        *,
        clock: Clock,
        markets: Callable[[str], MarketRules],
        slippage_bps: Decimal = Decimal(0),
        taker_fee_rate: Decimal = Decimal(0),
        max_price_age_s: float = 60.0,
        ledger: VenueLedger | None = None,
    ) -> None:
        self._clock = clock
        self._markets = markets
        self._slippage_bps = slippage_bps
        self._fee_rate = taker_fee_rate
        self._max_age_ms = int(max_price_age_s * 1000)
        self._ledger = ledger
        self._orders: OrderedDict[str, VenueReport] = OrderedDict()  # most recently used last
        self._lock = threading.Lock()
        self.submissions: Counter[str] = Counter()  # of the orders kept in memory

    def _lookup(self, client_order_id: str) -> VenueReport | None:
        """The venue's report of ``client_order_id``: in memory, else (with a ledger) read back
        from it, on the caller's thread."""
        report = self._orders.get(client_order_id)
        if report is None and self._ledger is not None:
            report = self._ledger.get_venue_report(self.name, client_order_id)
            if report is not None:
                self._remember(report)
        elif report is not None:
            self._orders.move_to_end(client_order_id)
        return report

    def _remember(self, report: VenueReport) -> None:
        self._orders[report.client_order_id] = report
        self._orders.move_to_end(report.client_order_id)
        if self._ledger is None:
            return  # memory is the venue's only book
        while len(self._orders) > RECENT_ORDERS:
            forgotten, _ = self._orders.popitem(last=False)
            self.submissions.pop(forgotten, None)

    def submit_order(self, order: OrderRequest) -> VenueReport:
        with self._lock:
            report = self._lookup(order.client_order_id)
            if report is None:
                report = self._execute(order)
                if self._ledger is not None:
                    self._ledger.save_venue_report(self.name, report)  # remembered before answering
                self._remember(report)
            self.submissions[order.client_order_id] += 1
        if report.status is OrderStatus.REJECTED:
            raise PriceUnavailable(report.reason or "rejected")
        return report

    def fetch_order(self, client_order_id: str) -> VenueReport | None:
        with self._lock:
            return self._lookup(client_order_id)

    @property
    def orders_in_memory(self) -> int:
        with self._lock:
            return len(self._orders)

    def placed_order_ids(self) -> list[str]:
        """Every client order id the venue has seen (the ledger's, when it has one)."""
        with self._lock:
            if self._ledger is not None:
                return [r.client_order_id for r in self._ledger.load_venue_reports(self.name)]
            return list(self._orders)

    def _execute(self, order: OrderRequest) -> VenueReport:
        venue_id = "paper-" + hashlib.sha256(order.client_order_id.encode()).hexdigest()[:12]
        now_ms = self._clock.now_ns() // 1_000_000
        age_ms = now_ms - order.reference_ts_ms
        if age_ms > self._max_age_ms:
            return VenueReport(
                client_order_id=order.client_order_id,
                venue_order_id=venue_id,
                status=OrderStatus.REJECTED,
                ts_ms=now_ms,
                reason=(
                    f"PRICE_UNAVAILABLE: reference price of {order.coin} is {age_ms / 1000:.1f}s "
                    f"old (limit {self._max_age_ms / 1000:.0f}s)"
                ),
            )
        market = self._markets(order.coin)
        try:
            price = slipped_price(order.side, order.reference_price, self._slippage_bps, market)
            fee = taker_fee(order.quantity, price, self._fee_rate)
            problem = fill_problem(reference_price=order.reference_price, ordered_quantity=order.quantity,
                                   fill_price=price, fill_quantity=order.quantity, fee=fee)
        except (ArithmeticError, ValueError) as error:
            problem = f"cannot price the order at {order.reference_price}: {type(error).__name__}"
        if problem is not None:
            return VenueReport(
                client_order_id=order.client_order_id,
                venue_order_id=venue_id,
                status=OrderStatus.REJECTED,
                ts_ms=now_ms,
                reason=f"INVALID_PRICE: {order.coin} {problem}",
            )
        return VenueReport(
            client_order_id=order.client_order_id,
            venue_order_id=venue_id,
            status=OrderStatus.FILLED,
            fill_price=price,
            fill_quantity=order.quantity,
            fee=fee,
            trade_id=venue_id + "-1",
            ts_ms=max(now_ms, order.reference_ts_ms),
        )
