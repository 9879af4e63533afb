"""ccxt's exceptions, the HTTP status and the venue's own error code, translated into the
engine's venue errors (``adapters/errors.py``: grouped by what the caller should do).

``translate(error, action=..., status=..., headers=..., now_ms=..., redact=...)`` is pure: it
looks at, in this order,

1. the venue's error code in the answer (Binance ``{"code":-2019,"msg":"..."}``, Bybit
   ``retCode``), which ccxt keeps in its message: ``BINANCE_CODES`` / ``BYBIT_CODES`` below;
2. the HTTP status: 418 -> ``Banned`` (until the time in the venue's message, else
   ``Retry-After``, else ``DEFAULT_BAN_S``), 429 -> ``RateLimited`` (``Retry-After``, else
   ``DEFAULT_RATE_LIMIT_S``), 401/403 -> ``AuthenticationFailed``, 5xx -> unknown outcome;
3. the ccxt exception class.

What "unknown outcome" means depends on ``action``: on a ``submit`` or a ``cancel`` the
request may have been acted on (a timeout, a dropped connection, a 5xx, Binance ``-1007
Timeout waiting for response from backend server. Send status unknown``): ``AmbiguousOutcome``,
resolved by asking the venue for the client order id, never by sending it again. On a ``read``
it is a ``TemporaryError``. A connection that could not even be opened (refused, DNS) surely
sent nothing: ``TemporaryError`` whatever the action.

Some answers are not errors of the order and are returned as their own classes for the
venue to act on: ``DuplicateClientId`` (Binance -4116, "Duplicate order sent."; Bybit 110072:
the venue already has this client order id: look it up, never a second order),
``ListenKeyInvalid`` (Binance -1125: create a new listen key), ``ClockSkew`` (Binance -1021:
the request's timestamp is outside the receive window; measure the offset again; nothing was
done).

The text of every translated error is the venue's code and reason (``-2019 Margin is
insufficient.``) or ccxt's text, with URL credentials masked (``state.secrets.mask_url``) and
the key and secret redacted (``redact``, ``Credentials.redact``): ccxt puts the requested URL,
with its signature, into its messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import ccxt

from adapters.errors import (
    AmbiguousOutcome,
    AuthenticationFailed,
    Banned,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    TemporaryError,
)
from state.secrets import mask_url

Action = Literal["submit", "cancel", "read"]

DEFAULT_BAN_S = 120.0  # a 418 that says neither until when nor Retry-After
DEFAULT_RATE_LIMIT_S = 30.0  # a 429 without Retry-After


class DuplicateClientId(InvalidOrder):
    """The venue already has an order with this client order id (a resubmit after a lost
    answer): the order exists; look it up instead of treating this as a refusal."""


class ListenKeyInvalid(TemporaryError):
    """Binance -1125: the listen key does not exist (expired); a new one must be created."""


class ClockSkew(TemporaryError):
    """Binance -1021: the request's timestamp is outside recvWindow; nothing was done. The
    venue measures the server-time offset again."""


# Binance (spot and USD-M): code -> what it means for the caller.
# "ambiguous": the request may have been acted on (on a submit or cancel: AmbiguousOutcome).
BINANCE_CODES: dict[int, str] = {
    -1000: "ambiguous",  # UNKNOWN: an unknown error occurred while processing the request
    -1001: "ambiguous",  # DISCONNECTED: internal error; unable to process your request
    -1003: "rate_limited",  # TOO_MANY_REQUESTS (418: "IP banned until ...")
    -1006: "ambiguous",  # UNEXPECTED_RESP from the message bus: execution status unknown
    -1007: "ambiguous",  # TIMEOUT waiting for response from backend server: send status unknown
    -1008: "temporary",  # server busy (futures): request not processed
    -1015: "rate_limited",  # TOO_MANY_ORDERS
    -1016: "temporary",  # service shutting down
    -1021: "clock",  # timestamp outside recvWindow
    -1022: "auth",  # signature not valid
    -1125: "listen_key",  # this listenKey does not exist
    -2010: "invalid",  # NEW_ORDER_REJECTED (spot): the message says why
    -2011: "not_found",  # CANCEL_REJECTED: unknown order sent
    -2013: "not_found",  # NO_SUCH_ORDER: order does not exist
    -2014: "auth",  # API-key format invalid
    -2015: "auth",  # invalid API-key, IP, or permissions for action
    -2018: "funds",  # balance is insufficient
    -2019: "funds",  # margin is insufficient
    -2021: "invalid",  # order would immediately trigger
    -2022: "invalid",  # ReduceOnly order is rejected
    -4116: "duplicate",  # ClientOrderId is duplicated
    -4164: "invalid",  # order's notional must be no smaller than ...
    -5022: "invalid",  # post only order would be rejected (GTX)
}
# Binance's codes -1100..-1199 (bad parameters) and -1013 / -4000..-4999 (filters, order
# rules) are definite refusals of the order too.

BYBIT_CODES: dict[int, str] = {
    10002: "clock",  # request time exceeds the time window
    10003: "auth",  # API key is invalid
    10004: "auth",  # error sign
    10005: "auth",  # permission denied
    10006: "rate_limited",  # too many visits
    10010: "auth",  # unmatched IP
    10016: "ambiguous",  # server error
    110001: "not_found",  # order does not exist
    110004: "funds",  # wallet balance insufficient
    110007: "funds",  # available balance insufficient
    110012: "funds",
    110014: "funds",
    110043: "invalid",  # leverage not modified (the caller takes it as "already so")
    110072: "duplicate",  # OrderLinkedID is duplicate
    170131: "funds",  # spot: balance insufficient
    170213: "not_found",  # spot: order does not exist
}

_BINANCE_CODE = re.compile(r'"code"\s*:\s*"?(-?\d+)"?')
_BINANCE_MSG = re.compile(r'"msg"\s*:\s*"((?:[^"\\]|\\.)*)"')
_BYBIT_CODE = re.compile(r'"retCode"\s*:\s*"?(-?\d+)"?')
_BYBIT_MSG = re.compile(r'"retMsg"\s*:\s*"((?:[^"\\]|\\.)*)"')
_BANNED_UNTIL = re.compile(r"banned until (\d{10,})", re.IGNORECASE)
_NOT_CONNECTED = ("NewConnectionError", "Failed to establish a new connection", "Connection refused",
                  "Name or service not known", "nodename nor servname", "getaddrinfo failed")


def venue_code(text: str) -> tuple[int | None, str | None]:
    """``(code, message)`` of the venue's error answer inside ``text`` (ccxt's exception text
    holds the body): Binance ``code``/``msg``, else Bybit ``retCode``/``retMsg``."""
    for code_re, msg_re in ((_BINANCE_CODE, _BINANCE_MSG), (_BYBIT_CODE, _BYBIT_MSG)):
        found = code_re.search(text)
        if found:
            message = msg_re.search(text)
            reason = None
            if message:
                try:
                    reason = json.loads(f'"{message.group(1)}"')
                except ValueError:
                    reason = message.group(1)
            return int(found.group(1)), reason
    return None, None


def utc(ms: int) -> str:
    """Epoch milliseconds as an ISO UTC time (for messages)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_after_s(headers: Mapping[str, Any] | None) -> float | None:
    """The ``Retry-After`` header in seconds (case-insensitive), when there is a usable one."""
    if not headers:
        return None
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                seconds = float(str(value).strip())
            except ValueError:
                return None
            return seconds if seconds >= 0 else None
    return None


def _meaning(exchange: str, code: int | None) -> str | None:
    if code is None:
        return None
    if exchange.startswith("bybit"):
        return BYBIT_CODES.get(code)
    meaning = BINANCE_CODES.get(code)
    if meaning is None and (-1199 <= code <= -1100 or code == -1013 or -4999 <= code <= -4000):
        return "invalid"
    return meaning


def _not_connected(error: BaseException) -> bool:
    """Whether the request surely never left: the TCP connection could not be opened."""
    seen: BaseException | None = error
    for _ in range(6):
        if seen is None:
            return False
        text = f"{type(seen).__name__} {seen}"
        if any(marker in text for marker in _NOT_CONNECTED):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def translate(
    error: BaseException,
    *,
    action: Action,
    exchange: str = "binanceusdm",
    status: int | None = None,
    headers: Mapping[str, Any] | None = None,
    now_ms: int,
    redact: Callable[[str], str] = lambda text: text,
) -> ExchangeError:
    """The engine's error for ``error`` (a ccxt exception, or anything a request raised);
    see the module docstring. An ``adapters.errors`` error is returned as it is."""
    if isinstance(error, ExchangeError):
        return error
    raw = redact(mask_url(str(error)))
    code, message = venue_code(raw)
    reason = f"{code} {message}" if code is not None and message else raw
    where = f"{exchange}: "
    meaning = _meaning(exchange, code)
    if meaning == "invalid" and message and "duplicate order" in message.lower():
        meaning = "duplicate"  # spot -2010 "Duplicate order sent."
    elif meaning == "invalid" and message and "insufficient balance" in message.lower():
        meaning = "funds"  # spot -2010 "Account has insufficient balance for requested action."
    unknown = AmbiguousOutcome if action in ("submit", "cancel") else TemporaryError
    wait_s = retry_after_s(headers)

    if status == 418:
        banned = _BANNED_UNTIL.search(raw)
        if banned:
            until = int(banned.group(1))
        else:
            until = now_ms + int((wait_s if wait_s is not None else DEFAULT_BAN_S) * 1000)
        return Banned(f"{where}IP banned (HTTP 418) until {utc(until)}: {reason}", until_ms=until,
                      retry_after_s=wait_s)
    if status == 429 or meaning == "rate_limited" or isinstance(error, ccxt.DDoSProtection):
        return RateLimited(f"{where}rate limited (HTTP {status or 429}): {reason}", retry_after_s=wait_s)
    if meaning == "listen_key":
        return ListenKeyInvalid(f"{where}{reason}")
    if meaning == "clock" or isinstance(error, ccxt.InvalidNonce):
        return ClockSkew(f"{where}the request's timestamp was refused (server time offset): {reason}")
    if meaning == "auth" or status in (401, 403) or (
            meaning is None and isinstance(error, ccxt.AuthenticationError)):
        return AuthenticationFailed(
            f"{where}the API key was refused ({reason}): check that the key and secret are right, "
            f"not expired, allowed to trade this market, and that this IP is whitelisted")
    if meaning == "duplicate":
        return DuplicateClientId(f"{where}{reason}")
    if meaning == "not_found":
        return OrderNotFound(f"{where}{reason}")
    if meaning == "funds":
        return InsufficientFunds(f"{where}{reason}")
    if meaning == "invalid":
        return InvalidOrder(f"{where}{reason}")
    if meaning == "temporary":
        return TemporaryError(f"{where}{reason}")
    if meaning == "ambiguous" or (status is not None and status >= 500):
        return unknown(f"{where}{reason}" + (f" (HTTP {status})" if status else ""))
    if isinstance(error, ccxt.NetworkError):  # timeouts, resets, ExchangeNotAvailable
        if _not_connected(error):
            return TemporaryError(f"{where}not reachable: {type(error).__name__} {raw}")
        return unknown(f"{where}no answer: {type(error).__name__} {raw}")
    if isinstance(error, ccxt.InsufficientFunds):
        return InsufficientFunds(f"{where}{reason}")
    if isinstance(error, ccxt.OrderNotFound):
        return OrderNotFound(f"{where}{reason}")
    if isinstance(error, ccxt.InvalidOrder):
        return InvalidOrder(f"{where}{reason}")
    if isinstance(error, (ccxt.BadRequest, ccxt.BadSymbol)) and action == "submit":
        return InvalidOrder(f"{where}{reason}")
    if isinstance(error, ccxt.BaseError) and status is not None and 400 <= status < 500:
        return InvalidOrder(f"{where}{reason}") if action == "submit" else TemporaryError(f"{where}{reason}")
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        if _not_connected(error):
            return TemporaryError(f"{where}not reachable: {type(error).__name__} {raw}")
        return unknown(f"{where}no answer: {type(error).__name__} {raw}")
    # An answer the adapter cannot classify: on an order, the outcome is unknown.
    return unknown(f"{where}{type(error).__name__}: {raw}")


__all__ = ["BINANCE_CODES", "BYBIT_CODES", "ClockSkew", "DuplicateClientId", "ListenKeyInvalid",
           "retry_after_s", "translate", "utc", "venue_code"]
