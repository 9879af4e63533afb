"""Bybit v5's private protocol, pure: the websocket messages (``order``, ``execution``,
``position``, ``wallet`` topics; ``auth``, ``subscribe``, ``ping``/``pong`` answers; errors) and
the REST rows CcxtVenue reads from ccxt's ``info`` (``/v5/order/realtime``, ``/v5/order/history``,
``/v5/execution/list``, ``/v5/position/list``), turned into the engine's vocabulary. No I/O, no
clock, no state: ``adapters/venues/bybit_private.py`` holds the stream that uses them and
re-exports every name here.

**Symbols.** ``coins`` maps the exchange symbol to the engine's coin (``{"BTCUSDT": "BTC"}``;
upper-cased). A row of another symbol, or of another ``category`` than the stream's (one private
connection carries every category of a unified account: spot ``BTCUSDT`` and linear
``BTCUSDT`` are different markets) is left out and counted in ``PrivateMessage.ignored``. A
row without ``category`` (REST rows carry it in the envelope) is taken as the stream's.

**Numbers** are ``Decimal(str(x))`` of the venue's strings (JSON numbers decoded as ``Decimal``,
never float). An empty string means "none": no price, no fee (``execFee: ""`` is a zero fee), a
position of no size. Timestamps are the strings of Unix milliseconds Bybit sends
(``execTime``, ``updatedTime``), or the envelope's ``creationTime`` when a row has none.

**Order rows** (``order`` topic) -> ``OrderUpdate(client_order_id=orderLinkId,
venue_order_id=orderId, ts_ms=updatedTime)``. ``orderStatus``:

- ``Created``, ``New``, ``PartiallyFilled``, ``Untriggered`` (a conditional order waiting for its
  trigger: the venue holds it), ``Triggered``, ``Active``, ``PendingCancel`` and ``Filled`` ->
  ACCEPTED. Fills come only from ``execution`` rows (each with its trade id); a filled status
  is not a fill, the Executor derives PARTIALLY_FILLED/FILLED from the fills.
- ``Cancelled``, ``PartiallyFilledCanceled`` (spot) and ``Deactivated`` (a conditional or TP/SL
  order canceled before it triggered) -> CANCELED, reason ``cancelType`` (``CancelByUser``,
  ``CancelByReduceOnly``, ...) plus ``rejectReason`` when it says something. Two exceptions are
  EXPIRED, as the engine names an order the venue ended by its own rules: ``rejectReason``
  ``EC_PostOnlyWillTakeLiquidity`` (a post-only order that would take) and a FOK order
  canceled with nothing filled.
- ``Rejected`` -> REJECTED, reason ``rejectReason``; but a rejected order with
  ``cumExecQty`` > 0 (Bybit: "partially filled, then rejected") is CANCELED with reason
  ``REJECTED: <rejectReason>``: what filled stays (the order state machine has no rejection
  after fills).
- any other status: the row is a problem (``UNKNOWN_STATUS``), never guessed.

``PrivateMessage.cum_filled`` carries each order row's ``cumExecQty`` by venue order id, so the
stream can hold a final update back until its fills have arrived (the two topics are pushed
separately, in no guaranteed order).

**Execution rows** (``execution`` topic; REST ``/v5/execution/list``) by ``execType``:

- ``Trade`` -> ``Fill(trade_id=execId, client_order_id=orderLinkId, venue_order_id=orderId,
  quantity=execQty, price=execPrice, fee=execFee, fee_currency=feeCurrency, liquidity=isMaker,
  ts_ms=execTime)``. Without ``feeCurrency`` the fee currency is the settle coin on derivatives
  (the symbol's quote: ``USDT``; ``USDC`` for ``...PERP`` symbols) and on spot the asset
  received (the coin on a buy, the quote on a sell: Bybit charges a spot fee in what you get).
- ``Funding`` -> no fill (it moves money, no quantity): ignored, counted.
- ``AdlTrade`` (auto-deleveraging), ``BustTrade`` (liquidation), ``Delivery``, ``Settle``,
  ``BlockTrade``, ``MovePosition`` and any other type -> the ``Fill`` as above (the trade id, its
  quantity and price are facts; ``orderLinkId`` is empty on the venue's own orders, so the
  Executor logs it as an order it never recorded) **and** ``problem``
  ``POSITION_CHANGED_BY_VENUE: ...`` with ``account_changed`` set: the position changed without
  an order of ours, the venue must reconcile (the stream logs it and calls ``on_account``).
  Never silently dropped.
- ``execution.fast`` rows (a low-latency copy of trades without ``execType``, fee or fee
  currency) are ignored and counted: the first fill recorded per trade id wins, so a fee-less
  copy arriving first would lose the fee. The stream subscribes to ``execution`` only.

**Position rows** -> ``HeldPosition(coin, side=Buy/Sell, quantity=size, entry_price=entryPrice
(avgPrice on REST))``; a size of ``0`` or ``""`` is flat: no ``HeldPosition``, the coin is in
``PrivateMessage.flat``. ``positionIdx`` 1/2 (hedge mode) rows are parsed as they are (the venue
refuses a hedge-mode account at start). Spot has no positions: there the holding is the wallet
balance of the coin.

**Wallet rows** -> ``PrivateMessage.balances`` (asset -> ``walletBalance``, summed over the
account rows of the message).

**Answers.** ``{"op": "auth", "success": true}`` -> ``auth_ok=True``; ``success: false`` (also
the shape with the op only in ``request``) -> ``auth_ok=False`` and problem ``AUTH_FAILED:
<retMsg>``: the text never includes the echoed request, whose ``args`` hold the API key.
``op: subscribe`` -> ``subscribed`` True/False (problem ``SUBSCRIBE_FAILED: <ret_msg>``);
``op: pong`` or ``ret_msg: pong`` -> kind ``pong``; another ``op`` (a trade-websocket answer
such as ``order.create``) -> ignored, a problem when its ``retCode`` is not 0; anything with
``success: false`` -> problem ``ERROR``.

**Bad input never raises** out of ``parse_private_message`` / ``parse_private_text``: a message
that is not an object, a topic without a ``data`` list, a bad row (missing field, bad number,
unknown side or status) -> ``problem`` naming the row and the field. The good rows of a
message with one bad row are kept. The REST row parsers (``parse_order_row``,
``parse_execution_row``, ``parse_position_row``) raise ``ValueError`` naming the field
instead, as a REST answer that does not parse is an error of the call; rows of a symbol not in
``coins`` raise too (filter first with ``coin_of``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.feeds.frame_log import loads as _loads
from state.account import HeldPosition
from state.order import Fill, OrderUpdate, VenueEvent, VenueOrder
from state.types import MAX_MAGNITUDE, Liquidity, OrderStatus, Side

__all__ = [
    "AUTH_PATH", "AUTH_WINDOW_MS", "CATEGORIES", "PING_MESSAGE", "PrivateMessage", "auth_message", "auth_signature",
    "coin_map", "coin_of", "parse_execution_row", "parse_order_row", "parse_position_row", "parse_private_message",
    "parse_private_text", "parse_wallet_row", "private_topics", "subscribe_message",
]

CATEGORIES = ("linear", "spot")
AUTH_PATH = "GET/realtime"  # what Bybit signs for a websocket login, followed by ``expires``
AUTH_WINDOW_MS = 10_000  # an auth message is valid until now + this (as ccxt and Bybit's examples)
PING_MESSAGE = '{"op":"ping"}'

_ZERO = Decimal(0)
_SIDES = {"Buy": Side.BUY, "Sell": Side.SELL}
_OPEN_STATUSES = frozenset({"Created", "New", "PartiallyFilled", "Untriggered", "Triggered", "Active",
                            "PendingCancel", "Filled"})
_CANCELED_STATUSES = frozenset({"Cancelled", "PartiallyFilledCanceled", "Deactivated"})
_NO_REASON = frozenset({"", "EC_NoError", "UNKNOWN", "None"})
_POST_ONLY_WOULD_TAKE = "EC_PostOnlyWillTakeLiquidity"
_VENUE_CHANGE_NOTE = "the position changed without an order of ours: reconcile"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivateMessage:
    """What one private-stream message says (see the module docstring).

    ``events``: ``OrderUpdate`` / ``Fill`` for the configured coins, in the message's order.
    ``positions``: the non-flat positions a ``position`` message reports; ``flat``: the coins it
    reports flat. ``auth_ok``: the answer to our ``auth`` (``None`` for any other message).
    ``problem``: what was wrong or needs attention (``CODE: detail``), else ``None``.
    ``kind``: the topic or op (``order``, ``execution``, ``execution.fast``, ``position``,
    ``wallet``, ``auth``, ``subscribe``, ``pong``, ...; ``""`` when unreadable).
    ``subscribed``: the answer to our ``subscribe``. ``balances``: asset -> wallet balance.
    ``ignored``: rows left out (other symbols or categories, funding, ``execution.fast``).
    ``cum_filled``: venue order id -> ``cumExecQty`` of each order row.
    ``account_changed``: an execution changed a position without an order of ours."""

    events: tuple[VenueEvent, ...] = ()
    positions: tuple[HeldPosition, ...] = ()
    auth_ok: bool | None = None
    problem: str | None = None
    kind: str = ""
    subscribed: bool | None = None
    flat: tuple[str, ...] = ()
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    ignored: int = 0
    cum_filled: Mapping[str, Decimal] = field(default_factory=dict)
    account_changed: bool = False


class _RowError(ValueError):
    """A row that cannot be used; the text names the field."""


class _Skip(Exception):
    """A row that is not ours (another symbol or category): left out, counted."""


# --- outgoing messages ---------------------------------------------------------------------------

def auth_signature(secret: str, expires_ms: int) -> str:
    """Hex HMAC-SHA256 of ``"GET/realtime" + expires`` under the secret."""
    return hmac.new(secret.encode("utf-8"), f"{AUTH_PATH}{int(expires_ms)}".encode("ascii"),
                    hashlib.sha256).hexdigest()


def auth_message(key: str, secret: str, expires_ms: int) -> str:
    """``{"op":"auth","args":[key, expires, signature]}``; ``expires_ms`` is the Unix time in ms
    until which the login is valid (the server's clock: now + ``AUTH_WINDOW_MS``)."""
    if not key or not secret:
        raise ValueError("auth_message: the API key and secret must not be empty")
    if isinstance(expires_ms, bool) or not isinstance(expires_ms, int) or expires_ms <= 0:
        raise ValueError(f"auth_message: expires_ms must be a positive whole number of ms, got {expires_ms!r}")
    return json.dumps({"op": "auth", "args": [key, expires_ms, auth_signature(secret, expires_ms)]},
                      separators=(",", ":"))


def private_topics(category: str) -> list[str]:
    """The topics the stream subscribes to: ``order``, ``execution``, ``wallet``, and on
    derivatives ``position`` (all-in-one topics: the rows say their category)."""
    _check_category(category)
    return ["order", "execution", "position", "wallet"] if category != "spot" else ["order", "execution", "wallet"]


def subscribe_message(topics: Iterable[str]) -> str:
    """``{"op":"subscribe","args":[...]}``."""
    names = list(topics)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"subscribe_message: topics must be non-empty text, got {names!r}")
    return json.dumps({"op": "subscribe", "args": names}, separators=(",", ":"))


# --- incoming messages ---------------------------------------------------------------------------

def parse_private_text(text: str | bytes, coins: Mapping[str, str], category: str) -> PrivateMessage:
    """``parse_private_message`` of a text frame; broken JSON -> problem ``MALFORMED``."""
    try:
        message = _loads(text if isinstance(text, str) else bytes(text).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError) as error:
        return PrivateMessage(problem=f"MALFORMED: not JSON ({type(error).__name__}: {str(error)[:80]})")
    return parse_private_message(message, coins, category)


def parse_private_message(msg: Mapping[str, Any], coins: Mapping[str, str], category: str) -> PrivateMessage:
    """One decoded private-stream message -> ``PrivateMessage``; never raises for bad input
    (``ValueError`` only for a bad ``category``)."""
    _check_category(category)
    if not isinstance(msg, Mapping):
        return PrivateMessage(problem=f"MALFORMED: a message is an object, not {type(msg).__name__}")
    try:
        by_symbol = _coin_map(coins)
    except ValueError as error:
        return PrivateMessage(problem=f"MALFORMED: {error}")
    topic = msg.get("topic")
    if isinstance(topic, str) and topic:
        return _topic_message(topic, msg, by_symbol, category)
    return _answer(msg)


def _topic_message(topic: str, msg: Mapping[str, Any], coins: dict[str, str], category: str) -> PrivateMessage:
    base, _, suffix = topic.partition(".")
    data = msg.get("data")
    if not isinstance(data, list):
        return PrivateMessage(kind=topic, problem=f"MALFORMED: {topic}: 'data' is not a list")
    if base == "execution" and suffix == "fast":
        return PrivateMessage(kind=topic, ignored=len(data))
    if suffix and suffix not in ("linear", "spot", "inverse", "option"):
        return PrivateMessage(kind=topic, problem=f"UNEXPECTED_TOPIC: {topic}")
    if suffix and suffix != category:
        return PrivateMessage(kind=topic, ignored=len(data))
    default_ts = msg.get("creationTime")
    if base == "order":
        return _rows(topic, data, lambda row: _order_update(row, coins, category, default_ts))
    if base == "execution":
        return _rows(topic, data, lambda row: _execution(row, coins, category, default_ts))
    if base == "position":
        return _rows(topic, data, lambda row: _position(row, coins, category))
    if base == "wallet":
        return _rows(topic, data, _wallet)
    return PrivateMessage(kind=topic, problem=f"UNEXPECTED_TOPIC: {topic}")


def _rows(topic: str, data: list[Any], parse: Any) -> PrivateMessage:
    """Each row through ``parse`` (-> a partial dict of PrivateMessage fields); bad rows make
    the problem, the good ones are kept."""
    events: list[VenueEvent] = []
    positions: list[HeldPosition] = []
    flat: list[str] = []
    balances: dict[str, Decimal] = {}
    cum_filled: dict[str, Decimal] = {}
    problems: list[str] = []
    changes: list[str] = []
    ignored = 0
    for index, row in enumerate(data):
        try:
            if not isinstance(row, Mapping):
                raise _RowError(f"a row is an object, not {type(row).__name__}")
            part = parse(row)
        except _Skip:
            ignored += 1
            continue
        except (_RowError, KeyError, TypeError, ValueError, InvalidOperation) as error:
            problems.append(f"row {index}: {_describe(error)}")
            continue
        events.extend(part.get("events", ()))
        if "position" in part:
            positions.append(part["position"])
        flat.extend(part.get("flat", ()))
        for asset, amount in part.get("balances", {}).items():
            balances[asset] = balances.get(asset, _ZERO) + amount
        cum_filled.update(part.get("cum_filled", {}))
        ignored += part.get("ignored", 0)
        if "venue_change" in part:
            changes.append(part["venue_change"])
    parts = []
    if changes:
        parts.append("POSITION_CHANGED_BY_VENUE: " + "; ".join(changes) + f" ({_VENUE_CHANGE_NOTE})")
    if problems:
        parts.append(f"BAD_ROW: {topic}: " + "; ".join(problems))
    problem = " | ".join(parts) or None
    return PrivateMessage(kind=topic, events=tuple(events), positions=tuple(positions), flat=tuple(flat),
                          balances=balances, cum_filled=cum_filled, ignored=ignored, problem=problem,
                          account_changed=bool(changes))


def _answer(msg: Mapping[str, Any]) -> PrivateMessage:
    """A message without a topic: an answer to one of our ops, a pong, or an error."""
    op = msg.get("op")
    request = msg.get("request")
    if not isinstance(op, str) and isinstance(request, Mapping):
        op = request.get("op")  # an error echoing the request (its args may hold the key: never shown)
    text = _ret_msg(msg)
    success = msg.get("success")
    code = msg.get("retCode", msg.get("ret_code"))
    ok = success is True or (success is None and code in (0, "0"))
    failed = success is False or (code not in (None, 0, "0") and success is not True)
    suffix = f" (retCode {code})" if code not in (None, 0, "0") else ""
    if op == "auth":
        if not ok or failed:
            return PrivateMessage(kind="auth", auth_ok=False, problem=f"AUTH_FAILED: {text or 'refused'}{suffix}")
        return PrivateMessage(kind="auth", auth_ok=True)
    if op == "pong" or text == "pong":
        return PrivateMessage(kind="pong")
    if op == "subscribe":
        if not ok or failed:
            return PrivateMessage(kind="subscribe", subscribed=False, problem=f"SUBSCRIBE_FAILED: {text or 'refused'}")
        return PrivateMessage(kind="subscribe", subscribed=True)
    if isinstance(op, str) and op:
        if failed:
            return PrivateMessage(kind=op, ignored=1, problem=f"ERROR: {op} refused: {text or 'no reason'}{suffix}")
        return PrivateMessage(kind=op, ignored=1)
    if failed:
        return PrivateMessage(problem=f"ERROR: {text or 'the venue reported a failure without a reason'}")
    return PrivateMessage(problem="UNEXPECTED: a message with neither a topic nor an op")


def _ret_msg(msg: Mapping[str, Any]) -> str:
    for name in ("retMsg", "ret_msg"):
        value = msg.get(name)
        if isinstance(value, str) and value:
            return value[:200]
    return ""


# --- rows ----------------------------------------------------------------------------------------

def coin_of(row: Mapping[str, Any], coins: Mapping[str, str]) -> str | None:
    """The engine coin of a row's ``symbol``, ``None`` when it is not one of ``coins``."""
    symbol = row.get("symbol") if isinstance(row, Mapping) else None
    if not isinstance(symbol, str):
        return None
    return _coin_map(coins).get(symbol.upper())


def parse_order_row(row: Mapping[str, Any], coins: Mapping[str, str]) -> VenueOrder:
    """A REST order row (``/v5/order/realtime`` or ``/v5/order/history``, ccxt's ``info``) ->
    ``VenueOrder`` with no fills (they come from ``/v5/execution/list``). Statuses as for the
    stream, except that the filled ones are said: PARTIALLY_FILLED (open with ``cumExecQty`` >
    0), FILLED. ``ValueError`` naming the field for a row that does not parse or is of another
    symbol."""
    by_symbol = _coin_map(coins)
    try:
        coin = _coin(row, by_symbol)
        status, reason = _order_status(row)
        filled = _quantity(row, "cumExecQty", default=_ZERO)
        if status is OrderStatus.ACCEPTED and filled > 0:
            status = OrderStatus.FILLED if row.get("orderStatus") == "Filled" else OrderStatus.PARTIALLY_FILLED
        return VenueOrder(
            client_order_id=_text(row, "orderLinkId", required=False),
            venue_order_id=_text(row, "orderId"),
            coin=coin,
            side=_side(row),
            quantity=_quantity(row, "qty"),
            status=status,
            filled_quantity=filled,
            ts_ms=_ms(row, "updatedTime", row.get("createdTime")),
            reason=reason,
        )
    except _Skip as skip:
        raise ValueError(f"order row of {_where(row)}: not one of {sorted(by_symbol)}") from skip
    except (_RowError, KeyError, TypeError, InvalidOperation) as error:
        raise ValueError(f"bybit order row: {_describe(error)}") from None


def parse_execution_row(row: Mapping[str, Any], coins: Mapping[str, str], *,
                        category: str | None = None) -> Fill | None:
    """A REST execution row (``/v5/execution/list``, ccxt's ``info``) -> ``Fill``; ``None`` for
    an execution that moves no quantity (``Funding``). ADL, liquidation and settlement rows are
    fills too (with the venue's empty ``orderLinkId``): they changed the position. The category
    (for the fee currency when the row has none): the row's, else ``category``, else linear;
    a row of another category than ``category`` raises. ``ValueError`` naming the field for a
    row that does not parse or is of another symbol."""
    by_symbol = _coin_map(coins)
    if category is not None:
        _check_category(category)
    given = row.get("category") if isinstance(row, Mapping) else None
    use = category or (given if given in CATEGORIES else "linear")
    try:
        if not isinstance(row, Mapping):
            raise _RowError(f"a row is an object, not {type(row).__name__}")
        part = _execution(row, by_symbol, use, None)
    except _Skip as skip:
        raise ValueError(f"execution row of {_where(row)}: not one of {sorted(by_symbol)}") from skip
    except (_RowError, KeyError, TypeError, InvalidOperation) as error:
        raise ValueError(f"bybit execution row: {_describe(error)}") from None
    events = part.get("events", ())
    return events[0] if events else None


def parse_position_row(row: Mapping[str, Any], coins: Mapping[str, str]) -> HeldPosition | None:
    """A REST or stream position row -> ``HeldPosition``, ``None`` when flat. ``ValueError``
    naming the field for a row that does not parse or is of another symbol."""
    by_symbol = _coin_map(coins)
    try:
        part = _position(row, by_symbol, None)
    except _Skip as skip:
        raise ValueError(f"position row of {_where(row)}: not one of {sorted(by_symbol)}") from skip
    except (_RowError, KeyError, TypeError, InvalidOperation) as error:
        raise ValueError(f"bybit position row: {_describe(error)}") from None
    return part.get("position")


def parse_wallet_row(row: Mapping[str, Any]) -> dict[str, Decimal]:
    """A wallet row (stream ``wallet`` or REST ``/v5/account/wallet-balance`` ``list`` item) ->
    asset -> ``walletBalance`` (assets with an empty balance are left out). ``ValueError``
    naming the field for a row that does not parse."""
    try:
        return _wallet(row)["balances"]
    except (_RowError, KeyError, TypeError, InvalidOperation) as error:
        raise ValueError(f"bybit wallet row: {_describe(error)}") from None


def _order_update(row: Mapping[str, Any], coins: dict[str, str], category: str, default_ts: Any) -> dict[str, Any]:
    _check_row_category(row, category)
    _coin(row, coins)
    _side(row)  # not carried by an update, but a row without a side is not a row to trust
    status, reason = _order_status(row)
    venue_order_id = _text(row, "orderId")
    update = OrderUpdate(client_order_id=_text(row, "orderLinkId", required=False), venue_order_id=venue_order_id,
                         status=status, ts_ms=_row_ms(row, "updatedTime", default_ts), reason=reason)
    return {"events": (update,), "cum_filled": {venue_order_id: _quantity(row, "cumExecQty", default=_ZERO)}}


def _order_status(row: Mapping[str, Any]) -> tuple[OrderStatus, str | None]:
    """The engine status of an order row and its reason (module docstring)."""
    status = row.get("orderStatus")
    if status in _OPEN_STATUSES:
        return OrderStatus.ACCEPTED, None
    filled = _quantity(row, "cumExecQty", default=_ZERO)
    reject = _reason_text(row.get("rejectReason"))
    if status == "Rejected":
        if filled > 0:
            return OrderStatus.CANCELED, f"REJECTED: {reject or 'no reason given'}"
        return OrderStatus.REJECTED, reject or "REJECTED"
    if status in _CANCELED_STATUSES:
        if reject == _POST_ONLY_WOULD_TAKE or (row.get("timeInForce") == "FOK" and filled == 0):
            return OrderStatus.EXPIRED, reject or "FOK: not filled whole"
        words = ["DEACTIVATED"] if status == "Deactivated" else []
        cancel_type = _reason_text(row.get("cancelType"))
        words += [text for text in (cancel_type, reject) if text]
        return OrderStatus.CANCELED, " ".join(words) or "CANCELED"
    raise _RowError(f"orderStatus: {status!r} is not a status this parser knows (UNKNOWN_STATUS)")


def _execution(row: Mapping[str, Any], coins: dict[str, str], category: str, default_ts: Any) -> dict[str, Any]:
    _check_row_category(row, category)
    coin = _coin(row, coins)
    exec_type = row.get("execType", "Trade")
    if exec_type == "Funding":
        return {"ignored": 1}
    if not isinstance(exec_type, str) or not exec_type:
        raise _RowError(f"execType: {exec_type!r} is not a type")
    trade_id = _text(row, "execId")
    quantity = _quantity(row, "execQty")
    if quantity <= 0:
        raise _RowError(f"execQty: {row.get('execQty')!r} is not a positive quantity")
    price = _price(row, "execPrice")
    side = _side(row)
    fee = _number(row, "execFee", default=_ZERO, signed=True)
    fee_currency = row.get("feeCurrency")
    if not isinstance(fee_currency, str) or not fee_currency:
        fee_currency = _fee_currency(str(row["symbol"]), coin, category, side)
    maker = row.get("isMaker")
    if isinstance(maker, str):
        maker = {"true": True, "false": False}.get(maker.lower(), maker)
    if not isinstance(maker, bool):
        raise _RowError(f"isMaker: {row.get('isMaker')!r} is not true or false")
    fill = Fill(trade_id=trade_id, client_order_id=_text(row, "orderLinkId", required=False),
                venue_order_id=_text(row, "orderId", required=False), quantity=quantity, price=price, fee=fee,
                fee_currency=fee_currency, liquidity=Liquidity.MAKER if maker else Liquidity.TAKER,
                ts_ms=_row_ms(row, "execTime", default_ts))
    part: dict[str, Any] = {"events": (fill,)}
    if exec_type != "Trade":
        part["venue_change"] = (f"{exec_type} {coin} {side.value} {quantity} @ {price} (execId {trade_id}, "
                           f"orderId {fill.venue_order_id or '-'})")
    return part


def _position(row: Mapping[str, Any], coins: dict[str, str], category: str | None) -> dict[str, Any]:
    if category is not None:
        _check_row_category(row, category)
    coin = _coin(row, coins)
    size = _quantity(row, "size", default=_ZERO)
    if size == 0:
        return {"flat": (coin,)}
    entry = None
    for name in ("entryPrice", "avgPrice"):
        value = row.get(name)
        if value not in (None, "") and _number(row, name) > 0:
            entry = _number(row, name)
            break
    return {"position": HeldPosition(coin=coin, side=_side(row), quantity=size, entry_price=entry)}


def _wallet(row: Mapping[str, Any]) -> dict[str, Any]:
    assets = row.get("coin")
    if not isinstance(assets, list):
        raise _RowError("coin: the wallet row's assets are not a list")
    balances: dict[str, Decimal] = {}
    for asset in assets:
        if not isinstance(asset, Mapping):
            raise _RowError("coin: an asset is not an object")
        name = _text(asset, "coin")
        if asset.get("walletBalance") in (None, ""):
            continue
        balances[name] = balances.get(name, _ZERO) + _number(asset, "walletBalance", signed=True)
    return {"balances": balances}


# --- fields --------------------------------------------------------------------------------------

def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"category: must be one of {', '.join(CATEGORIES)}, got {category!r}")


def _check_row_category(row: Mapping[str, Any], category: str) -> None:
    given = row.get("category")
    if given not in (None, "") and given != category:
        raise _Skip()


def coin_map(coins: Mapping[str, str]) -> dict[str, str]:
    """``coins`` keyed by the upper-case symbol; ``ValueError`` for an empty map or a symbol or
    coin that is not non-empty text."""
    return _coin_map(coins)


def _coin_map(coins: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(coins, Mapping) or not coins:
        raise ValueError(f"coins: must be a non-empty mapping of exchange symbol -> coin, got {coins!r}")
    by_symbol: dict[str, str] = {}
    for symbol, coin in coins.items():
        if not isinstance(symbol, str) or not symbol or not isinstance(coin, str) or not coin:
            raise ValueError(f"coins: symbol and coin must be non-empty text, got {symbol!r}: {coin!r}")
        by_symbol[symbol.upper()] = coin
    return by_symbol


def _coin(row: Mapping[str, Any], coins: dict[str, str]) -> str:
    symbol = row.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise _RowError(f"symbol: {symbol!r} is not a symbol")
    coin = coins.get(symbol.upper())
    if coin is None:
        raise _Skip()
    return coin


def _text(row: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = row.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _RowError(f"{name}: {value!r} is not {'a non-empty ' if required else ''}text")
    return value


def _side(row: Mapping[str, Any]) -> Side:
    side = _SIDES.get(row.get("side"))  # type: ignore[arg-type]
    if side is None:
        raise _RowError(f"side: {row.get('side')!r} is neither Buy nor Sell")
    return side


def _number(row: Mapping[str, Any], name: str, *, default: Decimal | None = None, signed: bool = False) -> Decimal:
    value = row.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise _RowError(f"{name}: missing")
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _RowError(f"{name}: {value!r} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _RowError(f"{name}: {value!r} is not a number") from None
    if not number.is_finite() or abs(number) > MAX_MAGNITUDE or (not signed and number < 0):
        raise _RowError(f"{name}: {value!r} is not a {'finite number' if signed else 'number >= 0'}")
    return number


def _quantity(row: Mapping[str, Any], name: str, *, default: Decimal | None = None) -> Decimal:
    return _number(row, name, default=default)


def _price(row: Mapping[str, Any], name: str) -> Decimal:
    number = _number(row, name)
    if number <= 0:
        raise _RowError(f"{name}: {row.get(name)!r} is not a positive price")
    return number


def _ms(row: Mapping[str, Any], name: str, default: Any) -> int:
    value = row.get(name)
    if value is None or value == "":
        value = default
    if isinstance(value, bool):
        raise _RowError(f"{name}: {value!r} is not a time in ms")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 100_000_000_000 < value < 100_000_000_000_000:
        raise _RowError(f"{name}: {row.get(name)!r} is not a Unix time in ms")
    return value


def _row_ms(row: Mapping[str, Any], name: str, default_ts: Any) -> int:
    return _ms(row, name, default_ts)


def _reason_text(value: Any) -> str:
    if not isinstance(value, str) or value in _NO_REASON:
        return ""
    return value[:200]


def _fee_currency(symbol: str, coin: str, category: str, side: Side) -> str:
    """The fee currency when a row does not say: derivatives pay in the settle coin, spot in
    the asset received."""
    symbol = symbol.upper()
    if symbol.endswith("PERP"):
        quote = "USDC"
    else:
        base = symbol.split("-", 1)[0]
        quote = base[len(coin):] if base.startswith(coin.upper()) and len(base) > len(coin) else "USDT"
    if category == "spot" and side is Side.BUY:
        return coin
    return quote


def _where(row: Mapping[str, Any]) -> str:
    category = row.get("category")
    return f"symbol {row.get('symbol')!r}" + (f" (category {category!r})" if category else "")


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}" if error.args else "missing field"
    return str(error) or type(error).__name__
