"""The trade journal's rows and the numbers of the session report: pure functions, no I/O.

Everything here is deterministic and takes plain values (frozen rows, ``Decimal``, ints); it
reads no clock, no file and no database, so the Journal actor stays thin (receive, call these,
buffer, write) and every number can be tested without threads. ``state/journal_store.py`` stores
the rows; money and prices are ``Decimal`` here and exact decimal text in the tables.

Conventions (the report and the tables agree on each):

- **A trade** is a CLOSED position. An entry that never filled is a REJECTED row in the
  ``trades`` table but not a trade; an OPEN position is not a trade yet.
- **Win / loss.** A win has ``pnl > 0``; a loss ``pnl <= 0``: a trade that made exactly nothing
  after fees counts as a loss, so ``wins + losses == total_trades`` always.
- **pnl** is net (after entry and exit fees); **pnl_pct** is ``pnl / entry notional`` as a
  *fraction* (``0.01`` is 1 %, like a condition's ``stop_loss_pct``), 8 decimals.
- **Fees paid** are every fee charged (each fill's), entries of positions still open included:
  what the cash balance lost to fees. The engine's ledger is ``balance = start + gross results
  of the closed trades - fees paid``; the session report checks its journal figures against it.
- **Slippage** in basis points, signed so that a worse price for the trader is positive:
  BUY ``(fill - ref) / ref * 1e4``, SELL ``(ref - fill) / ref * 1e4``, 4 decimals.
- **Drawdown** is peak-to-trough as a *percentage* of the running peak (``2.5`` is 2.5 %),
  4 decimals; 0 for a curve that never falls.
- **Days** are UTC calendar days of engine time (a message's ``ts_init_ns``), so a replay files
  its rows under the replayed day.
- Quantizing rounds half-even (Python's ``Decimal`` default).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from state.config import LIVE_SOURCES
from state.messages import OrderRequest
from state.models import Position, entry_order_id, exit_order_id
from state.types import ExitReason, Side, parse_enum, to_decimal

ZERO = Decimal(0)
HUNDRED = Decimal(100)
BPS = Decimal(10_000)
BPS_QUANTUM = Decimal("0.0001")  # slippage, in basis points
PCT_QUANTUM = Decimal("0.0001")  # drawdown, in percent
FRACTION_QUANTUM = Decimal("0.00000001")  # pnl_pct, a fraction
NS_PER_DAY = 86_400 * 1_000_000_000


class TradeStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"  # an entry that never filled: not a trade


class JournalOrderStatus(StrEnum):
    REQUESTED = "REQUESTED"  # the Sniper's SubmitOrder (audit copy)
    FILLED = "FILLED"
    REJECTED = "REJECTED"  # the venue's refusal
    DENIED = "DENIED"  # a local risk decision: never reached a venue


class SampleKind(StrEnum):
    MARK = "MARK"  # an AccountMarked: the Sniper's mark-to-market equity at a bar close
    CLOSE = "CLOSE"  # the equity right after a trade closed


# --- small helpers ---------------------------------------------------------------------------------

def money(value: Any, field: str = "value") -> Decimal:
    """A finite ``Decimal`` from a Decimal, int or exact decimal text (a journal cell)."""
    return to_decimal(value, field)


def utc_day(ts_ns: int) -> str:
    """The UTC calendar day (``YYYY-MM-DD``) of an engine timestamp in nanoseconds."""
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ts_ns // 1_000)).date().isoformat()


def days_window_start_ns(latest_ns: int, days: float) -> int:
    """The engine time ``days`` days before ``latest_ns`` (the ``days`` filter of ``trades``)."""
    return latest_ns - int(positive_days(days) * NS_PER_DAY)


def first_day_of_window(latest_ns: int, days: float) -> str:
    """The first UTC day of the last ``days`` days ending on the day of ``latest_ns``:
    ``days=1`` is that day alone, ``days=7`` that day and the six before it (a fraction of a
    day counts as a whole one)."""
    whole = math.ceil(positive_days(days))
    last = date.fromisoformat(utc_day(latest_ns))
    return (last - timedelta(days=whole - 1)).isoformat()


def positive_days(days: Any) -> float:
    if isinstance(days, bool) or not isinstance(days, (int, float, Decimal)) or not days > 0:
        raise ValueError(f"days: must be a positive number of days, got {days!r}")
    return float(days)


def is_win(pnl: Decimal) -> bool:
    """A win made money after fees; exactly zero is a loss (see the module docstring)."""
    return pnl > 0


# --- basic figures ---------------------------------------------------------------------------------

def slippage_bps(side: Side | str, reference: Any, fill: Any) -> Decimal:
    """Slippage of a fill against the reference price, in basis points, positive when the
    price was worse for the trader: BUY ``(fill - ref) / ref * 1e4``, SELL ``(ref - fill) /
    ref * 1e4``. Quantized to 0.0001 bps."""
    side = parse_enum(Side, side, "side")
    ref = money(reference, "reference")
    price = money(fill, "fill")
    if ref <= 0:
        raise ValueError(f"reference: must be greater than 0, got {reference!r}")
    moved = price - ref if side is Side.BUY else ref - price
    return (moved / ref * BPS).quantize(BPS_QUANTUM)


def drawdown_pct(peak: Decimal, equity: Decimal) -> Decimal:
    """How far ``equity`` is below ``peak``, in percent of the peak (0 at or above it, and 0
    when the peak is not positive: no percentage of nothing)."""
    if peak <= 0 or equity >= peak:
        return ZERO.quantize(PCT_QUANTUM)
    return ((peak - equity) / peak * HUNDRED).quantize(PCT_QUANTUM)


def max_drawdown_pct(equity_curve: Iterable[Any]) -> Decimal:
    """The largest peak-to-trough fall of an equity curve, in percent of the running peak,
    quantized to 0.0001 %. ``0`` for an empty, flat or rising curve.

    >>> max_drawdown_pct([100, 120, 90, 130, 117])
    Decimal('25.0000')
    """
    peak: Decimal | None = None
    worst = ZERO.quantize(PCT_QUANTUM)
    for point in equity_curve:
        equity = money(point, "equity")
        peak = equity if peak is None or equity > peak else peak
        worst = max(worst, drawdown_pct(peak, equity))
    return worst


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeStats:
    total_trades: int
    wins: int
    losses: int
    realized_pnl_usd: Decimal
    fees_paid_usd: Decimal


def closed_only(trades: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The trades proper: rows whose status is CLOSED (OPEN and REJECTED rows are not)."""
    return [t for t in trades if t.get("status") == TradeStatus.CLOSED.value]


def trade_stats(trades: Iterable[Mapping[str, Any]]) -> TradeStats:
    """Counts and sums over the CLOSED rows of ``trades`` (mappings with ``status``, ``pnl``
    and ``fees``, as Decimal or exact text); other rows are ignored. ``realized_pnl_usd`` is
    the sum of the net ``pnl``; ``fees_paid_usd`` the sum of their ``fees`` (entry and exit)."""
    closed = closed_only(trades)
    pnls = [money(t["pnl"], "pnl") for t in closed]
    wins = sum(1 for pnl in pnls if is_win(pnl))
    return TradeStats(
        total_trades=len(closed),
        wins=wins,
        losses=len(closed) - wins,
        realized_pnl_usd=sum(pnls, ZERO),
        fees_paid_usd=sum((money(t["fees"], "fees") for t in closed), ZERO),
    )


def average_slippage_bps(orders: Iterable[Mapping[str, Any]]) -> Decimal:
    """Mean ``slippage_bps`` of the FILLED orders (0 when there is none), 0.0001 bps."""
    values = [
        money(o["slippage_bps"], "slippage_bps")
        for o in orders
        if o.get("status") == JournalOrderStatus.FILLED.value and o.get("slippage_bps") is not None
    ]
    if not values:
        return ZERO.quantize(BPS_QUANTUM)
    return (sum(values, ZERO) / len(values)).quantize(BPS_QUANTUM)


def fill_fees(orders: Iterable[Mapping[str, Any]]) -> Decimal:
    """Every fee the FILLED orders of ``orders`` were charged: entries of positions still open
    included, which is what the cash balance lost to fees (``fee`` of each filled row)."""
    return sum(
        (money(o["fee"], "fee") for o in orders
         if o.get("status") == JournalOrderStatus.FILLED.value and o.get("fee") is not None),
        ZERO,
    )


RUN_TOTAL_KEYS = (
    "total_trades", "wins", "losses", "realized_pnl_usd", "fees_paid_usd", "slippage_avg_bps",
    "max_drawdown_pct",
)
# The session report's journal figures: the run totals and the closed trades' gross result.
SCOPE_TOTAL_KEYS = (*RUN_TOTAL_KEYS, "gross_pnl_usd")


def scope_totals(
    trades: Iterable[Mapping[str, Any]],
    orders: Iterable[Mapping[str, Any]],
    equity_samples: Iterable[Any],
    start_equity: Any,
) -> dict[str, Any]:
    """The journal's numbers over a set of rows (one run's, or every run of a replay).

    ``trades`` and ``orders`` are the rows in scope (the caller selects them by run); only
    CLOSED trades count and only FILLED orders have slippage and fees. ``equity_samples`` are
    the equities in time order (every AccountMarked and the equity after every closed trade);
    the drawdown is taken over ``start_equity`` followed by them.

    - ``realized_pnl_usd``: the closed trades' net PnL; ``gross_pnl_usd``: their result before
      fees (``pnl + fees`` of each), which is what their exits added to the cash balance;
    - ``fees_paid_usd``: every fee of the filled orders (``fill_fees``), entries of positions
      still open included, so ``balance change == gross_pnl_usd - fees_paid_usd``.

    Returns exactly the keys ``SCOPE_TOTAL_KEYS``: ints for counts, ``Decimal`` for the rest.
    """
    stats = trade_stats(trades)
    orders = list(orders)
    curve = [money(start_equity, "start_equity"), *(money(e, "equity") for e in equity_samples)]
    return {
        "total_trades": stats.total_trades,
        "wins": stats.wins,
        "losses": stats.losses,
        "realized_pnl_usd": stats.realized_pnl_usd,
        "fees_paid_usd": fill_fees(orders),
        "slippage_avg_bps": average_slippage_bps(orders),
        "max_drawdown_pct": max_drawdown_pct(curve),
        "gross_pnl_usd": stats.realized_pnl_usd + stats.fees_paid_usd,
    }


def run_totals(
    trades: Iterable[Mapping[str, Any]],
    orders: Iterable[Mapping[str, Any]],
    equity_samples: Iterable[Any],
    start_equity: Any,
) -> dict[str, Any]:
    """The journal's numbers for one run (``scope_totals`` over that run's rows): exactly the
    keys ``RUN_TOTAL_KEYS``. ``fees_paid_usd`` is every fee the run's fills were charged."""
    totals = scope_totals(trades, orders, equity_samples, start_equity)
    return {key: totals[key] for key in RUN_TOTAL_KEYS}


# --- the session report's money: the account's ledger against the journal ------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Ledger:
    """The Sniper's account at one instant, as ``--status`` prints it: cash ``balance``, the
    closed positions' net ``realized_pnl`` and every fee charged (``fees_paid``), each since the
    data folder began. The engine's identity: ``balance = initial + sum of closed gross results
    - fees_paid``."""

    balance: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal

    @classmethod
    def fresh(cls, initial_balance: Any) -> Ledger:
        """The account of a new data folder."""
        return cls(balance=money(initial_balance, "initial_balance"), realized_pnl=ZERO, fees_paid=ZERO)


def open_position_rows(positions: Iterable[Position]) -> list[dict[str, Any]]:
    """The positions still held at the end, for the report: ``position_id``, ``coin``,
    ``direction``, ``status``, ``quantity``, ``entry_price``, ``last_price`` (the last price
    it was marked at), ``unrealized_pnl_usd`` (at that price, net of its entry fee as the
    engine counts it: ``qty x (last - entry)`` for LONG, less the fee) and ``entry_fee_usd``
    (already out of the balance and in ``fees_paid_usd``). A PENDING entry has no price yet."""
    rows = []
    for position in positions:
        rows.append({
            "position_id": position.id,
            "coin": position.coin,
            "direction": position.direction.value,
            "status": position.status.value,
            "quantity": position.quantity,
            "entry_price": position.entry_price,
            "last_price": position.current_price,
            "unrealized_pnl_usd": position.unrealized_pnl,
            "entry_fee_usd": position.fees_paid,
        })
    return rows


def report_money(
    *,
    start: Ledger,
    end: Ledger,
    journal: Mapping[str, Any],
    open_positions: Iterable[Position],
) -> dict[str, Any]:
    """The money of a session report over a scope that began at ledger ``start`` and ended at
    ``end`` (a run: the Sniper's account when it started; a whole replay: a fresh account).

    - ``fees_paid_usd``: what the balance lost to fees in the scope (``end.fees_paid -
      start.fees_paid``), entries of positions still open included;
    - ``realized_pnl_usd``, ``gross_pnl_usd``: the journal's closed trades in the scope;
    - ``start_balance``; ``unrealized_pnl_usd``: the open positions' total (net of their entry
      fees); ``open_positions``: ``open_position_rows``;
    - ``account``: the ``end`` ledger (cumulative since the data folder began: ``--status``);
    - ``mismatches``: a sentence for each way the journal disagrees with the ledger (journal
      fees vs ledger fees, journal realized vs ledger realized, and ``end.balance -
      start.balance == gross_pnl_usd - fees_paid_usd``); empty when the report adds up.

    ``journal`` holds ``scope_totals`` (as Decimal or exact text); missing keys (a journal
    that did not answer) are reported as a mismatch, never as zeros passed off as facts.
    """
    positions = list(open_positions)
    fees = end.fees_paid - start.fees_paid
    realized_ledger = end.realized_pnl - start.realized_pnl
    mismatches: list[str] = []
    missing = [key for key in ("realized_pnl_usd", "gross_pnl_usd", "fees_paid_usd") if key not in journal]
    if missing:
        mismatches.append(f"journal: no {', '.join(missing)} (the journal did not answer)")
        realized = gross = None
    else:
        realized = money(journal["realized_pnl_usd"], "realized_pnl_usd")
        gross = money(journal["gross_pnl_usd"], "gross_pnl_usd")
        journal_fees = money(journal["fees_paid_usd"], "fees_paid_usd")
        if journal_fees != fees:
            mismatches.append(f"fees: the journal's fills were charged {journal_fees}, the account {fees}")
        if realized != realized_ledger:
            mismatches.append(f"realized: the journal's closed trades made {realized}, the account {realized_ledger}")
        if end.balance - start.balance != gross - fees:
            mismatches.append(
                f"balance: {start.balance} -> {end.balance} is not {start.balance} + gross {gross} - fees {fees}")
    return {
        "realized_pnl_usd": realized,
        "gross_pnl_usd": gross,
        "fees_paid_usd": fees,
        "start_balance": start.balance,
        "unrealized_pnl_usd": sum((p.unrealized_pnl for p in positions), ZERO),
        "open_positions": open_position_rows(positions),
        "account": {"balance": end.balance, "realized_pnl": end.realized_pnl, "fees_paid": end.fees_paid},
        "mismatches": mismatches,
    }


# --- journal rows ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class TradeRow:
    """One row of ``trades``: one per position, from its open (or rejected entry) to its close.

    ``opened_ts_ns`` / ``closed_ts_ns`` / ``updated_ts_ns`` are the engine timestamps of the
    messages that opened, closed and last changed it; ``entry_time`` / ``exit_time`` the fill
    times (UTC). ``unrealized_pnl`` is the last known mark of an OPEN position (0 once closed).
    ``run_id`` is the run that last touched it: the one in which it closed, once closed.
    ``exit_order_id`` is the latest exit order tried (the one that filled, once CLOSED).
    """

    position_id: str
    condition_id: str
    strategy_id: str
    coin: str
    direction: str
    status: str
    entry_price: Decimal | None
    entry_time: datetime | None
    exit_price: Decimal | None
    exit_time: datetime | None
    quantity: Decimal
    size_usd: Decimal
    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None
    exit_reason: str | None
    pnl: Decimal | None
    pnl_pct: Decimal | None
    fees: Decimal
    unrealized_pnl: Decimal
    venue: str | None
    entry_order_id: str
    exit_order_id: str | None
    reasoning: str
    run_id: str
    opened_ts_ns: int | None
    closed_ts_ns: int | None
    updated_ts_ns: int

    @property
    def is_final(self) -> bool:
        return self.status != TradeStatus.OPEN.value

    @property
    def equity_share(self) -> Decimal:
        """What this OPEN position adds to equity over cash: its mark less fees, plus the
        entry fees cash already paid (the Sniper's ``balance + unrealized + open fees``)."""
        return self.unrealized_pnl + self.fees if self.status == TradeStatus.OPEN.value else ZERO


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(timezone.utc)


def is_rejected_entry(position: Position) -> bool:
    """A closed position that never held anything: its entry was rejected or denied."""
    reason = position.exit_reason or ""
    return position.realized_pnl is None and (
        reason.startswith(ExitReason.ENTRY_REJECTED.value) or position.entry_price is None
    )


def trade_row(
    position: Position,
    *,
    status: TradeStatus,
    run_id: str,
    ts_ns: int,
    previous: TradeRow | None = None,
    venue: str | None = None,
) -> TradeRow:
    """The ``trades`` row of ``position`` as of a message stamped ``ts_ns``.

    Everything comes from the position snapshot; ``previous`` (the row so far) keeps the open
    time, the venue and the exit order id it already knew.
    """
    closed = status is TradeStatus.CLOSED
    pnl = position.realized_pnl if closed else None
    notional = position.quantity * position.entry_price if position.entry_price is not None else ZERO
    pnl_pct = (pnl / notional).quantize(FRACTION_QUANTUM) if pnl is not None and notional > 0 else None
    exit_id = exit_order_id(position.id, position.exit_attempts) if position.exit_attempts else None
    opened = previous.opened_ts_ns if previous is not None else None
    if opened is None and status is TradeStatus.OPEN:
        opened = ts_ns
    return TradeRow(
        position_id=position.id,
        condition_id=position.condition_id,
        strategy_id=position.strategy_id,
        coin=position.coin,
        direction=position.direction.value,
        status=status.value,
        entry_price=position.entry_price,
        entry_time=_utc(position.entry_time),
        exit_price=position.exit_price if closed else None,
        exit_time=_utc(position.exit_time) if closed else None,
        quantity=position.quantity,
        size_usd=position.size_usd,
        stop_loss_price=position.stop_loss_price,
        take_profit_price=position.take_profit_price,
        exit_reason=position.exit_reason,
        pnl=pnl,
        pnl_pct=pnl_pct,
        fees=position.fees_paid,
        unrealized_pnl=ZERO if status is not TradeStatus.OPEN else position.unrealized_pnl,
        venue=venue or (previous.venue if previous is not None else None),
        entry_order_id=entry_order_id(position.id),
        exit_order_id=exit_id or (previous.exit_order_id if previous is not None else None),
        reasoning=position.reasoning,
        run_id=run_id,
        opened_ts_ns=opened,
        closed_ts_ns=ts_ns if status is not TradeStatus.OPEN else None,
        updated_ts_ns=ts_ns,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRow:
    """One row of ``orders``: one per client order id, at its latest known status.

    ``ts_ns`` is the engine time of the message that set the current status; ``run_id`` the run
    in which that happened.
    """

    client_order_id: str
    position_id: str
    coin: str
    side: str
    intent: str
    quantity: Decimal
    reference_price: Decimal
    status: str
    fill_price: Decimal | None = None
    fill_quantity: Decimal | None = None
    fee: Decimal | None = None
    venue: str | None = None
    venue_order_id: str | None = None
    trade_id: str | None = None
    reason: str | None = None
    slippage_bps: Decimal | None = None
    correlation_id: str | None = None
    ts_ns: int
    run_id: str

    @property
    def is_final(self) -> bool:
        return self.status != JournalOrderStatus.REQUESTED.value


def order_row(
    order: OrderRequest,
    *,
    status: JournalOrderStatus,
    run_id: str,
    ts_ns: int,
    correlation_id: str | None,
    previous: OrderRow | None = None,
    **outcome: Any,
) -> OrderRow:
    """The ``orders`` row of ``order`` at ``status``; ``outcome`` holds the fill or refusal
    fields (``fill_price``, ``fee``, ``venue``, ``venue_order_id``, ``reason`` ...). A fill
    gets its ``slippage_bps`` against the order's reference price. Fields the previous row
    knew and this outcome does not say (a venue order id, the correlation id) are kept."""
    row = OrderRow(
        client_order_id=order.client_order_id,
        position_id=order.position_id,
        coin=order.coin,
        side=order.side.value,
        intent=order.intent.value,
        quantity=order.quantity,
        reference_price=order.reference_price,
        status=status.value,
        correlation_id=correlation_id if correlation_id is not None else (
            previous.correlation_id if previous is not None else None),
        venue_order_id=previous.venue_order_id if previous is not None else None,
        venue=previous.venue if previous is not None else None,
        ts_ns=ts_ns,
        run_id=run_id,
    )
    row = replace(row, **{k: v for k, v in outcome.items() if v is not None})
    if status is JournalOrderStatus.FILLED and row.fill_price is not None:
        row = replace(row, slippage_bps=slippage_bps(order.side, order.reference_price, row.fill_price))
    return row


@dataclass(frozen=True, slots=True, kw_only=True)
class EquitySample:
    """One point of the equity curve: an AccountMarked (MARK) or the equity right after a
    trade closed (CLOSE): the cash balance after the close plus each still-open position's
    ``equity_share`` as last seen."""

    ts_ns: int
    run_id: str
    kind: str
    position_id: str | None
    balance: Decimal
    unrealized_pnl: Decimal
    equity: Decimal

    @property
    def day(self) -> str:
        return utc_day(self.ts_ns)


# --- daily rows -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class DailyRow:
    """One row of ``daily_pnl``: one UTC day of engine time.

    - ``starting_equity``: the last equity marked before the day (the previous day's ending
      equity), or the day's first mark when there is none before.
    - ``ending_equity``, ``unrealized_pnl``: the day's last AccountMarked (carried from before
      the day until the day has its own mark).
    - ``peak_equity``, ``max_drawdown_pct``: the intraday running peak and largest fall, over
      the starting equity and that day's marks.
    - ``realized_pnl``, ``fees``, ``trades``, ``wins``, ``losses``: the trades that closed that
      day (``fees`` are those trades' whole fees, entry and exit, so ``realized_pnl + fees`` is
      their gross result).
    - ``kill_switch``: the kill switch tripped that day.
    """

    date: str
    starting_equity: Decimal | None = None
    ending_equity: Decimal | None = None
    peak_equity: Decimal | None = None
    realized_pnl: Decimal = ZERO
    unrealized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    trades: int = 0
    wins: int = 0
    losses: int = 0
    max_drawdown_pct: Decimal = ZERO.quantize(PCT_QUANTUM)
    kill_switch: bool = False


@dataclass(frozen=True, slots=True)
class Mark:
    """The last AccountMarked known: equity and unrealized PnL."""

    equity: Decimal
    unrealized_pnl: Decimal


def new_day(day: str, last_mark: Mark | None) -> DailyRow:
    """A day's row before anything happened in it, carrying the last mark known before it."""
    if last_mark is None:
        return DailyRow(date=day)
    return DailyRow(
        date=day,
        starting_equity=last_mark.equity,
        ending_equity=last_mark.equity,
        peak_equity=last_mark.equity,
        unrealized_pnl=last_mark.unrealized_pnl,
    )


def day_after_mark(row: DailyRow, mark: Mark) -> DailyRow:
    """The day's row after an AccountMarked of that day."""
    starting = row.starting_equity if row.starting_equity is not None else mark.equity
    peak = mark.equity if row.peak_equity is None or mark.equity > row.peak_equity else row.peak_equity
    return replace(
        row,
        starting_equity=starting,
        ending_equity=mark.equity,
        unrealized_pnl=mark.unrealized_pnl,
        peak_equity=peak,
        max_drawdown_pct=max(row.max_drawdown_pct, drawdown_pct(peak, mark.equity)),
    )


def day_after_close(row: DailyRow, pnl: Decimal, fees: Decimal) -> DailyRow:
    """The day's row after a trade closed that day with net ``pnl`` and total ``fees``."""
    win = is_win(pnl)
    return replace(
        row,
        realized_pnl=row.realized_pnl + pnl,
        fees=row.fees + fees,
        trades=row.trades + 1,
        wins=row.wins + (1 if win else 0),
        losses=row.losses + (0 if win else 1),
    )


def day_after_kill_switch(row: DailyRow) -> DailyRow:
    return replace(row, kill_switch=True)


def daily_rows(
    marks: Iterable[tuple[int, Any, Any]],
    closes: Iterable[tuple[int, Any, Any]],
    kill_switches: Iterable[int] = (),
) -> list[DailyRow]:
    """Every day's row from scratch, oldest first: ``marks`` are ``(ts_ns, equity,
    unrealized)`` in time order, ``closes`` ``(ts_ns, pnl, fees)`` of CLOSED trades,
    ``kill_switches`` the times the kill switch tripped. The Journal builds the same rows
    incrementally (``new_day``, ``day_after_*``); this is the reference it must agree with."""
    marks_by_day: dict[str, list[Mark]] = {}
    for ts_ns, equity, unrealized in marks:
        marks_by_day.setdefault(utc_day(ts_ns), []).append(
            Mark(money(equity, "equity"), money(unrealized, "unrealized_pnl")))
    closes_by_day: dict[str, list[tuple[Decimal, Decimal]]] = {}
    for ts_ns, pnl, fees in closes:
        closes_by_day.setdefault(utc_day(ts_ns), []).append((money(pnl, "pnl"), money(fees, "fees")))
    killed = {utc_day(ts_ns) for ts_ns in kill_switches}
    rows = []
    last: Mark | None = None
    for day in sorted(set(marks_by_day) | set(closes_by_day) | killed):
        row = new_day(day, last)
        for mark in marks_by_day.get(day, ()):
            row = day_after_mark(row, mark)
            last = mark
        for pnl, fees in closes_by_day.get(day, ()):
            row = day_after_close(row, pnl, fees)
        if day in killed:
            row = day_after_kill_switch(row)
        rows.append(row)
    return rows


__all__ = [
    "DailyRow",
    "EquitySample",
    "JournalOrderStatus",
    "Ledger",
    "Mark",
    "OrderRow",
    "RUN_TOTAL_KEYS",
    "SCOPE_TOTAL_KEYS",
    "SampleKind",
    "TradeRow",
    "TradeStats",
    "TradeStatus",
    "average_slippage_bps",
    "daily_rows",
    "day_after_close",
    "day_after_kill_switch",
    "day_after_mark",
    "drawdown_pct",
    "fill_fees",
    "is_rejected_entry",
    "is_win",
    "max_drawdown_pct",
    "new_day",
    "open_position_rows",
    "order_row",
    "report_money",
    "run_totals",
    "scope_totals",
    "slippage_bps",
    "trade_row",
    "trade_stats",
    "utc_day",
]


# --- the session report as text ---------------------------------------------------------------

CENT = Decimal("0.01")


def cents(value: Any) -> str:
    """Money for the console: rounded half-even to the cent, ``-`` when unknown, and never
    ``-0.00`` (a loss too small to show is shown as 0.00)."""
    if value is None:
        return "-"
    rounded = money(value, "money").quantize(CENT)
    return f"{rounded.copy_abs() if rounded == 0 else rounded:.2f}"


def signed_cents(value: Any) -> str:
    """``cents`` with an explicit ``+`` for a gain (a PnL figure)."""
    text = cents(value)
    return text if text in ("-", "0.00") or text.startswith("-") else f"+{text}"


def format_report(report: Mapping[str, Any]) -> str:
    """The session report (``summary.json``) as a few readable lines for the terminal: money
    to the cent (``summary.json`` keeps the exact values)."""
    if not report:
        return "no session report (the engine stopped before it could make one)"
    usd = cents
    return "\n".join([
        f"Session {report['run_id']} ({report['source']}{' SIMULATED' if report.get('simulated') else ''}): "
        f"{report['duration_s']}s, {report['ticks']} ticks, ended by {report['end_reason']}",
        *_scope_lines(report),
        f"  trades {report['total_trades']} (wins {report['wins']}, losses {report['losses']}) | "
        f"realized {usd(report['realized_pnl_usd'])} USD | fees {usd(report['fees_paid_usd'])} USD | "
        f"slippage {report['slippage_avg_bps']} bps | max drawdown {report['max_drawdown_pct']} %",
        f"  equity {usd(report['start_equity'])} -> {usd(report['end_equity'])} | open positions "
        f"{report['open_positions_at_end']} ({report['on_stop']}) | restarts {report['restarts']} | "
        f"trading {report['trading_state']}",
        *_money_lines(report),
        f"  report: {Path(report['data_dir']) / 'runs' / report['run_id'] / 'summary.json'}",
        *([f"  recorded: {', '.join(f'{coin} {path}' for coin, path in report['recorded'].items())}"]
          if report.get("recorded") else []),
        *_feed_health_lines(report),
    ])


def _feed_health_lines(report: Mapping[str, Any]) -> list[str]:
    """``feed: reconnects N | stale periods N | bad frames N | rejected ticks N``: for a live source always (zeros
    included: they say the stream was clean), for the others only when one is not zero."""
    counts = {name: report.get(key) or 0 for name, key in
              (("reconnects", "reconnects"), ("stale periods", "stale_periods"), ("bad frames", "bad_frames"))}
    rejected = report.get("rejected_ticks") or {}
    counts["rejected ticks"] = rejected.get("total", 0) if isinstance(rejected, Mapping) else 0
    if report.get("source") not in LIVE_SOURCES and not any(counts.values()):
        return []
    line = "  feed: " + " | ".join(f"{name} {count}" for name, count in counts.items())
    kinds = rejected.get("by_kind") if isinstance(rejected, Mapping) else None
    if kinds:
        line += " (" + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) + ")"
    return [line]


def _scope_lines(report: Mapping[str, Any]) -> list[str]:
    """Which runs the totals cover: a replay's report covers every run of it."""
    runs = report.get("runs") or []
    if report.get("scope") != "replay" or not runs:
        return []
    earlier = [run for run in runs if run != report["run_id"]]
    what = "this run alone" if not earlier else f"{len(runs)} runs: {', '.join(runs)}"
    return [f"  whole replay ({what}): ticks, trades, PnL, fees, slippage and drawdown cover all of it"]


def _open_position_line(position: Mapping[str, Any]) -> str:
    head = f"  open {position['coin']} {position['direction']} {position['quantity']}"
    status = position.get("status", "OPEN")
    if position.get("entry_price") is None:
        return f"{head} ({status}: its entry is in flight)"
    return (f"{head} @ {position['entry_price']}, last {position.get('last_price')}, unrealized "
            f"{signed_cents(position.get('unrealized_pnl_usd'))} USD (after its "
            f"{cents(position.get('entry_fee_usd'))} entry fee)" + ("" if status == "OPEN" else f" ({status})"))


def _money_lines(report: Mapping[str, Any]) -> list[str]:
    """How the balance moved, what is still open, the cumulative account when the totals are a
    resumed folder's last run only, and any disagreement between journal and account."""
    lines = []
    if "start_balance" in report and report.get("balance") is not None:
        lines.append(
            f"  balance {cents(report['start_balance'])} -> {cents(report['balance'])} "
            f"(closed trades' gross {signed_cents(report.get('gross_pnl_usd'))}, "
            f"fees -{cents(report['fees_paid_usd'])})")
    for position in report.get("open_positions") or []:
        lines.append(_open_position_line(position))
    account = report.get("account")
    if account and report.get("scope") == "run" and report.get("resumed_account"):
        lines.append(
            f"  account since the data folder began (as --status): balance {cents(account['balance'])} | "
            f"realized {cents(account['realized_pnl'])} USD | fees {cents(account['fees_paid'])} USD; "
            f"the figures above are this run's")
    for mismatch in report.get("mismatches") or []:
        lines.append(f"  WARNING the journal and the account disagree: {mismatch}")
    return lines
