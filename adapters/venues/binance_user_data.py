"""Binance's private side: pure parsers of the user-data stream and of REST order/trade rows,
and the user-data stream itself (listen key lifecycle on ``adapters/net/ws_connection``).

**Parsers** (pure, no I/O; ``coins`` maps the exchange symbol to the engine's coin, and a
message about any other symbol yields nothing):

- ``parse_user_data(msg, coins)`` -> ``UserData``: USD-M ``ORDER_TRADE_UPDATE`` and spot
  ``executionReport`` (also wrapped as ``{"subscriptionId":..,"event":{..}}``). Execution type
  ``x`` = ``NEW`` -> ``OrderUpdate(ACCEPTED)``; ``CANCELED`` -> CANCELED; ``EXPIRED`` (and
  ``TRADE_PREVENTION``, status ``EXPIRED_IN_MATCH``) -> EXPIRED; ``REJECTED`` -> REJECTED;
  ``TRADE`` (and ``CALCULATED``, a liquidation) -> ``Fill`` (trade id ``t``, last filled
  quantity ``l``, last price ``L``, commission ``n`` in ``N``, maker ``m``, time ``T``): the
  filled statuses follow from the fills. USD-M ``ALGO_UPDATE`` (conditional orders: the client
  algo id ``caid`` is the client id of the order placed when it triggers) NEW / CANCELED /
  EXPIRED / REJECTED -> ``OrderUpdate``. Spot cancels name the canceled order in ``C``
  (``c`` is the cancel request's own id). USD-M ``ACCOUNT_UPDATE`` -> ``positions`` (one-way
  rows, ``ps`` BOTH) and ``balances`` (wallet balance ``wb``); spot
  ``outboundAccountPosition`` -> ``balances`` (free plus locked). ``listenKeyExpired`` (and
  spot ``eventStreamTerminated``) -> ``expired``.
- ``parse_order_row(row, coins, fills)`` -> ``VenueOrder`` (REST ``GET /order``,
  ``openOrders``, the answer to ``POST /order``); ``parse_trade_row(row, coins,
  client_order_id)`` -> ``Fill`` (REST ``userTrades`` / ``myTrades``: these rows carry the
  order id but not the client id, which the caller knows).

Every number is ``Decimal`` of the venue's own string; nothing goes through a float.

**The stream** (``BinanceUserDataStream``, the ``PrivateStream`` of ``ccxt_venue``): ``start``
creates a listen key (REST, through the venue's rate-limited ccxt client), opens
``<ws base>/ws/<listen key>`` on a ``WsConnection`` (reconnect with backoff, silence
detection), keeps the key alive every ``keepalive_s`` (Binance lets it lapse after 60 min),
creates a new one when Binance says ``listenKeyExpired`` or a keep-alive answers -1125, and
replaces the connection before Binance's 24-hour cut (``MAX_LIFETIME_S``, 23.5 h). A user-data
stream sends nothing while the account is idle, so a replacement is a new connection after
the old one is closed rather than WsConnection's handover: the venue covers the gap by polling
its orders in flight (``on_state(False, ...)``, then ``on_state(True, ...)``). ``stop``
closes the connection and deletes the listen key. The listen key is part of the URL path: it
is never logged (WsConnection logs scheme, host and port only). An idle user-data stream sends
no data: the client's pings (every ``ping_interval_s``) and their pongs keep it from counting as
silent (``silence_timeout_s``, above the ping interval).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from loguru import logger

from adapters.net.backoff import Backoff
from adapters.net.ws_connection import WsConnection
from state.account import HeldPosition
from state.order import Fill, OrderUpdate, VenueEvent, VenueOrder
from state.types import Liquidity, OrderStatus, Side

ZERO = Decimal(0)
MAX_LIFETIME_S = 23.5 * 3600  # Binance closes a connection at 24 h
KEEPALIVE_RETRY_S = 60.0  # a failed keep-alive is tried again this soon

# REST order status -> the engine's. PENDING_CANCEL is still working; NEW_INSURANCE / NEW_ADL
# are liquidation orders (working until they fill).
ORDER_STATUS = {
    "NEW": OrderStatus.ACCEPTED,
    "PENDING_NEW": OrderStatus.ACCEPTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.ACCEPTED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
    "NEW_INSURANCE": OrderStatus.ACCEPTED,
    "NEW_ADL": OrderStatus.ACCEPTED,
}
# Execution type -> the OrderUpdate it is (TRADE / CALCULATED are fills, handled apart).
_EXECUTION_UPDATES = {
    "NEW": OrderStatus.ACCEPTED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "TRADE_PREVENTION": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}
_FILL_EXECUTIONS = frozenset({"TRADE", "CALCULATED"})


class PayloadError(ValueError):
    """A payload the parser cannot read (a field missing or not a number)."""


def dec(value: Any, what: str) -> Decimal:
    """``Decimal`` of the venue's string (``Decimal(str(x))``: an int stays exact; a float
    would be turned into its shortest repr, never into binary noise)."""
    if value is None or isinstance(value, bool):
        raise PayloadError(f"{what}: missing or not a number: {value!r}")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise PayloadError(f"{what}: not a number: {value!r}") from exc
    if not number.is_finite():
        raise PayloadError(f"{what}: not a finite number: {value!r}")
    return number


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what}: not an integer: {value!r}") from exc


def _side(value: Any) -> Side:
    try:
        return Side(str(value).upper())
    except ValueError as exc:
        raise PayloadError(f"side: not BUY or SELL: {value!r}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class UserData:
    """What one user-data message says: ``events`` (fills and order updates of the configured
    coins), ``positions`` (held, one-way) and ``flat`` (coins the message says are flat),
    ``balances`` (asset -> total), ``expired`` (the listen key lapsed: a new one is needed),
    ``kind`` (the event type, ``""`` for a message that is not an event)."""

    kind: str = ""
    events: tuple[VenueEvent, ...] = ()
    positions: tuple[HeldPosition, ...] = ()
    flat: tuple[str, ...] = ()
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    expired: bool = False


def _unwrap(msg: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = msg.get("event")
    if isinstance(inner, Mapping) and "e" in inner:
        return inner  # spot WebSocket API: {"subscriptionId": 0, "event": {...}}
    inner = msg.get("data")
    if isinstance(inner, Mapping) and "e" in inner:
        return inner  # a combined stream: {"stream": "<listenKey>", "data": {...}}
    return msg


def parse_user_data(msg: Mapping[str, Any], coins: Mapping[str, str]) -> UserData:
    """One user-data message (a decoded JSON object); see the module docstring. Raises
    ``PayloadError`` for an order event it cannot read."""
    msg = _unwrap(msg)
    kind = str(msg.get("e", ""))
    if kind == "ORDER_TRADE_UPDATE":
        order = msg.get("o")
        if not isinstance(order, Mapping):
            raise PayloadError("ORDER_TRADE_UPDATE without an 'o' object")
        return UserData(kind=kind, events=_execution(order, coins, spot=False, event_ms=msg.get("E")))
    if kind == "executionReport":
        return UserData(kind=kind, events=_execution(msg, coins, spot=True, event_ms=msg.get("E")))
    if kind == "ALGO_UPDATE":
        order = msg.get("o")
        if not isinstance(order, Mapping):
            raise PayloadError("ALGO_UPDATE without an 'o' object")
        return UserData(kind=kind, events=_algo(order, coins, event_ms=msg.get("E")))
    if kind == "ACCOUNT_UPDATE":
        return _account_update(msg, coins)
    if kind == "outboundAccountPosition":
        balances = {}
        for row in msg.get("B") or ():
            balances[str(row["a"])] = dec(row.get("f"), "free") + dec(row.get("l"), "locked")
        return UserData(kind=kind, balances=balances)
    if kind in ("listenKeyExpired", "eventStreamTerminated"):
        return UserData(kind=kind, expired=True)
    return UserData(kind=kind)


def _execution(o: Mapping[str, Any], coins: Mapping[str, str], *, spot: bool, event_ms: Any) -> tuple[VenueEvent, ...]:
    coin = coins.get(str(o.get("s", "")))
    if coin is None:
        return ()
    execution = str(o.get("x", ""))
    status = str(o.get("X", ""))
    client_id = str(o.get("c", ""))
    if spot and execution in ("CANCELED", "REPLACED") and o.get("C"):
        client_id = str(o["C"])  # a cancel's own id is in "c"; the canceled order's in "C"
    venue_id = str(_int(o.get("i"), "order id i"))
    ts_ms = _int(o.get("T") if o.get("T") is not None else event_ms, "time T")
    if execution in _FILL_EXECUTIONS:
        quantity = dec(o.get("l"), "last filled quantity l")
        if quantity <= 0:
            return ()
        trade_id = o.get("t")
        if trade_id is None or _int(trade_id, "trade id t") < 0:
            raise PayloadError(f"{client_id}: a trade without a trade id (t={trade_id!r})")
        fee_currency = o.get("N")
        fill = Fill(
            trade_id=str(trade_id), client_order_id=client_id, venue_order_id=venue_id, quantity=quantity,
            price=dec(o.get("L"), "last price L"), fee=dec(o.get("n") or "0", "commission n"),
            fee_currency=str(fee_currency) if fee_currency else "",
            liquidity=Liquidity.MAKER if o.get("m") is True else Liquidity.TAKER, ts_ms=ts_ms,
        )
        return (fill,)
    update = _EXECUTION_UPDATES.get(execution)
    if update is None and status == "EXPIRED_IN_MATCH":
        update = OrderStatus.EXPIRED
    if update is None:
        return ()  # AMENDMENT, REPLACED, ...: nothing the engine tracks
    reason = None
    if update in (OrderStatus.REJECTED, OrderStatus.EXPIRED):
        why = next((str(o[k]) for k in ("r", "eR", "er") if o.get(k) not in (None, "", "NONE", "0")), None)
        reason = f"{execution} {why}" if why else execution
    return (OrderUpdate(client_order_id=client_id, venue_order_id=venue_id, status=update, ts_ms=ts_ms,
                        reason=reason),)


_ALGO_UPDATES = {"NEW": OrderStatus.ACCEPTED, "CANCELED": OrderStatus.CANCELED, "EXPIRED": OrderStatus.EXPIRED,
                 "REJECTED": OrderStatus.REJECTED}


def _algo(o: Mapping[str, Any], coins: Mapping[str, str], *, event_ms: Any) -> tuple[VenueEvent, ...]:
    """USD-M conditional (algo) orders: the client algo id ``caid`` is the client order id of
    the order it places when triggered, whose fills come as ``ORDER_TRADE_UPDATE``; NEW,
    CANCELED, EXPIRED and REJECTED are the order's; TRIGGERING, TRIGGERED, FINISHED say nothing
    the fills do not."""
    if coins.get(str(o.get("s", ""))) is None:
        return ()
    status = _ALGO_UPDATES.get(str(o.get("X", "")))
    if status is None:
        return ()
    why = o.get("rm")
    reason = (f"{o.get('X')} {why}" if why else str(o.get("X"))) if status is not OrderStatus.ACCEPTED else None
    return (OrderUpdate(client_order_id=str(o.get("caid", "")), venue_order_id=str(o.get("aid", "")), status=status,
                        ts_ms=_int(o.get("T") if o.get("T") is not None else event_ms, "time"), reason=reason),)


def _account_update(msg: Mapping[str, Any], coins: Mapping[str, str]) -> UserData:
    account = msg.get("a") or {}
    balances = {str(row["a"]): dec(row.get("wb"), "wallet balance wb") for row in account.get("B") or ()}
    positions: list[HeldPosition] = []
    flat: list[str] = []
    for row in account.get("P") or ():
        coin = coins.get(str(row.get("s", "")))
        if coin is None or str(row.get("ps", "BOTH")) != "BOTH":
            continue  # another symbol, or a hedge-mode row (hedge mode is refused at start)
        amount = dec(row.get("pa"), "position amount pa")
        if amount == 0:
            flat.append(coin)
            continue
        entry = dec(row.get("ep"), "entry price ep")
        positions.append(HeldPosition(coin=coin, side=Side.BUY if amount > 0 else Side.SELL, quantity=abs(amount),
                                      entry_price=entry if entry > 0 else None))
    return UserData(kind="ACCOUNT_UPDATE", balances=balances, positions=tuple(positions), flat=tuple(flat))


def parse_order_row(row: Mapping[str, Any], coins: Mapping[str, str], fills: tuple[Fill, ...] = ()) -> VenueOrder:
    """A REST order (``GET /order``, ``openOrders``, ``POST /order``'s answer) as a
    ``VenueOrder`` with ``fills`` (the caller fetched them by order id)."""
    symbol = str(row.get("symbol", ""))
    coin = coins.get(symbol)
    if coin is None:
        raise PayloadError(f"order of symbol {symbol!r}: not a configured coin")
    status_text = str(row.get("status", ""))
    status = ORDER_STATUS.get(status_text)
    if status is None:
        raise PayloadError(f"order status {status_text!r} unknown")
    filled = dec(row.get("executedQty", "0"), "executedQty")
    if status is OrderStatus.ACCEPTED and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED  # PENDING_CANCEL with fills
    stamp = row.get("updateTime") or row.get("transactTime") or row.get("time")
    return VenueOrder(
        client_order_id=str(row.get("clientOrderId", "")), venue_order_id=str(_int(row.get("orderId"), "orderId")),
        coin=coin, side=_side(row.get("side")), quantity=dec(row.get("origQty"), "origQty"), status=status,
        filled_quantity=filled, fills=tuple(fills), ts_ms=_int(stamp, "updateTime") if stamp is not None else None,
        reason=status_text if status in (OrderStatus.REJECTED, OrderStatus.EXPIRED) else None,
    )


def parse_trade_row(row: Mapping[str, Any], coins: Mapping[str, str], client_order_id: str) -> Fill:
    """A REST trade (USD-M ``userTrades``, spot ``myTrades``) of the order ``client_order_id``."""
    symbol = str(row.get("symbol", ""))
    if symbol not in coins:
        raise PayloadError(f"trade of symbol {symbol!r}: not a configured coin")
    maker = row.get("maker", row.get("isMaker"))
    return Fill(
        trade_id=str(_int(row.get("id"), "trade id")), client_order_id=client_order_id,
        venue_order_id=str(_int(row.get("orderId"), "orderId")), quantity=dec(row.get("qty"), "qty"),
        price=dec(row.get("price"), "price"), fee=dec(row.get("commission", "0"), "commission"),
        fee_currency=str(row.get("commissionAsset") or ""),
        liquidity=Liquidity.MAKER if maker is True else Liquidity.TAKER, ts_ms=_int(row.get("time"), "time"),
    )


def parse_spot_fills(row: Mapping[str, Any], coins: Mapping[str, str]) -> tuple[Fill, ...]:
    """The fills in a spot ``POST /api/v3/order`` answer with ``newOrderRespType=FULL``
    (``fills: [{price, qty, commission, commissionAsset, tradeId}]``)."""
    coin_symbol = str(row.get("symbol", ""))
    if coin_symbol not in coins:
        return ()
    out = []
    stamp = _int(row.get("transactTime") or row.get("workingTime") or 0, "transactTime")
    for item in row.get("fills") or ():
        out.append(Fill(
            trade_id=str(_int(item.get("tradeId"), "tradeId")), client_order_id=str(row.get("clientOrderId", "")),
            venue_order_id=str(_int(row.get("orderId"), "orderId")), quantity=dec(item.get("qty"), "qty"),
            price=dec(item.get("price"), "price"), fee=dec(item.get("commission", "0"), "commission"),
            fee_currency=str(item.get("commissionAsset") or ""), liquidity=Liquidity.TAKER, ts_ms=stamp,
        ))
    return tuple(out)


# --- the stream ------------------------------------------------------------------------------------

class ListenKeys:
    """The three listen-key calls, done by the venue's rate-limited REST client:
    ``create() -> key``, ``keepalive(key)``, ``delete(key)``; each raises the engine's venue
    errors (``ccxt_errors.ListenKeyInvalid`` for -1125)."""

    def __init__(self, create: Callable[[], str], keepalive: Callable[[str], None],
                 delete: Callable[[str], None]) -> None:
        self.create = create
        self.keepalive = keepalive
        self.delete = delete


def stream_url(base: str, listen_key: str) -> str:
    """``<base>/ws/<listen key>`` (``base`` may already end in ``/ws``)."""
    base = base.rstrip("/")
    return f"{base}/{listen_key}" if base.endswith("/ws") else f"{base}/ws/{listen_key}"


class BinanceUserDataStream:
    """The Binance user-data stream (spot or USD-M) as a ``PrivateStream``; see the module
    docstring. ``coins``: exchange symbol -> coin. Thread-safe; ``stop`` is idempotent."""

    def __init__(
        self,
        ws_base: str,
        keys: ListenKeys,
        *,
        coins: Mapping[str, str],
        keepalive_s: float = 1800.0,
        ping_interval_s: float = 20.0,
        silence_timeout_s: float | None = None,
        max_lifetime_s: float = MAX_LIFETIME_S,
        backoff: Backoff | None = None,
        name: str = "binance-user-data",
    ) -> None:
        if keepalive_s <= 0:
            raise ValueError(f"keepalive_s must be positive, got {keepalive_s}")
        self.name = name
        self._ws_base = ws_base
        self._keys = keys
        self._coins = dict(coins)
        self._keepalive_s = keepalive_s
        self._ping_interval_s = ping_interval_s
        self._silence_timeout_s = silence_timeout_s
        self._max_lifetime_s = max_lifetime_s
        self._backoff = backoff
        self._lock = threading.RLock()
        self._key: str | None = None
        self._ws: WsConnection | None = None
        self._opened_at: float | None = None
        self._up = False
        self._stopping = threading.Event()
        self._renew = threading.Event()  # wakes the keeper: the key lapsed, or the connection is old
        self._keeper: threading.Thread | None = None
        self._on_event: Callable[[VenueEvent], None] | None = None
        self._on_state: Callable[[bool, str], None] | None = None
        self._log = logger.bind(actor="executor")
        self.positions: dict[str, HeldPosition | None] = {}  # the last ACCOUNT_UPDATE per coin
        self.balances: dict[str, Decimal] = {}
        self.events = 0
        self.ignored = 0
        self.errors = 0
        self.keys_created = 0
        self.keepalives = 0
        self.renewals = 0
        self.last_error: str | None = None

    # --- PrivateStream ------------------------------------------------------------------------

    def start(self, on_event: Callable[[VenueEvent], None], on_state: Callable[[bool, str], None]) -> None:
        """Create a listen key (raises the venue's error when it cannot: keys refused, venue
        unreachable), open the stream and start the keep-alive thread."""
        with self._lock:
            if self._keeper is not None:
                return
            self._on_event, self._on_state = on_event, on_state
            self._stopping.clear()
            self._key = self._keys.create()
            self.keys_created += 1
            self._open()
            self._keeper = threading.Thread(target=self._keep, name=f"{self.name}-keepalive", daemon=True)
            self._keeper.start()

    def stop(self) -> None:
        self._stopping.set()
        self._renew.set()
        with self._lock:
            ws, self._ws = self._ws, None
            key, self._key = self._key, None
            keeper, self._keeper = self._keeper, None
        if ws is not None:
            ws.stop()
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(2.0)
        if key is not None:
            try:
                self._keys.delete(key)
            except Exception as error:  # noqa: BLE001 - the key lapses by itself in 60 min
                self._log.warning("USER_DATA_KEY_DELETE_FAILED: {} [{}]", error, self.name)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            ws = self._ws
        return {
            "name": self.name, "up": self._up, "events": self.events, "ignored": self.ignored,
            "errors": self.errors, "keys_created": self.keys_created, "keepalives": self.keepalives,
            "renewals": self.renewals, "last_error": self.last_error,
            "connection": ws.stats() if ws is not None else None,
        }

    @property
    def up(self) -> bool:
        return self._up

    # --- internals ----------------------------------------------------------------------------

    def _url(self) -> str:
        with self._lock:
            key = self._key
        if key is None:
            raise RuntimeError("no listen key")
        return stream_url(self._ws_base, key)

    def _open(self) -> None:
        self._ws = WsConnection(
            self.name, self._url, on_text=self._on_text, on_state=self._ws_state,
            backoff=self._backoff or Backoff(first_s=0.5, cap_s=30.0),
            ping_interval_s=self._ping_interval_s, silence_timeout_s=self._silence_timeout_s,
        )
        self._opened_at = time.monotonic()
        self._ws.start()

    def _ws_state(self, state: str, info: dict[str, Any]) -> None:
        if state == "open":
            self._opened_at = time.monotonic()
            self._set_up(True, "connected")
        elif state in ("backoff", "stopped") and not self._stopping.is_set():
            self._set_up(False, str(info.get("reason") or state))

    def _set_up(self, up: bool, why: str) -> None:
        with self._lock:
            if up == self._up:
                return
            self._up = up
            callback = self._on_state
        if callback is not None:
            try:
                callback(up, why)
            except Exception:  # noqa: BLE001 - the venue's code must not end the stream
                self._log.exception("USER_DATA_STATE_CALLBACK_FAILED [{}]", self.name)

    def _on_text(self, text: str, received_ns: int) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            self.errors += 1
            self.last_error = f"not JSON: {text[:80]!r}"
            return
        if not isinstance(msg, dict):
            self.ignored += 1
            return
        try:
            data = parse_user_data(msg, self._coins)
        except (PayloadError, KeyError) as error:
            self.errors += 1
            self.last_error = str(error)
            self._log.error("USER_DATA_UNREADABLE: {}: {} [{}]", error, text[:300], self.name)
            return
        if data.expired:
            self._log.warning("USER_DATA_KEY_EXPIRED: Binance says the listen key lapsed; a new one is made "
                              "[{}]", self.name)
            self._renew.set()
            return
        for coin in data.flat:
            self.positions[coin] = None
        for held in data.positions:
            self.positions[held.coin] = held
        self.balances.update(data.balances)
        if not data.events:
            self.ignored += 1 if not data.kind else 0
            return
        callback = self._on_event
        for event in data.events:
            self.events += 1
            if callback is not None:
                callback(event)

    def _keep(self) -> None:
        """Keep the key alive; renew key and connection on expiry or at the lifetime limit."""
        next_keepalive = time.monotonic() + self._keepalive_s
        while not self._stopping.is_set():
            now = time.monotonic()
            opened = self._opened_at or now
            wait = min(next_keepalive - now, opened + self._max_lifetime_s - now)
            if wait > 0 and self._renew.wait(wait):
                self._renew.clear()
                if self._stopping.is_set():
                    return
                self._replace("the listen key lapsed")
                next_keepalive = time.monotonic() + self._keepalive_s
                continue
            if self._stopping.is_set():
                return
            now = time.monotonic()
            if self._opened_at is not None and now - self._opened_at >= self._max_lifetime_s:
                self._replace(f"connection older than {self._max_lifetime_s:g}s (Binance closes at 24 h)")
                next_keepalive = time.monotonic() + self._keepalive_s
                continue
            if now >= next_keepalive:
                next_keepalive = now + (self._keepalive_s if self._keepalive() else min(KEEPALIVE_RETRY_S,
                                                                                       self._keepalive_s))

    def _keepalive(self) -> bool:
        from adapters.venues.ccxt_errors import ListenKeyInvalid  # noqa: PLC0415 - avoids a cycle

        with self._lock:
            key = self._key
        if key is None:
            return True
        try:
            self._keys.keepalive(key)
            self.keepalives += 1
            return True
        except ListenKeyInvalid:
            self._replace("the listen key no longer exists (-1125)")
            return True
        except Exception as error:  # noqa: BLE001 - tried again soon; the key lives 60 min
            self.errors += 1
            self.last_error = f"keep-alive: {error}"
            self._log.warning("USER_DATA_KEEPALIVE_FAILED: {} [{}]", error, self.name)
            return False

    def _replace(self, why: str) -> None:
        """A new listen key and a new connection (the gap is covered by the venue's polling)."""
        self._log.info("USER_DATA_RENEW: {} [{}]", why, self.name)
        with self._lock:
            old = self._ws
            self._ws = None
        if old is not None:
            old.stop()
        self._set_up(False, why)
        try:
            key = self._keys.create()
        except Exception as error:  # noqa: BLE001 - try again on the next wake-up
            self.errors += 1
            self.last_error = f"listen key: {error}"
            self._log.error("USER_DATA_KEY_FAILED: {}; trying again in {:g}s [{}]", error, KEEPALIVE_RETRY_S,
                            self.name)
            self._opened_at = time.monotonic() - self._max_lifetime_s + KEEPALIVE_RETRY_S
            return
        with self._lock:
            if self._stopping.is_set():
                return
            self._key = key
            self.keys_created += 1
            self.renewals += 1
            self._open()
