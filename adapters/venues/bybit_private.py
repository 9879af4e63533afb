"""Bybit v5's private websocket for the live venue: ``BybitPrivateStream`` (the design's
``PrivateStream``: ``start(on_event, on_state)``, ``stop()``, ``stats()``) on
``adapters/net/ws_connection.WsConnection``, and, re-exported from
``adapters/venues/bybit_private_parse.py``, the pure parsers of its messages and of the REST rows
(``parse_private_message``, ``parse_private_text``, ``parse_order_row``,
``parse_execution_row``, ``parse_position_row``, ``parse_wallet_row``, ``coin_of``,
``PrivateMessage``; ``auth_message``, ``subscribe_message``, ``PING_MESSAGE``). What each message
becomes, status by status and execution type by type, is the parser module's docstring.

**A connection.** ``WsConnection`` opens ``url`` (``wss://stream.bybit.com/v5/private``, testnet
``wss://stream-testnet.bybit.com/v5/private``; a local URL in tests) and sends, at *every*
connect (its ``subscribe()`` is asked each time, so a reconnect logs in again with a fresh
signature): ``auth_message(key, secret, wall_ms() + AUTH_WINDOW_MS)`` then
``subscribe_message(["order", "execution", "position", "wallet"])`` (no ``position`` on spot).
Give ``wall_ms`` the server-time-adjusted clock (local ms + the venue's offset): Bybit refuses a
login whose ``expires`` is already past on its clock. Keepalive: a websocket ping and Bybit's
``{"op":"ping"}`` every ``ping_interval_s`` (Bybit drops a private connection without one for
10 minutes; it recommends 20 s); a connection silent for ``silence_timeout_s`` is dead and
reconnected with backoff (``WsConnection``).

**On state.** ``on_state(True, "authenticated and subscribed")`` once the auth answer said
success *and* the subscription was acknowledged on the same connection (the order of the two
answers does not matter); ``on_state(False, why)`` when a connection that was up is lost (a
drop, a close, silence). The stream then reconnects and logs in again by itself; the venue
polls the orders in flight over REST meanwhile.

**Auth refused** (``{"op":"auth","success":false}``, retCode 10003 "Invalid apikey", 10004 a bad
signature, an expired login, ...) is not retried: a refused key stays refused, and retrying would
hammer the venue with bad logins. The stream reports ``on_state(False, "AUTH_FAILED: <venue's
text>")`` once, logs ``BYBIT_PRIVATE_AUTH_FAILED`` and stops its connection for good
(``stats()["auth_failed"]`` says why); the venue turns it into ``VenueNotice(AUTH_FAILED)`` and
the engine halts. A refused *subscription* (``SUBSCRIBE_FAILED``: a topic the account cannot
have) is reported the same way (``on_state(False, "SUBSCRIBE_FAILED: ...")``, logged) but the
connection is kept: the stream stays down and REST polling covers the orders; a reconnect tries
again. The venue's error texts are passed through ``Credentials.redact`` and never include the
echoed auth request (whose ``args`` hold the key); only ``repr(credentials)`` (masked) is ever
logged.

**Events.** Every ``Fill`` and ``OrderUpdate`` of the configured coins goes to ``on_event`` on
the connection's thread, in the message's order, with one exception: Bybit pushes an order's
status (``order`` topic) and its trades (``execution`` topic) in separate messages, in no
guaranteed order, so a final update (CANCELED, EXPIRED, REJECTED) whose row says more was
filled (``cumExecQty``) than the fills seen so far for that order is **held back** until those
fills have arrived, then delivered right after them: the Executor sees the fills of a canceled
order before its cancel, never a cancel with nothing filled followed by a "late" fill. A held
update is delivered anyway after ``HOLD_MAX_S`` (logged ``BYBIT_FILLS_LATE``; checked at every
frame, and a pong arrives every ``ping_interval_s``), and dropped when the connection is lost
(``BYBIT_HELD_UPDATE_DROPPED``): the order then stays in flight for the Executor, and the venue's
REST polling of in-flight orders learns its fills and its end. ``execution.fast`` is neither
subscribed nor used (it has no fee: the module docstring of the parsers).

**Account.** ``position`` and ``wallet`` messages, and executions that changed a position
without an order of ours (``AdlTrade``, ``BustTrade``, ``Delivery``, ``Settle``, ...: logged
``BYBIT_POSITION_CHANGED_BY_VENUE``, counted in ``stats()["venue_changes"]``), go to
``on_account(message)`` when given (the venue reconciles); the last position per coin and the
last balances are kept (``positions()``, ``balances()``).

**Bad messages** never raise: a message that does not parse, or a row that does not, is logged
(``BYBIT_PRIVATE_BAD_MESSAGE``: the first ten, then one line every 1000) and counted; the good
rows of the message are used.

**Owns** the ``WsConnection`` (its thread), the per-connection login state, the held updates,
and counters. ``stop()`` (idempotent, any thread) stops the connection; it does not call
``on_state``. ``start()`` after ``stop()`` (or after an auth failure, with new keys in a new
stream preferably) opens a new connection.

## ccxt 4.5.90 ``bybit``: what the venue needs (read in ccxt/bybit.py)

- **Client order id**: ``create_order(symbol, type, side, amount, price, params)`` takes
  ``params["clientOrderId"]`` and sends it as ``orderLinkId`` (max 36 chars; passing
  ``orderLinkId`` directly also works: unknown params are merged into the request). Bybit
  refuses a second order with the same ``orderLinkId`` while the first is known (retCode 10001
  / 110072 "OrderLinkedID is duplicate").
- **reduceOnly**: ``params["reduceOnly"] = True`` goes into the request as is (one-way mode).
  With ``params["hedged"] = True`` ccxt drops it and sets ``positionIdx`` 1/2 instead: never
  pass ``hedged``. Spot: do not send it.
- **category** is derived from the market (``BTC/USDT:USDT`` -> ``linear``, ``BTC/USDT`` ->
  ``spot``); no param needed. ``load_markets`` fetches spot, linear, inverse and option markets
  (several requests) unless ``options["fetchMarkets"] = {"types": ["linear"]}`` (or
  ``["spot"]``).
- **Spot market orders**: with a ``price`` (or ``params["cost"]``) ccxt sends the *quote*
  amount (``marketUnit=quoteCoin``, ``qty = amount * price``); without one it sends
  ``marketUnit=baseCoin`` and ``qty=amount``. Pass ``price=None`` for market orders so the
  quantity is the base quantity the engine means (and ``qty`` in the order rows is base).
- **Unified account check**: ``create_order``, ``fetch_order`` and ``set_margin_mode`` call
  ``is_unified_enabled()`` first, which makes two signed requests (``/v5/user/query-api``,
  ``/v5/account/info``) once and caches ``options["enableUnifiedAccount"]``. Call it at connect:
  it proves the keys (``/v5/user/query-api`` also says ``readOnly`` and the permissions).
- **fetch by client id**: ccxt's ``fetch_order(id)`` on a unified account raises
  ``ArgumentsRequired`` unless ``params["acknowledged"] = True`` and looks up only by
  ``orderId`` among the last 500 orders; ``fetch_closed_order`` adds ``orderStatus=Filled`` (a
  canceled order is "not found"), ``fetch_open_order`` needs an ``orderId``. By
  ``orderLinkId``, use the implicit endpoints, which return the raw rows this module parses:
  ``privateGetV5OrderRealtime({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": id})``
  (open orders, and recent closed ones), then, if its ``result.list`` is empty,
  ``privateGetV5OrderHistory({...same...})`` (final orders; may lag the stream by a moment),
  and ``privateGetV5ExecutionList({"category", "symbol", "orderLinkId"})`` for the fills
  (``parse_execution_row``; ``startTime``/``endTime`` at most 7 days apart, cursor paging).
  Equivalently ``fetch_open_orders(symbol, params={"orderLinkId": id})`` /
  ``fetch_canceled_and_closed_orders(symbol, params={"orderLinkId": id})`` and read ``info``.
  ``cancel_order(None, symbol, params={"orderLinkId": id})`` cancels by client id (an unknown or
  final order: retCode 110001 "order not exists or too late to cancel" -> ``OrderNotFound``).
- **Position mode**: ccxt 4.5.90's bybit has no ``fetch_position_mode``. Read
  ``privateGetV5PositionList({"category": "linear", "symbol": ...})`` (or ``fetch_positions``'
  ``info``): ``positionIdx`` 0 is one-way; hedge mode answers rows with ``positionIdx`` 1 and 2
  (two rows per symbol, even when flat): refuse it as Binance hedge mode is refused.
  ``set_position_mode(False, symbol)`` -> ``/v5/position/switch-mode`` ``mode=0`` (refused while
  the symbol has a position or an order).
- **Leverage**: ``set_leverage(n, symbol)`` -> ``/v5/position/set-leverage`` with
  ``buyLeverage = sellLeverage = n`` (linear/inverse only); setting the leverage it already has
  answers retCode 110043 "leverage not modified", which ccxt raises as ``BadRequest``: treat it
  as success. The current leverage is the ``leverage`` field of the position row.
- **Margin mode**: on a unified account ``set_margin_mode("isolated"|"cross"|"portfolio")``
  is *account-wide* (``/v5/account/set-margin-mode``, ``ISOLATED_MARGIN`` /
  ``REGULAR_MARGIN`` / ``PORTFOLIO_MARGIN``; the symbol is ignored); on a classic account it is
  per symbol (``/v5/position/switch-isolated``) and needs ``params["leverage"]``. Read it with
  ``/v5/account/info`` ``marginMode`` (unified) or the position row's ``tradeMode`` (0 cross, 1
  isolated; classic).
- **Time**: signed requests carry ``X-BAPI-TIMESTAMP = nonce() = milliseconds() -
  options["timeDifference"]`` and ``X-BAPI-RECV-WINDOW = options["recvWindow"]`` (5000 by
  default); set ``options["adjustForTimeDifference"] = True`` (``load_time_difference()`` at
  ``load_markets``) or call ``load_time_difference()`` at connect. Testnet:
  ``set_sandbox_mode(True)`` (``api-testnet.bybit.com``).
- Errors as ccxt maps them: retCode 10003/10004 ``AuthenticationError`` (bad key / signature),
  10002 ``InvalidNonce`` (timestamp outside recv_window), 10006 ``RateLimitExceeded`` (with
  ``X-Bapi-Limit-Reset-Timestamp``), HTTP 403 ``RateLimitExceeded`` (Bybit's IP ban, about 10
  minutes: its 418), 110001 ``OrderNotFound``, 110007 / 170131 ``InsufficientFunds``, 110017
  ``InvalidOrder`` (reduce-only rule), 110043 ``BadRequest`` (leverage not modified), 110072
  ``InvalidOrder`` (duplicate orderLinkId: the order exists, look it up).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from loguru import logger

from adapters.net.backoff import Backoff
from adapters.net.ws_connection import WsConnection, check_url
from adapters.venues.bybit_private_parse import (
    AUTH_PATH,
    AUTH_WINDOW_MS,
    CATEGORIES,
    PING_MESSAGE,
    PrivateMessage,
    auth_message,
    auth_signature,
    coin_map,
    coin_of,
    parse_execution_row,
    parse_order_row,
    parse_position_row,
    parse_private_message,
    parse_private_text,
    parse_wallet_row,
    private_topics,
    subscribe_message,
)
from state.account import HeldPosition
from state.order import Fill, OrderUpdate, VenueEvent
from state.secrets import Credentials
from state.types import OrderStatus

__all__ = [
    "AUTH_PATH", "AUTH_WINDOW_MS", "CATEGORIES", "HOLD_MAX_S", "PING_MESSAGE", "PRIVATE_WS_URL",
    "TESTNET_PRIVATE_WS_URL", "BybitPrivateStream", "PrivateMessage", "auth_message", "auth_signature",
    "coin_map", "coin_of", "parse_execution_row", "parse_order_row", "parse_position_row",
    "parse_private_message", "parse_private_text", "parse_wallet_row", "private_topics", "private_ws_url",
    "subscribe_message",
]

PRIVATE_WS_URL = "wss://stream.bybit.com/v5/private"
TESTNET_PRIVATE_WS_URL = "wss://stream-testnet.bybit.com/v5/private"
HOLD_MAX_S = 5.0  # a final update waits at most this long for the fills its row announced
FILLS_REMEMBERED = 10_000  # orders whose seen fills are kept (for holding their final update)
BAD_LISTED = 10  # bad messages logged one by one; after that ...
BAD_SUMMARY_EVERY = 1000  # ... one line every this many

_FINAL = frozenset({OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


def private_ws_url(testnet: bool) -> str:
    """Bybit's private websocket URL, mainnet or testnet."""
    return TESTNET_PRIVATE_WS_URL if testnet else PRIVATE_WS_URL


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class BybitPrivateStream:
    """Bybit v5's authenticated private stream; see the module docstring."""

    def __init__(self, url: str, credentials: Credentials, *, coins: Mapping[str, str], category: str,
                 ping_interval_s: float, silence_timeout_s: float, wall_ms: Callable[[], int] = _wall_ms,
                 on_account: Callable[[PrivateMessage], None] | None = None, backoff: Backoff | None = None,
                 open_timeout_s: float = 10.0) -> None:
        """``coins``: exchange symbol -> engine coin; ``category``: ``linear`` or ``spot``.
        Raises ``ValueError`` naming the argument for a bad one (never showing a key)."""
        check_url(url)
        if not isinstance(credentials, Credentials) or not credentials.key or not credentials.secret:
            raise ValueError(f"credentials: an API key and secret are needed, got {credentials!r}")
        if category not in CATEGORIES:
            raise ValueError(f"category: must be one of {', '.join(CATEGORIES)}, got {category!r}")
        by_symbol = coin_map(coins)
        if not callable(wall_ms):
            raise ValueError(f"wall_ms: must be callable, got {wall_ms!r}")
        for name, value in (("ping_interval_s", ping_interval_s), ("silence_timeout_s", silence_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
        self.name = "bybit-private"
        self.url = url
        self.category = category
        self._credentials = credentials
        self._coins = by_symbol
        self._ping_interval_s = float(ping_interval_s)
        self._silence_timeout_s = float(silence_timeout_s)
        self._wall_ms = wall_ms
        self._on_account = on_account
        self._backoff = backoff
        self._open_timeout_s = open_timeout_s
        self._log = logger.bind(actor="venue")
        self._lock = threading.Lock()
        self._connection: WsConnection | None = None
        self._on_event: Callable[[VenueEvent], None] | None = None
        self._on_state: Callable[[bool, str], None] | None = None
        self._stopping = False
        # Login state of the current connection (the connection's thread only).
        self._authed = False
        self._subscribed = False
        self._up = False
        self._auth_failed: str | None = None
        self._subscribe_failed: str | None = None
        # Held final updates: venue order id -> (update, cumExecQty announced, since monotonic).
        self._held: dict[str, tuple[OrderUpdate, Decimal, float]] = {}
        self._seen: OrderedDict[str, tuple[Decimal, set[str]]] = OrderedDict()  # venue order id -> (qty, trade ids)
        self._positions: dict[str, HeldPosition | None] = {}
        self._balances: dict[str, Decimal] = {}
        self._counts = {"messages": 0, "fills": 0, "updates": 0, "held": 0, "released_late": 0, "held_dropped": 0,
                        "ignored": 0, "bad": 0, "venue_changes": 0, "pongs": 0, "logins": 0, "ups": 0, "downs": 0}
        self._last_problem: str | None = None

    # --- PrivateStream ----------------------------------------------------------------------------

    def start(self, on_event: Callable[[VenueEvent], None], on_state: Callable[[bool, str], None]) -> None:
        """Connect (on the connection's own thread) and keep the stream up until ``stop``."""
        if not callable(on_event) or not callable(on_state):
            raise ValueError("start: on_event and on_state must be callable")
        with self._lock:
            if self._connection is not None and self._connection.running:
                return
            self._on_event, self._on_state = on_event, on_state
            self._stopping = False
            self._auth_failed = None
            self._subscribe_failed = None
            self._up = self._authed = self._subscribed = False
            self._connection = WsConnection(
                self.name, self.url, on_text=self._on_text, subscribe=self._login_texts, on_state=self._on_ws_state,
                backoff=self._backoff, ping_interval_s=self._ping_interval_s, ping_payload=lambda: PING_MESSAGE,
                silence_timeout_s=self._silence_timeout_s, open_timeout_s=self._open_timeout_s,
            )
            connection = self._connection
        self._log.info("BYBIT_PRIVATE_START: {} {} for {} with {}", self.category, connection.stats()["url"],
                       ", ".join(sorted(self._coins)), self._credentials)
        connection.start()

    def stop(self) -> None:
        """Close the connection; idempotent, from any thread. ``on_state`` is not called."""
        with self._lock:
            self._stopping = True
            connection = self._connection
        if connection is not None:
            connection.stop()

    def stats(self) -> dict[str, Any]:
        """The connection's counters (``WsConnection.stats``) and the stream's: ``up``,
        ``authenticated``, ``subscribed``, ``auth_failed`` / ``subscribe_failed`` (the venue's
        reason, or ``None``), ``running``, message counts, ``held`` (final updates waiting
        for their fills now), ``last_problem``."""
        connection = self._connection
        stats: dict[str, Any] = dict(connection.stats()) if connection is not None else {"name": self.name}
        stats.update(self._counts)
        stats.update({
            "category": self.category,
            "up": self._up,
            "authenticated": self._authed,
            "subscribed": self._subscribed,
            "auth_failed": self._auth_failed,
            "subscribe_failed": self._subscribe_failed,
            "running": connection is not None and connection.running,
            "held_now": len(self._held),
            "last_problem": self._last_problem,
        })
        return stats

    # --- what the stream learned of the account ---------------------------------------------------

    def positions(self) -> dict[str, HeldPosition | None]:
        """The last position each coin was reported with (``None``: flat), since start."""
        with self._lock:
            return dict(self._positions)

    def balances(self) -> dict[str, Decimal]:
        """The last wallet balance of each asset reported, since start."""
        with self._lock:
            return dict(self._balances)

    # --- the connection's thread ------------------------------------------------------------------

    def _login_texts(self) -> list[str]:
        """Asked by WsConnection at every connect: log in, then subscribe."""
        self._authed = self._subscribed = False
        self._counts["logins"] += 1
        expires = int(self._wall_ms()) + AUTH_WINDOW_MS
        return [auth_message(self._credentials.key, self._credentials.secret, expires),
                subscribe_message(private_topics(self.category))]

    def _on_ws_state(self, state: str, info: dict[str, Any]) -> None:
        if state == "open":
            return
        # connecting / backoff / stopped: whatever this connection had is gone.
        was_up = self._up
        self._up = self._authed = self._subscribed = False
        self._drop_held(str(info.get("reason") or state))
        if was_up and not self._stopping:
            reason = self._credentials.redact(str(info.get("reason") or state))
            self._counts["downs"] += 1
            self._log.warning("BYBIT_PRIVATE_DOWN: {}", reason)
            self._report(False, reason if reason.startswith("connection lost") else f"connection lost: {reason}")

    def _on_text(self, text: str, received_ns: int) -> None:
        self._counts["messages"] += 1
        message = parse_private_text(text, self._coins, self.category)
        if message.ignored:
            self._counts["ignored"] += message.ignored
        if message.kind == "pong":
            self._counts["pongs"] += 1
        if message.auth_ok is not None:
            self._login_answer(message)
            return
        if message.subscribed is not None:
            self._subscribe_answer(message)
            return
        if message.problem is not None:
            self._problem(message)
        for event in message.events:
            self._event(event, message)
        if message.positions or message.flat or message.balances:
            with self._lock:
                self._positions.update({held.coin: held for held in message.positions})
                self._positions.update(dict.fromkeys(message.flat))
                self._balances.update(message.balances)
        if self._on_account is not None and (message.positions or message.flat or message.balances
                                             or message.account_changed):
            self._call(self._on_account, message)
        self._release_late()

    def _login_answer(self, message: PrivateMessage) -> None:
        if message.auth_ok:
            self._authed = True
            self._log.info("BYBIT_PRIVATE_AUTHENTICATED: {}", self._credentials)
            self._maybe_up()
            return
        reason = self._credentials.redact(message.problem or "AUTH_FAILED: refused")
        self._auth_failed = reason
        self._last_problem = reason
        self._log.error("BYBIT_PRIVATE_AUTH_FAILED: {} ({}); not retrying: the venue refused the key", reason,
                        self._credentials)
        self._up = self._authed = False
        self._stopping = True  # no on_state from the connection's own stop below
        self._report(False, reason if reason.startswith("AUTH_FAILED") else f"AUTH_FAILED: {reason}")
        connection = self._connection
        if connection is not None:
            connection.stop()  # from its own thread: does not wait for itself

    def _subscribe_answer(self, message: PrivateMessage) -> None:
        if message.subscribed:
            self._subscribed = True
            self._subscribe_failed = None
            self._maybe_up()
            return
        reason = self._credentials.redact(message.problem or "SUBSCRIBE_FAILED: refused")
        self._subscribe_failed = reason
        self._last_problem = reason
        self._log.error("BYBIT_PRIVATE_SUBSCRIBE_FAILED: {}; the stream stays down (orders are polled over REST)",
                        reason)
        self._up = False
        self._report(False, reason)

    def _maybe_up(self) -> None:
        if self._authed and self._subscribed and not self._up:
            self._up = True
            self._counts["ups"] += 1
            self._log.info("BYBIT_PRIVATE_UP: authenticated and subscribed to {}",
                           ", ".join(private_topics(self.category)))
            self._report(True, "authenticated and subscribed")

    def _problem(self, message: PrivateMessage) -> None:
        problem = self._credentials.redact(message.problem or "")
        self._last_problem = problem
        if message.account_changed:
            self._counts["venue_changes"] += 1
            self._log.warning("BYBIT_POSITION_CHANGED_BY_VENUE: {}", problem)
            if "BAD_ROW" not in problem:
                return
        self._counts["bad"] += 1
        bad = self._counts["bad"]
        if bad <= BAD_LISTED or bad % BAD_SUMMARY_EVERY == 0:
            self._log.warning("BYBIT_PRIVATE_BAD_MESSAGE: {} ({} so far)", problem, bad)

    def _event(self, event: VenueEvent, message: PrivateMessage) -> None:
        if isinstance(event, Fill):
            self._counts["fills"] += 1
            self._deliver(event)
            self._note_fill(event)
            return
        if isinstance(event, OrderUpdate):
            self._counts["updates"] += 1
            announced = message.cum_filled.get(event.venue_order_id)
            if event.status in _FINAL and announced is not None and announced > self._filled(event.venue_order_id):
                self._counts["held"] += 1
                self._held[event.venue_order_id] = (event, announced, time.monotonic())
                self._log.debug("BYBIT_UPDATE_HELD: {} {} waits for {} filled (seen {})", event.client_order_id,
                                event.status.value, announced, self._filled(event.venue_order_id))
                return
            self._deliver(event)

    def _filled(self, venue_order_id: str) -> Decimal:
        seen = self._seen.get(venue_order_id)
        return seen[0] if seen is not None else Decimal(0)

    def _note_fill(self, fill: Fill) -> None:
        """Count the fill for its order (once per trade id); deliver a held update it completes."""
        key = fill.venue_order_id
        quantity, trades = self._seen.pop(key, (Decimal(0), set()))
        if fill.trade_id not in trades:
            trades.add(fill.trade_id)
            quantity += fill.quantity
        self._seen[key] = (quantity, trades)
        while len(self._seen) > FILLS_REMEMBERED:
            self._seen.popitem(last=False)
        held = self._held.get(key)
        if held is not None and quantity >= held[1]:
            del self._held[key]
            self._deliver(held[0])

    def _release_late(self) -> None:
        if not self._held:
            return
        now = time.monotonic()
        for key, (update, announced, since) in list(self._held.items()):
            if now - since >= HOLD_MAX_S:
                del self._held[key]
                self._counts["released_late"] += 1
                self._log.warning("BYBIT_FILLS_LATE: {} is {} with {} filled at the venue, {} seen in {:.1f}s; "
                                  "delivered without them", update.client_order_id, update.status.value, announced,
                                  self._filled(key), now - since)
                self._deliver(update)

    def _drop_held(self, why: str) -> None:
        if not self._held:
            return
        for update, announced, _ in self._held.values():
            self._counts["held_dropped"] += 1
            self._log.warning("BYBIT_HELD_UPDATE_DROPPED: {} {} (waiting for {} filled) on {}: REST polling "
                              "settles it", update.client_order_id, update.status.value, announced,
                              self._credentials.redact(why))
        self._held.clear()

    def _deliver(self, event: VenueEvent) -> None:
        sink = self._on_event
        if sink is not None:
            self._call(sink, event)

    def _report(self, up: bool, why: str) -> None:
        sink = self._on_state
        if sink is not None:
            self._call(sink, up, why)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - the caller's code must not end the stream
            self._log.opt(exception=error).error("BYBIT_PRIVATE_CALLBACK_FAILED: {}: {}", type(error).__name__,
                                                 self._credentials.redact(str(error)))
