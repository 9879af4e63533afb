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
reached the venue is found by ``fetch_order`` and never filled twice.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
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


class VenueLedger(Protocol):
    def save_venue_report(self, venue: str, report: VenueReport) -> None: ...

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
        self._orders: dict[str, VenueReport] = {}
        self._loaded = ledger is None  # the ledger is read on first use, on the caller's thread
        self._lock = threading.Lock()
        self.submissions: Counter[str] = Counter()

    def _load(self) -> None:
        if not self._loaded and self._ledger is not None:
            self._orders = {r.client_order_id: r for r in self._ledger.load_venue_reports(self.name)}
            self._loaded = True

    def submit_order(self, order: OrderRequest) -> VenueReport:
        with self._lock:
            self._load()
            self.submissions[order.client_order_id] += 1
            report = self._orders.get(order.client_order_id)
            if report is None:
                report = self._execute(order)
                if self._ledger is not None:
                    self._ledger.save_venue_report(self.name, report)  # remembered before answering
                self._orders[order.client_order_id] = report
        if report.status is OrderStatus.REJECTED:
            raise PriceUnavailable(report.reason or "rejected")
        return report

    def fetch_order(self, client_order_id: str) -> VenueReport | None:
        with self._lock:
            self._load()
            return self._orders.get(client_order_id)

    def placed_order_ids(self) -> list[str]:
        with self._lock:
            self._load()
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
