"""Every message that travels between actors: frozen, slotted, keyword-only dataclasses.

Commands are imperative and have exactly one receiving role; events are past tense and go to
zero or more roles (the routing table is ``actors/bus.py``). Every message carries ``msg_id``,
``ts_init_ns`` (from the injected clock) and a ``correlation_id`` that ties a condition to its
orders, fills and journal rows. Containers are tuples; models inside messages are frozen.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from state.bars import Bar
from state.models import Position, TradeCondition
from state.types import (
    OrderIntent,
    Side,
    TradingState,
    client_order_id,
    coin_symbol,
    parse_enum,
    positive_decimal,
    non_negative_decimal,
)


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
    """A market order as the Sniper wants it; value object carried by order commands."""

    client_order_id: str
    position_id: str
    coin: str
    side: Side
    quantity: Decimal
    intent: OrderIntent
    reference_price: Decimal
    reference_ts_ms: int

    def __post_init__(self) -> None:
        client_order_id(self.client_order_id)
        object.__setattr__(self, "coin", coin_symbol(self.coin))
        object.__setattr__(self, "side", parse_enum(Side, self.side, "side"))
        object.__setattr__(self, "intent", parse_enum(OrderIntent, self.intent, "intent"))
        object.__setattr__(self, "quantity", positive_decimal(self.quantity, "quantity"))
        object.__setattr__(
            self, "reference_price", positive_decimal(self.reference_price, "reference_price")
        )

    @property
    def reduce_only(self) -> bool:
        return self.intent is OrderIntent.EXIT


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
class OrderAccepted(Event):
    order: OrderRequest
    venue_order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(Event):
    order: OrderRequest
    venue_order_id: str
    trade_id: str
    fill_price: Decimal
    fill_quantity: Decimal
    fee: Decimal
    ts_event_ms: int
    venue: str = "paper"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(Event):
    """The venue's refusal (or a submit that could not reach it)."""

    order: OrderRequest
    reason: str


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
