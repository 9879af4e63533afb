"""A scripted ``VenuePort`` for the Executor's tests: a book of orders keyed by client order id
that reports outcomes through the sink it was bound to, synchronously inside ``submit`` /
``cancel`` / ``observe_trade`` (as the paper venue does), or from the test's own thread with
``emit`` (as a live venue's websocket would).

- Market orders fill whole at once at ``reference_price + price_offset`` (ACCEPTED, then one
  TAKER fill), unless ``rest_market`` holds them.
- Limit orders rest (ACCEPTED). ``observe_trade`` fills resting orders of that coin that the
  trade reaches (a BUY at or above the trade price, a SELL at or below), ``fill_step`` at a time
  (``None``: whole), as MAKER at the limit price.
- ``submit_error``: raised by ``submit`` after (``keep_on_error``) or without placing the order.
- ``fill_silently`` adds a fill to the book without reporting it (a fill missed while the
  engine was down), ``learn`` puts a whole order in the book (an order the venue got although
  the submit timed out).

``FakeLiveVenue`` is the same book behind the ``LiveVenuePort`` (connect, account, status,
close) and pushes ``VenueNotice`` with ``notice``.
``FakeAccountVenue`` adds an account (a ``LiveVenuePort`` for reconciliation tests).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from adapters.errors import InvalidOrder
from state.account import AccountSnapshot, HeldPosition, StreamState, VenueStartup, VenueStatus
from state.messages import OrderRequest
from state.order import Fill, NoticeKind, OrderUpdate, VenueEvent, VenueNotice, VenueOrder
from state.types import Liquidity, OrderStatus, OrderType, Side

FEE = Decimal("0.42")
FINAL = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED)


@dataclass
class BookOrder:
    order: OrderRequest
    venue_order_id: str
    status: OrderStatus = OrderStatus.ACCEPTED
    fills: list[Fill] = field(default_factory=list)
    reason: str | None = None

    @property
    def filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills), Decimal(0))

    def view(self) -> VenueOrder:
        return VenueOrder(client_order_id=self.order.client_order_id, venue_order_id=self.venue_order_id,
                          coin=self.order.coin, side=self.order.side, quantity=self.order.quantity,
                          status=self.status, filled_quantity=self.filled, fills=tuple(self.fills),
                          ts_ms=self.order.reference_ts_ms, reason=self.reason)


class FakeVenue:
    name = "fake"

    def __init__(self, *, store: Any = None, submit_error: Exception | None = None, keep_on_error: bool = False,
                 fill_step: Decimal | None = None, price_offset: Decimal = Decimal(1),
                 rest_market: bool = False) -> None:
        self._store = store
        self.submit_error = submit_error
        self.keep_on_error = keep_on_error
        self.fill_step = fill_step
        self.price_offset = price_offset
        self.rest_market = rest_market
        self.book: dict[str, BookOrder] = {}
        self.sink: Callable[[VenueEvent], None] | None = None
        self.binds = 0
        self.submits: list[str] = []
        self.cancels: list[str] = []
        self.fetches: list[str] = []
        self.observed: list[tuple[str, Decimal, Decimal, int]] = []
        self.record_at_submit: dict[str, Any] = {}
        self.on_observe: Callable[[], None] | None = None  # extra behavior inside observe_trade
        self._trades = itertools.count(1)
        self._lock = threading.RLock()

    # --- the port ---------------------------------------------------------------------------

    def bind(self, sink: Callable[[VenueEvent], None]) -> None:
        self.sink = sink
        self.binds += 1

    def submit(self, order: OrderRequest) -> None:
        with self._lock:
            coid = order.client_order_id
            self.submits.append(coid)
            if self._store is not None:
                self.record_at_submit[coid] = self._store.get_order(coid)
            if self.submit_error is not None:
                if self.keep_on_error:
                    self.learn(order)
                raise self.submit_error
            if coid in self.book:
                return
            placed = BookOrder(order=order, venue_order_id="v-" + coid)
            self.book[coid] = placed
        self._report(OrderUpdate(client_order_id=coid, venue_order_id=placed.venue_order_id,
                                 status=OrderStatus.ACCEPTED, ts_ms=order.reference_ts_ms))
        if order.order_type is OrderType.MARKET and not self.rest_market:
            self._fill(placed, order.quantity, order.reference_price + self.price_offset, Liquidity.TAKER)

    def cancel(self, client_order_id: str) -> None:
        with self._lock:
            self.cancels.append(client_order_id)
            placed = self.book.get(client_order_id)
            if placed is None or placed.status in FINAL:
                raise InvalidOrder(f"CANCEL_REJECTED: {client_order_id} is unknown or final")
            placed.status, placed.reason = OrderStatus.CANCELED, "canceled by request"
        self._report(OrderUpdate(client_order_id=client_order_id, venue_order_id=placed.venue_order_id,
                                 status=OrderStatus.CANCELED, ts_ms=placed.order.reference_ts_ms,
                                 reason="canceled by request"))

    def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        with self._lock:
            self.fetches.append(client_order_id)
            placed = self.book.get(client_order_id)
            return None if placed is None else placed.view()

    def open_orders(self, coin: str | None = None) -> list[VenueOrder]:
        with self._lock:
            return [p.view() for p in self.book.values()
                    if p.status not in FINAL and (coin is None or p.order.coin == coin)]

    def observe_trade(self, coin: str, price: Decimal, quantity: Decimal, ts_ms: int) -> None:
        self.observed.append((coin, price, quantity, ts_ms))
        with self._lock:
            reached = [p for p in self.book.values() if p.order.coin == coin and p.status not in FINAL
                       and p.order.limit_price is not None
                       and (price <= p.order.limit_price if p.order.side is Side.BUY else price >= p.order.limit_price)]
        for placed in reached:
            step = placed.order.quantity - placed.filled
            if self.fill_step is not None:
                step = min(step, self.fill_step)
            assert placed.order.limit_price is not None
            self._fill(placed, step, placed.order.limit_price, Liquidity.MAKER, ts_ms)
        if self.on_observe is not None:
            self.on_observe()

    def observe_quote(self, coin: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal,
                      ts_ms: int) -> None:
        return None

    # --- for the tests ------------------------------------------------------------------------

    @property
    def submissions(self) -> dict[str, int]:
        return {coid: self.submits.count(coid) for coid in set(self.submits)}

    def learn(self, order: OrderRequest, *, fill: bool = True) -> BookOrder:
        """The venue has ``order`` (filled whole, or resting) without having reported anything."""
        with self._lock:
            placed = BookOrder(order=order, venue_order_id="v-" + order.client_order_id)
            self.book[order.client_order_id] = placed
            if fill:
                self.fill_silently(order.client_order_id, order.quantity)
            return placed

    def fill_silently(self, client_order_id: str, quantity: Decimal, price: Decimal | None = None) -> Fill:
        with self._lock:
            placed = self.book[client_order_id]
            if price is None:
                price = placed.order.limit_price or placed.order.reference_price + self.price_offset
            return self._make_fill(placed, quantity, price, Liquidity.MAKER)

    def reject_silently(self, order: OrderRequest, reason: str) -> None:
        with self._lock:
            self.book[order.client_order_id] = BookOrder(order=order, venue_order_id="v-" + order.client_order_id,
                                                         status=OrderStatus.REJECTED, reason=reason)

    def emit(self, event: VenueEvent) -> None:
        """Report ``event`` on the calling thread (the test's: another thread than the Executor's)."""
        self._report(event)

    def fill_event(self, client_order_id: str, quantity: Decimal, trade_id: str | None = None,
                   price: Decimal | None = None, fee: Decimal = FEE, fee_currency: str = "USDT") -> Fill:
        """A fill of a booked order, made and booked but not reported (``emit`` it); its fee in
        ``fee_currency`` (a spot venue charges a BUY's fee in the coin, or in BNB)."""
        with self._lock:
            placed = self.book[client_order_id]
            if price is None:
                price = placed.order.limit_price or placed.order.reference_price
            return self._make_fill(placed, quantity, price, Liquidity.MAKER, trade_id=trade_id, fee=fee,
                                   fee_currency=fee_currency)

    # --- inside --------------------------------------------------------------------------------

    def _make_fill(self, placed: BookOrder, quantity: Decimal, price: Decimal, liquidity: Liquidity,
                   ts_ms: int | None = None, trade_id: str | None = None, fee: Decimal = FEE,
                   fee_currency: str = "USDT") -> Fill:
        made = Fill(trade_id=trade_id or f"{placed.venue_order_id}-t{next(self._trades)}",
                    client_order_id=placed.order.client_order_id, venue_order_id=placed.venue_order_id,
                    quantity=quantity, price=price, fee=fee, fee_currency=fee_currency, liquidity=liquidity,
                    ts_ms=ts_ms or placed.order.reference_ts_ms + 5)
        if all(f.trade_id != made.trade_id for f in placed.fills):
            placed.fills.append(made)
        if placed.filled >= placed.order.quantity:
            placed.status = OrderStatus.FILLED
        return made

    def _fill(self, placed: BookOrder, quantity: Decimal, price: Decimal, liquidity: Liquidity,
              ts_ms: int | None = None) -> None:
        with self._lock:
            made = self._make_fill(placed, quantity, price, liquidity, ts_ms)
        self._report(made)

    def _report(self, event: VenueEvent) -> None:
        assert self.sink is not None, "the Executor binds the venue before anything else"
        self.sink(event)


def limit_order(order: OrderRequest, limit_price: Any) -> OrderRequest:
    """``order`` as a GTC limit order at ``limit_price``."""
    return replace(order, order_type=OrderType.LIMIT, limit_price=Decimal(str(limit_price)))


class FakeLiveVenue(FakeVenue):
    """A scripted ``LiveVenuePort`` (``adapters/ports.py``): ``FakeVenue``'s book and outcomes,
    plus ``connect`` (raises ``connect_error`` when given), ``account``, ``status`` and
    ``close``, and ``notice`` to push a ``VenueNotice`` through the bound sink from the test's
    thread (as a live venue does on a 418, a lost stream or refused keys), keeping ``status()``
    in step with what it announced. ``balances`` (default 10,000 USDT; a test may change the
    attribute between starts) go out with ``connect`` and ``account``; ``cash_asset`` with
    ``connect`` (empty: the engine reads it from the symbols)."""

    live = True

    def __init__(self, *, exchange: str = "binanceusdm", market: str = "usdm", testnet: bool = True,
                 connect_error: Exception | None = None, balances: dict[str, Decimal] | None = None,
                 cash_asset: str = "", **options: Any) -> None:
        super().__init__(**options)
        self.name = exchange
        self.exchange = exchange
        self.market = market
        self.testnet = testnet
        self.connect_error = connect_error
        self.balances = dict(balances) if balances is not None else {"USDT": Decimal("10000")}
        self.cash_asset = cash_asset
        self.connects = 0
        self.closes = 0
        self.stream = StreamState.OFF
        self.banned_until_ms: int | None = None
        self.halted: str | None = None

    def connect(self) -> VenueStartup:
        self.connects += 1
        if self.connect_error is not None:
            raise self.connect_error
        self.stream = StreamState.UP
        return VenueStartup(exchange=self.exchange, market=self.market, testnet=self.testnet,
                            server_time_offset_ms=-12, position_mode="one-way", balances=dict(self.balances),
                            leverage={"BTC": 2}, margin_mode={"BTC": "isolated"}, notes=("fake venue",),
                            cash_asset=self.cash_asset)

    def account(self, fills_since_ms: int | None = None) -> AccountSnapshot:
        with self._lock:
            fills = tuple(f for placed in self.book.values() for f in placed.fills
                          if fills_since_ms is not None and f.ts_ms >= fills_since_ms)
            return AccountSnapshot(taken_ms=time.time_ns() // 1_000_000, balances=dict(self.balances),
                                   open_orders=tuple(self.open_orders()), fills=fills, fills_since_ms=fills_since_ms)

    def status(self) -> VenueStatus:
        return VenueStatus(name=self.name, live=True, exchange=self.exchange, market=self.market,
                           testnet=self.testnet, stream=self.stream, banned_until_ms=self.banned_until_ms,
                           halted=self.halted, requests=len(self.submits) + len(self.cancels) + len(self.fetches))

    def close(self) -> None:
        self.closes += 1
        self.stream = StreamState.OFF

    def notice(self, kind: NoticeKind, message: str, until_ms: int | None = None) -> VenueNotice:
        """Announce ``kind`` through the sink (the status follows it) and return the notice."""
        if kind is NoticeKind.BANNED:
            self.banned_until_ms = until_ms
        elif kind is NoticeKind.BAN_LIFTED:
            self.banned_until_ms = None
        elif kind is NoticeKind.AUTH_FAILED:
            self.halted = message
        elif kind in (NoticeKind.STREAM_DOWN, NoticeKind.STREAM_UP):
            self.stream = StreamState.DOWN if kind is NoticeKind.STREAM_DOWN else StreamState.UP
        made = VenueNotice(kind=kind, message=message, ts_ms=time.time_ns() // 1_000_000, until_ms=until_ms)
        self._report(made)
        return made


class FakeAccountVenue(FakeVenue):
    """A ``FakeVenue`` with an account (``LiveVenuePort``'s ``connect`` / ``account`` / ``status``
    / ``close``), for reconciliation tests. Its positions are the net of every fill in its book
    (BUY adds, SELL subtracts) plus ``by_hand`` (coin -> signed quantity traded outside the
    engine); its open orders (``account`` and ``open_orders``) are the book's working orders plus
    ``hand_orders`` (``cancel`` removes one); its fills those
    of the book plus ``hand_fills``, at or after ``fills_since_ms``. ``account_error``: raised by
    ``account``. ``accounts`` counts the calls; ``on_account`` runs inside each (a test's hook). ``balances``:
    what ``connect`` and ``account`` report (default 10,000 USDT)."""

    name = "fake-live"
    live = True

    def __init__(self, *, balances: dict[str, Decimal] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.balances = dict(balances) if balances is not None else {"USDT": Decimal("10000")}  # connect, account
        self.by_hand: dict[str, Decimal] = {}
        self.hand_orders: list[VenueOrder] = []
        self.hand_fills: list[Fill] = []
        self.account_error: Exception | None = None
        self.accounts = 0
        self.account_calls: list[int | None] = []
        self.on_account: Callable[[], None] | None = None
        self.connected = 0
        self.closed = 0

    def connect(self) -> VenueStartup:
        self.connected += 1
        return VenueStartup(exchange="fake", market="usdm", testnet=True, server_time_offset_ms=0,
                            position_mode="one-way", balances=dict(self.balances))

    def account(self, fills_since_ms: int | None = None) -> AccountSnapshot:
        with self._lock:
            self.accounts += 1
            self.account_calls.append(fills_since_ms)
            if self.on_account is not None:
                self.on_account()
            if self.account_error is not None:
                raise self.account_error
            net: dict[str, Decimal] = dict(self.by_hand)
            fills: list[Fill] = []
            for placed in self.book.values():
                sign = 1 if placed.order.side is Side.BUY else -1
                for made in placed.fills:
                    net[placed.order.coin] = net.get(placed.order.coin, Decimal(0)) + sign * made.quantity
                    fills.append(made)
            held = tuple(HeldPosition(coin=coin, side=Side.BUY if q > 0 else Side.SELL, quantity=abs(q))
                         for coin, q in sorted(net.items()) if q != 0)
            working = tuple(p.view() for p in self.book.values() if p.status not in FINAL) + tuple(self.hand_orders)
            fills.extend(self.hand_fills)
            since = [f for f in fills if fills_since_ms is not None and f.ts_ms >= fills_since_ms]
            return AccountSnapshot(taken_ms=max([0, *(f.ts_ms for f in fills)]) + 1, positions=held,
                                   balances=dict(self.balances),
                                   open_orders=working, fills=tuple(sorted(since, key=lambda f: f.ts_ms)),
                                   fills_since_ms=fills_since_ms)

    def open_orders(self, coin: str | None = None) -> list[VenueOrder]:
        with self._lock:
            hand = [o for o in self.hand_orders if coin is None or o.coin == coin]
        return super().open_orders(coin) + hand

    def cancel(self, client_order_id: str) -> None:
        with self._lock:
            hand = next((o for o in self.hand_orders if o.client_order_id == client_order_id), None)
            if hand is not None:
                self.cancels.append(client_order_id)
                self.hand_orders.remove(hand)
                return
        super().cancel(client_order_id)

    def status(self) -> VenueStatus:
        return VenueStatus(name=self.name, live=True, exchange="fake", market="usdm", testnet=True)

    def close(self) -> None:
        self.closed += 1

    def place_by_hand(self, coin: str, side: Side, quantity: Any, client_order_id: str = "web_hand1") -> VenueOrder:
        """An order someone placed on the venue's website: working, never seen by the engine."""
        order = VenueOrder(client_order_id=client_order_id, venue_order_id="v-" + client_order_id, coin=coin,
                           side=side, quantity=Decimal(str(quantity)), status=OrderStatus.ACCEPTED,
                           filled_quantity=Decimal(0))
        with self._lock:
            self.hand_orders.append(order)
        return order

    def trade_by_hand(self, coin: str, signed_quantity: Any) -> None:
        """Someone bought (positive) or sold (negative) ``coin`` on the account outside the engine."""
        with self._lock:
            self.by_hand[coin] = self.by_hand.get(coin, Decimal(0)) + Decimal(str(signed_quantity))
