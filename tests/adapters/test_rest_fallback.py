"""adapters/feeds/rest_fallback.py: the real ccxt client against a local HTTP server, and the poller.

The server answers the real payloads of the shared data: Binance spot ``GET /api/v3/exchangeInfo``
(the 2021 capture of the live venue, 1,695 symbols) and ``GET /api/v3/ticker/24hr`` (the API
documentation's example, verbatim); the USD-M ``GET /fapi/v1/exchangeInfo`` capture; Bybit v5
``GET /v5/market/instruments-info`` (linear and spot). No REST ticker payload of USD-M or Bybit is
in the shared data: those tickers are hand-made in the venues' REST shape from the field values
of the real websocket ticker payloads (``ticker_stream.json``, ``ws_ticker_linear.json``).

No test can reach the internet: every ccxt URL points at the local server, the fetcher refuses any
other host, and an autouse guard refuses DNS and connections to anything but the loopback. Every
wait is bounded; the only fixed waits are short ``Event.wait``s that check nothing happens.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from adapters.net.rate_limit import TokenBucket
from adapters.feeds.rest_fallback import (
    CcxtTickerFetcher,
    FallbackError,
    RestPoller,
    market_options,
    market_type,
    rebase_api_urls,
)
from tests.conftest import WAIT, LogCapture
from tests.support.http_server import DROP, LocalHttpServer, Request, Response

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
EXCHANGE_INFO = "/api/v3/exchangeInfo"
TICKER_24HR = "/api/v3/ticker/24hr"
FAPI_EXCHANGE_INFO = "/fapi/v1/exchangeInfo"
FAPI_TICKER_24HR = "/fapi/v1/ticker/24hr"
BYBIT_INSTRUMENTS = "/v5/market/instruments-info"
BYBIT_TICKERS = "/v5/market/tickers"
BNB = {"BNB": "BNB/BTC"}  # the market of the docs' ticker_24hr_response.json
# Binance's documented answer to too many requests (HTTP 429, code -1003).
BINANCE_429 = {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests "
                                     "per minute. Please use the websocket for live updates to avoid polling the API."}


# --- no internet, ever -----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS and connections to anything but the loopback fail at once (never hang)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def host_of(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host_of(host) not in LOOPBACK:
            raise OSError(f"test guard: no network access to {host_of(host)!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and host_of(address[0]) not in LOOPBACK:
            raise OSError(f"test guard: no connection to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # requests would route even 127.0.0.1 through one


# --- payloads and servers --------------------------------------------------------------------------

def payload(shared_data: Path, relative: str) -> bytes:
    path = shared_data / "payloads" / relative
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


class BinanceTicker:
    """``GET /api/v3/ticker/24hr?symbol=...``: the docs' BNBBTC ticker, verbatim until changed;
    another symbol gets Binance's 400 ``-1121 Invalid symbol.``"""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.fields = json.loads(raw)
        self._lock = threading.Lock()
        self._changed = False

    def set(self, **fields: Any) -> None:
        """Change fields (a ``None`` value removes the field)."""
        with self._lock:
            merged = {**self.fields, **fields}
            self.fields = {k: v for k, v in merged.items() if v is not None}
            self._changed = True

    def __call__(self, request: Request) -> Any:
        with self._lock:
            if request.arg("symbol") != self.fields["symbol"]:
                return Response({"code": -1121, "msg": "Invalid symbol."}, status=400)
            return json.dumps(self.fields) if self._changed else self.raw


@pytest.fixture
def server() -> Iterator[LocalHttpServer]:
    with LocalHttpServer() as local:
        yield local


@pytest.fixture
def binance(server: LocalHttpServer, shared_data: Path) -> BinanceTicker:
    """The server as Binance spot; returns the ticker route (to change the price)."""
    server.route(EXCHANGE_INFO, payload(shared_data, "binance-live-rest/binance-spot_api_v3_exchangeInfo_2021-10-12.json.gz"))
    ticker = BinanceTicker(payload(shared_data, "binance/spot/http_json/ticker_24hr_response.json"))
    server.route(TICKER_24HR, ticker)
    return ticker


@pytest.fixture
def fetchers(server: LocalHttpServer) -> Iterator[Callable[..., CcxtTickerFetcher]]:
    """``make(exchange_id, symbols, limiter, **kw)``: a fetcher on the local server (2 s timeout)."""
    made: list[CcxtTickerFetcher] = []

    def make(exchange_id: str, symbols: dict[str, str], limiter: TokenBucket, **kw: Any) -> CcxtTickerFetcher:
        kw.setdefault("api_urls", rebase_api_urls(exchange_id, server.url))
        kw.setdefault("timeout_s", 2.0)
        fetcher = CcxtTickerFetcher(exchange_id, symbols, limiter, **kw)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


@pytest.fixture
def pollers() -> Iterator[Callable[..., RestPoller]]:
    made: list[RestPoller] = []

    def make(*args: Any, **kw: Any) -> RestPoller:
        poller = RestPoller(*args, **kw)
        made.append(poller)
        return poller

    yield make
    for poller in made:
        poller.stop()


def queries(server: LocalHttpServer) -> list[tuple[str, dict[str, list[str]]]]:
    return [(r.path, r.query) for r in server.requests()]


class FakeTime:
    """A clock that moves only when the bucket waits: waits are exact and instant."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


class RecordingBucket(TokenBucket):
    """A TokenBucket that notes the (fake) time each token was granted."""

    def __init__(self, fake: FakeTime, rate: float, burst: int) -> None:
        super().__init__(rate, burst, clock=fake.clock, wait=fake.wait)
        self.fake = fake
        self.granted: list[float] = []

    def acquire(self, cost: float = 1.0, timeout: float | None = None) -> float:
        waited = super().acquire(cost, timeout)
        self.granted.append(self.fake.now)
        return waited


# --- the fetcher on Binance spot --------------------------------------------------------------------

def test_binance_fetch_returns_the_payload_price_string_and_close_time(binance, server, fetchers):
    limiter = TokenBucket(20, 50)
    fetcher = fetchers("binance", BNB, limiter)

    price, ts_ms = fetcher.fetch("BNB")

    assert (price, ts_ms) == (Decimal("4.00000200"), 1499869899040)  # lastPrice, closeTime
    assert str(price) == "4.00000200"  # the payload's own string, no float on the way
    assert queries(server) == [(EXCHANGE_INFO, {}), (TICKER_24HR, {"symbol": ["BNBBTC"]})]
    assert limiter.stats()["requests"] == server.count() == 2
    assert fetcher.exchange.enableRateLimit is False and not fetcher.exchange.apiKey
    assert fetcher.exchange.options["fetchMarkets"]["types"] == ["spot"]

    assert fetcher.fetch("BNB") == (price, ts_ms)  # markets are loaded once
    assert [path for path, _ in queries(server)] == [EXCHANGE_INFO, TICKER_24HR, TICKER_24HR]
    assert limiter.stats()["requests"] == server.count() == fetcher.requests == 3
    assert server.unrouted == []


def test_every_request_takes_a_token_and_a_burst_waits_at_the_bucket_rate(binance, server, fetchers):
    fake = FakeTime()
    limiter = RecordingBucket(fake, rate=10, burst=3)
    fetcher = fetchers("binance", BNB, limiter)

    for _ in range(6):
        fetcher.fetch("BNB")

    stats = limiter.stats()
    assert stats["requests"] == server.count() == 7  # exchangeInfo + 6 tickers
    # 3 tokens at once, then one every 0.1 s for the other 4
    assert stats["waited_s"] == pytest.approx(0.4, abs=1e-3)
    assert fake.now - 1000.0 == pytest.approx(0.4, abs=1e-6)
    granted = limiter.granted
    for i in range(len(granted)):
        for j in range(i, len(granted)):
            window = granted[j] - granted[i]
            assert j - i + 1 <= 3 + 10 * window + 1e-6, f"requests {i}..{j} exceed the rate"


def test_market_loading_counts_and_a_failed_load_is_retried(binance, server, fetchers):
    limiter = TokenBucket(100, 50)
    fetcher = fetchers("binance", BNB, limiter)
    server.fail(EXCHANGE_INFO, 500, times=1)

    with pytest.raises(FallbackError) as failed:
        fetcher.fetch("BNB")
    assert "binance" in str(failed.value) and "BNB" in str(failed.value)
    assert server.count(TICKER_24HR) == 0

    assert fetcher.fetch("BNB")[0] == Decimal("4.00000200")
    assert [path for path, _ in queries(server)] == [EXCHANGE_INFO, EXCHANGE_INFO, TICKER_24HR]
    assert limiter.stats()["requests"] == server.count() == 3


@pytest.mark.parametrize(("mode", "body", "cause", "ccxt_text"), [
    (500, None, ccxt.ExchangeError, "test server: HTTP 500"),
    (429, BINANCE_429, ccxt.DDoSProtection, "Too many requests"),
    (418, None, ccxt.DDoSProtection, "418"),
    (DROP, None, ccxt.NetworkError, "GET http://127.0.0.1"),
])
def test_a_server_error_raises_fallback_error_naming_exchange_and_coin(
        binance, server, fetchers, mode, body, cause, ccxt_text):
    limiter = TokenBucket(100, 50)
    fetcher = fetchers("binance", BNB, limiter)
    server.fail(TICKER_24HR, mode, times=1, body=body)

    with pytest.raises(FallbackError) as failed:
        fetcher.fetch("BNB")

    error = failed.value
    assert isinstance(error.__cause__, cause)
    assert error.exchange == "binance" and error.coin == "BNB" and error.kind == type(error.__cause__).__name__
    message = str(error)
    assert message.startswith("binance BNB (BNB/BTC): ") and ccxt_text in message
    assert limiter.stats()["requests"] == server.count() == 2  # the failed request took its token
    assert fetcher.fetch("BNB")[0] == Decimal("4.00000200")  # and the next one works


def test_a_symbol_the_venue_does_not_list_is_a_fallback_error(server, fetchers, shared_data):
    # the API docs' exchangeInfo example lists ETHBTC only
    server.route(EXCHANGE_INFO, payload(shared_data, "binance/spot/http_json/exchange_info_response.json"))
    fetcher = fetchers("binance", BNB, TokenBucket(100, 50))

    with pytest.raises(FallbackError, match=r"binance BNB \(BNB/BTC\): BadSymbol: .*BNB/BTC") as failed:
        fetcher.fetch("BNB")
    assert failed.value.kind == "BadSymbol"
    assert queries(server) == [(EXCHANGE_INFO, {})]


def test_a_ticker_without_a_price_is_a_fallback_error(binance, fetchers):
    # without lastPrice ccxt would derive the price from openPrice and priceChange
    binance.set(lastPrice=None, priceChange=None, priceChangePercent=None)
    fetcher = fetchers("binance", BNB, TokenBucket(100, 50))

    with pytest.raises(FallbackError, match="binance BNB .*no last price") as failed:
        fetcher.fetch("BNB")
    assert failed.value.kind == "NoPrice"


def test_no_token_in_time_is_a_fallback_error_and_no_request(binance, server, fetchers):
    limiter = TokenBucket(0.001, 1)
    limiter.acquire()  # someone else took the only token
    fetcher = fetchers("binance", BNB, limiter, acquire_timeout_s=0.05)

    started = time.monotonic()
    with pytest.raises(FallbackError, match="binance BNB .*no REST token within 0.05s") as failed:
        fetcher.fetch("BNB")
    assert time.monotonic() - started < 1.0
    assert failed.value.kind == "RateLimitTimeout"
    assert server.count() == 0


def test_an_unknown_coin_is_a_fallback_error_without_a_request(binance, server, fetchers):
    fetcher = fetchers("binance", BNB, TokenBucket(100, 50))
    with pytest.raises(FallbackError, match="binance: no symbol configured for coin DOGE"):
        fetcher.fetch("DOGE")
    assert server.count() == 0


# --- no other host ---------------------------------------------------------------------------------

def test_a_request_to_a_host_outside_api_urls_is_refused_not_sent(binance, server, fetchers):
    limiter = TokenBucket(100, 50)
    # only the spot API is redirected; a linear symbol needs fapi.binance.com
    fetcher = fetchers("binance", {"BTC": "BTC/USDT:USDT"}, limiter, api_urls={"public": server.url + "/api/v3"})

    started = time.monotonic()
    with pytest.raises(FallbackError, match="refused GET https://fapi.binance.com/fapi/v1/exchangeInfo") as failed:
        fetcher.fetch("BTC")
    assert time.monotonic() - started < 1.0
    assert failed.value.kind == "ForbiddenHost"
    assert server.count() == 0 and limiter.stats()["requests"] == 0


def test_without_api_urls_the_test_guard_makes_the_internet_fail_fast():
    fetcher = CcxtTickerFetcher("binance", BNB, TokenBucket(100, 50), timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(FallbackError, match="binance BNB .*NetworkError"):
        fetcher.fetch("BNB")
    assert time.monotonic() - started < 1.0
    fetcher.close()


def test_rebased_urls_keep_the_venue_paths_on_the_local_server(server):
    urls = rebase_api_urls("binance", server.url)
    assert urls["public"] == server.url + "/api/v3" and urls["fapiPublic"] == server.url + "/fapi/v1"
    assert all(url.startswith(server.url) for url in urls.values())
    assert set(rebase_api_urls("bybit", server.url).values()) == {server.url}


def test_bad_construction_is_refused():
    limiter = TokenBucket()
    with pytest.raises(ValueError, match="unknown ccxt exchange id 'nope'"):
        CcxtTickerFetcher("nope", BNB, limiter)
    with pytest.raises(ValueError, match=r"unknown api_urls keys \['publik'\]"):
        CcxtTickerFetcher("binance", BNB, limiter, api_urls={"publik": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="at least one coin"):
        CcxtTickerFetcher("binance", {}, limiter)


def test_market_types_and_the_options_that_restrict_market_loading():
    assert [market_type(s) for s in ("BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC", "BTC/USDT:USDT-240628")] == \
        ["spot", "linear", "inverse", "linear"]
    assert market_options("binance", {"BTC": "BTC/USDT"}) == {"fetchMarkets": {"types": ["spot"]}}
    assert market_options("binance", {"BTC": "BTC/USDT:USDT"}) == {"fetchMarkets": {"types": ["linear"]}}
    assert market_options("binanceusdm", {"BTC": "BTC/USDT:USDT"}) == {"fetchMarkets": {"types": ["linear"]}}
    assert market_options("bybit", {"BTC": "BTC/USDT:USDT", "ETH": "ETH/USDT"}) == \
        {"fetchMarkets": {"types": ["linear", "spot"]}}
    fetcher = CcxtTickerFetcher("bybit", {"BTC": "BTC/USDT:USDT"}, TokenBucket(),
                                options={"fetchMarkets": {"types": ["linear", "inverse"]}})
    assert fetcher.exchange.options["fetchMarkets"]["types"] == ["linear", "inverse"]  # options win
    fetcher.close()


# --- binanceusdm and bybit ---------------------------------------------------------------------------

def test_binanceusdm_fetch(server, fetchers, shared_data):
    server.route(FAPI_EXCHANGE_INFO, payload(shared_data, "binance-live-rest/binance-usdm_fapi_v1_exchangeInfo_2021-07-22.json.gz"))
    ws = json.loads(payload(shared_data, "binance/futures/market_data_json/ticker_stream.json"))
    # GET /fapi/v1/ticker/24hr's shape, filled with the websocket 24hrTicker's values
    server.route(FAPI_TICKER_24HR, {
        "symbol": ws["s"], "priceChange": ws["p"], "priceChangePercent": ws["P"], "weightedAvgPrice": ws["w"],
        "lastPrice": ws["c"], "lastQty": ws["Q"], "openPrice": ws["o"], "highPrice": ws["h"],
        "lowPrice": ws["l"], "volume": ws["v"], "quoteVolume": ws["q"], "openTime": ws["O"],
        "closeTime": ws["C"], "firstId": ws["F"], "lastId": ws["L"], "count": ws["n"],
    })
    limiter = TokenBucket(100, 50)
    fetcher = fetchers("binanceusdm", {"BTC": "BTC/USDT:USDT"}, limiter)

    price, ts_ms = fetcher.fetch("BTC")

    assert str(price) == "16584.60000000" and ts_ms == 1672515782136
    assert queries(server) == [(FAPI_EXCHANGE_INFO, {}), (FAPI_TICKER_24HR, {"symbol": ["BTCUSDT"]})]
    assert limiter.stats()["requests"] == 2


def bybit_envelope(category: str, rows: list[dict[str, Any]], time_ms: int) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": {"category": category, "list": rows},
            "retExtInfo": {}, "time": time_ms}


def bybit_ws_ticker(shared_data: Path) -> tuple[dict[str, Any], int]:
    ws = json.loads(payload(shared_data, "bybit/ws_ticker_linear.json"))
    return {k: v for k, v in ws["data"].items() if k != "tickDirection"}, ws["ts"]


def test_bybit_linear_fetch_uses_the_response_time(server, fetchers, shared_data):
    linear = payload(shared_data, "bybit/http_get_instruments_linear.json")

    def instruments(request: Request) -> Any:
        if request.arg("status") == "PreLaunch":  # ccxt asks for pre-launch markets too: none
            return {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [], "nextPageCursor": ""},
                    "retExtInfo": {}, "time": 1700000000000}
        return linear

    row, ts = bybit_ws_ticker(shared_data)
    server.route(BYBIT_INSTRUMENTS, instruments)
    server.route(BYBIT_TICKERS, bybit_envelope("linear", [row], ts))
    limiter = TokenBucket(100, 50)
    fetcher = fetchers("bybit", {"BTC": "BTC/USDT:USDT"}, limiter)

    price, ts_ms = fetcher.fetch("BTC")

    assert str(price) == "17216.00" and ts_ms == 1673272861686  # Bybit tickers carry no time: the response's
    assert queries(server) == [
        (BYBIT_INSTRUMENTS, {"category": ["linear"], "limit": ["1000"]}),
        (BYBIT_INSTRUMENTS, {"category": ["linear"], "limit": ["1000"], "status": ["PreLaunch"]}),
        (BYBIT_TICKERS, {"symbol": ["BTCUSDT"], "category": ["linear"]}),
    ]
    assert limiter.stats()["requests"] == server.count() == 3


def test_bybit_spot_fetch(server, fetchers, shared_data):
    server.route(BYBIT_INSTRUMENTS, payload(shared_data, "bybit/http_get_instruments_spot.json"))
    row, ts = bybit_ws_ticker(shared_data)
    spot_fields = ("symbol", "bid1Price", "bid1Size", "ask1Price", "ask1Size", "lastPrice", "prevPrice24h",
                   "price24hPcnt", "highPrice24h", "lowPrice24h", "turnover24h", "volume24h")
    server.route(BYBIT_TICKERS, bybit_envelope("spot", [{k: row[k] for k in spot_fields}], ts))
    limiter = TokenBucket(100, 50)
    fetcher = fetchers("bybit", {"BTC": "BTC/USDT"}, limiter)

    assert fetcher.fetch("BTC") == (Decimal("17216.00"), 1673272861686)
    assert queries(server) == [(BYBIT_INSTRUMENTS, {"category": ["spot"]}),
                               (BYBIT_TICKERS, {"symbol": ["BTCUSDT"], "category": ["spot"]})]
    assert limiter.stats()["requests"] == 2


# --- the poller, with a scripted fetcher ---------------------------------------------------------------

class Sink:
    """Records ``(coin, price, ts_ms, qty, seq)``; can raise for its first ``fail_first`` calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self.ticks: list[tuple[str, Decimal, int, Decimal, int | None]] = []
        self._fail_first = fail_first
        self._changed = threading.Condition()

    def __call__(self, coin: str, price: Decimal, ts_ms: int, qty: Decimal, seq: int | None) -> None:
        with self._changed:
            if self._fail_first > 0:
                self._fail_first -= 1
                raise RuntimeError("feed stopping")
            self.ticks.append((coin, price, ts_ms, qty, seq))
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.ticks) >= count, timeout)

    def count(self) -> int:
        with self._changed:
            return len(self.ticks)


class ScriptedFetcher:
    """``fetch`` answers ``answer(coin, n)`` (n: 1-based call number): a (price, ts) or an
    exception to raise. Records call times; ``wait_calls`` waits, bounded, for a count."""

    def __init__(self, answer: Callable[[str, int], Any], limiter: TokenBucket | None = None) -> None:
        self.answer = answer
        self.limiter = limiter
        self.calls: list[tuple[str, float]] = []
        self._changed = threading.Condition()

    def fetch(self, coin: str) -> tuple[Decimal, int]:
        with self._changed:
            self.calls.append((coin, time.monotonic()))
            n = len(self.calls)
            self._changed.notify_all()
        result = self.answer(coin, n)
        if isinstance(result, BaseException):
            raise result
        return result

    def count(self) -> int:
        with self._changed:
            return len(self.calls)

    def wait_calls(self, count: int, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.calls) >= count, timeout)


def quiet(seconds: float) -> None:
    """A short bounded pause to check that nothing happens (not used to synchronize)."""
    threading.Event().wait(seconds)


def fallback_error(kind: str = "NetworkError", cause: BaseException | None = None) -> FallbackError:
    error = FallbackError(f"binance BTC (BTC/USDT): {kind}: boom", exchange="binance", coin="BTC", kind=kind)
    error.__cause__ = cause
    return error


def test_the_poller_sends_ticks_only_while_active(pollers):
    fetcher = ScriptedFetcher(lambda coin, n: (Decimal("100.5"), 1_000 + n))  # a new timestamp every poll
    sink = Sink()
    poller = pollers("binance", fetcher, ["BTC", "ETH"], sink, interval_s=0.01)
    poller.start()

    quiet(0.15)
    assert fetcher.count() == 0 and sink.count() == 0 and poller.active is False

    poller.activate("stream down for 10.0s")
    assert poller.active and sink.wait_for(4)
    poller.deactivate()
    sent, fetched = sink.count(), fetcher.count()
    quiet(0.15)
    assert sink.count() == sent and fetcher.count() <= fetched + 1
    assert poller.active is False

    coins = {tick[0] for tick in sink.ticks}
    assert coins == {"BTC", "ETH"}
    assert all(tick[1] == Decimal("100.5") and tick[3] == Decimal(0) and tick[4] is None for tick in sink.ticks)
    stats = poller.stats()
    assert stats["ticks"] == sent and stats["activations"] == 1 and stats["reason"] == "stream down for 10.0s"

    poller.activate("again")  # resumes
    assert sink.wait_for(sent + 2)


def test_no_duplicate_ticks_for_an_unchanged_price_and_time(pollers):
    current = {"value": (Decimal("42000.10"), 1_000)}
    fetcher = ScriptedFetcher(lambda coin, n: current["value"])
    sink = Sink()
    poller = pollers("bybit", fetcher, ["BTC"], sink, interval_s=0.005)
    poller.start()
    poller.activate("test")

    assert sink.wait_for(1) and fetcher.wait_calls(fetcher.count() + 5)
    assert sink.count() == 1
    current["value"] = (Decimal("42000.20"), 1_000)  # price changed
    assert sink.wait_for(2) and fetcher.wait_calls(fetcher.count() + 5)
    current["value"] = (Decimal("42000.20"), 1_500)  # time changed
    assert sink.wait_for(3) and fetcher.wait_calls(fetcher.count() + 5)
    poller.stop()

    assert [(t[1], t[2]) for t in sink.ticks] == [
        (Decimal("42000.10"), 1_000), (Decimal("42000.20"), 1_000), (Decimal("42000.20"), 1_500)]
    stats = poller.stats()
    assert stats["ticks"] == 3 and stats["unchanged"] >= 15 and stats["polls"] == fetcher.count()


def test_errors_are_counted_logged_once_per_kind_and_the_poller_carries_on(pollers, logs: LogCapture):
    def answer(coin: str, n: int) -> Any:
        if n <= 3:
            return fallback_error("NetworkError", ccxt.NetworkError("binance GET http://x"))
        if n == 4:
            return ValueError("a bug in a fetcher")
        return (Decimal("7.25"), 5_000)

    seen: list[tuple[str, Exception]] = []
    fetcher = ScriptedFetcher(answer)
    sink = Sink()
    poller = pollers("binance", fetcher, ["BTC"], sink, interval_s=0.005,
                     on_error=lambda coin, exc: seen.append((coin, exc)))
    poller.start()
    poller.activate("test")

    assert sink.wait_for(1)
    stats = poller.stats()
    assert stats["errors"] == 4 and stats["ticks"] == 1 and "a bug in a fetcher" in stats["last_error"]
    assert [coin for coin, _ in seen] == ["BTC"] * 4
    assert logs.wait_for("REST_FALLBACK_ERROR")
    lines = [line for line in logs.lines if "REST_FALLBACK_ERROR" in line]
    assert len(lines) == 2, lines  # one per kind
    assert lines[0].startswith("WARNING feed ") and "binance BTC" in lines[0] and "NetworkError" in lines[0]
    assert "ValueError" in lines[1]
    assert poller.running


def test_a_rate_limit_answer_backs_off_doubling(pollers):
    def answer(coin: str, n: int) -> Any:
        if n <= 2:
            return fallback_error("DDoSProtection", ccxt.DDoSProtection("binance 429 Too Many Requests"))
        return (Decimal("1"), n)

    fetcher = ScriptedFetcher(answer)
    sink = Sink()
    poller = pollers("binance", fetcher, ["BTC", "ETH"], sink, interval_s=0.005, rate_limited_backoff_s=0.1)
    poller.start()
    poller.activate("test")

    assert sink.wait_for(2)
    (first, t1), (second, t2), (third, t3) = fetcher.calls[:3]
    assert first == second == "BTC"  # the round ended at the 429: ETH was not asked meanwhile
    assert t2 - t1 >= 0.09 and t3 - t2 >= 0.19  # 0.1 s, then doubled
    assert poller.stats()["rate_limited"] == 2


def test_a_failing_sink_is_counted_and_the_tick_sent_again(pollers):
    fetcher = ScriptedFetcher(lambda coin, n: (Decimal("3.5"), 9))
    sink = Sink(fail_first=1)
    poller = pollers("binance", fetcher, ["SOL"], sink, interval_s=0.005)
    poller.start()
    poller.activate("test")

    assert sink.wait_for(1)
    assert sink.ticks == [("SOL", Decimal("3.5"), 9, Decimal(0), None)]
    stats = poller.stats()
    assert stats["errors"] == 1 and stats["ticks"] == 1 and "feed stopping" in stats["last_error"]


def test_stop_is_prompt_and_idempotent(pollers):
    fetcher = ScriptedFetcher(lambda coin, n: (Decimal("1"), n))
    poller = pollers("binance", fetcher, ["BTC"], Sink(), interval_s=30)
    poller.stop()  # never started: nothing to do
    poller.start()
    poller.activate("test")
    assert fetcher.wait_calls(1)

    started = time.monotonic()
    poller.stop()
    assert time.monotonic() - started < 1.0
    assert not poller.running and not poller.active
    poller.stop()


def test_stop_is_bounded_while_a_request_hangs_and_a_late_answer_is_not_sent(pollers):
    entered, release = threading.Event(), threading.Event()

    def answer(coin: str, n: int) -> Any:
        entered.set()
        release.wait(WAIT)
        return (Decimal("2"), n)

    sink = Sink()
    poller = pollers("stuck", ScriptedFetcher(answer), ["BTC"], sink, interval_s=0.01)
    poller.start()
    poller.activate("test")
    assert entered.wait(WAIT)

    started = time.monotonic()
    poller.stop(timeout=0.2)
    assert time.monotonic() - started < 1.0
    release.set()
    threads = [t for t in threading.enumerate() if t.name == "stuck-rest-fallback"]
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert sink.ticks == []


def test_a_fetch_in_flight_at_deactivate_delivers_nothing(pollers):
    entered, release = threading.Event(), threading.Event()

    def answer(coin: str, n: int) -> Any:
        entered.set()
        release.wait(WAIT)
        return (Decimal("2"), n)

    sink = Sink()
    poller = pollers("binance", ScriptedFetcher(answer), ["BTC"], sink, interval_s=0.01)
    poller.start()
    poller.activate("test")
    assert entered.wait(WAIT)
    poller.deactivate()  # the stream is back while the request is out
    release.set()
    poller.stop()  # joins the thread: whatever it would do is done
    assert sink.ticks == [] and poller.stats()["ticks"] == 0


def test_stats_include_the_limiter(pollers):
    limiter = TokenBucket(20, 50)
    poller = pollers("binance", ScriptedFetcher(lambda c, n: (Decimal(1), 1), limiter), ["BTC"], Sink())
    stats = poller.stats()
    assert stats == {"active": False, "polls": 0, "ticks": 0, "unchanged": 0, "errors": 0, "last_error": None,
                     "rate_limited": 0, "activations": 0, "reason": None, "limiter": limiter.stats()}


# --- the poller over ccxt and the local server ------------------------------------------------------------

def test_the_poller_over_ccxt_survives_a_429_and_sends_no_duplicates(binance, server, fetchers, pollers):
    limiter = TokenBucket(200, 20)
    fetcher = fetchers("binance", BNB, limiter)
    errors = threading.Semaphore(0)
    sink = Sink()
    poller = pollers("binance", fetcher, ["BNB"], sink, interval_s=0.02, rate_limited_backoff_s=0.05,
                     on_error=lambda coin, exc: errors.release())
    poller.start()
    poller.activate("stream down")

    assert sink.wait_for(1)
    assert sink.ticks == [("BNB", Decimal("4.00000200"), 1499869899040, Decimal(0), None)]
    server.fail(TICKER_24HR, 429, times=2, body=BINANCE_429)
    assert errors.acquire(timeout=WAIT) and errors.acquire(timeout=WAIT)
    seen = server.count(TICKER_24HR)
    assert server.wait_for(TICKER_24HR, seen + 3, WAIT)  # it carries on polling
    assert sink.count() == 1  # the same payload again: no tick

    binance.set(lastPrice="4.10000000", closeTime=1499869999040)
    assert sink.wait_for(2)
    poller.stop()
    assert sink.ticks[1] == ("BNB", Decimal("4.10000000"), 1499869999040, Decimal(0), None)
    stats = poller.stats()
    assert stats["errors"] == 2 and stats["rate_limited"] == 2 and "DDoSProtection" in stats["last_error"]
    assert stats["limiter"]["requests"] == server.count() == fetcher.requests


def test_a_polling_burst_never_exceeds_the_bucket_rate(binance, server, fetchers, pollers):
    rate, burst = 50.0, 2
    limiter = TokenBucket(rate, burst)
    fetcher = fetchers("binance", BNB, limiter)
    poller = pollers("binance", fetcher, ["BNB"], Sink(), interval_s=0.001)

    started = time.monotonic()
    poller.start()
    poller.activate("test")
    assert server.wait_for(TICKER_24HR, 15, WAIT)
    poller.stop()
    elapsed = time.monotonic() - started

    stats = limiter.stats()
    assert stats["requests"] == server.count() >= 16
    assert stats["requests"] <= burst + rate * elapsed + 1
    assert stats["waited_s"] > 0  # callers really waited
    assert elapsed >= (16 - burst) / rate * 0.9
