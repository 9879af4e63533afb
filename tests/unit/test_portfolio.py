"""state/portfolio.py: positions change only through their fills (FIFO lots, per-lot PnL, one
apply per trade id), cash is conserved, and the per-tick decisions. Pure: no threads."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from state.market import default_rules
from state.messages import OrderFilled, OrderRequest
from state.models import Lot, Position, PositionOrder, TradeCondition
from state.portfolio import EXIT_RETRY_MAX_S, Change, Ended, Portfolio
from state.rules import PositionLimits, exit_levels
from state.store import decode, encode
from state.types import Direction, OrderIntent, OrderType, PositionStatus, TradingState

D = Decimal
START = D(10000)
TS = 1_700_000_000_000
_trades = itertools.count(1)


def condition(coin: str = "BTC", direction: str = "LONG", trigger: Any = 30000, size: Any = 6000,
              stop: Any = "0.02", target: Any = "0.05", **extra: Any) -> TradeCondition:
    return TradeCondition(coin=coin, direction=direction, trigger_price=D(str(trigger)),
                          trigger_type="ABOVE" if direction == "LONG" else "BELOW", stop_loss_pct=D(stop),
                          take_profit_pct=D(target), position_size_usd=D(str(size)),
                          created_at=datetime.now(), valid_until=datetime.now() + timedelta(hours=1), **extra)


def portfolio(**limits: Any) -> Portfolio:
    limits.setdefault("max_exposure_pct", D(1))
    return Portfolio(markets=default_rules, limits=PositionLimits(**limits), balance=START)


def enter(book: Portfolio, cond: TradeCondition, price: Any) -> Position:
    """Trigger ``cond`` at ``price``: the PENDING position with its entry order."""
    plan = book.on_tick(cond.coin, D(str(price)), TS, fired=lambda: [cond])
    (decision,) = plan.entries
    assert decision.position is not None, decision
    return decision.position


def order_of(book: Portfolio, position_id: str, intent: OrderIntent) -> OrderRequest:
    position = book.get(position_id)
    assert position is not None
    order = position.entry_order if intent is OrderIntent.ENTRY else position.exit_order
    assert order is not None
    return book.order_request(position, order)


def fill(order: OrderRequest, quantity: Any, price: Any, *, fee: Any = "0", cumulative: Any = None,
         trade_id: str | None = None) -> OrderFilled:
    quantity = D(str(quantity))
    return OrderFilled(
        ts_init_ns=0, order=order, venue_order_id="v-" + order.client_order_id,
        trade_id=trade_id or f"t{next(_trades)}", fill_price=D(str(price)), fill_quantity=quantity,
        cumulative_quantity=D(str(cumulative)) if cumulative is not None else quantity, fee=D(str(fee)),
        ts_event_ms=TS,
    )


def exit_now(book: Portfolio, position_id: str, price: Any, reason: str = "MANUAL") -> OrderRequest:
    start = book.begin_exit(position_id, reason, D(str(price)), TS)
    assert start.position.status is PositionStatus.CLOSING
    return book.order_request(start.position, start.position.exit_order)


def gross_of_closed(book: Portfolio) -> Decimal:
    """Cash conservation: what the account says the closed and open fills realized, gross."""
    return START - book.balance + book.fees_paid


# --- FIFO lots ------------------------------------------------------------------------------------


def test_the_seed_example_buy_0_1_at_30000_and_0_1_at_31000_sell_0_15_at_32000_realizes_250_exactly():
    book = portfolio()
    pending = enter(book, condition(size=6200), 30000)
    assert pending.entry_order is not None and pending.entry_order.quantity == D("0.20666")
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    assert book.apply(fill(entry, "0.1", 30000, cumulative="0.1")).change is Change.OPENED
    assert book.apply(fill(entry, "0.1", 31000, cumulative="0.2")).change is Change.INCREASED
    held = book.get(pending.id)
    assert [(lot.quantity, lot.price) for lot in held.lots] == [(D("0.1"), D(30000)), (D("0.1"), D(31000))]
    assert held.entry_price == D(30500)

    book.order_ended(entry, "canceled", filled_quantity=D("0.2"))  # the rest of the entry is canceled
    sell = exit_now(book, pending.id, 32000)
    assert sell.quantity == D("0.2")
    result = book.apply(fill(sell, "0.15", 32000, cumulative="0.15"))

    assert result.change is Change.REDUCED
    assert result.realized_gross == D("250.00")  # 2,000 x 0.1 + 1,000 x 0.05
    after = result.position
    assert after.realized_gross == D("250.00")
    assert [(lot.quantity, lot.price) for lot in after.lots] == [(D("0.05"), D(31000))]
    assert after.quantity == D("0.05") and after.status is PositionStatus.CLOSING


def test_a_whole_fill_is_one_lot_and_gives_todays_numbers_to_the_last_digit():
    book = portfolio()
    pending = enter(book, condition(size=1000), 42001)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    opened = book.apply(fill(entry, entry.quantity, 42001, fee="0.4998119")).position
    assert opened.lots == (Lot(quantity=D("0.02380"), price=D(42001), fee=D("0.4998119"), ts_ms=TS,
                               trade_id=opened.trade_ids[0]),)
    assert opened.unrealized_pnl == D("-0.4998119") and str(opened.unrealized_pnl) == "-0.4998119"
    assert opened.entry_order is None and opened.pending_order_id is None
    sell = exit_now(book, opened.id, 42650)
    closed = book.apply(fill(sell, sell.quantity, 42650, fee="0.5075350")).position
    qty = D("0.02380")
    assert closed.status is PositionStatus.CLOSED
    assert closed.realized_pnl == qty * (D(42650) - D(42001)) - (D("0.4998119") + D("0.5075350"))
    assert closed.quantity == qty and closed.exit_price == D(42650) and closed.entry_price == D(42001)
    assert book.balance == START + closed.realized_pnl
    assert book.realized_pnl == closed.realized_pnl and book.closed_positions == 1
    assert book.fees_paid == D("0.4998119") + D("0.5075350")
    assert len(book) == 0


def test_an_entry_filled_in_parts_opens_at_the_first_fill_and_grows_with_exit_levels_from_the_average():
    book = portfolio()
    pending = enter(book, condition(size=3000, stop="0.02", target="0.05"), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    first = book.apply(fill(entry, "0.04", 30000, cumulative="0.04"))
    assert first.change is Change.OPENED and not first.order_done
    assert first.position.status is PositionStatus.OPEN
    assert first.position.entry_order is not None and first.position.entry_order.filled == D("0.04")
    second = book.apply(fill(entry, "0.06", 30500, cumulative="0.1"))
    assert second.change is Change.INCREASED and second.order_done
    grown = second.position
    assert grown.quantity == D("0.1") and grown.entry_order is None
    assert grown.entry_price == D(30300)  # (0.04 x 30000 + 0.06 x 30500) / 0.1
    stop, target = exit_levels(Direction.LONG, D(30300), D("0.02"), D("0.05"), default_rules("BTC"))
    assert (grown.stop_loss_price, grown.take_profit_price) == (stop, target)
    assert grown.stop_loss_price == D("29694.00")


def test_an_exit_in_two_fills_closes_once_with_the_pnl_of_both():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, entry.quantity, 30000, fee="1.5"))
    sell = exit_now(book, pending.id, 31000)
    first = book.apply(fill(sell, "0.06", 31000, fee="0.9", cumulative="0.06"))
    assert first.change is Change.REDUCED and first.position.status is PositionStatus.CLOSING
    assert book.closed_positions == 0 and book.realized_pnl == 0
    second = book.apply(fill(sell, "0.04", 30900, fee="0.6", cumulative="0.1"))
    assert second.change is Change.CLOSED and second.order_done
    closed = second.position
    gross = D("0.06") * 1000 + D("0.04") * 900
    assert closed.realized_pnl == gross - D("3.0")
    assert closed.exit_price == (D("0.06") * 31000 + D("0.04") * 30900) / D("0.1")
    assert closed.quantity == D("0.1") and closed.lots == ()
    assert book.realized_pnl == closed.realized_pnl and book.closed_positions == 1
    assert book.apply(fill(sell, "0.01", 30900)).change is Change.IGNORED  # closed once


def test_a_short_realizes_per_lot_too():
    book = portfolio()
    pending = enter(book, condition(direction="SHORT", trigger=30000, size=6000, stop="0.02", target="0.1"), 29999)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, "0.1", 30000, cumulative="0.1"))
    book.apply(fill(entry, "0.1", 29000, cumulative="0.2"))
    book.order_ended(entry, "canceled", filled_quantity=D("0.2"))
    buy = exit_now(book, pending.id, 28000)
    assert buy.side.value == "BUY"
    result = book.apply(fill(buy, "0.15", 28000, cumulative="0.15"))
    assert result.realized_gross == D("0.1") * 2000 + D("0.05") * 1000
    closed = book.apply(fill(buy, "0.05", 28500, cumulative="0.2")).position
    assert closed.realized_pnl == D(250) + D("0.05") * 500


def test_a_trade_id_already_applied_changes_nothing():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    once = fill(entry, "0.05", 30000, fee="1", cumulative="0.05", trade_id="T1")
    book.apply(once)
    before = (book.get(pending.id), book.balance, book.fees_paid)
    again = book.apply(once)
    assert again.change is Change.IGNORED and "T1" in again.reason
    assert (book.get(pending.id), book.balance, book.fees_paid) == before


def test_an_overfill_is_refused_and_changes_nothing():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, "0.06", 30000, cumulative="0.06"))
    too_much = book.apply(fill(entry, "0.05", 30000, cumulative="0.11"))  # 0.1 ordered
    assert too_much.change is Change.REJECTED and "above the ordered 0.04" in too_much.reason
    assert book.get(pending.id).quantity == D("0.06")
    book.order_ended(entry, "canceled", filled_quantity=D("0.06"))
    sell = exit_now(book, pending.id, 30100)
    assert sell.quantity == D("0.06")
    refused = book.apply(fill(sell, "0.07", 30100))
    assert refused.change is Change.REJECTED
    assert book.get(pending.id).quantity == D("0.06") and book.get(pending.id).lots[0].quantity == D("0.06")


def test_cash_is_conserved_start_less_balance_is_fees_less_gross():
    book = portfolio(max_positions=5, max_per_coin=5)
    gross = D(0)
    for n, (buy, sell) in enumerate([(30000, 30600), (30000, 29400), (31000, 31310)]):
        pending = enter(book, condition(trigger=29000, size=3000 + n), buy)
        entry = order_of(book, pending.id, OrderIntent.ENTRY)
        book.apply(fill(entry, "0.05", buy, fee="0.75", cumulative="0.05"))
        book.apply(fill(entry, entry.quantity - D("0.05"), buy + 10, fee="0.7", cumulative=entry.quantity))
        order = exit_now(book, pending.id, sell)
        gross += book.apply(fill(order, "0.03", sell, fee="0.45", cumulative="0.03")).realized_gross
        assert START - book.balance == book.fees_paid - gross
        gross += book.apply(fill(order, order.quantity - D("0.03"), sell, fee="1", cumulative=order.quantity)).realized_gross
        assert START - book.balance == book.fees_paid - gross
    assert book.realized_pnl == gross - book.fees_paid
    assert book.balance == START + book.realized_pnl


# --- partial entries and exits that end ----------------------------------------------------------------


def test_an_entry_canceled_after_3_of_10_steps_leaves_exactly_3_steps_and_exits_exactly_them():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    assert entry.quantity == D("0.10000")
    book.apply(fill(entry, "0.03", 30000, cumulative="0.03"))
    end = book.order_ended(entry, "canceled by request", filled_quantity=D("0.03"))
    assert end is not None and end.ended is Ended.ENTRY_ENDED and end.missing == 0
    kept = book.get(pending.id)
    assert kept.status is PositionStatus.OPEN and kept.quantity == D("0.03") and kept.entry_order is None
    plan = book.on_tick("BTC", kept.stop_loss_price, TS + 1)
    (start,) = plan.exits
    assert start.reason == "STOP_LOSS" and start.cancel is None
    assert start.position.exit_order.quantity == D("0.03")


def test_an_entry_ended_with_nothing_filled_closes_the_position_as_rejected():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    end = book.order_ended(order_of(book, pending.id, OrderIntent.ENTRY), "EXPIRED: post-only", filled_quantity=D(0))
    assert end.ended is Ended.ENTRY_FAILED
    assert end.position.status is PositionStatus.CLOSED
    assert end.position.exit_reason == "ENTRY_REJECTED: EXPIRED: post-only"
    assert len(book) == 0 and book.balance == START


def test_an_exit_canceled_with_a_remainder_leaves_the_position_open_with_it():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, entry.quantity, 30000))
    sell = exit_now(book, pending.id, 30500, reason="TAKE_PROFIT")
    book.apply(fill(sell, "0.04", 30500, cumulative="0.04"))
    end = book.order_ended(sell, "IOC remainder", filled_quantity=D("0.04"))
    assert end.ended is Ended.EXIT_FAILED
    reopened = book.get(pending.id)
    assert reopened.status is PositionStatus.OPEN and reopened.quantity == D("0.06")
    assert reopened.exit_order is None and reopened.exit_reason == "TAKE_PROFIT"
    book.exit_failed(reopened.id, now_ns=0)
    (due, reason) = book.due_exit_retries(now_ns=2 * 1_000_000_000)[0]
    assert reason == "TAKE_PROFIT"
    again = exit_now(book, due.id, 30400)
    assert again.quantity == D("0.06") and again.client_order_id.endswith("-X2")
    closed = book.apply(fill(again, "0.06", 30400)).position
    assert closed.realized_pnl == D("0.04") * 500 + D("0.06") * 400
    assert closed.quantity == D("0.1")


def test_an_exit_while_the_entry_still_works_cancels_the_entry_and_exits_what_filled():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, "0.03", 30000, cumulative="0.03"))
    start = book.begin_exit(pending.id, "MANUAL", D(30100), TS)
    assert start.cancel == entry.client_order_id
    assert start.position.exit_order is None  # the exit waits for the entry's end
    assert start.position.entry_order.cancel_requested
    # an entry fill before the cancel lands: held, and the exit, sent once the entry ended, covers it
    book.apply(fill(entry, "0.01", 30000, cumulative="0.04"))
    end = book.order_ended(entry, "canceled", filled_quantity=D("0.04"))
    assert end.submit is not None and end.submit.quantity == D("0.04")
    sell = book.order_request(end.position, end.submit)
    result = book.apply(fill(sell, "0.04", 30100))
    assert result.change is Change.CLOSED and not result.reexit
    assert result.position.realized_pnl == D("0.04") * 100
    assert book.due_exit_retries(now_ns=TS * 1_000_000) == []


def test_only_an_open_position_can_start_an_exit():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    with pytest.raises(ValueError, match="PENDING; its entry is still in flight"):
        book.begin_exit(pending.id, "MANUAL", D(30000), TS)
    with pytest.raises(ValueError, match="not an active position"):
        book.begin_exit("nope", "MANUAL", D(30000), TS)


def test_exit_retries_back_off_by_attempts():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    book.apply(fill(order_of(book, pending.id, OrderIntent.ENTRY), "0.1", 30000))
    for attempt in range(1, 8):
        sell = exit_now(book, pending.id, 30000)
        book.order_ended(sell, "venue busy")
        book.exit_failed(pending.id, now_ns=0)
        delay = min(2 ** attempt, EXIT_RETRY_MAX_S) * 1_000_000_000
        assert book.due_exit_retries(now_ns=delay - 1) == []
        assert [p.id for p, _ in book.due_exit_retries(now_ns=delay)] == [pending.id]


# --- ticks -----------------------------------------------------------------------------------------


def test_on_tick_marks_checks_the_stop_first_and_fires_entries_within_the_limits():
    book = portfolio(max_positions=2, max_exposure_pct=D("0.5"))
    btc = enter(book, condition(size=3000), 30000)
    book.apply(fill(order_of(book, btc.id, OrderIntent.ENTRY), "0.1", 30000))
    marked = book.on_tick("BTC", D(30100), TS + 1)
    assert [p.unrealized_pnl for p in marked.marked] == [D(10)] and marked.exits == ()
    assert book.on_tick("BTC", D(30100), TS + 2).marked == ()  # the same price: no change

    halted = book.on_tick("SOL", D(150), TS + 3, fired=lambda: [condition(coin="SOL", trigger=100, size=100)],
                          trading_state=TradingState.HALTED)
    assert halted.entries[0].blocked == "ENTRIES_BLOCKED: trading is HALTED"
    stale = book.on_tick("SOL", D(150), TS + 3, fired=lambda: [condition(coin="SOL", trigger=100, size=100)],
                         stale=True)
    assert stale.entries[0].blocked == "ORDER_BOOK_STALE: the SOL feed is stale"
    small = book.on_tick("SOL", D(150), TS + 4, fired=lambda: [condition(coin="SOL", trigger=100, size="0.5")])
    assert small.entries[0].canceled.startswith("order too small at 150")

    eth_a, eth_b = condition(coin="ETH", trigger=2000, size=1000), condition(coin="ETH", trigger=2000, size=1500)
    plan = book.on_tick("ETH", D(2001), TS + 5, fired=lambda: [eth_a, eth_b])
    first, second = plan.entries
    assert first.position is not None and first.position.status is PositionStatus.PENDING
    assert second.position is None and second.blocked.startswith("POSITION_LIMIT_EXCEEDED: max_positions")

    stop = book.get(btc.id).stop_loss_price
    (exit_,) = book.on_tick("BTC", stop, TS + 6).exits
    assert exit_.reason == "STOP_LOSS" and exit_.position.current_price == stop


def test_with_one_position_per_coin_entries_are_not_looked_at_while_the_coin_has_an_order():
    book = portfolio()
    enter(book, condition(size=3000), 30000)
    asked: list[str] = []
    plan = book.on_tick("BTC", D(30001), TS, fired=lambda: asked.append("fired") or [condition(size=100)])
    assert plan.entries == () and asked == []


def test_a_resting_order_is_working_once_accepted():
    book = Portfolio(markets=default_rules, limits=PositionLimits(max_exposure_pct=D(1)), balance=START,
                     entry_terms=lambda cond, price, market: {"order_type": OrderType.LIMIT,
                                                              "limit_price": cond.trigger_price})
    pending = enter(book, condition(size=3000), 30001)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    assert entry.rests and entry.limit_price == D(30000)
    assert book.working_orders() == () and not book.has_working("BTC")
    working = book.accepted(entry)
    assert working is not None and working.entry_order.working
    assert book.working_orders() == (entry.client_order_id,) and book.has_working("BTC")
    assert book.accepted(entry) is None  # already working: nothing changes


# --- the stored form --------------------------------------------------------------------------------


def test_a_position_round_trips_through_the_store_codec_with_its_lots_and_orders():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, "0.03", 30000, cumulative="0.03", fee="0.1"))
    book.apply(fill(entry, "0.02", 30100, cumulative="0.05", fee="0.1"))
    position = book.get(pending.id)
    assert isinstance(position.entry_order, PositionOrder)
    assert decode(Position, encode(position)) == position


def test_a_position_stored_without_lots_is_one_lot_of_its_quantity_at_its_entry_price():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    book.apply(fill(order_of(book, pending.id, OrderIntent.ENTRY), "0.1", 30000, fee="1.5"))
    stored = encode(book.get(pending.id))
    for name in ("lots", "trade_ids", "realized_gross", "exited_quantity", "entry_order", "exit_order"):
        stored.pop(name)
    old = decode(Position, stored)
    assert [(lot.quantity, lot.price, lot.fee, lot.trade_id) for lot in old.lots] == [(D("0.1"), D(30000), D("1.5"), None)]

    again = portfolio()
    loaded = again.load(old)
    sell = exit_now(again, loaded.id, 30500)
    assert again.apply(fill(sell, "0.1", 30500)).position.realized_pnl == D(50) - D("1.5")


def test_an_older_versions_order_in_flight_is_rebuilt_from_the_position():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    stored = encode(pending)
    stored.pop("entry_order")
    loaded = portfolio().load(decode(Position, stored))
    assert loaded.entry_order == pending.entry_order


# --- a fill that raced its order's cancel ---------------------------------------------------------


def test_an_entry_fill_after_the_entry_was_canceled_still_grows_the_position():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, "0.03", 30000, cumulative="0.03"))
    book.order_ended(entry, "canceled", filled_quantity=D("0.03"))
    late = book.apply(fill(entry, "0.02", 30100, cumulative="0.05"))
    assert late.change is Change.INCREASED and not late.order_done
    grown = late.position
    assert grown.quantity == D("0.05") and grown.entry_order is None
    assert grown.entry_price == (D("0.03") * 30000 + D("0.02") * 30100) / D("0.05")
    too_much = book.apply(fill(entry, "0.06", 30100, cumulative="0.11"))  # 0.1 ordered, 0.05 filled before
    assert too_much.change is Change.REJECTED


def test_an_exit_fill_after_the_exit_ended_reduces_and_may_close_the_position():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    book.apply(fill(order_of(book, pending.id, OrderIntent.ENTRY), "0.1", 30000))
    first = exit_now(book, pending.id, 30500)
    book.apply(fill(first, "0.04", 30500, cumulative="0.04"))
    book.order_ended(first, "IOC remainder", filled_quantity=D("0.04"))
    assert book.get(pending.id).status is PositionStatus.OPEN
    late = book.apply(fill(first, "0.01", 30500, cumulative="0.05"))
    assert late.change is Change.REDUCED and late.position.status is PositionStatus.OPEN
    assert late.position.quantity == D("0.05")
    second = exit_now(book, pending.id, 30400)
    assert second.quantity == D("0.05")
    closing = book.apply(fill(first, "0.05", 30500, cumulative="0.1"))  # the first exit's last part, late
    assert closing.change is Change.CLOSED and closing.cancel == second.client_order_id
    assert closing.position.realized_pnl == D("0.1") * 500
    assert book.apply(fill(second, "0.05", 30400)).change is Change.IGNORED


def test_a_fill_of_an_order_that_was_never_the_positions_is_ignored():
    book = portfolio()
    pending = enter(book, condition(size=3000), 30000)
    entry = order_of(book, pending.id, OrderIntent.ENTRY)
    book.apply(fill(entry, "0.1", 30000))
    stranger = OrderRequest(client_order_id=pending.id + "-X7", position_id=pending.id, coin="BTC", side="SELL",
                            quantity=D("0.1"), intent=OrderIntent.EXIT, reference_price=D(30000),
                            reference_ts_ms=TS)
    assert book.apply(fill(stranger, "0.1", 30000)).change is Change.IGNORED
    assert book.get(pending.id).quantity == D("0.1")
