"""The REST fallback of the live feeds: last prices polled over REST while a stream is down.

**Owns** a public-only ccxt exchange instance (``CcxtTickerFetcher``) and the polling thread
(``RestPoller``). The live source activates the poller when its websocket stream has been down
for ``[feed] rest_fallback_after_s`` and deactivates it when the stream is back.

**Rate limit.** Every HTTP request the fetcher makes (market loading included) first takes a
token from the process-wide ``TokenBucket`` (``adapters/net/rate_limit.py``), with a bounded wait;
ccxt's own per-instance limiter is turned off (``enableRateLimit=False``) because it knows
nothing of the other REST users of the process. The hook is ccxt's HTTP-level ``fetch``, so
the count is exact whatever ccxt decides to request.

**Hands over** one tick per coin and poll, ``sink(coin, price, ts_ms, Decimal(0), None)``, and
only when the price or the exchange timestamp changed since the last tick it sent for that
coin. Prices come from the venue's raw string (``info["lastPrice"]``), never through a float.

**Errors** (network, exchange, 429, no token in time, no price) become ``FallbackError``; the
poller counts them, logs each kind once (``REST_FALLBACK_ERROR``) and carries on. Error texts
name the URL ccxt requested: credentials in it (``[feed] rest_url``) are masked
(``state.secrets.mask_url``) in the error, the log line and ``stats()``. A rate-limit
answer (HTTP 429/418: ccxt ``DDoSProtection``, ``RateLimitExceeded``) also pauses polling,
``rate_limited_backoff_s`` doubled per consecutive one (at most ``MAX_BACKOFF_S``), since a
client that keeps polling after a 429 is banned (418).

Requests ccxt makes (ccxt 4.5), with the market types restricted as ``market_options`` does:

- ``binance`` (spot symbols): ``GET /api/v3/exchangeInfo`` once, then per fetch
  ``GET /api/v3/ticker/24hr?symbol=BTCUSDT``.
- ``binanceusdm``: ``GET /fapi/v1/exchangeInfo`` once, then ``GET /fapi/v1/ticker/24hr?symbol=BTCUSDT``.
- ``bybit`` (linear symbols): ``GET /v5/market/instruments-info?category=linear&limit=1000`` and
  the same with ``&status=PreLaunch`` once (more pages only if the venue returns a cursor),
  then ``GET /v5/market/tickers?symbol=BTCUSDT&category=linear``; spot symbols:
  ``GET /v5/market/instruments-info?category=spot`` and ``...tickers?...&category=spot``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from urllib.parse import urlsplit

import ccxt
from loguru import logger

from adapters.errors import TemporaryError
from adapters.ports import TickSink
from adapters.net.rate_limit import RateLimitTimeout, TokenBucket
from state.secrets import mask_url

ERROR_CODE = "REST_FALLBACK_ERROR"
IDLE_WAIT_S = 0.5  # an inactive poller re-checks its flags this often (activate wakes it at once)
STOP_JOIN_S = 2.0
MAX_BACKOFF_S = 120.0


class FallbackError(TemporaryError):
    """A REST fallback fetch failed; nothing was delivered. ``kind`` names the cause (the ccxt
    exception class, ``RateLimitTimeout``, ``NoPrice``, ...), for counting and logging."""

    def __init__(self, message: str, *, exchange: str, coin: str, kind: str) -> None:
        super().__init__(mask_url(message))  # ccxt's texts carry the requested URL
        self.exchange = exchange
        self.coin = coin
        self.kind = kind


# --- building the exchange -------------------------------------------------------------------------

def market_type(symbol: str) -> str:
    """``"spot"``, ``"linear"`` or ``"inverse"`` from a ccxt unified symbol: ``BTC/USDT`` is
    spot, ``BTC/USDT:USDT`` linear (settled in the quote), ``BTC/USD:BTC`` inverse."""
    pair, _, settle = symbol.partition(":")
    if not settle:
        return "spot"
    quote = pair.partition("/")[2]
    return "linear" if settle.split("-")[0] == quote else "inverse"


def market_options(exchange_id: str, symbols: Mapping[str, str]) -> dict[str, Any]:
    """The ccxt options that make ``load_markets`` ask only for the market types of
    ``symbols`` (ccxt's defaults load every type: binance 3 requests, bybit 8 with options)."""
    types = sorted({market_type(symbol) for symbol in symbols.values()})
    if exchange_id in ("binance", "bybit"):
        return {"fetchMarkets": {"types": types}}
    if exchange_id == "binanceusdm":
        return {"fetchMarkets": {"types": ["linear"]}}
    if exchange_id == "binancecoinm":
        return {"fetchMarkets": {"types": ["inverse"]}}
    return {}


def rebase_api_urls(exchange_id: str, base_url: str) -> dict[str, str]:
    """Every entry of ``ccxt.<exchange_id>().urls["api"]`` moved onto ``base_url`` with its path
    kept (``https://api.binance.com/api/v3`` -> ``<base_url>/api/v3``): ``api_urls`` that send
    every request of the exchange to one server (a local test server, a proxy)."""
    api = _exchange_class(exchange_id)().urls["api"]
    if not isinstance(api, Mapping):
        raise ValueError(f"{exchange_id}: urls['api'] is not a mapping ({api!r})")
    base = base_url.rstrip("/")
    return {key: base + urlsplit(value).path.rstrip("/") for key, value in api.items() if isinstance(value, str)}


def _exchange_class(exchange_id: str) -> type[ccxt.Exchange]:
    cls = getattr(ccxt, exchange_id, None)
    if exchange_id not in ccxt.exchanges or cls is None:
        raise ValueError(f"unknown ccxt exchange id {exchange_id!r}")
    return cls


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def exchange_class(exchange_id: str) -> type[ccxt.Exchange]:
    """The ccxt class of ``exchange_id``; ``ValueError`` for an id ccxt does not have."""
    return _exchange_class(exchange_id)


def apply_api_urls(exchange: ccxt.Exchange, api_urls: Mapping[str, str] | None) -> frozenset[str] | None:
    """Replace entries of ``exchange.urls["api"]`` with ``api_urls`` (from ``rebase_api_urls``)
    and return the origins a request may then go to (``None``: no override, any). Raises
    ``ValueError`` for a key ccxt does not have."""
    if api_urls is None:
        return None
    current = exchange.urls.get("api")
    if not isinstance(current, dict):
        raise ValueError(f"{exchange.id}: urls['api'] is not a mapping; cannot override it")
    unknown = sorted(set(api_urls) - set(current))
    if unknown:
        raise ValueError(f"{exchange.id}: unknown api_urls keys {unknown}; known: {sorted(current)}")
    exchange.urls["api"] = {**current, **dict(api_urls)}
    return frozenset(_origin(url) for url in api_urls.values())


def allowed_url(url: str, origins: frozenset[str] | None) -> bool:
    """Whether a request to ``url`` may go out given ``apply_api_urls``' origins."""
    return origins is None or _origin(url) in origins


# --- the fetcher -----------------------------------------------------------------------------------

class CcxtTickerFetcher:
    """Last price and exchange timestamp of one coin, over ccxt's public REST API.

    ``symbols`` maps engine coins to ccxt unified symbols (``"BTC" -> "BTC/USDT"`` on
    ``binance``, ``"BTC/USDT:USDT"`` on ``binanceusdm`` or ``bybit`` linear). The instance has
    no API keys and ccxt's own rate limiter is off (``enableRateLimit=False``): ``limiter``, the
    process-wide bucket, limits instead, one token per HTTP request (``load_markets`` too),
    each waited for at most ``acquire_timeout_s`` (default ``timeout_s``). Market loading is
    restricted to the types of ``symbols`` (``market_options``); ``options`` is merged over
    that. ``api_urls`` replaces entries of ccxt's ``urls["api"]`` (e.g. from
    ``rebase_api_urls``); when given, a request to any other host is refused, never sent.

    Thread-safe (one request at a time); ``close`` releases the HTTP session.
    """

    def __init__(
        self,
        exchange_id: str,
        symbols: Mapping[str, str],
        limiter: TokenBucket,
        *,
        api_urls: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        options: Mapping[str, Any] | None = None,
        acquire_timeout_s: float | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("symbols must map at least one coin to a ccxt symbol")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.exchange_id = exchange_id
        self.symbols = dict(symbols)
        self.limiter = limiter
        self._acquire_timeout_s = timeout_s if acquire_timeout_s is None else acquire_timeout_s
        merged = {**market_options(exchange_id, self.symbols), **dict(options or {})}
        # Public access only: no apiKey/secret is ever passed.
        exchange = _exchange_class(exchange_id)({
            "enableRateLimit": False,
            "timeout": int(timeout_s * 1000),
            "options": merged,
        })
        self._allowed_origins = apply_api_urls(exchange, api_urls)
        self._http_fetch = exchange.fetch
        exchange.fetch = self._limited_fetch  # every HTTP request of the instance comes through here
        self._exchange = exchange
        self._lock = threading.Lock()
        self._last_response: Any = None
        self._coin = ""  # the coin being fetched (for error messages from the hook)
        self.requests = 0

    @property
    def exchange(self) -> ccxt.Exchange:
        return self._exchange

    def _limited_fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        if not allowed_url(url, self._allowed_origins):
            raise FallbackError(
                f"{self.exchange_id} {self._coin}: refused {method} {url}: host not among api_urls "
                f"({', '.join(sorted(self._allowed_origins))})",
                exchange=self.exchange_id, coin=self._coin, kind="ForbiddenHost")
        self.limiter.acquire(timeout=self._acquire_timeout_s)
        self.requests += 1
        response = self._http_fetch(url, method, headers, body)
        self._last_response = response
        return response

    def fetch(self, coin: str) -> tuple[Decimal, int]:
        """``(last price, exchange timestamp in ms)`` of ``coin``; raises ``FallbackError``."""
        symbol = self.symbols.get(coin)
        if symbol is None:
            raise FallbackError(f"{self.exchange_id}: no symbol configured for coin {coin}",
                                exchange=self.exchange_id, coin=coin, kind="UnknownCoin")
        where = f"{self.exchange_id} {coin} ({symbol})"
        with self._lock:
            self._coin = coin
            self._last_response = None
            try:
                self._exchange.load_markets()
                ticker = self._exchange.fetch_ticker(symbol)
            except FallbackError:
                raise
            except RateLimitTimeout as exc:
                raise FallbackError(f"{where}: {exc}", exchange=self.exchange_id, coin=coin,
                                    kind="RateLimitTimeout") from exc
            except ccxt.BaseError as exc:
                raise FallbackError(f"{where}: {type(exc).__name__}: {exc}", exchange=self.exchange_id,
                                    coin=coin, kind=type(exc).__name__) from exc
            except Exception as exc:  # noqa: BLE001 - a payload ccxt could not parse
                raise FallbackError(f"{where}: unexpected {type(exc).__name__}: {exc}",
                                    exchange=self.exchange_id, coin=coin, kind=type(exc).__name__) from exc
            raw = self._last_response
        return self._price(ticker, where, coin), self._timestamp(ticker, raw)

    def _price(self, ticker: Mapping[str, Any], where: str, coin: str) -> Decimal:
        info = ticker.get("info")
        text = info.get("lastPrice") if isinstance(info, Mapping) else None
        try:
            if isinstance(text, str) and text.strip():
                price = Decimal(text)  # the venue's own string: no float on the way
            elif ticker.get("last") is not None:
                price = Decimal(str(ticker["last"]))
            else:
                raise FallbackError(f"{where}: the ticker has no last price", exchange=self.exchange_id,
                                    coin=coin, kind="NoPrice")
        except InvalidOperation as exc:
            raise FallbackError(f"{where}: unreadable last price {text or ticker.get('last')!r}",
                                exchange=self.exchange_id, coin=coin, kind="NoPrice") from exc
        if not price.is_finite() or price <= 0:
            raise FallbackError(f"{where}: unusable last price {price}", exchange=self.exchange_id,
                                coin=coin, kind="NoPrice")
        return price

    @staticmethod
    def _timestamp(ticker: Mapping[str, Any], raw: Any) -> int:
        """The ticker's own time (Binance ``closeTime``); else the response's server time
        (Bybit v5 ``time``: its tickers carry none); else the time of reception."""
        stamp = ticker.get("timestamp")
        if stamp is None and isinstance(raw, Mapping):
            stamp = raw.get("time")
        try:
            return int(stamp)
        except (TypeError, ValueError):
            return time.time_ns() // 1_000_000

    def close(self) -> None:
        session = getattr(self._exchange, "session", None)
        if session is not None:
            session.close()

    def stats(self) -> dict[str, Any]:
        return {"exchange": self.exchange_id, "requests": self.requests}


def _is_rate_limit(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, FallbackError) else exc
    return isinstance(cause, (ccxt.DDoSProtection, ccxt.RateLimitExceeded))


# --- the poller ------------------------------------------------------------------------------------

class Fetcher(Protocol):
    def fetch(self, coin: str) -> tuple[Decimal, int]: ...


class RestPoller:
    """A daemon thread that, while active, fetches every coin each ``interval_s`` and hands a
    tick to ``sink`` when a coin's price or timestamp changed since the last tick sent for it.

    ``activate(reason)`` / ``deactivate()`` come from the live source (stream down for
    ``rest_fallback_after_s`` / back). After ``deactivate`` returns no further tick is sent (it
    waits, bounded, for a tick being delivered). ``on_error(coin, exc)`` sees every error. A
    rate-limit answer ends the round and pauses ``rate_limited_backoff_s`` (doubled per
    consecutive one, at most ``MAX_BACKOFF_S``) before the next request.
    """

    def __init__(
        self,
        name: str,
        fetcher: Fetcher,
        coins: Sequence[str],
        sink: TickSink,
        *,
        interval_s: float = 1.0,
        on_error: Callable[[str, Exception], None] | None = None,
        rate_limited_backoff_s: float = 10.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if rate_limited_backoff_s < 0:
            raise ValueError(f"rate_limited_backoff_s must not be negative, got {rate_limited_backoff_s}")
        self.name = name
        self._fetcher = fetcher
        self._coins = tuple(coins)
        self._sink = sink
        self._interval_s = interval_s
        self._on_error = on_error
        self._backoff_s = rate_limited_backoff_s
        self._rate_limited = 0  # consecutive rate-limit answers
        self._active = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._emit_lock = threading.RLock()  # held while a tick is delivered; deactivate takes it
        self._thread: threading.Thread | None = None
        self._last_sent: dict[str, tuple[Decimal, int]] = {}
        self._logged_kinds: set[str] = set()
        self._log = logger.bind(actor="feed")
        self._stats_lock = threading.Lock()
        self.polls = 0
        self.ticks = 0
        self.unchanged = 0
        self.errors = 0
        self.rate_limited = 0
        self.activations = 0
        self.last_error: str | None = None
        self.reason: str | None = None

    # --- control (any thread) --------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._active.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def activate(self, reason: str) -> None:
        """Start polling (at once, then every ``interval_s``)."""
        if self._active.is_set():
            return
        with self._stats_lock:
            self.activations += 1
            self.reason = reason
            self._logged_kinds.clear()  # each outage logs its kinds of error once
        self._active.set()
        self._wake.set()
        self._log.debug("REST fallback {} active: {}", self.name, reason)

    def deactivate(self) -> None:
        """Stop polling; no tick is sent after this returns (unless a sink held the delivery
        for more than ``STOP_JOIN_S``, which is logged)."""
        if not self._active.is_set():
            return
        acquired = self._emit_lock.acquire(timeout=STOP_JOIN_S)
        try:
            self._active.clear()
            self._wake.set()
        finally:
            if acquired:
                self._emit_lock.release()
        if not acquired:
            self._log.warning("{}: REST fallback {} deactivated while its sink was still busy",
                              ERROR_CODE, self.name)
        self._log.debug("REST fallback {} inactive", self.name)

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-rest-fallback", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_JOIN_S) -> None:
        """Stop the thread: prompt while it waits; bounded by ``timeout`` while a request is in
        flight (the thread is a daemon and exits when it returns). Idempotent."""
        self._stopping.set()
        self._active.clear()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self._log.warning("{}: REST fallback {} still busy after {}s; left to finish on its own",
                                  ERROR_CODE, self.name, timeout)

    def stats(self) -> dict[str, Any]:
        limiter = getattr(self._fetcher, "limiter", None)
        with self._stats_lock:
            return {
                "active": self.active, "polls": self.polls, "ticks": self.ticks,
                "unchanged": self.unchanged, "errors": self.errors, "last_error": self.last_error,
                "rate_limited": self.rate_limited,
                "activations": self.activations, "reason": self.reason,
                "limiter": limiter.stats() if limiter is not None else None,
            }

    # --- the poller's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._active.is_set():
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                continue
            started = time.monotonic()
            pause = self._interval_s
            for coin in self._coins:
                if self._stopping.is_set() or not self._active.is_set():
                    break
                backoff = self._poll(coin)
                if backoff is not None:
                    pause = max(backoff, self._interval_s)  # the venue said slow down: the round ends here
                    started = time.monotonic()
                    break
            remaining = pause - (time.monotonic() - started)
            if remaining > 0 and not self._stopping.is_set() and self._active.is_set():
                self._wake.wait(remaining)
                self._wake.clear()

    def _poll(self, coin: str) -> float | None:
        """Fetch ``coin`` and deliver its tick if it changed; the seconds to back off after a
        rate-limit answer, else ``None``."""
        with self._stats_lock:
            self.polls += 1
        try:
            price, ts_ms = self._fetcher.fetch(coin)
        except Exception as exc:  # noqa: BLE001 - the thread never dies of a failed fetch
            self._error(coin, exc)
            if not _is_rate_limit(exc):
                return None
            self._rate_limited += 1
            with self._stats_lock:
                self.rate_limited += 1
            return min(self._backoff_s * 2 ** (self._rate_limited - 1), MAX_BACKOFF_S)
        self._rate_limited = 0
        if self._last_sent.get(coin) == (price, ts_ms):
            with self._stats_lock:
                self.unchanged += 1
            return None
        with self._emit_lock:
            if not self._active.is_set() or self._stopping.is_set():
                return None  # deactivated while the request was in flight: the stream has it now
            try:
                self._sink(coin, price, ts_ms, Decimal(0), None)
            except Exception as exc:  # noqa: BLE001 - e.g. the feed is stopping
                self._error(coin, exc, kind="SinkError")
                return None
            self._last_sent[coin] = (price, ts_ms)
            with self._stats_lock:
                self.ticks += 1
        return None

    def _error(self, coin: str, exc: Exception, kind: str | None = None) -> None:
        kind = kind or getattr(exc, "kind", None) or type(exc).__name__
        with self._stats_lock:
            self.errors += 1
            self.last_error = mask_url(f"{coin}: {exc}")
            first = kind not in self._logged_kinds
            self._logged_kinds.add(kind)
        if first:
            self._log.warning("{}: {} {}: {} (further {} errors are counted, not logged)",
                              ERROR_CODE, self.name, coin, mask_url(str(exc)), kind)
        if self._on_error is not None:
            try:
                self._on_error(coin, exc)
            except Exception:  # noqa: BLE001 - a broken callback must not stop the poller
                self._log.exception("{}: {} on_error callback failed", ERROR_CODE, self.name)
