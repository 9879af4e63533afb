"""Every message that travels between actors: frozen, slotted, keyword-only dataclasses.

Commands are imperative and have exactly one receiving role; events are past tense and go to
zero or more roles (the routing table is ``actors/bus.py``). Every message carries ``msg_id``,
``ts_init_ns`` (from the injected clock) and a ``correlation_id`` that ties a condition to its
orders, fills and journal rows. Containers are tuples; models inside messages are frozen.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from state.bars import Bar
from state.models import Position, TradeCondition
from state.types import (
    Liquidity,
    OrderIntent,
    OrderType,
    Side,
    TimeInForce,
    TradingState,
    client_order_id,
    coin_symbol,
    parse_enum,
    positive_decimal,
    non_negative_decimal,
)

if TYPE_CHECKING:  # state/order.py imports this module (OrderRequest)
    from state.account import AccountSnapshot
    from state.order import VenueEvent
    from state.reconcile import Difference, EngineView


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    ts_init_ns: int
    correlation_id: str | None = None
    msg_id: uuid.UUID = field(default_factory=uuid.uuid4)


class Command(Message):
    """Marker: imperative, one receiver."""

    __slots__ = ()


class Event(Message):
    """Marker: past tense, zero or more receivers."""

    __slots__ = ()


# --- market data -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class PushTick(Command):
    """A raw tick handed to the Feed by a source (manual, sim, replay, websocket)."""

    coin: str
    price: Decimal
    ts_ms: int
    qty: Decimal = Decimal(0)
    seq: int | None = None  # position in a replay (resuming after a crash skips what was seen)
    origin: str = "stream"  # "rest": a fallback price (keeps stops working, does not end a stale period)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coin", coin_symbol(self.coin))
        object.__setattr__(self, "price", positive_decimal(self.price, "price"))
        object.__setattr__(self, "qty", non_negative_decimal(self.qty, "qty"))
        if isinstance(self.ts_ms, bool) or not isinstance(self.ts_ms, int) or self.ts_ms <= 0:
            raise ValueError(f"ts_ms: must be a positive integer of milliseconds, got {self.ts_ms!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(Event):
    """A validated trade price, emitted by the Feed to the Sniper."""

    coin: str
    price: Decimal
    ts_ms: int
    qty: Decimal = Decimal(0)
    seq: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushQuote(Command):
    """A live source's best bid and ask, handed to the Feed (top of book; freshness)."""

    coin: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "coin", coin_symbol(self.coin))
        for name in ("bid", "ask"):
            object.__setattr__(self, name, positive_decimal(getattr(self, name), name))
        for name in ("bid_qty", "ask_qty"):
            object.__setattr__(self, name, non_negative_decimal(getattr(self, name), name))


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedStale(Event):
    """No message for ``coin`` for ``silent_s`` (ORDER_BOOK_STALE): no new entries on it until
    ``FeedRecovered``; open positions keep their exits on the last good price."""

    coin: str
    silent_s: float
    last_price: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedRecovered(Event):
    coin: str
    stale_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BarClosed(Event):
    """A closed time bar, emitted by the Feed before the tick that closed it."""

    bar: Bar


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseHeld(Command):
    """Bus -> Feed: the roles a bar sets working are idle. Stage ``"bar"``: every tick before
    the bar's end has been handled, so the bar goes out; stage ``"ticks"``: everything the bar
    caused has been handled, so the held ticks go on."""

    bar_end_ms: int
    stage: str = "ticks"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfData(Command):
    """A replay source -> Feed: the last tick has been handed over."""

    ticks: int
    bad_rows: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedFinished(Event):
    """The source has no more data (end of a replay): the session ends and reports."""

    source: str
    ticks: int
    bad_rows: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedGaveUp(Event):
    """A live source has received nothing at all (no trade, no quote, no REST price) for
    ``waited_s`` since the Feed started (FEED_GAVE_UP): the session ends with exit code 4.
    ``detail`` says what was tried (connect attempts, errors, the masked url)."""

    source: str
    waited_s: float
    detail: str


# --- conditions --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeSignal(Command):
    """An outside decision-maker (REPL, script, agent) hands a condition to the Strategist."""

    condition: TradeCondition


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeCondition(Command):
    """A strategy (or any outside decision-maker) proposes a condition to the RiskGate."""

    condition: TradeCondition


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeConditions(Command):
    """A strategy replaces its conditions for one coin: Strategist -> RiskGate."""

    strategy_id: str
    coin: str
    conditions: tuple[TradeCondition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmConditions(Command):
    """RiskGate -> Sniper: the vetted set that replaces ``strategy_id``'s conditions on ``coin``
    (an empty set cancels them), in one transaction."""

    strategy_id: str
    coin: str
    conditions: tuple[TradeCondition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmCondition(Command):
    """The RiskGate passes a vetted condition to the Sniper."""

    condition: TradeCondition


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelCondition(Command):
    condition_id: str
    reason: str = "canceled"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionArmed(Event):
    condition: TradeCondition


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionRejected(Event):
    condition_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionCanceled(Event):
    condition_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionsReplaced(Event):
    """A set of conditions replaced in one transaction (``ArmConditions``, ``set_conditions``):
    ONE event for the whole replacement, where single arming publishes a ``ConditionArmed`` per
    condition (a strategy re-arms at every bar close, so the journal keeps one row per bar).
    ``strategy_id``: whose conditions were replaced (``"*"``: everyone's); ``coin``: on which
    coin (``None``: every coin); ``armed``: the conditions now armed, as sized, in arming order;
    ``canceled``: the ids removed that are not among them (in the order they had been armed)."""

    strategy_id: str
    coin: str | None
    armed: tuple[TradeCondition, ...]
    canceled: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionExpired(Event):
    condition_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionTriggered(Event):
    condition: TradeCondition
    price: Decimal
    ts_ms: int
    position_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionBlocked(Event):
    """A triggered condition held back by a position limit; it stays armed."""

    condition_id: str
    reason: str


# --- orders ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """An order as the Sniper wants it, as an exchange knows orders; value object carried by
    order commands. ``reference_price`` is the price of the tick that caused it.

    ``limit_price`` is required for LIMIT and STOP_LIMIT, ``stop_price`` for STOP_MARKET and
    STOP_LIMIT, and neither is allowed where the type has no use for it. ``post_only`` (a
    LIMIT that would take liquidity is EXPIRED instead) needs GTC. ``reduce_only`` defaults to
    ``intent is EXIT``; an entry is never reduce-only.
    """

    client_order_id: str
    position_id: str
    coin: str
    side: Side
    quantity: Decimal
    intent: OrderIntent
    reference_price: Decimal
    reference_ts_ms: int
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    post_only: bool = False
    reduce_only: bool | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        client_order_id(self.client_order_id)
        set_(self, "coin", coin_symbol(self.coin))
        set_(self, "side", parse_enum(Side, self.side, "side"))
        set_(self, "intent", parse_enum(OrderIntent, self.intent, "intent"))
        set_(self, "quantity", positive_decimal(self.quantity, "quantity"))
        set_(self, "reference_price", positive_decimal(self.reference_price, "reference_price"))
        set_(self, "order_type", parse_enum(OrderType, self.order_type, "order_type"))
        set_(self, "time_in_force", parse_enum(TimeInForce, self.time_in_force, "time_in_force"))
        needs_limit = self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.order_type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)
        for name, needed in (("limit_price", needs_limit), ("stop_price", needs_stop)):
            value = getattr(self, name)
            if needed and value is None:
                raise ValueError(f"{name}: required for a {self.order_type.value} order")
            if not needed and value is not None:
                raise ValueError(f"{name}: not allowed for a {self.order_type.value} order, got {value}")
            if value is not None:
                set_(self, name, positive_decimal(value, name))
        if self.post_only and (self.order_type is not OrderType.LIMIT or self.time_in_force is not TimeInForce.GTC):
            raise ValueError(f"post_only: only for a GTC LIMIT order, not {self.order_type.value} "
                             f"{self.time_in_force.value}")
        if self.reduce_only is None:
            set_(self, "reduce_only", self.intent is OrderIntent.EXIT)
        elif self.reduce_only and self.intent is OrderIntent.ENTRY:
            raise ValueError("reduce_only: an entry order cannot be reduce-only")

    @property
    def rests(self) -> bool:
        """Whether the order can rest on the venue's book (anything but a market or IOC/FOK)."""
        return self.order_type is not OrderType.MARKET and self.time_in_force is TimeInForce.GTC


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder(Command):
    """Sniper -> RiskGate: please send this order."""

    order: OrderRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteOrder(Command):
    """RiskGate -> Executor: the only command that reaches the Executor, built only by the
    RiskGate."""

    order: OrderRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied(Event):
    """A local risk decision: the order never reached a venue."""

    order: OrderRequest
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder(Command):
    """Sniper (or the engine at shutdown) -> Executor: cancel a working order by client id.
    Not vetted by the RiskGate: a cancel only ever reduces what is at risk. The outcome comes
    back as ``OrderCanceled`` (or as the fill or rejection that won the race)."""

    client_order_id: str
    reason: str = "canceled"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted(Event):
    """The venue holds the order (it may rest, or fill at once after this)."""

    order: OrderRequest
    venue_order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(Event):
    """One fill (one venue trade) of an order. ``cumulative_quantity`` is the order's filled
    quantity after this fill (``== order.quantity`` when the order is complete). A fill is
    identified by ``trade_id``: the same trade id applied twice changes nothing. ``fee`` is in
    ``fee_currency`` (``state/fees.py``: a fee in the coin makes the position's holding net of it;
    the order's quantities stay what it traded)."""

    order: OrderRequest
    venue_order_id: str
    trade_id: str
    fill_price: Decimal
    fill_quantity: Decimal
    fee: Decimal
    ts_event_ms: int
    cumulative_quantity: Decimal
    liquidity: Liquidity = Liquidity.TAKER
    fee_currency: str = "USDT"
    venue: str = "paper"

    @property
    def order_complete(self) -> bool:
        return self.cumulative_quantity >= self.order.quantity


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(Event):
    """The venue's refusal (or a submit that could not reach it). Nothing of it filled."""

    order: OrderRequest
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCanceled(Event):
    """The order is canceled (by request, or an IOC remainder); ``filled_quantity`` of it
    filled before (each fill was its own ``OrderFilled``, published before this)."""

    order: OrderRequest
    venue_order_id: str
    filled_quantity: Decimal
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderExpired(Event):
    """The venue ended the order (FOK not fillable, post-only that would take, time in force);
    ``filled_quantity`` of it filled before."""

    order: OrderRequest
    venue_order_id: str
    filled_quantity: Decimal
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchTick(Command):
    """Sniper -> Executor, for each tick of a coin on which the Sniper has working (resting)
    orders: a trade the venue may match them against. A simulating venue (paper) matches it;
    a live venue ignores it (its matching happens at the exchange). The Executor publishes every
    outcome of it, then ``TickMatched``: on a tick clock the Sniper evaluates the tick only
    after that, so a replay with resting orders is deterministic."""

    tick: Tick


@dataclass(frozen=True, slots=True, kw_only=True)
class TickMatched(Event):
    """Executor -> Sniper: every outcome of ``MatchTick(tick)`` was published before this."""

    coin: str
    ts_ms: int
    seq: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueEventReceived(Command):
    """Venue -> Executor: an outcome (``Fill`` or ``OrderUpdate``) the venue pushed from a thread
    of its own (a live venue's websocket), posted to the Executor's mailbox so it is handled in
    order with everything else. Outcomes a venue reports during a call the Executor made (the
    paper venue's, synchronous) are handled right after that call instead."""

    event: VenueEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueAlert(Event):
    """Executor -> RiskGate, Journal (and the engine's watch): something happened to the venue
    connection rather than to one order (``state.order.NoticeKind``: ``BANNED`` until
    ``until_ms``, ``BAN_LIFTED``, ``STREAM_DOWN``, ``STREAM_UP``, ``AUTH_FAILED``). A venue
    reports it as a ``VenueNotice``; the Executor also raises ``AUTH_FAILED`` when a call
    answers ``AuthenticationFailed``. On ``AUTH_FAILED`` trading halts (the engine stops with
    exit code 6); while ``BANNED`` no new order is sent."""

    kind: str
    message: str
    until_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockCoins(Command):
    """Engine -> RiskGate (reconciliation with the venue, ``state/reconcile.py``): no new entry on
    these coins, each with the sentence that says why (``OrderDenied`` reason
    ``RECONCILE_MISMATCH: <sentence>``); exits pass. ``replace``: this is the whole set (a coin
    not in it is unblocked), else the coins are added. Persisted by the RiskGate."""

    coins: Mapping[str, str]
    replace: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "coins", {coin_symbol(c): str(why) for c, why in dict(self.coins).items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueReconciled(Event):
    """Engine -> Journal: the start-up reconciliation with a live venue and what came of it:
    every confirmed ``differences``, the coins ``blocked`` (coin -> sentence), the trade ids of
    fills applied through the Executor (``fills_applied``), and ``halted`` when the start was
    refused (``[venue] on_unknown = "halt"``)."""

    differences: tuple[Difference, ...] = ()
    blocked: Mapping[str, str] = field(default_factory=dict)
    fills_applied: tuple[str, ...] = ()
    halted: bool = False
    fills_since_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueSnapshotTaken(Command):
    """Engine (the venue-check thread) -> Invariants: the venue's account as just read and the
    engine's view taken beside it; the Invariants compare them (``state/reconcile.py``)."""

    snapshot: AccountSnapshot
    view: EngineView


# --- positions ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ClosePosition(Command):
    position_id: str
    reason: str = "MANUAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdjustStop(Command):
    position_id: str
    stop_loss_price: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionOpened(Event):
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged(Event):
    position: Position
    change: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionClosed(Event):
    position: Position
    balance: Decimal


# --- account and risk --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class SetTradingState(Command):
    state: TradingState
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", parse_enum(TradingState, self.state, "state"))


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Event):
    state: TradingState
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountMarked(Event):
    """The Sniper's account marked to market, at every bar close (deterministic in replay)."""

    balance: Decimal
    unrealized_pnl: Decimal
    equity: Decimal
    open_positions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityMarked(Event):
    """The Sniper's account marked to market between bar closes, for the RiskGate's kill switch
    only (never journaled): on every fill, and while marks change at most every ``[risk]
    mark_report_ms`` of engine time. Stamped with the time of the tick or fill that caused it."""

    balance: Decimal
    unrealized_pnl: Decimal
    equity: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityChecked(Event):
    """The RiskGate's answer to an ``EquityMarked`` (stamped ``reported_ns``), sent once it has
    acted on it: after a trip's ``KillSwitchTriggered`` and ``ClosePosition`` commands, so the
    Sniper, which on a tick clock holds later ticks until this answer, sees a trip at the same
    tick in every replay."""

    reported_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitchTriggered(Event):
    """The RiskGate tripped the kill switch: trading HALTED, positions flattened, the session
    stops with exit code 99."""

    reason: str
    equity: Decimal


# --- runtime ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Command):
    """A periodic nudge (expiry sweep, journal flush, invariant check) told by the engine's
    timer thread; tests tell it directly."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectCrash(Command):
    """Make the receiving actor fail inside its own thread (chaos tests, REPL)."""

    reason: str = "injected crash"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRestarted(Event):
    role: str
    restarts: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvariantViolated(Event):
    code: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A question asked from outside the actors (API, REPL, tests) with ``ask`` and a timeout.

    ``name`` selects the handler ``_ask_<name>``; its answer or its ``ValueError`` goes back
    to the caller. Never sent between actors.
    """

    name: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
