"""Reconciliation with the venue, pure and thread-free: what the engine holds against what the
venue's account says (``state/account.py``'s ``AccountSnapshot``), and what to do about it.

- ``EngineView``: the engine's side: its net held position per coin (side, quantity; from the
  Sniper's active positions), its orders by client id (every order not final, plus the final
  records of the client ids the venue's snapshot names, with their coin, side, quantity,
  filled quantity and the trade ids applied or refused), ``spot`` (how positions compare) and
  the latest fill time the store knows.
- ``compare(engine, venue) -> list[Difference]``: every way they disagree, one ``Difference``
  each (kind, coin, a sentence, the numbers).
- ``missing_fills(engine, venue)``: fills at the venue of orders the engine has *not final*
  and lacks: applied through the Executor (its normal path for a venue's fill).
- ``decide(differences, on_unknown)``: which coins are blocked (no new entries) and whether a
  start must halt.
- ``recurring(previous, differences)``: the periodic check's rule (a difference is reported
  only when seen in two consecutive checks).

Kinds (``DifferenceKind``):

- ``UNKNOWN_ORDER``: working at the venue, and not a working order of the engine (never
  recorded: placed by hand or by another program; or recorded as final here).
- ``MISSING_ORDER``: working here (ACCEPTED or PARTIALLY_FILLED) and not working at the venue.
  SUBMITTING and UNKNOWN orders are in flight (the Executor asks the venue for them): never a
  difference.
- ``UNKNOWN_POSITION``: the venue holds a position on a coin the engine is flat on.
- ``SIZE_MISMATCH``: both hold the coin, with another quantity or side; or the engine holds
  it and the venue is flat.
- ``UNKNOWN_FILL``: a fill at the venue (since the snapshot's ``fills_since_ms``) of a client id
  the engine never recorded (a trade by hand).
- ``MISSING_FILL``: a fill at the venue of an order the engine has as *final* whose trade id it
  never applied: a bug (a final order's fills are complete), reported, never applied silently.
- ``BALANCE``: the account's balance of the cash asset (the markets' settle asset on
  derivatives, their quote asset on spot: ``USDT`` for ``BTCUSDT``) differs from the engine's
  cash (the store's balance: start plus realized PnL less fees) by more than
  ``BALANCE_TOLERANCE`` of the larger of the two: funding, fees or interest the engine does not
  see, a transfer by hand. Compared only when the view has the engine's cash (the start-up
  step; the periodic check does not compare balances). Reported only: it never blocks a coin
  nor halts a start (the engine's own ledger stays the reference of its cash and its kill
  switch). On spot the quote balance is spent on the coins bought, so it is compared only
  while the engine holds no position.

**Spot.** A spot "position" is the base asset's balance (free plus locked), and an account may
hold more of an asset than the engine bought (bought by hand, kept from before, fee tokens).
So on spot: a balance *at least* the engine's long quantity agrees (the rest is the account's,
not the engine's, and is left alone); a balance *below* it is a ``SIZE_MISMATCH`` (something
sold what the engine holds; a fee the venue took in the base asset is already out of the
engine's quantity: a position holds its fills net of such fees, ``state/fees.py``); a balance on a coin the engine is flat on is never an
``UNKNOWN_POSITION``. Derivatives compare exactly: side and quantity.

**Policy** (``decide``). ``UNKNOWN_ORDER`` and ``UNKNOWN_POSITION``: with ``on_unknown =
"halt"`` the start halts (exit 2, the differences listed); with ``"report"`` they are reported
and the coin is blocked. ``SIZE_MISMATCH`` and ``MISSING_FILL`` always block the coin (a
position that is not the venue's is never traded on silently). ``MISSING_ORDER`` and
``UNKNOWN_FILL`` are reported only (the Executor keeps asking the venue for an order in doubt;
a hand trade's effect on the account shows as a position difference if it has one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from state.account import AccountSnapshot
from state.order import FINAL_STATUSES, Fill, OrderRecord
from state.types import Direction, OrderStatus, PositionStatus, Side

if TYPE_CHECKING:
    from state.models import Position

ZERO = Decimal(0)
UNKNOWN_COIN = "?"  # an unknown fill's coin when the snapshot does not say it (a ``Fill`` has none)
ON_UNKNOWN = ("report", "halt")
WORKING_AT_VENUE = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})
"""The engine's statuses that say the venue holds the order working (MISSING_ORDER when it does not)."""


BALANCE_TOLERANCE = Decimal("0.005")
"""A ``BALANCE`` difference is one above this share (0.5 %) of the larger balance: fees and
funding the engine does not record stay below it for days (funding is about 0.01 % of a
position's notional every 8 h), a transfer by hand or a forgotten position does not."""


class DifferenceKind(StrEnum):
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    MISSING_ORDER = "MISSING_ORDER"
    UNKNOWN_POSITION = "UNKNOWN_POSITION"
    SIZE_MISMATCH = "SIZE_MISMATCH"
    UNKNOWN_FILL = "UNKNOWN_FILL"
    MISSING_FILL = "MISSING_FILL"
    BALANCE = "BALANCE"


UNKNOWN_KINDS = frozenset({DifferenceKind.UNKNOWN_ORDER, DifferenceKind.UNKNOWN_POSITION})
"""What the venue has and the engine does not: halts a start with ``on_unknown = "halt"``."""
ALWAYS_BLOCKS = frozenset({DifferenceKind.SIZE_MISMATCH, DifferenceKind.MISSING_FILL})


# --- the engine's side --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class EnginePosition:
    """What the engine holds on one coin, net of all its active positions: ``quantity`` > 0 on
    ``side`` (BUY: long, SELL: short)."""

    coin: str
    side: Side
    quantity: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOrder:
    """One order as the Executor recorded it (``trade_ids``: applied or refused fills)."""

    client_order_id: str
    coin: str
    side: Side
    quantity: Decimal
    filled: Decimal
    status: OrderStatus
    trade_ids: frozenset[str] = frozenset()

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def of(cls, record: OrderRecord) -> EngineOrder:
        return cls(client_order_id=record.client_order_id, coin=record.coin, side=record.side,
                   quantity=record.quantity, filled=record.filled_quantity, status=record.status,
                   trade_ids=frozenset({*(f.trade_id for f in record.fills), *record.refused_trade_ids}))


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineView:
    """The engine's side of a reconciliation (see the module docstring). ``orders`` must hold
    every order not final and the record (final or not) of every client id the venue's snapshot
    names that the store knows: a client id absent from it counts as never recorded.
    ``cash``: the engine's balance of ``cash_asset`` (``None``: balances are not compared),
    ``balance_tolerance``: the share of ``BALANCE_TOLERANCE``."""

    positions: Mapping[str, EnginePosition] = field(default_factory=dict)
    orders: Mapping[str, EngineOrder] = field(default_factory=dict)
    spot: bool = False
    latest_fill_ms: int | None = None
    cash: Decimal | None = None
    cash_asset: str = ""
    balance_tolerance: Decimal = BALANCE_TOLERANCE

    @classmethod
    def of(cls, positions: Iterable[Position], records: Iterable[OrderRecord], *, spot: bool = False,
           latest_fill_ms: int | None = None, cash: Decimal | None = None, cash_asset: str = "") -> EngineView:
        """The view from the Sniper's active positions (netted per coin: LONG adds, SHORT
        subtracts; CLOSED ones and nothing held count for nothing) and the Executor's records."""
        net: dict[str, Decimal] = {}
        for position in positions:
            if position.status is PositionStatus.CLOSED or position.quantity <= 0:
                continue
            signed = position.quantity if position.direction is Direction.LONG else -position.quantity
            net[position.coin] = net.get(position.coin, ZERO) + signed
        held = {coin: EnginePosition(coin=coin, side=Side.BUY if q > 0 else Side.SELL, quantity=abs(q))
                for coin, q in sorted(net.items()) if q != 0}
        orders = {record.client_order_id: EngineOrder.of(record) for record in records}
        return cls(positions=held, orders=orders, spot=spot, latest_fill_ms=latest_fill_ms, cash=cash,
                   cash_asset=cash_asset)

    def working(self) -> dict[str, EngineOrder]:
        return {coid: order for coid, order in self.orders.items() if not order.is_final}


def client_ids_named(venue: AccountSnapshot) -> set[str]:
    """Every client id the snapshot names (open orders and fills): the records an ``EngineView``
    for it must hold when the store knows them."""
    return {o.client_order_id for o in venue.open_orders} | {f.client_order_id for f in venue.fills}


# --- differences -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One way the engine and the venue disagree: ``kind``, ``coin``, ``message`` (a sentence
    for a person) and the numbers: the quantities and sides on each side, the order's client id
    or the fill's trade id where there is one. ``BALANCE``: ``coin`` is the cash asset,
    ``engine_quantity`` the engine's cash and ``venue_quantity`` the account's balance of it."""

    kind: DifferenceKind
    coin: str
    message: str
    client_order_id: str | None = None
    trade_id: str | None = None
    engine_side: Side | None = None
    engine_quantity: Decimal | None = None
    venue_side: Side | None = None
    venue_quantity: Decimal | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two checks' differences "the same" (numbers may move between them)."""
        return (self.kind.value, self.coin, self.client_order_id or self.trade_id or "")

    def line(self) -> str:
        """``KIND: message``, for logs, errors and reports."""
        return f"{self.kind.value}: {self.message}"


def _held(side: Side | None, quantity: Decimal | None) -> str:
    if side is None or not quantity:
        return "flat"
    return f"{'long' if side is Side.BUY else 'short'} {quantity}"


def compare(engine: EngineView, venue: AccountSnapshot) -> list[Difference]:
    """Every difference between ``engine`` and ``venue``: orders, then positions, then fills,
    each sorted (coin, client id / trade id), then the balance, so two equal inputs give equal
    lists."""
    return [*_orders(engine, venue), *_positions(engine, venue), *_fills(engine, venue), *_balance(engine, venue)]


def _orders(engine: EngineView, venue: AccountSnapshot) -> list[Difference]:
    found: list[Difference] = []
    at_venue = {o.client_order_id: o for o in venue.open_orders}
    for coid, order in sorted(at_venue.items(), key=lambda item: (item[1].coin, item[0])):
        mine = engine.orders.get(coid)
        if mine is not None and not mine.is_final:
            continue
        if mine is None:
            why = "never recorded by the engine (placed by hand or by another program?)"
        else:
            why = f"recorded by the engine as {mine.status.value}"
        found.append(Difference(
            kind=DifferenceKind.UNKNOWN_ORDER, coin=order.coin, client_order_id=coid,
            venue_side=order.side, venue_quantity=order.quantity,
            message=(f"{order.coin}: order {coid or '(no client id)'} ({order.side.value} {order.quantity}, "
                     f"{order.filled_quantity} filled) works at the venue, {why}"),
        ))
    for coid, mine in sorted(engine.working().items(), key=lambda item: (item[1].coin, item[0])):
        if mine.status in WORKING_AT_VENUE and coid not in at_venue:
            found.append(Difference(
                kind=DifferenceKind.MISSING_ORDER, coin=mine.coin, client_order_id=coid,
                engine_side=mine.side, engine_quantity=mine.quantity,
                message=(f"{mine.coin}: order {coid} ({mine.side.value} {mine.quantity}, {mine.filled} filled) is "
                         f"{mine.status.value} for the engine and not working at the venue"),
            ))
    return found


def _positions(engine: EngineView, venue: AccountSnapshot) -> list[Difference]:
    found: list[Difference] = []
    coins = sorted(set(engine.positions) | {p.coin for p in venue.positions})
    for coin in coins:
        mine = engine.positions.get(coin)
        theirs = venue.position(coin)
        e_side, e_qty = (mine.side, mine.quantity) if mine else (None, ZERO)
        v_side, v_qty = (theirs.side, theirs.quantity) if theirs else (None, ZERO)
        numbers = dict(engine_side=e_side, engine_quantity=e_qty, venue_side=v_side, venue_quantity=v_qty)
        if engine.spot:
            engine_long = e_qty if e_side is Side.BUY else ZERO
            venue_long = v_qty if v_side is Side.BUY else ZERO
            if mine is not None and (e_side is not Side.BUY or venue_long < engine_long):
                found.append(Difference(
                    kind=DifferenceKind.SIZE_MISMATCH, coin=coin, **numbers,
                    message=(f"{coin}: the engine holds {_held(e_side, e_qty)}, the account's {coin} balance is "
                             f"{venue_long} (spot: a balance below the engine's position)"),
                ))
            continue
        if mine is None and theirs is not None:
            found.append(Difference(
                kind=DifferenceKind.UNKNOWN_POSITION, coin=coin, **numbers,
                message=(f"{coin}: the venue holds {_held(v_side, v_qty)}, the engine is flat "
                         "(opened by hand or by another program?)"),
            ))
        elif mine is not None and (theirs is None or v_side is not e_side or v_qty != e_qty):
            found.append(Difference(
                kind=DifferenceKind.SIZE_MISMATCH, coin=coin, **numbers,
                message=f"{coin}: the engine holds {_held(e_side, e_qty)}, the venue {_held(v_side, v_qty)}",
            ))
    return found


def _fills(engine: EngineView, venue: AccountSnapshot) -> list[Difference]:
    found: list[Difference] = []
    for fill, coin in _venue_fills(venue):
        mine = engine.orders.get(fill.client_order_id)
        if mine is None:
            found.append(Difference(
                kind=DifferenceKind.UNKNOWN_FILL, coin=coin or UNKNOWN_COIN,
                client_order_id=fill.client_order_id or None,
                trade_id=fill.trade_id, venue_quantity=fill.quantity,
                message=(f"{coin or 'a configured coin'}: trade {fill.trade_id} of {fill.quantity} @ {fill.price} "
                         f"belongs to order {fill.client_order_id or '(no client id)'}, which the engine never "
                         "recorded"),
            ))
        elif mine.is_final and fill.trade_id not in mine.trade_ids:
            found.append(Difference(
                kind=DifferenceKind.MISSING_FILL, coin=mine.coin, client_order_id=fill.client_order_id,
                trade_id=fill.trade_id, engine_quantity=mine.filled, venue_quantity=fill.quantity,
                message=(f"{mine.coin}: trade {fill.trade_id} of {fill.quantity} @ {fill.price} of order "
                         f"{fill.client_order_id} is missing from the engine, which has the order "
                         f"{mine.status.value} with {mine.filled} filled (not applied: a bug to look into)"),
            ))
    return sorted(found, key=lambda d: (d.coin, d.trade_id or ""))


def _balance(engine: EngineView, venue: AccountSnapshot) -> list[Difference]:
    if engine.cash is None or not engine.cash_asset or (engine.spot and engine.positions):
        return []
    found = balance_difference(engine.cash, venue.balances.get(engine.cash_asset, ZERO), engine.cash_asset,
                               engine.balance_tolerance)
    return [found] if found is not None else []


def balance_difference(engine_cash: Decimal, venue_balance: Decimal, asset: str,
                       tolerance: Decimal = BALANCE_TOLERANCE) -> Difference | None:
    """A ``BALANCE`` difference when ``venue_balance`` and ``engine_cash`` (of ``asset``) differ
    by more than ``tolerance`` of the larger of the two (in absolute value), else ``None``."""
    if tolerance < 0:
        raise ValueError(f"tolerance: must be at least 0, got {tolerance}")
    gap = venue_balance - engine_cash
    allowed = tolerance * max(abs(venue_balance), abs(engine_cash))
    if abs(gap) <= allowed:
        return None
    return Difference(
        kind=DifferenceKind.BALANCE, coin=asset, engine_quantity=engine_cash, venue_quantity=venue_balance,
        message=(f"{asset}: the venue's balance is {venue_balance}, the engine's cash {engine_cash} "
                 f"({'+' if gap > 0 else ''}{gap}, more than {(tolerance * 100).normalize()}% apart: funding, fees "
                 "or a transfer the engine did not see?); the engine keeps its own figure"),
    )


def cash_asset_of(symbols: Mapping[str, str]) -> str:
    """The asset an account's cash is in, from the exchange symbols (coin -> symbol, e.g.
    ``BTC`` -> ``BTCUSDT``: ``USDT``): each symbol less its coin. ``ValueError`` when a symbol
    does not start with its coin or the coins disagree (one engine keeps one cash)."""
    assets: set[str] = set()
    for coin, symbol in sorted(symbols.items()):
        head, name = coin.upper(), symbol.upper().split(":")[0].replace("/", "").replace("-", "")
        if not name.startswith(head) or len(name) == len(head):
            raise ValueError(f"{coin}: the cash asset cannot be read from the exchange symbol {symbol!r}")
        assets.add(name[len(head):])
    if len(assets) != 1:
        raise ValueError(f"the coins are quoted in {', '.join(sorted(assets)) or 'nothing'}: one engine keeps its "
                         "cash in one asset")
    return assets.pop()


def start_cash(balances: Mapping[str, Decimal], asset: str) -> Decimal:
    """A live session's starting cash: the account's balance of ``asset``. ``ValueError``
    naming the asset when the account has none of it (missing or not positive)."""
    amount = balances.get(asset)
    if amount is None or amount <= 0:
        held = ", ".join(f"{name} {value}" for name, value in sorted(balances.items())) or "nothing"
        raise ValueError(f"the account holds {'no' if amount is None else amount} {asset} (the asset its cash and "
                         f"its risk limits are counted in; the account holds {held}): fund it with {asset} "
                         "first, then start again")
    return amount


def _venue_fills(venue: AccountSnapshot) -> list[tuple[Fill, str | None]]:
    """The snapshot's fills, once per trade id (the account's fills and those of the open
    orders), with their coin when the snapshot says it (a ``Fill`` carries none: its order's
    coin, known for an open order)."""
    coins = {o.client_order_id: o.coin for o in venue.open_orders}
    seen: dict[str, tuple[Fill, str | None]] = {}
    for order in venue.open_orders:
        for fill in order.fills:
            seen.setdefault(fill.trade_id, (fill, order.coin))
    for fill in venue.fills:
        seen.setdefault(fill.trade_id, (fill, coins.get(fill.client_order_id)))
    return list(seen.values())


def missing_fills(engine: EngineView, venue: AccountSnapshot) -> list[Fill]:
    """Fills at the venue of orders the engine has *not final* and lacks (by trade id), oldest
    first: what the Executor must apply."""
    found = []
    for fill, _ in _venue_fills(venue):
        mine = engine.orders.get(fill.client_order_id)
        if mine is not None and not mine.is_final and fill.trade_id not in mine.trade_ids:
            found.append(fill)
    return sorted(found, key=lambda f: (f.ts_ms, f.trade_id))


# --- what to do -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """``blocked``: coin -> the sentence that blocks it (no new entries); ``halt``: the start
    must stop (``on_unknown = "halt"`` and something unknown), ``halt_because`` the lines."""

    blocked: Mapping[str, str] = field(default_factory=dict)
    halt: bool = False
    halt_because: tuple[str, ...] = ()


def decide(differences: Iterable[Difference], on_unknown: str) -> Decision:
    """The policy of the module docstring. ``ValueError`` for an ``on_unknown`` other than
    ``report`` / ``halt``."""
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown: must be 'report' or 'halt', got {on_unknown!r}")
    blocked: dict[str, str] = {}
    halt: list[str] = []
    for difference in differences:
        if difference.kind in UNKNOWN_KINDS and on_unknown == "halt":
            halt.append(difference.line())
        elif difference.kind in UNKNOWN_KINDS or difference.kind in ALWAYS_BLOCKS:
            blocked.setdefault(difference.coin, difference.line())
    return Decision(blocked=blocked, halt=bool(halt), halt_because=tuple(halt))


def recurring(previous: frozenset[tuple[str, str, str]], differences: Iterable[Difference],
              reported: frozenset[tuple[str, str, str]] = frozenset(),
              ) -> tuple[list[Difference], frozenset[tuple[str, str, str]], frozenset[tuple[str, str, str]]]:
    """The periodic check's rule. A snapshot races the engine (an order placed a moment before
    the venue was asked, a fill on its way), so a difference is reported only when the check
    before saw it too (same ``key``), and once: not again while it lasts; one that went away
    and comes back is new again. Returns (to report now, the keys seen now, the keys reported
    and still present)."""
    current = list(differences)
    keys = frozenset(d.key for d in current)
    report = [d for d in current if d.key in previous and d.key not in reported]
    return report, keys, frozenset((reported & keys) | {d.key for d in report})


__all__ = [
    "ALWAYS_BLOCKS", "BALANCE_TOLERANCE", "Decision", "Difference", "DifferenceKind", "EngineOrder",
    "EnginePosition", "EngineView", "UNKNOWN_KINDS", "balance_difference", "cash_asset_of", "client_ids_named",
    "compare", "decide", "missing_fills", "recurring", "start_cash",
]
