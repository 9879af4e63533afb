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
from state.fees import FeeKind, coin_moved, fee_in_quote, fee_kind
from state.messages import OrderRequest
from state.models import Position, entry_order_id, exit_order_id
from state.types import ExitReason, Liquidity, Side, parse_enum, to_decimal

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
    """An ``orders`` row's status: where the order is in its life, as the journal saw it."""

    REQUESTED = "REQUESTED"  # the Sniper's SubmitOrder (audit copy)
    SUBMITTED = "SUBMITTED"  # the RiskGate passed it on: ExecuteOrder (audit copy), the Executor sends it
    ACCEPTED = "ACCEPTED"  # the venue holds it
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"  # by request, or an IOC remainder; fills before it stay
    EXPIRED = "EXPIRED"  # by the venue: FOK not fillable, post-only that would take, time in force
    REJECTED = "REJECTED"  # the venue's refusal
    DENIED = "DENIED"  # a local risk decision: never reached a venue


# How far along its life each status is: a row only moves forward (a re-sent SubmitOrder after
# the acceptance changes nothing); the final statuses share the last rank and never change.
ORDER_STATUS_RANK: dict[str, int] = {
    JournalOrderStatus.REQUESTED.value: 0,
    JournalOrderStatus.SUBMITTED.value: 1,
    JournalOrderStatus.ACCEPTED.value: 2,
    JournalOrderStatus.PARTIALLY_FILLED.value: 3,
    **{status.value: 4 for status in (JournalOrderStatus.FILLED, JournalOrderStatus.CANCELED,
                                      JournalOrderStatus.EXPIRED, JournalOrderStatus.REJECTED,
                                      JournalOrderStatus.DENIED)},
}
FINAL_ORDER_STATUSES = frozenset(status for status, rank in ORDER_STATUS_RANK.items() if rank == 4)


class OrderEventKind(StrEnum):
    """One row of ``order_events``: what happened to an order (``status`` says where it is after)."""

    REQUESTED = "REQUESTED"  # SubmitOrder
    SUBMITTED = "SUBMITTED"  # ExecuteOrder
    DENIED = "DENIED"  # OrderDenied
    ACCEPTED = "ACCEPTED"  # OrderAccepted
    FILL = "FILL"  # OrderFilled: one row per trade id
    CANCEL_REQUESTED = "CANCEL_REQUESTED"  # CancelOrder (audit copy): asked, not yet done
    CANCELED = "CANCELED"  # OrderCanceled
    EXPIRED = "EXPIRED"  # OrderExpired
    REJECTED = "REJECTED"  # OrderRejected


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
    """Mean ``slippage_bps`` of the orders that filled, in whole or in part (0 when there is
    none), 0.0001 bps. An order's slippage is its average fill price against its reference
    (``order_slippage_bps``)."""
    values = [
        money(o["slippage_bps"], "slippage_bps")
        for o in orders
        if o.get("status") in _FILLED_SOME and o.get("slippage_bps") is not None
    ]
    if not values:
        return ZERO.quantize(BPS_QUANTUM)
    return (sum(values, ZERO) / len(values)).quantize(BPS_QUANTUM)


def fill_fees(orders: Iterable[Mapping[str, Any]]) -> Decimal:
    """Every fee the ``orders`` rows say their fills were charged (``fee`` of each row that
    filled, in whole or in part). The report takes fees from the ``fills`` table
    (``scope_totals``); this is what it counts for an order whose fills were journaled before
    that table existed."""
    return sum(
        (money(o["fee"], "fee") for o in orders
         if o.get("status") in _FILLED_SOME and o.get("fee") is not None),
        ZERO,
    )


_FILLED_SOME = frozenset({JournalOrderStatus.FILLED.value, JournalOrderStatus.PARTIALLY_FILLED.value,
                          JournalOrderStatus.CANCELED.value, JournalOrderStatus.EXPIRED.value})


# --- sums of fills --------------------------------------------------------------------------------

def fill_fee_usd(fill: Mapping[str, Any]) -> Decimal:
    """A fill's fee in quote currency (``state/fees.py``): as it is when in quote (or no
    ``fee_currency``), ``fee x price`` when charged in the coin, 0 in another currency (BNB:
    ``fills_fees_other``)."""
    fee = money(fill["fee"], "fee")
    kind = fee_kind(fill.get("fee_currency"), str(fill.get("coin") or ""))
    if kind is FeeKind.QUOTE:
        return fee
    return fee_in_quote(fee, fill.get("fee_currency"), str(fill.get("coin") or ""), money(fill["price"], "price"))


def fill_coin_quantity(fill: Mapping[str, Any]) -> Decimal:
    """What a fill moved of its coin: its quantity, net of a fee charged in the coin (a BUY
    received ``quantity - fee``, a SELL gave ``quantity + fee``; ``state/fees.py``)."""
    quantity = money(fill["quantity"], "quantity")
    if fee_kind(fill.get("fee_currency"), str(fill.get("coin") or "")) is not FeeKind.BASE:
        return quantity
    return coin_moved(parse_enum(Side, fill["side"], "side"), quantity, money(fill["fee"], "fee"),
                      fill.get("fee_currency"), str(fill.get("coin") or ""))


def fills_fees(fills: Iterable[Mapping[str, Any]]) -> Decimal:
    """The sum of the fills' fees in quote currency (``fill_fee_usd``; a negative fee, a maker
    rebate, lowers it). Fees in another currency are ``fills_fees_other``."""
    return sum((fill_fee_usd(f) for f in fills), ZERO)


def fills_fees_other(fills: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """The fees charged in a currency neither quote nor the coin (BNB), summed by currency:
    recorded, never valued (``state/fees.py``). Empty when there is none."""
    other: dict[str, Decimal] = {}
    for fill in fills:
        currency = str(fill.get("fee_currency") or "").strip().upper()
        if fee_kind(currency, str(fill.get("coin") or "")) is FeeKind.OTHER and money(fill["fee"], "fee"):
            other[currency] = other.get(currency, ZERO) + money(fill["fee"], "fee")
    return dict(sorted(other.items()))


def fees_by_liquidity(fills: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """``{"MAKER": fees, "TAKER": fees}`` of the fills (in quote, ``fill_fee_usd``), by their
    ``liquidity``."""
    split = {Liquidity.MAKER.value: ZERO, Liquidity.TAKER.value: ZERO}
    for fill in fills:
        liquidity = parse_enum(Liquidity, fill["liquidity"], "liquidity").value
        split[liquidity] += fill_fee_usd(fill)
    return split


def fills_cash_flow(fills: Iterable[Mapping[str, Any]]) -> Decimal:
    """What the fills' trades did to cash before fees: ``+ price x quantity`` for each SELL,
    ``-`` for each BUY. Over the fills of a position that bought and sold the same quantity
    this is its gross result, whatever its direction and however its lots were matched. A fee
    charged in the coin counts as that much of the coin traded at the fill's price (and as a fee
    of the same value, ``fill_fee_usd``): the quantity is ``fill_coin_quantity``."""
    flow = ZERO
    for fill in fills:
        notional = money(fill["price"], "price") * fill_coin_quantity(fill)
        flow += notional if parse_enum(Side, fill["side"], "side") is Side.SELL else -notional
    return flow


def _dust_of(own: list[Mapping[str, Any]], bought: Decimal, sold: Decimal) -> Decimal:
    """What a closed trade's fills left of the coin (``bought - sold``, net of fees in the
    coin) when that is dust the engine could not sell: a long with fees charged in the coin
    that bought more than it sold. 0 otherwise (a difference is then a mismatch)."""
    base_fees = any(fee_kind(f.get("fee_currency"), str(f.get("coin") or "")) is FeeKind.BASE for f in own)
    return bought - sold if base_fees and bought > sold else ZERO


def closed_trade_dust(trades: Iterable[Mapping[str, Any]],
                      position_fills: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """The dust the CLOSED ``trades`` left in the account, by coin (``_dust_of``; written off at
    its entry cost in their results, ``Position.dust``). Empty when there is none."""
    by_position: dict[str, list[Mapping[str, Any]]] = {}
    for fill in position_fills:
        by_position.setdefault(fill["position_id"], []).append(fill)
    dust: dict[str, Decimal] = {}
    for trade in closed_only(trades):
        own = by_position.get(trade["position_id"], [])
        bought = sum((fill_coin_quantity(f) for f in own if f["side"] == Side.BUY.value), ZERO)
        sold = sum((fill_coin_quantity(f) for f in own if f["side"] == Side.SELL.value), ZERO)
        left = _dust_of(own, bought, sold) if bought else ZERO  # sold nothing: all of it was dust
        if left:
            coin = str(own[0].get("coin") or trade.get("coin") or "?")
            dust[coin] = dust.get(coin, ZERO) + left
    return dict(sorted(dust.items()))


def closed_trade_results(
    trades: Iterable[Mapping[str, Any]], position_fills: Iterable[Mapping[str, Any]]
) -> tuple[Decimal, Decimal, list[str]]:
    """``(realized, gross, problems)`` of the CLOSED rows of ``trades`` from their positions'
    fills (``position_fills``: every fill of those positions, whatever run it came in):
    gross is ``fills_cash_flow``, realized is gross less every fee of those fills. A trade
    whose fills are not all journaled (it has no entry or no exit fill: fills made before the
    journal kept them) counts its row's ``pnl`` and ``fees``. A trade whose fills did not
    buy and sell the same quantity (of the coin, net of fees charged in it; a long's dust left
    behind excepted: ``closed_trade_dust``), or whose fills' result is not its row's ``pnl``, is
    a problem (a sentence each): the journal disagrees with itself."""
    by_position: dict[str, list[Mapping[str, Any]]] = {}
    for fill in position_fills:
        by_position.setdefault(fill["position_id"], []).append(fill)
    realized = gross = ZERO
    problems: list[str] = []
    for trade in closed_only(trades):
        pnl, fees = money(trade["pnl"], "pnl"), money(trade["fees"], "fees")
        own = by_position.get(trade["position_id"], [])
        bought = sum((fill_coin_quantity(f) for f in own if f["side"] == Side.BUY.value), ZERO)
        sold = sum((fill_coin_quantity(f) for f in own if f["side"] == Side.SELL.value), ZERO)
        if bought == 0 or sold == 0:  # not all of its fills are in the journal: its row says it
            realized, gross = realized + pnl, gross + pnl + fees
            continue
        if bought != sold and not _dust_of(own, bought, sold):
            problems.append(f"trade {trade['position_id']}: its fills bought {bought} and sold {sold}; "
                            f"its row's pnl {pnl} is counted")
            realized, gross = realized + pnl, gross + pnl + fees
            continue
        flow = fills_cash_flow(own)
        net = flow - fills_fees(own)
        if net != pnl:
            problems.append(f"trade {trade['position_id']}: its fills made {net}, its row says {pnl}")
        realized, gross = realized + net, gross + flow
    return realized, gross, problems


ORDER_COUNT_KEYS = ("filled", "partially_filled_canceled", "canceled", "expired", "rejected", "denied", "open")


def order_status_counts(orders: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How the orders ended: ``filled``; ``partially_filled_canceled`` (canceled after some of
    it filled); ``canceled`` (nothing filled); ``expired`` (by the venue, filled in part or
    not); ``rejected`` (the venue); ``denied`` (the RiskGate); ``open`` (not final yet).
    Exactly the keys ``ORDER_COUNT_KEYS``."""
    counts = dict.fromkeys(ORDER_COUNT_KEYS, 0)
    for order in orders:
        status = order.get("status")
        if status == JournalOrderStatus.CANCELED.value:
            filled = order.get("fill_quantity")
            key = "partially_filled_canceled" if filled is not None and money(filled) > 0 else "canceled"
        elif status in FINAL_ORDER_STATUSES:
            key = str(status).lower()
        else:
            key = "open"
        counts[key] += 1
    return counts


RUN_TOTAL_KEYS = (
    "total_trades", "wins", "losses", "realized_pnl_usd", "fees_paid_usd", "slippage_avg_bps",
    "max_drawdown_pct",
)
# The session report's journal figures: the run totals, the closed trades' gross result, the
# fees by liquidity, how the orders ended, and where the journal disagrees with itself.
SCOPE_TOTAL_KEYS = (*RUN_TOTAL_KEYS, "gross_pnl_usd", "fees_maker_usd", "fees_taker_usd", "orders_by_status",
                    "fill_mismatches", "fees_other", "dust")


def scope_totals(
    trades: Iterable[Mapping[str, Any]],
    orders: Iterable[Mapping[str, Any]],
    equity_samples: Iterable[Any],
    start_equity: Any,
    *,
    fills: Iterable[Mapping[str, Any]] | None = None,
    position_fills: Iterable[Mapping[str, Any]] | None = None,
    filled_orders: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The journal's numbers over a set of rows (one run's, or every run of a replay).

    ``trades``, ``orders`` and ``fills`` are the rows in scope (the caller selects them by
    run); ``position_fills`` every fill (of any run) of the positions whose trades are in
    scope; ``filled_orders`` the client order ids of ``orders`` that have any fill in the
    journal (default: those of ``fills`` and ``position_fills``). ``equity_samples`` are the
    equities in time order (every AccountMarked and the equity after every closed trade); the
    drawdown is taken over ``start_equity`` followed by them.

    Money is sums of fills:

    - ``fees_paid_usd``: every fee of the fills in scope (entries of positions still open
      included; a maker rebate is a negative fee), split into ``fees_maker_usd`` and
      ``fees_taker_usd``; an order that filled before the journal kept fills counts the fee its
      row says, as taker (those were market orders);
    - ``realized_pnl_usd`` and ``gross_pnl_usd``: the closed trades' net and gross results
      from their fills (``closed_trade_results``), so ``balance change == gross_pnl_usd -
      fees_paid_usd``; ``fill_mismatches`` names each trade whose fills disagree with its row.

    Fees charged in the coin (a spot BUY) count at their fill's price; fees in another currency
    (BNB) are not in ``fees_paid_usd`` but summed by currency in ``fees_other``
    (``fills_fees_other``); ``dust``: what closed trades left of their coin (``closed_trade_dust``).
    Without ``fills`` (rows from before the journal kept fills) fees come from the ``orders``
    rows and results from the ``trades`` rows. ``orders_by_status``: ``order_status_counts``.
    Returns exactly the keys ``SCOPE_TOTAL_KEYS``: ints for counts, ``Decimal`` for money.
    """
    stats = trade_stats(trades)
    orders = list(orders)
    curve = [money(start_equity, "start_equity"), *(money(e, "equity") for e in equity_samples)]
    other: dict[str, Decimal] = {}
    dust: dict[str, Decimal] = {}
    if fills is None:
        fees = fill_fees(orders)
        split = {Liquidity.MAKER.value: ZERO, Liquidity.TAKER.value: fees}
        realized, gross, problems = stats.realized_pnl_usd, stats.realized_pnl_usd + stats.fees_paid_usd, []
    else:
        fills = list(fills)
        position_fills = list(position_fills) if position_fills is not None else []
        known = set(filled_orders) if filled_orders is not None else {
            f["client_order_id"] for f in (*fills, *position_fills)}
        split = fees_by_liquidity(fills)
        split[Liquidity.TAKER.value] += fill_fees(o for o in orders if o.get("client_order_id") not in known)
        fees = split[Liquidity.MAKER.value] + split[Liquidity.TAKER.value]
        realized, gross, problems = closed_trade_results(trades, position_fills)
        other, dust = fills_fees_other(fills), closed_trade_dust(trades, position_fills)
    return {
        "total_trades": stats.total_trades,
        "wins": stats.wins,
        "losses": stats.losses,
        "realized_pnl_usd": realized,
        "fees_paid_usd": fees,
        "slippage_avg_bps": average_slippage_bps(orders),
        "max_drawdown_pct": max_drawdown_pct(curve),
        "gross_pnl_usd": gross,
        "fees_maker_usd": split[Liquidity.MAKER.value],
        "fees_taker_usd": split[Liquidity.TAKER.value],
        "orders_by_status": order_status_counts(orders),
        "fill_mismatches": problems,
        "fees_other": other,
        "dust": dust,
    }


def run_totals(
    trades: Iterable[Mapping[str, Any]],
    orders: Iterable[Mapping[str, Any]],
    equity_samples: Iterable[Any],
    start_equity: Any,
    **fills: Any,
) -> dict[str, Any]:
    """The journal's numbers for one run (``scope_totals`` over that run's rows, ``fills`` as
    there): exactly the keys ``RUN_TOTAL_KEYS``. ``fees_paid_usd`` is every fee the run's
    fills were charged."""
    totals = scope_totals(trades, orders, equity_samples, start_equity, **fills)
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
      start.balance == gross_pnl_usd - fees_paid_usd``), and each trade whose fills disagree
      with its row (the journal's ``fill_mismatches``); empty when the report adds up.

    ``journal`` holds ``scope_totals`` (as Decimal or exact text); missing keys (a journal
    that did not answer) are reported as a mismatch, never as zeros passed off as facts.
    """
    positions = list(open_positions)
    fees = end.fees_paid - start.fees_paid
    realized_ledger = end.realized_pnl - start.realized_pnl
    mismatches: list[str] = []
    mismatches.extend(f"journal: {problem}" for problem in journal.get("fill_mismatches") or ())
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

    The order as it was sent (``order_type``, ``time_in_force``, ``limit_price``,
    ``stop_price``, ``post_only``, ``reduce_only``, ``quantity``) and what became of it:
    ``fill_quantity`` is the filled quantity so far, ``fill_price`` the average price of its
    fills, ``fee`` the sum of their fees, ``trade_id`` the last fill's; ``slippage_bps`` the
    average price against the reference (``order_slippage_bps``). ``created_ts_ns`` is the
    engine time of the first message about it, ``ts_ns`` of the message that set the current
    status or fill (its update time); ``run_id`` the run in which that happened. The columns
    of the order as sent are empty in rows journaled before they were kept.
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
    order_type: str | None = None
    time_in_force: str | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    post_only: bool | None = None
    reduce_only: bool | None = None
    created_ts_ns: int | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_ORDER_STATUSES

    def advances_to(self, status: JournalOrderStatus) -> bool:
        """Whether ``status`` is further along than this row's (a final row never changes)."""
        return not self.is_final and ORDER_STATUS_RANK[status.value] > ORDER_STATUS_RANK[self.status]


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
    fields (``fill_price``, ``fill_quantity``, ``fee``, ``venue``, ``venue_order_id``,
    ``reason`` ..., and ``slippage_reference``: the price a fill is measured against, default
    the order's reference price). A row with a fill price gets its ``slippage_bps``. Fields the
    previous row knew and this outcome does not say (the fills so far, a venue order id, the
    correlation id, the creation time) are kept."""
    reference = outcome.pop("slippage_reference", None) or order.reference_price
    kept = {} if previous is None else {
        name: getattr(previous, name)
        for name in ("fill_price", "fill_quantity", "fee", "venue", "venue_order_id", "trade_id", "slippage_bps")}
    row = OrderRow(
        client_order_id=order.client_order_id,
        position_id=order.position_id,
        coin=order.coin,
        side=order.side.value,
        intent=order.intent.value,
        quantity=order.quantity,
        reference_price=order.reference_price,
        status=status.value,
        order_type=order.order_type.value,
        time_in_force=order.time_in_force.value,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        post_only=order.post_only,
        reduce_only=order.reduce_only,
        correlation_id=correlation_id if correlation_id is not None else (
            previous.correlation_id if previous is not None else None),
        created_ts_ns=previous.created_ts_ns if previous is not None and previous.created_ts_ns is not None
        else ts_ns,
        ts_ns=ts_ns,
        run_id=run_id,
        **kept,
    )
    row = replace(row, **{k: v for k, v in outcome.items() if v is not None})
    if "fill_price" in outcome and row.fill_price is not None:
        row = replace(row, slippage_bps=slippage_bps(order.side, reference, row.fill_price))
    return row


def status_after_fill(previous: OrderRow | None, cumulative: Decimal, quantity: Decimal) -> JournalOrderStatus:
    """An order's status after a fill that brought its filled quantity to ``cumulative``:
    FILLED when that is all of it, else PARTIALLY_FILLED; a final status stays (a fill that
    lost a race with a cancel is recorded, the status it already had is not overwritten)."""
    if previous is not None and previous.is_final:
        return JournalOrderStatus(previous.status)
    return JournalOrderStatus.FILLED if cumulative >= quantity else JournalOrderStatus.PARTIALLY_FILLED


def _plain(value: Decimal) -> Decimal:
    """``value`` without an exponent in its text and without trailing zeros."""
    return Decimal(format(value.normalize(), "f"))


def average_price(fills: Iterable[FillRow]) -> Decimal:
    """The quantity-weighted average price of ``fills`` (at least one): the price itself when
    they all have the same one (every fill of a market order that filled whole)."""
    fills = list(fills)
    if not fills:
        raise ValueError("fills: an average price needs at least one fill")
    prices = {f.price for f in fills}
    if len(prices) == 1:
        return fills[0].price
    quantity = sum((f.quantity for f in fills), ZERO)
    return _plain(sum((f.price * f.quantity for f in fills), ZERO) / quantity)


def slippage_reference(reference_price: Decimal, fills: Iterable[FillRow]) -> Decimal:
    """What an order's fills are measured against for ``slippage_bps``: the order's reference
    price (the tick that caused it), unless every fill carries the venue's ``mid_price`` at
    the moment it filled: then the quantity-weighted mid. (The hook for a venue that fills
    against the top of book: ``OrderFilled.mid_price``, when it has one.)"""
    fills = list(fills)
    if not fills or any(f.mid_price is None for f in fills):
        return reference_price
    mids = {f.mid_price for f in fills}
    if len(mids) == 1:
        return fills[0].mid_price  # type: ignore[return-value]
    quantity = sum((f.quantity for f in fills), ZERO)
    return _plain(sum((f.mid_price * f.quantity for f in fills), ZERO) / quantity)  # type: ignore[operator]


@dataclass(frozen=True, slots=True, kw_only=True)
class FillRow:
    """One row of ``fills``: one execution of an order, keyed by the venue's ``trade_id`` (a
    fill re-sent with a known trade id writes nothing). ``fee`` is in ``fee_currency``; a
    negative fee is a maker rebate. ``cumulative_quantity`` is the order's filled quantity
    after it; ``mid_price`` the venue's mid when it filled, if the venue said (else empty);
    ``ts_event_ms`` the venue's time of the trade, ``ts_ns`` the engine time of the message."""

    trade_id: str
    client_order_id: str
    position_id: str
    coin: str
    side: str
    intent: str
    venue: str
    venue_order_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: str
    cumulative_quantity: Decimal
    mid_price: Decimal | None = None
    ts_event_ms: int
    ts_ns: int
    run_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEventRow:
    """One row of ``order_events``: one change in an order's life (``event``, an
    ``OrderEventKind``), the order's ``status`` after it, the engine time and run of the
    message (``message``: its type), and what it says: a fill's ``trade_id``, ``quantity`` and
    ``price``; a refusal's, cancel's or expiry's ``reason``. Appended in the order received."""

    client_order_id: str
    position_id: str
    event: str
    status: str
    message: str
    ts_ns: int
    run_id: str
    venue_order_id: str | None = None
    trade_id: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    reason: str | None = None


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
    "FINAL_ORDER_STATUSES",
    "FillRow",
    "JournalOrderStatus",
    "Ledger",
    "Mark",
    "ORDER_COUNT_KEYS",
    "ORDER_STATUS_RANK",
    "OrderEventKind",
    "OrderEventRow",
    "OrderRow",
    "RUN_TOTAL_KEYS",
    "SCOPE_TOTAL_KEYS",
    "SampleKind",
    "TradeRow",
    "TradeStats",
    "TradeStatus",
    "average_price",
    "average_slippage_bps",
    "closed_trade_dust",
    "closed_trade_results",
    "daily_rows",
    "day_after_close",
    "day_after_kill_switch",
    "day_after_mark",
    "drawdown_pct",
    "fees_by_liquidity",
    "fill_coin_quantity",
    "fill_fee_usd",
    "fill_fees",
    "fills_cash_flow",
    "fills_fees",
    "fills_fees_other",
    "is_rejected_entry",
    "is_win",
    "max_drawdown_pct",
    "new_day",
    "open_position_rows",
    "order_row",
    "order_status_counts",
    "report_money",
    "run_totals",
    "scope_totals",
    "slippage_bps",
    "slippage_reference",
    "status_after_fill",
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
        f"Session {report['run_id']} ({report['source']}{' SIMULATED' if report.get('simulated') else ''}"
        f"{_account_kind(report)}): {report['duration_s']}s, {report['ticks']} ticks, ended by {report['end_reason']}",
        *_venue_lines(report),
        *_scope_lines(report),
        f"  trades {report['total_trades']} (wins {report['wins']}, losses {report['losses']}) | "
        f"realized {usd(report['realized_pnl_usd'])} USD | fees {usd(report['fees_paid_usd'])} USD | "
        f"slippage {report['slippage_avg_bps']} bps | max drawdown {report['max_drawdown_pct']} %",
        *_fills_lines(report),
        *_reconciliation_lines(report),
        f"  equity {usd(report['start_equity'])} -> {usd(report['end_equity'])} | open positions "
        f"{report['open_positions_at_end']} ({report['on_stop']}) | restarts {report['restarts']} | "
        f"trading {report['trading_state']}",
        *_money_lines(report),
        f"  report: {Path(report['data_dir']) / 'runs' / report['run_id'] / 'summary.json'}",
        *([f"  recorded: {', '.join(f'{coin} {path}' for coin, path in report['recorded'].items())}"]
          if report.get("recorded") else []),
        *_feed_health_lines(report),
    ])


def _reconciliation_lines(report: Mapping[str, Any]) -> list[str]:
    """A live session's start-up reconciliation with the venue: how many differences, which
    coins take no new entry and why, and a cash balance that differs (``actors/venue_reconcile.py``)."""
    found = report.get("reconciliation")
    if not found:
        return []
    differences = found.get("differences") or []
    blocked = found.get("blocked") or {}
    line = (f"  reconciliation: {len(differences)} difference(s), {len(found.get('fills_applied') or [])} "
            f"fill(s) applied | blocked: {', '.join(sorted(blocked)) or 'none'}")
    balance = [f"    BALANCE (reported, not blocking): {d.get('message')}" for d in differences
               if isinstance(d, Mapping) and d.get("kind") == "BALANCE"]
    return [line, *(f"    {coin}: {why}" for coin, why in sorted(blocked.items())), *balance]


_ORDER_COUNT_NAMES = {"filled": "filled", "partially_filled_canceled": "partially filled then canceled",
                      "canceled": "canceled", "expired": "expired", "rejected": "rejected", "denied": "denied",
                      "open": "still open"}


def _fills_lines(report: Mapping[str, Any]) -> list[str]:
    """``fees maker X USD, taker Y USD | orders filled N, ...`` when the report has them (the
    venue's final statuses always; denied and still open only when there are some)."""
    if report.get("fees_maker_usd") is None and not report.get("orders_by_status"):
        return []
    counts = report.get("orders_by_status") or {}
    shown = [f"{name} {counts.get(key, 0)}" for key, name in _ORDER_COUNT_NAMES.items()
             if key not in ("denied", "open") or counts.get(key)]
    lines = [f"  fees maker {cents(report.get('fees_maker_usd'))} USD, taker {cents(report.get('fees_taker_usd'))} "
             f"USD | orders {', '.join(shown)}"]
    other, dust = report.get("fees_other") or {}, report.get("dust") or {}
    if other:  # only when a venue charged some: a paper report prints as before
        lines.append("  fees not counted (another currency): "
                     + ", ".join(f"{amount} {currency}" for currency, amount in other.items()))
    if dust:
        lines.append("  dust left in the account: " + ", ".join(f"{amount} {coin}" for coin, amount in dust.items()))
    return lines


def _account_kind(report: Mapping[str, Any]) -> str:
    """`` LIVE (REAL MONEY) on binanceusdm`` / `` TESTNET on binanceusdm`` for a live session."""
    venue = report.get("venue")
    if report.get("mode") != "live" or not isinstance(venue, Mapping):
        return ""
    status = venue.get("status") or {}
    kind = "TESTNET" if status.get("testnet") else "LIVE (REAL MONEY)"
    return f" {kind} on {status.get('exchange') or status.get('name', '?')}"


def _venue_lines(report: Mapping[str, Any]) -> list[str]:
    """``venue: stream up | requests N | banned until ... | halted: ... | USDT at start: account X,
    engine Y`` for a live session."""
    venue = report.get("venue")
    if not isinstance(venue, Mapping):
        return []
    status = venue.get("status") or {}
    parts = [f"stream {status.get('stream', '?')}", f"requests {status.get('requests', 0)}"]
    if status.get("banned_until_ms"):
        parts.append(f"banned until {status['banned_until_ms']} (epoch ms)")
    if status.get("halted"):
        parts.append(f"halted: {status['halted']}")
    startup = venue.get("startup") or {}
    if startup.get("position_mode"):
        parts.append(f"position mode {startup['position_mode']}")
    cash = venue.get("cash_at_start")
    if isinstance(cash, Mapping) and cash.get("asset"):
        parts.append(f"{cash['asset']} at start: account {cents(cash.get('venue'))}, "
                     f"engine {cents(cash.get('engine'))}")
    return ["  venue: " + " | ".join(parts)]


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
