"""The paper venue: a deterministic exchange behind ``adapters.ports.VenuePort``.

``PaperVenue`` matches orders with the pure rules of ``state/matching.py`` (market, limit,
stop-market, stop-limit; GTC, IOC, FOK, post-only, reduce-only; fill models ``full`` and
``traded_volume``; maker and taker fees) and keeps its own book of orders, fills and positions
as an exchange does.

**It owns** one ``MatchingBook`` per coin (working orders, last trade, last quote, positions),
a bounded set of recent final orders, and (with a ``ledger``) the durable book: by default a
``state/venue_store.VenueStore`` on ``<data_dir>/venue.db``. **It accepts** ``submit``,
``cancel``, ``fetch_order``, ``open_orders``, ``observe_trade``, ``observe_quote`` from any
thread (one re-entrant lock serializes them). **It emits** ``OrderUpdate`` and ``Fill`` events
to the sink given to ``bind``, synchronously on the caller's thread and in order: ACCEPTED
before the fills of an order, CANCELED/EXPIRED after them; every change is written to the
ledger *before* it is reported. A definite refusal at submit raises (``PriceUnavailable`` for
PRICE_UNAVAILABLE and INVALID_PRICE; ``InvalidOrder`` for INVALID_ORDER, REDUCE_ONLY
and WOULD_TRIGGER) and is remembered as REJECTED. Submitting a client order id the venue already
has never creates a second order (a refused one raises its refusal again). ``cancel`` of an
unknown or final order raises ``InvalidOrder`` (Binance -2011).

**It recovers** by reading the ledger when built: every working order (and its fills) goes on
resting, positions and the sequence go on; an older final order is read back when asked for.
Memory holds only working orders and the last ``RECENT_ORDERS`` final ones (without a ledger,
in tests and benchmarks, memory is the only book and keeps everything).

A market order with no quote younger than ``quote_max_age_ms`` and no newer trade fills whole
at its reference price (the price of the tick that caused it) moved ``slippage_bps`` against the
trader and rounded to the coin's tick, as taker, ``taker_fee`` on that notional: the default
configuration replays as the engine always did.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Protocol

from adapters.errors import AmbiguousOutcome, InvalidOrder, PriceUnavailable
from adapters.ports import Clock, VenueEventSink
from state.config import PaperConfig
from state.market import MarketRules, TopOfBook
from state.matching import (
    BookOrder,
    FeeSchedule,
    FillModel,
    MatchingBook,
    MatchingSettings,
    OrderRefused,
    Step,
    Trade,
    VenuePosition,
    venue_order_id,
)
from state.messages import OrderRequest
from state.order import Fill, VenueOrder
from state.types import OrderStatus

RECENT_ORDERS = 1_000  # with a ledger: orders kept in memory (the rest are read back from it)


class PaperLedger(Protocol):
    """Where ``PaperVenue`` keeps its book durably (``state/venue_store.VenueStore``)."""

    def record(self, orders: Iterable[BookOrder], fills: Iterable[Fill],
               positions: Iterable[VenuePosition]) -> None: ...

    def load_working(self) -> list[tuple[BookOrder, list[Fill]]]: ...

    def load_order(self, client_order_id: str) -> tuple[BookOrder, list[Fill]] | None: ...

    def load_positions(self) -> list[VenuePosition]: ...

    def last_seq(self) -> int: ...

    def order_ids(self) -> list[str]: ...


def matching_settings(paper: PaperConfig, category: str) -> MatchingSettings:
    """The matching rules of ``[paper]`` for a market category (``FeedConfig.market_category()``)."""
    maker, taker = paper.fee_rates(category)
    return MatchingSettings(
        slippage_bps=paper.slippage_bps, fees=FeeSchedule(maker=maker, taker=taker),
        fill_model=FillModel(paper.fill_model), quote_max_age_ms=int(paper.quote_max_age_s * 1000),
        max_price_age_ms=int(paper.max_price_age_s * 1000),
    )


class PaperVenue:
    """See the module docstring."""

    name = "paper"

    def __init__(
        self,
        *,
        clock: Clock,
        markets: Callable[[str], MarketRules],
        settings: MatchingSettings | None = None,
        initial_balance: Decimal = Decimal(0),
        ledger: PaperLedger | None = None,
        quotes: Callable[[str], TopOfBook | None] | None = None,
    ) -> None:
        """``quotes``: the top of book of a coin as the Feed last put it on the price board; read
        at each submit and trade, so a market order fills against the mid of a fresh quote."""
        self._clock = clock
        self._quotes = quotes
        self._markets = markets
        self.settings = settings or MatchingSettings()
        self.initial_balance = initial_balance
        self._ledger = ledger
        self._lock = threading.RLock()
        self._sink: VenueEventSink | None = None
        self._books: dict[str, MatchingBook] = {}
        self._working: dict[str, str] = {}  # client order id -> coin, of every working order
        self._recent: OrderedDict[str, BookOrder] = OrderedDict()  # final orders kept in memory, oldest first
        self._fills: dict[str, list[Fill]] = {}  # of the orders in memory
        self.submissions: Counter[str] = Counter()  # of the orders kept in memory
        self._seq = 0
        if ledger is not None:
            self._load()

    @classmethod
    def from_config(cls, paper: PaperConfig, *, category: str, clock: Clock, markets: Callable[[str], MarketRules],
                    ledger: PaperLedger | None,
                    quotes: Callable[[str], TopOfBook | None] | None = None) -> PaperVenue:
        return cls(clock=clock, markets=markets, settings=matching_settings(paper, category),
                   initial_balance=paper.initial_balance, ledger=ledger, quotes=quotes)

    # -- the port --

    def bind(self, sink: VenueEventSink) -> None:
        with self._lock:
            self._sink = sink

    def submit(self, order: OrderRequest) -> None:
        with self._lock:
            self._require_sink("submit")
            known = self._lookup(order.client_order_id)
            self.submissions[order.client_order_id] += 1
            if known is not None:
                if known.status is OrderStatus.REJECTED:
                    raise _refusal_error(known.reason or "REJECTED")
                return  # the venue has it: never a second order
            self._seq += 1
            now_ms = self._now_ms()
            book = self._book(order.coin)
            self._refresh_quote(order.coin, book)
            try:
                _, step = book.submit(order, seq=self._seq, now_ms=now_ms, market=self._markets(order.coin))
            except OrderRefused as refused:
                rejected = BookOrder(order=order, venue_order_id=venue_order_id(order.client_order_id),
                                     seq=self._seq, status=OrderStatus.REJECTED,
                                     ts_ms=max(now_ms, order.reference_ts_ms), reason=refused.reason)
                step = Step(orders={order.client_order_id: rejected})
                self._commit(step)
                raise _refusal_error(refused.reason) from None
            self._commit(step)

    def cancel(self, client_order_id: str) -> None:
        with self._lock:
            self._require_sink("cancel")
            coin = self._working.get(client_order_id)
            if coin is None:
                known = self._lookup(client_order_id)
                if known is None:
                    raise InvalidOrder(f"UNKNOWN_ORDER: {client_order_id} is not an order of this venue "
                                       "(Binance -2011 Unknown order sent)")
                raise InvalidOrder(f"ORDER_FINAL: {client_order_id} is already {known.status.value}; nothing "
                                   "to cancel (Binance -2011 Unknown order sent)")
            self._commit(self._book(coin).cancel(client_order_id, now_ms=self._now_ms()))

    def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        with self._lock:
            known = self._lookup(client_order_id)
            if known is None:
                return None
            return known.view(self._fills.get(client_order_id, ()))

    def open_orders(self, coin: str | None = None) -> list[VenueOrder]:
        with self._lock:
            books = [self._books[coin]] if coin is not None and coin in self._books else (
                [] if coin is not None else list(self._books.values()))
            orders = sorted((o for book in books for o in book.working.values()), key=lambda o: o.seq)
            return [o.view(self._fills.get(o.client_order_id, ())) for o in orders]

    def observe_trade(self, coin: str, price: Decimal, quantity: Decimal, ts_ms: int) -> None:
        with self._lock:
            book = self._book(coin)
            if book.working:
                self._require_sink("observe_trade")
            self._refresh_quote(coin, book)
            step = book.observe_trade(Trade(price=price, quantity=quantity, ts_ms=ts_ms),
                                      market=self._markets(coin), now_ms=max(ts_ms, self._now_ms()))
            if step:
                self._commit(step)

    def observe_quote(self, coin: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal,
                      ts_ms: int) -> None:
        with self._lock:
            self._book(coin).observe_quote(TopOfBook(bid=bid, bid_qty=bid_qty, ask=ask, ask_qty=ask_qty, ts_ms=ts_ms))

    # -- the account, as the venue keeps it --

    def positions(self) -> list[VenuePosition]:
        """Every position the venue's fills made (closed ones too, with their realized PnL)."""
        with self._lock:
            return [p for book in self._books.values() for p in book.positions.values()]

    def balance(self) -> Decimal:
        """The wallet: ``initial_balance`` + realized PnL - fees (a rebate adds)."""
        with self._lock:
            return self.initial_balance + sum((p.realized_pnl - p.fees for p in self.positions()), Decimal(0))

    def benchmark_price(self, client_order_id: str) -> Decimal | None:
        """The mid (or last trade, or reference price) the order's taker fills were measured
        against (``state.matching.slippage_vs_benchmark_bps``); ``None`` for an order that
        never took liquidity."""
        with self._lock:
            known = self._lookup(client_order_id)
            return None if known is None else known.benchmark

    def placed_order_ids(self) -> list[str]:
        """Every client order id the venue has seen (the ledger's, when it has one)."""
        with self._lock:
            if self._ledger is not None:
                return self._ledger.order_ids()
            known = [*self._recent.values(), *(self._books[c].working[i] for i, c in self._working.items())]
            return [o.client_order_id for o in sorted(known, key=lambda o: o.seq)]

    @property
    def orders_in_memory(self) -> int:
        with self._lock:
            return len(self._recent) + len(self._working)

    # -- inside --

    def _require_sink(self, what: str) -> None:
        if self._sink is None:
            raise RuntimeError(f"PAPER_UNBOUND: {what} before bind(sink): its outcomes would be lost")

    def _now_ms(self) -> int:
        return self._clock.now_ns() // 1_000_000

    def _refresh_quote(self, coin: str, book: MatchingBook) -> None:
        """Take the price board's top of book of ``coin`` when it is newer than the book's."""
        if self._quotes is None:
            return
        top = self._quotes(coin)
        if top is not None and (book.quote is None or top.ts_ms > book.quote.ts_ms):
            book.observe_quote(top)

    def _book(self, coin: str) -> MatchingBook:
        book = self._books.get(coin)
        if book is None:
            book = self._books[coin] = MatchingBook(coin, self.settings)
        return book

    def _lookup(self, client_order_id: str) -> BookOrder | None:
        coin = self._working.get(client_order_id)
        if coin is not None:
            return self._books[coin].working[client_order_id]
        known = self._recent.get(client_order_id)
        if known is not None:
            self._recent.move_to_end(client_order_id)
            return known
        if self._ledger is None:
            return None
        loaded = self._ledger.load_order(client_order_id)
        if loaded is None:
            return None
        order, fills = loaded
        self._fills[client_order_id] = list(fills)
        self._remember(order)
        return order

    def _remember(self, order: BookOrder) -> None:
        cid = order.client_order_id
        if order.working:
            self._working[cid] = order.order.coin
            return
        self._working.pop(cid, None)
        self._recent[cid] = order
        self._recent.move_to_end(cid)
        if self._ledger is None:
            return  # memory is the venue's only book
        while len(self._recent) > RECENT_ORDERS:
            forgotten, _ = self._recent.popitem(last=False)
            self._fills.pop(forgotten, None)
            self.submissions.pop(forgotten, None)

    def _load(self) -> None:
        """Working orders, their fills, positions and the sequence from the ledger."""
        assert self._ledger is not None
        self._seq = self._ledger.last_seq()
        for position in self._ledger.load_positions():
            self._book(position.coin).restore_position(position)
        for order, fills in self._ledger.load_working():
            self._book(order.order.coin).restore_order(order)
            self._working[order.client_order_id] = order.order.coin
            self._fills[order.client_order_id] = list(fills)

    def _reload(self) -> None:
        """Forget what memory holds beyond the ledger (after a write that failed): books as
        the ledger has them, keeping each coin's last trade and quote."""
        market_data = {coin: (book.last, book.quote) for coin, book in self._books.items()}
        self._books.clear()
        self._working.clear()
        self._recent.clear()
        self._fills.clear()
        self._load()
        for coin, (last, quote) in market_data.items():
            book = self._book(coin)
            book.last, book.quote = last, quote

    def _commit(self, step: Step) -> None:
        """Write what ``step`` changed, then remember and report it, in order."""
        if self._ledger is not None:
            try:
                self._ledger.record(step.orders.values(), step.fills, step.positions.values())
            except Exception as error:  # noqa: BLE001 - any failed write: nothing of it happened
                self._reload()
                raise AmbiguousOutcome(f"PAPER_LEDGER_FAILED: the venue could not write its book "
                                       f"({type(error).__name__}: {error}); nothing was reported") from error
        for fill in step.fills:
            self._fills.setdefault(fill.client_order_id, []).append(fill)
        for order in step.orders.values():
            self._fills.setdefault(order.client_order_id, [])
            self._remember(order)
        sink = self._sink
        if sink is not None:
            for event in step.events:
                sink(event)


def adopt_positions(ledger: PaperLedger, positions: Iterable[VenuePosition]) -> list[VenuePosition]:
    """Give a new venue book the positions an engine folder of an older version holds (it kept
    no venue book): without them the venue would refuse their reduce-only exits. Returns what
    it wrote (nothing for an empty list)."""
    adopted = [p for p in positions if p.quantity > 0]
    if adopted:
        ledger.record((), (), adopted)
    return adopted


def _refusal_error(reason: str) -> InvalidOrder:
    if reason.startswith(("PRICE_UNAVAILABLE", "INVALID_PRICE")):
        return PriceUnavailable(reason)
    return InvalidOrder(reason)

