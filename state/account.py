"""What a venue's account holds, as the venue says (values, no behavior): the vocabulary of
start-up checks, reconciliation and a live venue's health.

- ``HeldPosition``: a position the venue holds on one coin (derivatives: the position risk
  row; spot: the base asset's balance, free plus locked).
- ``AccountSnapshot``: one look at the account, taken by ``LiveVenuePort.account``: balances,
  positions, working orders, and the fills since a given time (of every client id: an order
  placed by hand has fills too).
- ``VenueStatus``: a live venue's health for the status line, the report and ``--status``.
- ``VenueStartup``: what ``LiveVenuePort.connect`` found and set at start.

Every number is a ``Decimal`` parsed from the venue's own string (``Decimal(str(x))``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from state.order import Fill, VenueOrder
from state.types import Side


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldPosition:
    """A position the venue holds: ``quantity`` > 0 on ``side`` (BUY: long, SELL: short).
    ``entry_price`` is the venue's average entry price when it reports one."""

    coin: str
    side: Side
    quantity: Decimal
    entry_price: Decimal | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"{self.coin}: a held position has a positive quantity, not {self.quantity}")

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSnapshot:
    """One look at the account. ``balances``: asset -> total (free plus locked; wallet balance
    on derivatives). ``positions``: the configured coins the venue holds a position in (none
    for a flat coin). ``open_orders``: every working order on the configured coins, with the
    fills each has so far. ``fills``: the account's fills on the configured coins at or after
    ``fills_since_ms`` (of every client order id), oldest first; empty when no time was given."""

    taken_ms: int
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    positions: tuple[HeldPosition, ...] = ()
    open_orders: tuple[VenueOrder, ...] = ()
    fills: tuple[Fill, ...] = ()
    fills_since_ms: int | None = None

    def position(self, coin: str) -> HeldPosition | None:
        return next((held for held in self.positions if held.coin == coin), None)


class StreamState(StrEnum):
    UP = "up"  # the private (user-data) stream is connected and authenticated
    DOWN = "down"  # lost: orders in flight are polled over REST until it is back
    OFF = "off"  # not started (paper, or before connect)


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueStatus:
    """A venue's health. ``banned_until_ms``: no request goes out before (a 418, or a 429's
    ``Retry-After``); ``halted``: the reason the venue refuses to trade at all (keys refused
    while running), else ``None``."""

    name: str
    live: bool
    exchange: str = ""
    market: str = ""
    testnet: bool = False
    stream: StreamState = StreamState.OFF
    banned_until_ms: int | None = None
    halted: str | None = None
    polling: int = 0  # orders being polled over REST while the stream is down
    requests: int = 0  # REST requests made since start


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueStartup:
    """What ``connect`` checked and set: ``server_time_offset_ms`` (venue minus local clock),
    ``position_mode`` (``one-way``; hedge mode is refused before this is built),
    ``leverage`` and ``margin_mode`` per coin as set (derivatives; empty on spot),
    ``balances`` as read, ``cash_asset``: the asset the account's cash is in (the markets'
    settle asset on derivatives, their quote asset on spot: ``USDT`` for ``BTCUSDT``; empty
    when the venue does not say: the engine then reads it from the symbols), and ``notes``
    (lines for the banner and the log)."""

    exchange: str
    market: str
    testnet: bool
    server_time_offset_ms: int
    position_mode: str
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    leverage: Mapping[str, int] = field(default_factory=dict)
    margin_mode: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    cash_asset: str = ""
