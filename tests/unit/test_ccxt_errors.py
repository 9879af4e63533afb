"""ccxt exception + HTTP status + venue code -> the engine's venue errors (the table)."""

from __future__ import annotations

import ccxt
import pytest
import requests

from adapters.errors import (
    AmbiguousOutcome,
    AuthenticationFailed,
    Banned,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    TemporaryError,
)
from adapters.venues.ccxt_errors import ClockSkew, DuplicateClientId, ListenKeyInvalid, translate, venue_code
from state.secrets import Credentials

NOW = 1_700_000_000_000
URL = "https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature=0123456789abcdef"


def binance(code: int, msg: str, cls: type[Exception] = ccxt.ExchangeError) -> Exception:
    return cls(f'binanceusdm {{"code":{code},"msg":"{msg}"}}')


@pytest.mark.parametrize(("error", "action", "status", "expected", "text"), [
    (binance(-2019, "Margin is insufficient."), "submit", 400, InsufficientFunds, "-2019 Margin is insufficient."),
    (binance(-2018, "Balance is insufficient."), "submit", 400, InsufficientFunds, "-2018"),
    (binance(-2010, "Account has insufficient balance for requested action."), "submit", 400, InsufficientFunds,
     "-2010"),
    (binance(-2010, "Order would immediately match and take."), "submit", 400, InvalidOrder, "-2010"),
    (binance(-1013, "Filter failure: PRICE_FILTER", ccxt.InvalidOrder), "submit", 400, InvalidOrder,
     "-1013 Filter failure: PRICE_FILTER"),
    (binance(-4164, "Order's notional must be no smaller than 5 (unless you choose reduce only)."), "submit", 400,
     InvalidOrder, "notional"),
    (binance(-1111, "Precision is over the maximum defined for this asset."), "submit", 400, InvalidOrder, "-1111"),
    (binance(-2022, "ReduceOnly Order is rejected."), "submit", 400, InvalidOrder, "ReduceOnly"),
    (binance(-2011, "Unknown order sent.", ccxt.OrderNotFound), "cancel", 400, OrderNotFound, "-2011"),
    (binance(-2013, "Order does not exist.", ccxt.OrderNotFound), "read", 400, OrderNotFound, "-2013"),
    (binance(-2015, "Invalid API-key, IP, or permissions for action.", ccxt.AuthenticationError), "read", 401,
     AuthenticationFailed, "whitelisted"),
    (binance(-1022, "Signature for this request is not valid."), "submit", 400, AuthenticationFailed, "-1022"),
    (binance(-4116, "ClientOrderId is duplicated."), "submit", 400, DuplicateClientId, "-4116"),
    (binance(-2010, "Duplicate order sent."), "submit", 400, DuplicateClientId, "Duplicate"),
    (binance(-1125, "This listenKey does not exist.", ccxt.AuthenticationError), "read", 400, ListenKeyInvalid,
     "-1125"),
    (binance(-1021, "Timestamp for this request is outside of the recvWindow.", ccxt.InvalidNonce), "submit", 400,
     ClockSkew, "-1021"),
    (binance(-1007, "Timeout waiting for response from backend server. Send status unknown; execution status "
                    "unknown.", ccxt.RequestTimeout), "submit", 408, AmbiguousOutcome, "-1007"),
    (binance(-1007, "Timeout waiting for response from backend server.", ccxt.RequestTimeout), "read", 408,
     TemporaryError, "-1007"),
    (ccxt.ExchangeNotAvailable("binanceusdm 503 Service Unavailable"), "submit", 503, AmbiguousOutcome, "503"),
    (ccxt.ExchangeNotAvailable("binanceusdm 502 Bad Gateway"), "cancel", 502, AmbiguousOutcome, "502"),
    (ccxt.ExchangeNotAvailable("binanceusdm 503"), "read", 503, TemporaryError, "503"),
    (ccxt.RequestTimeout(f"binanceusdm POST {URL}"), "submit", None, AmbiguousOutcome, "no answer"),
    (ccxt.RequestTimeout(f"binanceusdm GET {URL}"), "read", None, TemporaryError, "no answer"),
    (ccxt.NetworkError(f"binanceusdm POST {URL}"), "submit", None, AmbiguousOutcome, "no answer"),
    (binance(-1003, "Too many requests.", ccxt.DDoSProtection), "submit", 429, RateLimited, "HTTP 429"),
    (ccxt.InsufficientFunds("bybit {\"retCode\":110007,\"retMsg\":\"ab not enough for new order\"}"), "submit",
     200, InsufficientFunds, "110007"),
])
def test_table(error: Exception, action: str, status: int | None, expected: type, text: str) -> None:
    exchange = "bybit" if "retCode" in str(error) else "binanceusdm"
    result = translate(error, action=action, exchange=exchange, status=status, headers={},  # type: ignore[arg-type]
                       now_ms=NOW)
    assert type(result) is expected, result
    assert text in str(result)


def test_a_connection_never_opened_did_not_reach_the_venue() -> None:
    cause = requests.exceptions.ConnectionError("HTTPConnectionPool: Max retries exceeded (Caused by "
                                                "NewConnectionError: Failed to establish a new connection: "
                                                "[Errno 111] Connection refused)")
    try:
        raise ccxt.NetworkError(f"binanceusdm POST {URL}") from cause
    except ccxt.NetworkError as error:
        result = translate(error, action="submit", now_ms=NOW)
    assert type(result) is TemporaryError and "not reachable" in str(result)


def test_418_is_a_ban_until_the_venues_time() -> None:
    error = binance(-1003, "Way too much request weight used; IP banned until 1700000123000. Please use the "
                           "websocket for live updates to avoid bans.", ccxt.DDoSProtection)
    result = translate(error, action="submit", status=418, headers={"Retry-After": "123"}, now_ms=NOW)
    assert isinstance(result, Banned) and result.until_ms == 1_700_000_123_000 and result.retry_after_s == 123
    assert "2023-11-14T22:15:23Z" in str(result)


def test_418_without_a_time_uses_retry_after() -> None:
    result = translate(ccxt.DDoSProtection("binanceusdm 418 I'm a teapot"), action="read", status=418,
                       headers={"retry-after": "60"}, now_ms=NOW)
    assert isinstance(result, Banned) and result.until_ms == NOW + 60_000


def test_429_carries_retry_after() -> None:
    result = translate(ccxt.RateLimitExceeded("binanceusdm 429 Too Many Requests"), action="submit", status=429,
                       headers={"Retry-After": "7"}, now_ms=NOW)
    assert type(result) is RateLimited and result.retry_after_s == 7


def test_texts_hold_no_secret() -> None:
    credentials = Credentials("FAKEKEY-visible-123", "FAKESECRET-visible-456")
    error = ccxt.AuthenticationError(
        f'binanceusdm GET {URL} headers X-MBX-APIKEY: FAKEKEY-visible-123 secret FAKESECRET-visible-456 '
        '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}')
    result = translate(error, action="read", status=401, now_ms=NOW, redact=credentials.redact)
    assert "FAKEKEY-visible-123" not in str(result) and "FAKESECRET-visible-456" not in str(result)
    network = translate(ccxt.RequestTimeout(f"binanceusdm GET {URL}"), action="read", now_ms=NOW,
                        redact=credentials.redact)
    assert "0123456789abcdef" not in str(network) and "signature=***" in str(network)


def test_an_engine_error_passes_through() -> None:
    own = RateLimited("gate closed", retry_after_s=1.0)
    assert translate(own, action="submit", now_ms=NOW) is own


def test_venue_code() -> None:
    assert venue_code('binance {"code":-2013,"msg":"Order does not exist."}') == (-2013, "Order does not exist.")
    assert venue_code('bybit {"retCode":110001,"retMsg":"order not exists"}') == (110001, "order not exists")
    assert venue_code("nothing here") == (None, None)
