"""Ports: the small interfaces actors depend on. Concrete adapters are wired in by run.py."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from state.account import AccountSnapshot, VenueStartup, VenueStatus
from state.market import TopOfBook
from state.messages import OrderRequest
from state.order import VenueEvent, VenueOrder


class Clock(Protocol):
    """Engine time. In replay and manual mode it follows tick timestamps."""

    causal: bool
    """True for a tick clock: time is the stamp of the message being handled (see TickClock)."""

    def now_ns(self) -> int: ...

    def observe_tick(self, ts_ms: int) -> None:
        """Told by the Feed for every accepted tick (a wall clock ignores it)."""

    def handling(self, ts_ns: int | None) -> None:
        """Told by an actor before it handles a message stamped ``ts_ns`` (``None`` after):
        a causal clock answers ``now_ns`` on that thread with it; others ignore it."""


class PriceBoard(Protocol):
    """Last price and its timestamp, and the last sane top of book, per coin; written only by
    the Feed."""

    def update(self, coin: str, price: Decimal, ts_ms: int) -> None: ...

    def last(self, coin: str) -> tuple[Decimal, int] | None: ...

    def update_quote(self, coin: str, book: TopOfBook) -> None: ...

    def quote(self, coin: str) -> TopOfBook | None: ...


VenueEventSink = Callable[[VenueEvent], None]
"""Where a venue pushes what happens to its orders (``Fill``, ``OrderUpdate``). It may be
called on any thread (the caller's, a websocket's, a matching loop's); it never blocks."""


class VenuePort(Protocol):
    """A venue as an exchange is: orders identified by the engine's client order id, outcomes
    arriving as events. Paper and live venues are two implementations; no actor knows which.

    - ``bind(sink)``: called once by the Executor before anything else; every later outcome of
      every order goes to ``sink`` (also outcomes of orders submitted before a restart).
    - ``submit(order)``: returns within a bounded time, before the outcome is known. Submitting
      a client order id the venue already has never creates a second order. Raises
      ``adapters.errors.InvalidOrder`` for a definite refusal (nothing was placed),
      ``AmbiguousOutcome`` when the venue may or may not have it (timeout, dropped connection:
      the order is UNKNOWN until ``fetch_order`` answers), ``TemporaryError`` when it surely
      did not reach the venue.
    - ``cancel(client_order_id)``: asks for a cancel; the outcome arrives as an event (CANCELED,
      or the fill that won the race). Raises ``InvalidOrder`` when the venue does not know the
      order or it is already final, ``AmbiguousOutcome``/``TemporaryError`` as for submit.
    - ``fetch_order(client_order_id)``: the venue's view with every fill, ``None`` when it never
      saw the id.
    - ``open_orders(coin)``: every order still working (all coins when ``coin`` is ``None``).
    - ``observe_trade`` / ``observe_quote``: market data, for a venue that simulates matching
      (paper); a live venue ignores them.
    """

    name: str

    def bind(self, sink: VenueEventSink) -> None: ...

    def submit(self, order: OrderRequest) -> None: ...

    def cancel(self, client_order_id: str) -> None: ...

    def fetch_order(self, client_order_id: str) -> VenueOrder | None: ...

    def open_orders(self, coin: str | None = None) -> list[VenueOrder]: ...

    def observe_trade(self, coin: str, price: Decimal, quantity: Decimal, ts_ms: int) -> None: ...

    def observe_quote(self, coin: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal,
                      ts_ms: int) -> None: ...


class LiveVenuePort(VenuePort, Protocol):
    """A venue that trades a real account (``adapters/venues/ccxt_venue.py``): the port plus
    what run.py needs before any actor starts and while the session runs.

    - ``connect()``: once, before ``bind``: loads the markets, measures the server-time offset,
      proves the keys (a signed read), refuses an account in an unsupported mode (Binance hedge
      mode), checks and sets margin mode and leverage per coin on derivatives, and opens the
      private stream. Raises ``AuthenticationFailed`` / ``UnsupportedAccount`` (exit 2 at
      start), ``TemporaryError`` when the venue cannot be reached. Never logs a key.
    - ``account(fills_since_ms)``: one ``AccountSnapshot`` (balances, positions, open orders
      with their fills, the account's fills since that time on the configured coins). Raises
      like ``fetch_order``.
    - ``status()``: health for the status line and the report; never raises, never blocks on
      the network.
    - ``close()``: stops the stream and its threads, releases the listen key and the HTTP
      session; idempotent.

    Every outcome goes to the bound sink as ``Fill`` / ``OrderUpdate`` (from the private
    stream, or from REST polling while the stream is down: the same trade id may come from
    both, the Executor applies it once), and every change of the connection as ``VenueNotice``.
    """

    live: bool

    def connect(self) -> VenueStartup: ...

    def account(self, fills_since_ms: int | None = None) -> AccountSnapshot: ...

    def status(self) -> VenueStatus: ...

    def close(self) -> None: ...


TickSink = Callable[[str, Decimal, int, Decimal, int | None], None]
"""``(coin, price, ts_ms, qty, seq)``: how a market-data source hands a raw tick to the Feed.
``seq`` is the tick's position in a replay (``None`` for live data). The sink may block: that
is the engine's back-pressure on a source that reads faster than the engine trades."""


class MarketSource(Protocol):
    """A source of raw ticks running on its own thread (or none, for manual ticks)."""

    name: str
    simulated: bool

    def start(self, sink: TickSink) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class TradeRecorder(Protocol):
    """Where the Feed writes every trade it receives (``--record``)."""

    def write(self, coin: str, ts_ms: int, price: Decimal, qty: Decimal) -> None: ...

    def flush(self) -> None: ...
