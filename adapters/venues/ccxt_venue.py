"""The live venue: a real exchange account through synchronous ccxt, behind
``adapters.ports.LiveVenuePort`` (the same contract as ``PaperVenue``: orders identified by the
engine's client order id, outcomes arriving as events).

**It owns** one ccxt instance with the account's keys (``enableRateLimit=False``: every HTTP
request, market loading included, first takes a token from the process-wide ``TokenBucket``
through ccxt's ``fetch`` hook, as ``adapters/feeds/rest_fallback`` does), the private stream
(``PrivateStream``: Binance ``binance_user_data.BinanceUserDataStream``, Bybit
``bybit_private.BybitPrivateStream``), the orders in flight (submitted and not yet final: client
id, coin, quantity, the trade ids already pushed) and one housekeeping thread (REST polling
while the stream is down, the end of a ban). A dialect (``ccxt_binance.BinanceDialect`` for ``binanceusdm``
and ``binance``, ``ccxt_bybit.BybitDialect`` for ``bybit`` linear and spot) knows the venue's endpoints,
parameters and payloads; the venue around it is generic.

**It accepts** the port's calls from any thread (REST calls are serialized on one lock, so each
waits at most for one other request, bounded by ``[venue] timeout_s``). **It emits** to the
bound sink (events that arrive before ``bind`` are held and handed over by it): ``Fill`` and
``OrderUpdate`` from the private stream, from the answer to a submit, and from REST polling
while the stream is down; ``VenueNotice`` BANNED / BAN_LIFTED / STREAM_DOWN / STREAM_UP /
AUTH_FAILED. A trade id already pushed for an order in flight (or among the last
``RECENT_TRADES``) is not pushed again, and an order's status only when it changed; the
Executor dedupes by trade id anyway.

**Submit.** Amounts and prices are written from the engine's ``MarketRules`` (``markets(coin)``)
as exact decimal strings; one that is not on the coin's step or tick is refused
(``InvalidOrder``), never rounded here. The client order id goes out as Binance's
``newClientOrderId`` / Bybit's ``orderLinkId``; exits are reduce-only on derivatives
(``reduceOnly``), never on spot; post-only is ``GTX`` on USD-M, ``LIMIT_MAKER`` on spot,
``PostOnly`` on Bybit. The answer's status is pushed at once (ACCEPTED, or EXPIRED for a
post-only that would take, ...), and a spot answer's fills too. A venue that already has the
client id (a resubmit) is looked up and what it has is pushed: never a second order. Errors are
translated by ``ccxt_errors.translate``: a timeout, a dropped connection or a 5xx leaves the
order in flight and raises ``AmbiguousOutcome`` (the Executor asks ``fetch_order``).

**Bans.** A 429 (``RateLimited``) or 418 (``Banned``) closes the gate until the venue's time
(``Retry-After``, the "banned until" of the message, else a default): no request at all goes
out before (``submit`` raises ``RateLimited`` at once, naming the time), a ``VenueNotice(BANNED)``
is pushed, and ``BAN_LIFTED`` when the time has passed. Binance's ``X-MBX-USED-WEIGHT-1M`` is
read on every answer: past ``WEIGHT_SLOW_SHARE`` of the limit, reads (polling, lookups,
snapshots) wait for the next minute while orders and cancels still go.

**Time.** ccxt's ``load_time_difference`` runs at connect and again when a request's timestamp
is refused (Binance -1021, ``ClockSkew``: the request is made once more with the new offset).

**Keys** never appear in a text this module makes: ccxt's messages carry the requested URL
(signature masked by ``state.secrets.mask_url``), and every error text also goes through
``Credentials.redact``; ccxt's own debug logging (request headers) is dropped.

**Decimal context.** ccxt sets ``ROUND_HALF_UP`` in the calling thread's decimal context
(``decimal_to_precision``); every ccxt call here runs in a local copy of the context, so the
caller's thread (the Executor's) keeps the engine's rounding.

**It recovers**: nothing is held that a restart needs. The Executor reconciles its non-final
orders through ``fetch_order`` after a restart, and the venue tracks what that finds still
working as in flight.
"""

from __future__ import annotations

import decimal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from loguru import logger

from adapters.errors import (
    AmbiguousOutcome,
    AuthenticationFailed,
    Banned,
    ExchangeError,
    FatalExchangeError,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    TemporaryError,
    UnsupportedAccount,
)
from adapters.feeds.live_feeds import ccxt_symbol, exchange_symbols
from adapters.feeds.rest_fallback import (
    allowed_url,
    apply_api_urls,
    exchange_class,
    market_options,
    rebase_api_urls,
)
from adapters.net.rate_limit import RateLimitTimeout, TokenBucket
from adapters.ports import Clock, VenueEventSink
from adapters.venues.ccxt_errors import (
    DEFAULT_RATE_LIMIT_S,
    Action,
    ClockSkew,
    DuplicateClientId,
    translate,
    utc,
)
from state.account import AccountSnapshot, HeldPosition, StreamState, VenueStartup, VenueStatus
from state.config import Config
from state.market import MarketRules
from state.messages import OrderRequest
from state.order import (
    FINAL_STATUSES,
    Fill,
    NoticeKind,
    OrderUpdate,
    VenueEvent,
    VenueNotice,
    VenueOrder,
)
from state.secrets import Credentials, mask_url
from state.types import OrderStatus

ZERO = Decimal(0)
RECENT_TRADES = 10_000  # trade ids remembered after their order left the in-flight set
MISSING_DROP_S = 120.0  # an order in flight the venue has not heard of for this long is no longer polled
WEIGHT_SLOW_SHARE = Decimal("0.9")  # of the per-minute request weight: past it, reads wait
STREAM_START_WAIT_S = 5.0  # connect waits this long (at most) for the private stream to be up
TRADES_PAGE = 1000  # Binance's largest page of trades
FILLS_LOOKBACK_MS = 180 * 86_400_000  # Binance USD-M answers trades of the last 6 months only
IDLE_TICK_S = 1.0  # the housekeeping thread looks at bans this often when nothing else wakes it


class PrivateStream(Protocol):
    """A venue's private (user-data) stream: fills and order updates of the account.

    ``start(on_event, on_state)``: open it (raises the venue's errors when it cannot even
    begin: keys refused, venue unreachable); ``on_event`` gets ``Fill`` / ``OrderUpdate`` of
    the configured coins (any client id); ``on_state(False, why)`` when the stream is lost,
    ``on_state(True, why)`` once it is connected (and authenticated / subscribed) again.
    ``stop()``: close it, release what it holds (a listen key); idempotent. ``stats()``:
    counters for the status line."""

    def start(self, on_event: Callable[[VenueEvent], None], on_state: Callable[[bool, str], None]) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class GateClosed(RateLimited):
    """The venue's own gate: a ban (418/429) or the request weight says not yet; nothing was sent."""


def decimal_text(value: Decimal, increment: Decimal, what: str) -> str:
    """``value`` as the exact decimal string an exchange wants (no exponent, no trailing
    zeros); ``InvalidOrder`` when it is not a positive multiple of ``increment``."""
    if value <= 0 or value % increment != 0:
        raise InvalidOrder(f"{what} {value} is not a positive multiple of {increment}: not sent")
    text = format(value.normalize(), "f")
    return text


@dataclass
class _InFlight:
    """An order the venue watches: submitted (or found working) and not yet known final."""

    coin: str
    quantity: Decimal
    since_ms: int
    seen: set[str] = field(default_factory=set)  # trade ids pushed
    filled: Decimal = ZERO  # sum of the fills pushed
    status: OrderStatus | None = None  # the last status pushed
    final: OrderStatus | None = None
    expected_filled: Decimal = ZERO  # the filled quantity the venue reported with the final status
    missing_since_ms: int | None = None

    @property
    def done(self) -> bool:
        if self.filled >= self.quantity:
            return True
        return self.final is not None and self.filled >= self.expected_filled


class _QuietLogger:
    """Stands in for ccxt's stdlib logger: its debug lines hold request headers (the API key),
    so they are dropped; anything else is forwarded, masked."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    def debug(self, *args: Any, **kwargs: Any) -> None:
        return None

    def _forward(self, level: str, message: Any, *args: Any) -> None:
        try:
            text = str(message) % args if args else str(message)
        except (TypeError, ValueError):
            text = f"{message} {args}"
        logger.bind(actor="executor").log(level, "CCXT_LOG: {}", self._redact(mask_url(text)))

    def info(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._forward("INFO", message, *args)

    def warning(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._forward("WARNING", message, *args)

    warn = warning

    def error(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._forward("ERROR", message, *args)

    def exception(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._forward("ERROR", message, *args)

    critical = error

    def __getattr__(self, name: str) -> Any:  # isEnabledFor, log, ...: nothing ccxt needs an answer from
        return lambda *args, **kwargs: None


# --- the venue -----------------------------------------------------------------------------------

class CcxtVenue:
    """See the module docstring."""

    live = True

    @classmethod
    def from_config(cls, config: Config, *, credentials: Credentials, limiter: TokenBucket, clock: Clock,
                    markets: Callable[[str], MarketRules]) -> CcxtVenue:
        """The venue of ``[venue]`` (exchange and market follow the live feed when empty), for
        the feed's coins and symbols (``[feed] symbols`` / ``symbol_map``)."""
        venue = config.venue
        exchange_id = venue.exchange_for(config.feed)
        market = venue.market_for(config.feed)
        return cls(exchange_id, market, symbols=exchange_symbols(config.feed), credentials=credentials,
                   limiter=limiter, clock=clock, markets=markets, testnet=venue.testnet,
                   rest_url=venue.rest_url, ws_url=venue.ws_url, margin_mode=venue.margin_mode,
                   leverage={coin: venue.leverage_for(coin) for coin in config.feed.symbols},
                   recv_window_ms=venue.recv_window_ms, timeout_s=venue.timeout_s, poll_s=venue.poll_s,
                   ping_interval_s=venue.ping_interval_s, silence_timeout_s=venue.silence_timeout_s,
                   listen_key_keepalive_s=venue.listen_key_keepalive_s)

    def __init__(
        self,
        exchange_id: str,
        market: str,
        *,
        symbols: Mapping[str, str],
        credentials: Credentials,
        limiter: TokenBucket,
        clock: Clock,
        markets: Callable[[str], MarketRules],
        testnet: bool = True,
        rest_url: str = "",
        ws_url: str = "",
        margin_mode: str = "isolated",
        leverage: Mapping[str, int] | None = None,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        poll_s: float = 1.0,
        ping_interval_s: float = 20.0,
        silence_timeout_s: float = 60.0,
        listen_key_keepalive_s: float = 1800.0,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        stream_factory: Callable[[CcxtVenue], PrivateStream] | None = None,
    ) -> None:
        """``symbols``: coin -> exchange symbol (``BTC`` -> ``BTCUSDT``). ``wall_ms``: the wall
        clock of bans and notices (the engine clock may be a tick clock). ``stream_factory``:
        tests may give another private stream (default: the dialect's)."""
        if not symbols:
            raise ValueError("symbols: at least one coin must be traded")
        if timeout_s <= 0 or poll_s <= 0:
            raise ValueError(f"timeout_s and poll_s must be positive, got {timeout_s} and {poll_s}")
        self.name = exchange_id
        self.exchange_id = exchange_id
        self.market = market
        self.testnet = testnet
        self.credentials = credentials
        self.coins: dict[str, str] = dict(symbols)  # coin -> exchange symbol
        self.by_symbol: dict[str, str] = {symbol: coin for coin, symbol in self.coins.items()}
        self.limiter = limiter
        self.clock = clock
        self.markets = markets
        self.rest_url = rest_url
        self.ws_url = ws_url
        self.margin_mode = margin_mode
        self.leverage = {coin: int((leverage or {}).get(coin, 1)) for coin in self.coins}
        self.recv_window_ms = recv_window_ms
        self.timeout_s = float(timeout_s)
        self.poll_s = float(poll_s)
        self.ping_interval_s = ping_interval_s
        self.silence_timeout_s = silence_timeout_s
        self.listen_key_keepalive_s = listen_key_keepalive_s
        self.wall_ms = wall_ms
        self._stream_factory = stream_factory
        self._log = logger.bind(actor="executor")
        self.dialect = make_dialect(self)

        exchange = exchange_class(exchange_id)({
            "apiKey": credentials.key, "secret": credentials.secret,
            "enableRateLimit": False, "timeout": int(self.timeout_s * 1000),
            "options": {**market_options(exchange_id, self.dialect.ccxt_symbols()),
                        **self.dialect.ccxt_options(recv_window_ms)},
        })
        exchange.logger = _QuietLogger(self.redact)
        # Currencies are not needed, and loading them signs extra requests (binance: /sapi
        # capital config, bybit: /v5/asset/coin/query-info) before the time offset is known.
        exchange.has = {**exchange.has, "fetchCurrencies": False}
        if rest_url:
            self._origins = apply_api_urls(exchange, rebase_api_urls(exchange_id, rest_url))
        else:
            self._origins = None
            if testnet:
                exchange.set_sandbox_mode(True)
        self._http_fetch = exchange.fetch
        exchange.fetch = self._fetch
        self._on_rest_response = exchange.on_rest_response
        exchange.on_rest_response = self._response_hook
        self.exchange = exchange

        self._rest_lock = threading.RLock()  # one REST request at a time on the ccxt instance
        self._state = threading.RLock()  # in-flight orders, gate, sink, stream state
        self._deliver_lock = threading.RLock()  # a sink that calls back into the venue does not deadlock
        self._current_action: str = "read"  # of the request being made (inside _rest_lock)
        self._status: int | None = None  # of the last answer (inside _rest_lock)
        self._headers: Mapping[str, Any] | None = None
        self._sink: VenueEventSink | None = None
        self._held: list[VenueEvent] = []  # events before bind
        self._inflight: dict[str, _InFlight] = {}
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()  # (client id, trade id) pushed
        self._finished: OrderedDict[str, OrderStatus] = OrderedDict()  # orders that left the in-flight set
        self._order_ids: OrderedDict[str, str] = OrderedDict()  # venue order id -> client order id
        self._banned_until_ms: int | None = None
        self._ban_reason = ""
        self._weight_until_ms: int | None = None
        self._weight_used: int | None = None
        self._halted: str | None = None
        self._stream: PrivateStream | None = None
        self._stream_state = StreamState.OFF
        self._stream_was_up = False
        self._catch_up = False
        self._connected = False
        self._closed = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None
        self.time_offset_ms = 0
        self.requests = 0
        self.duplicates = 0
        self.polls = 0
        self.last_error: str | None = None

    # --- text hygiene -----------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with URL credentials masked and the key and secret replaced by ``***``."""
        return self.credentials.redact(mask_url(str(text)))

    # --- the HTTP hooks (inside a ccxt call, under _rest_lock) ---------------------------------------

    def _fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        if not allowed_url(url, self._origins):
            raise TemporaryError(self.redact(f"{self.exchange_id}: refused {method} {url}: host not the "
                                             f"configured rest_url"))
        self._gate("order" if self._current_action in ("submit", "cancel") else "read")
        try:
            self.limiter.acquire(timeout=self.timeout_s)
        except RateLimitTimeout as error:
            raise TemporaryError(f"{self.exchange_id}: no REST token within {self.timeout_s:g}s: {error}") from None
        self.requests += 1
        self._status, self._headers = None, None
        return self._http_fetch(url, method, headers, body)

    def _response_hook(self, code: Any, reason: Any, url: Any, method: Any, response_headers: Any,
                       response_body: Any, request_headers: Any, request_body: Any) -> Any:
        self._status = int(code) if code is not None else None
        self._headers = response_headers
        self._read_weight(response_headers)
        return self._on_rest_response(code, reason, url, method, response_headers, response_body,
                                      request_headers, request_body)

    def _read_weight(self, headers: Any) -> None:
        limit = self.dialect.weight_limit
        if not limit or headers is None:
            return
        used = None
        for name, value in dict(headers).items():
            if str(name).lower() == "x-mbx-used-weight-1m":
                try:
                    used = int(str(value))
                except ValueError:
                    return
        if used is None:
            return
        self._weight_used = used
        if used >= WEIGHT_SLOW_SHARE * limit:
            now = self.wall_ms()
            until = (now // 60_000 + 1) * 60_000
            with self._state:
                first = self._weight_until_ms is None or self._weight_until_ms < now
                self._weight_until_ms = until
            if first:
                self._log.warning("VENUE_WEIGHT_HIGH: {} request weight {} of {} used this minute; reads wait "
                                  "until {}", self.exchange_id, used, limit, utc(until))

    def _gate(self, kind: str) -> None:
        now = self.wall_ms()
        with self._state:
            banned, weight = self._banned_until_ms, self._weight_until_ms
        if banned is not None and now < banned:
            raise GateClosed(f"{self.exchange_id}: no request before {utc(banned)} ({self._ban_reason})",
                             retry_after_s=(banned - now) / 1000)
        if kind == "read" and weight is not None and now < weight:
            raise GateClosed(f"{self.exchange_id}: request weight near the limit ({self._weight_used} of "
                             f"{self.dialect.weight_limit}); reads resume at {utc(weight)}",
                             retry_after_s=(weight - now) / 1000)

    # --- one REST call ---------------------------------------------------------------------------

    def call(self, method: str | Callable[[dict[str, Any]], Any], params: Mapping[str, Any] | None = None, *,
             action: Action = "read") -> Any:
        """One call of ccxt's implicit API (``"fapiPrivatePostOrder"``..., or a callable given
        the params) through the gate, the bucket and the error translation; the raw answer. A
        refused timestamp (-1021) measures the offset again and makes the request once more."""
        for attempt in (1, 2):
            result, error = self._call_once(method, dict(params or {}), action)
            if error is None:
                return result
            if isinstance(error, ClockSkew) and attempt == 1 and method != "fetch_time":
                self._log.warning("VENUE_CLOCK_SKEW: {}; measuring the server time again", error)
                self.sync_time()
                continue
            self._after_error(error)
            raise error from None
        raise AssertionError("unreachable")

    def _call_once(self, method: str | Callable[[dict[str, Any]], Any], params: dict[str, Any],
                   action: Action) -> tuple[Any, ExchangeError | None]:
        function = getattr(self.exchange, method) if isinstance(method, str) else method
        with self._rest_lock:
            self._current_action = action
            try:
                with decimal.localcontext():  # ccxt sets ROUND_HALF_UP in the calling thread's context
                    result = function(params)
            except Exception as exc:  # noqa: BLE001 - every failure is translated
                return None, translate(exc, action=action, exchange=self.exchange_id, status=self._status,
                                       headers=self._headers, now_ms=self.wall_ms(), redact=self.redact)
            finally:
                self._current_action = "read"
        self._after_success()
        return result, None

    def _after_success(self) -> None:
        with self._state:
            lifted = self._banned_until_ms is not None and self.wall_ms() >= self._banned_until_ms
            if lifted:
                self._banned_until_ms = None
        if lifted:
            self._notice(NoticeKind.BAN_LIFTED, f"{self.exchange_id}: requests answered again")

    def _after_error(self, error: ExchangeError) -> None:
        self.last_error = str(error)
        if isinstance(error, GateClosed):
            return
        if isinstance(error, Banned):
            self._close_gate(error.until_ms, str(error))
        elif isinstance(error, RateLimited):
            wait_s = error.retry_after_s if error.retry_after_s is not None else DEFAULT_RATE_LIMIT_S
            self._close_gate(self.wall_ms() + int(wait_s * 1000), str(error))
        elif isinstance(error, AuthenticationFailed) and self._connected:
            with self._state:
                first = self._halted is None
                self._halted = str(error)
            if first:
                self._notice(NoticeKind.AUTH_FAILED, str(error))

    def _close_gate(self, until_ms: int, why: str) -> None:
        with self._state:
            if self._banned_until_ms is not None and self._banned_until_ms >= until_ms:
                return
            self._banned_until_ms = until_ms
            self._ban_reason = why
        self._log.error("VENUE_BANNED: {} no request before {}: {}", self.exchange_id, utc(until_ms), why)
        self._notice(NoticeKind.BANNED, why, until_ms=until_ms)
        self._wake.set()

    def sync_time(self) -> int:
        """Measure the server-time offset (ccxt ``load_time_difference``: signed requests then
        carry the venue's time); returns it (venue minus local, ms)."""
        difference = self.call(lambda _params: self.exchange.load_time_difference())
        self.time_offset_ms = -int(difference or 0)
        return self.time_offset_ms

    # --- events ----------------------------------------------------------------------------------

    def bind(self, sink: VenueEventSink) -> None:
        with self._deliver_lock:
            self._sink = sink
            held, self._held = self._held, []
            for event in held:
                sink(event)

    def _notice(self, kind: NoticeKind, message: str, *, until_ms: int | None = None) -> None:
        self._emit([VenueNotice(kind=kind, message=self.redact(message), ts_ms=self.wall_ms(), until_ms=until_ms)])

    def _emit(self, events: list[VenueEvent]) -> None:
        with self._deliver_lock:
            for event in events:
                if self._sink is None:
                    self._held.append(event)
                else:
                    self._sink(event)

    def push(self, events: list[VenueEvent] | tuple[VenueEvent, ...], *, final_filled: Mapping[str, Decimal]
             | None = None) -> None:
        """Hand ``events`` on, minus what was already pushed (a trade id seen, a status
        unchanged), and keep the in-flight set current. ``final_filled``: client id -> filled
        quantity the venue reported with a final status (REST), so the order leaves the set
        only once all its fills were pushed."""
        out: list[VenueEvent] = []
        with self._state:
            for event in events:
                if isinstance(event, Fill):
                    key = (event.client_order_id, event.trade_id)
                    entry = self._inflight.get(event.client_order_id)
                    if key in self._recent or (entry is not None and event.trade_id in entry.seen):
                        self.duplicates += 1
                        continue
                    self._remember(key)
                    if entry is not None:
                        entry.seen.add(event.trade_id)
                        entry.filled += event.quantity
                    out.append(event)
                elif isinstance(event, OrderUpdate):
                    entry = self._inflight.get(event.client_order_id)
                    ended = self._finished.get(event.client_order_id)
                    if entry is None and ended is not None and (event.status is ended or event.status is
                                                                 OrderStatus.ACCEPTED):
                        self.duplicates += 1
                        continue  # the end of an order already pushed, said again (REST answer, stream)
                    if entry is not None:
                        if entry.status is event.status or (entry.final is not None and event.status is
                                                            OrderStatus.ACCEPTED):
                            continue
                        entry.status = event.status
                        if event.status in FINAL_STATUSES:
                            entry.final = event.status
                            entry.expected_filled = (final_filled or {}).get(event.client_order_id, entry.filled)
                    out.append(event)
                else:
                    out.append(event)
            for coid, filled in (final_filled or {}).items():
                entry = self._inflight.get(coid)
                if entry is not None and entry.final is not None:
                    entry.expected_filled = max(entry.expected_filled, filled)
            for coid in [coid for coid, entry in self._inflight.items() if entry.done]:
                self._finish(coid)
        self._emit(out)

    def _finish(self, coid: str) -> None:
        """``coid`` leaves the in-flight set (inside ``_state``); its end is remembered."""
        entry = self._inflight.pop(coid, None)
        if entry is None:
            return
        self._finished[coid] = entry.final or OrderStatus.FILLED
        while len(self._finished) > RECENT_TRADES:
            self._finished.popitem(last=False)

    def _remember(self, key: tuple[str, str]) -> None:
        self._recent[key] = None
        while len(self._recent) > RECENT_TRADES:
            self._recent.popitem(last=False)

    def remember_order_id(self, venue_order_id: str, client_order_id: str) -> None:
        with self._state:
            self._order_ids[venue_order_id] = client_order_id
            while len(self._order_ids) > RECENT_TRADES:
                self._order_ids.popitem(last=False)

    def client_id_of(self, venue_order_id: str) -> str | None:
        with self._state:
            return self._order_ids.get(venue_order_id)

    def track(self, client_order_id: str, coin: str, quantity: Decimal) -> None:
        with self._state:
            if client_order_id not in self._inflight:
                self._inflight[client_order_id] = _InFlight(coin=coin, quantity=quantity, since_ms=self.wall_ms())

    def untrack(self, client_order_id: str) -> None:
        with self._state:
            self._inflight.pop(client_order_id, None)

    def in_flight(self) -> dict[str, str]:
        """Client id -> coin of every order being watched."""
        with self._state:
            return {coid: entry.coin for coid, entry in self._inflight.items()}

    # --- the port --------------------------------------------------------------------------------

    def connect(self) -> VenueStartup:
        """See ``LiveVenuePort.connect``. Raises ``AuthenticationFailed``, ``UnsupportedAccount``
        or ``TemporaryError`` (the venue cannot be reached), each naming the cause."""
        if self._closed:
            raise TemporaryError(f"{self.exchange_id}: the venue was closed")
        notes: list[str] = []
        try:
            self.call(lambda _params: self.exchange.load_markets())
            missing = sorted(s for s in self.coins.values() if s not in (self.exchange.markets_by_id or {}))
            if missing:
                raise UnsupportedAccount(f"{self.exchange_id}: not a {self.market} market there: {', '.join(missing)}")
            cash_asset = self.cash_asset()
            offset = self.sync_time()
            balances = self.dialect.prove_keys()
            position_mode = self.dialect.check_position_mode()
            leverage, margin = self.dialect.set_leverage_and_margin()
        except FatalExchangeError:
            raise
        except InvalidOrder as error:  # a refused setting (e.g. margin mode with a position open)
            raise UnsupportedAccount(str(error)) from None
        except TemporaryError as error:
            raise TemporaryError(f"{self.exchange_id}: the venue cannot be reached or refused the start-up "
                                 f"checks: {error}") from None
        self._connected = True
        self._start_stream(notes)
        self._keeper = threading.Thread(target=self._housekeeping, name=f"{self.exchange_id}-venue", daemon=True)
        self._keeper.start()
        where = self.rest_url and self.redact(self.rest_url) or ("testnet" if self.testnet else "production")
        notes.insert(0, f"{self.exchange_id} {self.market} ({where}), server time offset {offset} ms")
        self._log.info("VENUE_CONNECTED: {}", "; ".join(notes))
        return VenueStartup(exchange=self.exchange_id, market=self.market, testnet=self.testnet,
                            server_time_offset_ms=offset, position_mode=position_mode, balances=balances,
                            leverage=leverage, margin_mode=margin, notes=tuple(notes), cash_asset=cash_asset)

    def cash_asset(self) -> str:
        """The asset the account's cash is in, from the loaded markets: the settle asset of a
        derivative (``USDT`` for ``BTC/USDT:USDT``), the quote asset on spot. Coins that settle
        in different assets are ``UnsupportedAccount`` (one engine keeps one cash)."""
        assets: dict[str, str] = {}
        for coin, symbol in self.coins.items():
            found = (self.exchange.markets_by_id or {}).get(symbol) or []
            market = found[0] if isinstance(found, list) and found else found
            if not isinstance(market, Mapping):
                continue
            asset = market.get("settle") or market.get("quote")
            if asset:
                assets[coin] = str(asset)
        if len(set(assets.values())) > 1:
            raise UnsupportedAccount(f"{self.exchange_id}: the coins settle in different assets "
                                     f"({', '.join(f'{c} {a}' for c, a in sorted(assets.items()))}); one engine "
                                     "keeps its cash in one asset")
        return next(iter(assets.values()), "")

    def _start_stream(self, notes: list[str]) -> None:
        stream = self._stream_factory(self) if self._stream_factory else self.dialect.make_stream()
        settled = threading.Event()  # up, or its login refused
        self._stream = stream
        with self._state:
            self._stream_state = StreamState.DOWN

        def on_state(is_up: bool, why: str) -> None:
            self._stream_changed(is_up, why)
            if is_up or why.startswith("AUTH_FAILED"):
                settled.set()

        try:
            stream.start(self._stream_event, on_state)
        except ExchangeError as error:
            self._after_error(error)
            if isinstance(error, FatalExchangeError):
                raise
            raise TemporaryError(f"{self.exchange_id}: the private stream cannot start: {error}") from None
        settled.wait(min(STREAM_START_WAIT_S, self.timeout_s))
        with self._state:
            halted, up = self._halted, self._stream_state is StreamState.UP
        if halted is not None:  # the stream's login was refused: the keys cannot trade here
            self._stream = None
            stream.stop()
            raise AuthenticationFailed(halted)
        if not up:
            notes.append("private stream not up yet: orders in flight are polled over REST")
            self._log.warning("VENUE_STREAM_DOWN: {} private stream not up after start; polling over REST",
                              self.exchange_id)

    def _stream_event(self, event: VenueEvent) -> None:
        if isinstance(event, Fill):
            self.remember_order_id(event.venue_order_id, event.client_order_id)
        self.push([event])

    def _stream_changed(self, up: bool, why: str) -> None:
        if not up and why.startswith("AUTH_FAILED"):  # the stream's login was refused (Bybit): halt
            self._after_error(AuthenticationFailed(f"{self.exchange_id}: the private stream's login was refused: "
                                                   f"{self.redact(why)}"))
        with self._state:
            before = self._stream_state
            if self._closed:
                return
            self._stream_state = StreamState.UP if up else StreamState.DOWN
            first = up and not self._stream_was_up
            if up:
                self._stream_was_up = True
                self._catch_up = True  # what happened while it was down: one more poll
        if up and (first or before is not StreamState.UP):
            self._log.info("VENUE_STREAM_UP: {} private stream connected ({})", self.exchange_id, why)
            if not first:  # back after a loss (the first connect is part of the start, no news)
                self._notice(NoticeKind.STREAM_UP, f"{self.exchange_id} private stream up: {why}")
        elif not up and before is StreamState.UP:
            self._log.warning("VENUE_STREAM_DOWN: {} private stream lost ({}); polling orders in flight every "
                              "{:g}s", self.exchange_id, why, self.poll_s)
            self._notice(NoticeKind.STREAM_DOWN, f"{self.exchange_id} private stream lost: {why}")
        self._wake.set()

    def submit(self, order: OrderRequest) -> None:
        self._refuse_if_halted()
        self._gate("order")  # banned: RateLimited at once, nothing recorded
        params = self.dialect.order_params(order, self.markets(order.coin))
        self.track(order.client_order_id, order.coin, order.quantity)
        try:
            answer = self.call(self.dialect.create_method, params, action="submit")
        except DuplicateClientId:
            self._log.warning("ORDER_DUPLICATE_ID: {} already at {}; looking it up", order.client_order_id,
                              self.exchange_id)
            found = self._lookup(order.client_order_id, order.coin)
            if found is None:
                raise AmbiguousOutcome(f"{self.exchange_id}: says {order.client_order_id} is a duplicate "
                                       f"but cannot find it") from None
            return
        except AmbiguousOutcome:
            raise  # still in flight: polled, and the Executor asks fetch_order
        except ExchangeError:
            self.untrack(order.client_order_id)
            raise
        try:
            events, filled, final = self.dialect.submitted(answer, order)
        except (ValueError, KeyError, TypeError) as error:  # placed, but the answer is unreadable
            raise AmbiguousOutcome(f"{self.exchange_id}: the answer to {order.client_order_id} cannot be read "
                                   f"({self.redact(str(error))}); the order may exist") from None
        self.push(events, final_filled={order.client_order_id: filled} if final else None)

    def cancel(self, client_order_id: str) -> None:
        self._refuse_if_halted()
        coin = self.in_flight().get(client_order_id)
        coins = [coin] if coin else list(self.coins)
        last: ExchangeError | None = None
        for candidate in coins:
            try:
                answer = self.dialect.cancel(candidate, client_order_id)
            except OrderNotFound as error:
                last = error
                continue
            events, filled, final = self.dialect.canceled(answer, candidate)
            self.push(events, final_filled={client_order_id: filled} if final else None)
            return
        raise last or OrderNotFound(f"{self.exchange_id}: no order {client_order_id}")

    def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        coin = self.in_flight().get(client_order_id)
        found = self._lookup(client_order_id, coin)
        if found is None:
            self._missing(client_order_id)  # an ambiguous submit that never arrived stops being watched
        return found

    def _lookup(self, client_order_id: str, coin: str | None) -> VenueOrder | None:
        """The venue's order (with its fills) on ``coin`` (every coin when unknown); pushes
        what is new about it and tracks it while it is working."""
        for candidate in [coin] if coin else list(self.coins):
            with _readable(self, "the order " + client_order_id):
                found = self.dialect.fetch_order(candidate, client_order_id)
            if found is None:
                continue
            self._absorb(found)
            return found
        return None

    def _absorb(self, order: VenueOrder) -> None:
        """Push what ``order`` (read over REST) says that was not pushed yet; track it while
        it is working."""
        self.remember_order_id(order.venue_order_id, order.client_order_id)
        if order.status not in FINAL_STATUSES:
            self.track(order.client_order_id, order.coin, order.quantity)
        events = order_events(order, self.wall_ms())
        final = order.status in FINAL_STATUSES
        self.push(events, final_filled={order.client_order_id: order.filled_quantity} if final else None)
        if final and sum((f.quantity for f in order.fills), ZERO) >= order.filled_quantity:
            with self._state:
                self._finish(order.client_order_id)

    def open_orders(self, coin: str | None = None) -> list[VenueOrder]:
        coins = [coin] if coin else list(self.coins)
        found: list[VenueOrder] = []
        for candidate in coins:
            with _readable(self, f"the open orders of {candidate}"):
                found.extend(self.dialect.open_orders(candidate))
        for order in found:
            self.remember_order_id(order.venue_order_id, order.client_order_id)
        return found

    def account(self, fills_since_ms: int | None = None) -> AccountSnapshot:
        with _readable(self, "the account"):
            balances = self.dialect.balances()
            positions = self.dialect.positions(balances)
        orders = tuple(self.open_orders())
        fills: list[Fill] = []
        if fills_since_ms is not None:
            for coin in self.coins:
                with _readable(self, f"the fills of {coin}"):
                    fills.extend(self.dialect.fills_since(coin, fills_since_ms))
            fills.sort(key=lambda fill: (fill.ts_ms, fill.trade_id))
        return AccountSnapshot(taken_ms=self.wall_ms(), balances=balances, positions=tuple(positions),
                               open_orders=orders, fills=tuple(fills), fills_since_ms=fills_since_ms)

    def status(self) -> VenueStatus:
        now = self.wall_ms()
        with self._state:
            banned = self._banned_until_ms if self._banned_until_ms and self._banned_until_ms > now else None
            polling = len(self._inflight) if self._stream_state is StreamState.DOWN else 0
            return VenueStatus(name=self.name, live=True, exchange=self.exchange_id, market=self.market,
                               testnet=self.testnet, stream=self._stream_state, banned_until_ms=banned,
                               halted=self._halted, polling=polling, requests=self.requests)

    def stats(self) -> dict[str, Any]:
        stream = self._stream
        return {"exchange": self.exchange_id, "requests": self.requests, "duplicates": self.duplicates,
                "polls": self.polls, "in_flight": len(self.in_flight()), "last_error": self.last_error,
                "weight_used": self._weight_used, "stream": stream.stats() if stream is not None else None}

    def observe_trade(self, coin: str, price: Decimal, quantity: Decimal, ts_ms: int) -> None:
        return None  # the exchange matches its own orders

    def observe_quote(self, coin: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal,
                      ts_ms: int) -> None:
        return None

    def close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._stream_state = StreamState.OFF
        self._stopping.set()
        self._wake.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            except Exception as error:  # noqa: BLE001 - closing goes on
                self._log.warning("VENUE_CLOSE: the private stream did not stop cleanly: {}", self.redact(str(error)))
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(self.timeout_s + 2.0)
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()

    def _refuse_if_halted(self) -> None:
        with self._state:
            halted = self._halted
        if halted is not None:
            raise AuthenticationFailed(f"{self.exchange_id}: trading halted: {halted}")

    # --- housekeeping: polling while the stream is down, the end of a ban -------------------------

    def _housekeeping(self) -> None:
        while not self._stopping.is_set():
            try:
                self._housekeeping_round()
            except Exception:  # noqa: BLE001 - the thread that polls must not die of one bad round
                self._log.exception("VENUE_HOUSEKEEPING_FAILED: {}", self.exchange_id)
                self._stopping.wait(self.poll_s)

    def _housekeeping_round(self) -> None:
        """Wait for the next poll (or a wake-up), end a ban that is over, poll while the stream is down."""
        with self._state:
            down = self._stream_state is StreamState.DOWN
            catch_up = self._catch_up
        self._wake.wait(self.poll_s if (down or catch_up) else min(IDLE_TICK_S, self.poll_s * 5))
        self._wake.clear()
        if self._stopping.is_set():
            return
        self._ban_over()
        with self._state:
            down = self._stream_state is StreamState.DOWN
            catch_up = self._catch_up
        if down or catch_up:
            if self.poll_in_flight() and catch_up:
                with self._state:
                    self._catch_up = False

    def _ban_over(self) -> None:
        with self._state:
            until = self._banned_until_ms
            over = until is not None and self.wall_ms() >= until
            if over:
                self._banned_until_ms = None
        if over:
            self._log.warning("VENUE_BAN_LIFTED: {} requests may go out again", self.exchange_id)
            self._notice(NoticeKind.BAN_LIFTED, f"{self.exchange_id}: the ban until {utc(until)} is over")

    def poll_in_flight(self) -> bool:
        """Ask the venue for every order in flight and push what is new; ``True`` when every
        order could be asked."""
        complete = True
        for coid, coin in self.in_flight().items():
            if self._stopping.is_set():
                return False
            self.polls += 1
            try:
                with _readable(self, "the order " + coid):
                    found = self.dialect.fetch_order(coin, coid)
            except GateClosed:
                return False  # banned or the weight is spent: nothing may go out (said once, when it closed)
            except ExchangeError as error:
                complete = False
                self._log.warning("VENUE_POLL_FAILED: {} {}: {}", self.exchange_id, coid, error)
                if isinstance(error, (RateLimited, FatalExchangeError)):
                    return False
                continue
            if found is None:
                self._missing(coid)
                continue
            self._absorb(found)
        return complete

    def _missing(self, coid: str) -> None:
        now = self.wall_ms()
        with self._state:
            entry = self._inflight.get(coid)
            if entry is None:
                return
            if entry.missing_since_ms is None:
                entry.missing_since_ms = now
            elif now - entry.missing_since_ms >= MISSING_DROP_S * 1000:
                del self._inflight[coid]
                self._log.warning("VENUE_POLL_GAVE_UP: {} {} unknown to the venue for {:g}s; no longer polled",
                                  self.exchange_id, coid, MISSING_DROP_S)


class _readable:  # noqa: N801 - used as a context: ``with _readable(venue, what):``
    """Turns a payload the dialect cannot read (``ValueError``, ``KeyError``, ``TypeError``)
    into a ``TemporaryError`` naming what was read: the venue's answer was odd, not the order."""

    def __init__(self, venue: CcxtVenue, what: str) -> None:
        self.venue, self.what = venue, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any) -> bool:
        if error is not None and isinstance(error, (ValueError, KeyError, TypeError)):
            text = self.venue.redact(f"{type(error).__name__}: {error}")
            raise TemporaryError(f"{self.venue.exchange_id}: {self.what} cannot be read ({text})") from None
        return False


# --- dialects ---------------------------------------------------------------------------------------

class Dialect:
    """What differs between venues: endpoints, parameters, payloads. Methods make their
    requests through ``venue.call`` (gate, bucket, error translation)."""

    create_method = ""
    weight_limit = 0  # per-minute request weight reported in headers (0: none)
    derivatives = False

    def __init__(self, venue: CcxtVenue) -> None:
        self.venue = venue

    # configuration
    def ccxt_symbols(self) -> dict[str, str]:
        """Coin -> ccxt's unified symbol (``BTC/USDT`` on spot, ``BTC/USDT:USDT`` on derivatives)."""
        market = "linear" if self.derivatives else "spot"
        return {coin: ccxt_symbol(coin, symbol, market) for coin, symbol in self.venue.coins.items()}

    def ccxt_options(self, recv_window_ms: int) -> dict[str, Any]: ...
    # start
    def prove_keys(self) -> dict[str, Decimal]: ...
    def check_position_mode(self) -> str: ...
    def set_leverage_and_margin(self) -> tuple[dict[str, int], dict[str, str]]: ...
    def make_stream(self) -> PrivateStream: ...
    # orders
    def order_params(self, order: OrderRequest, rules: MarketRules) -> dict[str, Any]: ...
    def submitted(self, answer: Any, order: OrderRequest) -> tuple[list[VenueEvent], Decimal, bool]: ...
    def cancel(self, coin: str, client_order_id: str) -> Any: ...
    def canceled(self, answer: Any, coin: str) -> tuple[list[VenueEvent], Decimal, bool]: ...
    def fetch_order(self, coin: str, client_order_id: str) -> VenueOrder | None: ...
    def open_orders(self, coin: str) -> list[VenueOrder]: ...
    # account
    def balances(self) -> dict[str, Decimal]: ...
    def positions(self, balances: Mapping[str, Decimal]) -> list[HeldPosition]: ...
    def fills_since(self, coin: str, since_ms: int) -> list[Fill]: ...


def make_dialect(venue: CcxtVenue) -> Dialect:
    if venue.exchange_id in ("binanceusdm", "binance"):
        from adapters.venues.ccxt_binance import BinanceDialect  # noqa: PLC0415 - it imports this module

        return BinanceDialect(venue)
    if venue.exchange_id == "bybit":
        from adapters.venues.ccxt_bybit import BybitDialect  # noqa: PLC0415 - its parsers load lazily too

        return BybitDialect(venue)
    raise ValueError(f"{venue.exchange_id}: not a venue the engine trades (binanceusdm, binance, bybit)")


def order_events(order: VenueOrder, now_ms: int = 0) -> list[VenueEvent]:
    """What a REST view of an order says as events: its acceptance (unless refused), its fills,
    its end (canceled, expired, rejected; filled follows from the fills)."""
    events: list[VenueEvent] = []
    ts = order.ts_ms if order.ts_ms is not None else now_ms
    if order.status is not OrderStatus.REJECTED:
        events.append(OrderUpdate(client_order_id=order.client_order_id, venue_order_id=order.venue_order_id,
                                  status=OrderStatus.ACCEPTED, ts_ms=ts))
    events.extend(order.fills)
    if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
        events.append(OrderUpdate(client_order_id=order.client_order_id, venue_order_id=order.venue_order_id,
                                  status=order.status, ts_ms=ts, reason=order.reason))
    return events


__all__ = ["CcxtVenue", "Dialect", "GateClosed", "PrivateStream", "decimal_text", "order_events"]
