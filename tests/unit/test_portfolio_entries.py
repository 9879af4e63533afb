"""state/portfolio.py carrying out entry plans (state/entry_plan.py): a limit entry with its time
limit and plan B (take the rest at market, or cancel it), and the scale-in leg. Pure: no threads.

BTC's default rules: tick 0.01, step 0.00001. A $3000 condition at 30000 is 0.1 BTC."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from state.entry_plan import EntryPlan, PlanB
from state.market import TopOfBook
from state.messages import OrderRequest
from state.models import Position
from state.portfolio import Change, Ended, Portfolio
from state.store import decode, encode
from state.types import OrderIntent, OrderType, PositionStatus, TimeInForce
from tests.unit.test_portfolio import START, TS, condition, fill, portfolio

D = Decimal
LIMIT = {"entry_type": "limit", "entry_offset_ticks": -100, "entry_timeout_s": 30}
SCALE = {"scale_in_fraction": "0.4", "scale_in_pullback_pct": "0.01", "scale_in_timeout_s": 60}


def trigger(book: Portfolio, price: Any = 30000, **plan: Any) -> Position:
    """A LONG above 30000 for $3000 fired at ``price`` (time TS): the PENDING position."""
    cond = condition(trigger=30000, size=3000, **plan)
    (decision,) = book.on_tick("BTC", D(str(price)), TS, fired=lambda: [cond]).entries
    assert decision.position is not None, decision
    return decision.position


def request(book: Portfolio, position_id: str, slot: str = "entry_order") -> OrderRequest:
    position = book.get(position_id)
    assert position is not None and getattr(position, slot) is not None, (position, slot)
    return book.order_request(position, getattr(position, slot))


def working(book: Portfolio, position_id: str, slot: str = "entry_order") -> OrderRequest:
    order = request(book, position_id, slot)
    assert book.accepted(order) is not None
    return order


def quote(bid: Any, ask: Any, ts_ms: int) -> TopOfBook:
    return TopOfBook(bid=D(str(bid)), bid_qty=D(1), ask=D(str(ask)), ask_qty=D(1), ts_ms=ts_ms)


# --- limit entries -----------------------------------------------------------------------------


def test_a_limit_entry_is_a_gtc_limit_at_the_trigger_moved_by_the_offset_for_the_whole_size():
    book = portfolio()
    pending = trigger(book, 30001, **LIMIT)
    order = pending.entry_order
    assert order is not None
    assert (order.order_type, order.time_in_force, order.limit_price) == (OrderType.LIMIT, TimeInForce.GTC,
                                                                          D("29999.00"))
    assert order.quantity == D("0.09999") and order.client_order_id == f"{pending.id}-E"
    assert pending.entry_plan == EntryPlan(trigger_price=D(30000), first_leg=D("0.09999"), timeout_s=30,
                                           deadline_ms=TS + 30_000)


def test_a_limit_entry_filled_whole_before_its_time_limit_opens_and_nothing_times_out():
    book = portfolio()
    pending = trigger(book, **LIMIT)
    order = working(book, pending.id)
    result = book.apply(fill(order, order.quantity, "29999.00", fee="-0.6"))
    assert result.change is Change.OPENED and result.order_done and result.submit is None
    assert result.position.entry_order is None and result.position.quantity == D("0.1")
    assert book.entry_timeouts(TS + 30_000, coin="BTC") == []


def test_a_limit_entry_does_not_time_out_before_its_deadline_nor_while_not_yet_accepted():
    book = portfolio()
    pending = trigger(book, **LIMIT)
    assert book.entry_timeouts(TS + 60_000) == []  # in flight: it waits for its acceptance
    working(book, pending.id)
    assert book.entry_timeouts(TS + 29_999) == []
    (timeout,) = book.entry_timeouts(TS + 30_000)
    assert timeout.cancel == f"{pending.id}-E" and timeout.decision is PlanB.CANCEL  # no plan B configured
    assert book.entry_timeouts(TS + 40_000) == []  # decided once


def test_partial_then_time_limit_plan_b_take_sends_a_market_order_for_exactly_the_rest():
    book = portfolio()
    pending = trigger(book, **LIMIT, entry_plan_b_pct="0.001")  # take within 30.00 of the trigger
    order = working(book, pending.id)
    assert book.apply(fill(order, "0.03", "29999.00", cumulative="0.03")).change is Change.OPENED
    book.on_tick("BTC", D("30029.99"), TS + 29_000)  # the last trade: within the distance
    (timeout,) = book.entry_timeouts(TS + 30_000)
    assert timeout.decision is PlanB.TAKE and "30029.99 (last trade)" in timeout.note
    assert book.get(pending.id).entry_order.cancel_requested

    end = book.order_ended(order, "CANCELED: ENTRY_TIMEOUT", filled_quantity=D("0.03"))
    assert end is not None and end.ended is Ended.PLAN_B
    take = end.submit
    assert take is not None and take.client_order_id == f"{pending.id}-B"
    assert (take.order_type, take.quantity) == (OrderType.MARKET, D("0.07"))  # exactly the rest
    assert end.position.entry_order == take and end.position.status is PositionStatus.OPEN

    market = request(book, pending.id)
    result = book.apply(fill(market, "0.07", "30030.00"))
    assert result.change is Change.INCREASED and result.order_done
    held = result.position
    assert held.quantity == D("0.1") and held.entry_order is None
    assert held.entry_price == (D("0.03") * D("29999.00") + D("0.07") * D("30030.00")) / D("0.1")


def test_plan_b_looks_at_a_fresh_top_of_book_before_the_last_trade():
    book = portfolio()
    pending = trigger(book, **LIMIT, entry_plan_b_pct="0.001")
    working(book, pending.id)
    book.on_tick("BTC", D("30010"), TS + 29_000)  # the last trade alone would take
    now = TS + 30_000
    # a stale quote (older than 5 s) is not looked at: the last trade decides, TAKE
    stale = portfolio()
    stale_pending = trigger(stale, **LIMIT, entry_plan_b_pct="0.001")
    working(stale, stale_pending.id)
    stale.on_tick("BTC", D("30010"), TS + 29_000)
    (taken,) = stale.entry_timeouts(now, quote=lambda coin: quote(30039, 30040, now - 5_001), quote_max_age_ms=5_000)
    assert taken.decision is PlanB.TAKE
    # a fresh ask 40.00 above the trigger is beyond 0.1 %: CANCEL
    (timeout,) = book.entry_timeouts(now, quote=lambda coin: quote(30039, 30040, now - 5_000), quote_max_age_ms=5_000)
    assert timeout.decision is PlanB.CANCEL and "30040 (top of book)" in timeout.note


def test_a_short_plan_b_uses_the_bid():
    book = portfolio()
    cond = condition(direction="SHORT", trigger=30000, size=3000, **LIMIT, entry_plan_b_pct="0.001")
    (decision,) = book.on_tick("BTC", D(29999), TS, fired=lambda: [cond]).entries
    assert decision.position.entry_order.limit_price == D("30001.00")  # a sell limit above: it rests
    working(book, decision.position.id)
    now = TS + 30_000
    (timeout,) = book.entry_timeouts(now, quote=lambda coin: quote(29970, 29971, now), quote_max_age_ms=5_000)
    assert timeout.decision is PlanB.TAKE  # selling at 29970 is 30.00 below the trigger: within


def test_partial_then_time_limit_plan_b_cancel_leaves_a_smaller_position_whose_exits_cover_exactly_it():
    book = portfolio()
    pending = trigger(book, **LIMIT, entry_plan_b_pct="0.001")
    order = working(book, pending.id)
    book.apply(fill(order, "0.03", "29999.00", cumulative="0.03"))
    book.on_tick("BTC", D("30031"), TS + 29_000)  # 31.00 beyond the trigger: more than 0.1 %
    (timeout,) = book.entry_timeouts(TS + 30_000)
    assert timeout.decision is PlanB.CANCEL

    end = book.order_ended(order, "CANCELED: ENTRY_TIMEOUT", filled_quantity=D("0.03"))
    assert end is not None and end.ended is Ended.ENTRY_ENDED and end.submit is None
    held = end.position
    assert held.quantity == D("0.03") and held.entry_order is None and held.status is PositionStatus.OPEN
    stop = held.stop_loss_price
    assert stop == D("29399.02")  # 2 % below the 29999.00 the 3 steps filled at
    plan = book.on_tick("BTC", stop - 1, TS + 31_000)
    (start,) = plan.exits
    assert start.position.exit_order.quantity == D("0.03") and start.cancel is None


def test_nothing_filled_at_the_time_limit_closes_the_position_with_entry_timeout():
    book = portfolio()
    pending = trigger(book, **LIMIT, entry_plan_b_pct="0.001")
    order = working(book, pending.id)
    book.on_tick("BTC", D("30100"), TS + 29_000)
    (timeout,) = book.entry_timeouts(TS + 30_000)
    assert timeout.decision is PlanB.CANCEL
    end = book.order_ended(order, "CANCELED: ENTRY_TIMEOUT", filled_quantity=D(0))
    assert end is not None and end.ended is Ended.ENTRY_FAILED
    closed = end.position
    assert closed.status is PositionStatus.CLOSED and closed.entry_price is None
    assert closed.exit_reason.startswith("ENTRY_TIMEOUT: limit 29999.00 filled 0 of 0.10000 in 30s")
    assert closed.exit_reason.endswith("plan B within 0.001 of the trigger: CANCEL")
    assert book.get(pending.id) is None and book.balance == D(10000)


def test_nothing_filled_then_plan_b_take_sends_the_whole_size_at_market_and_the_position_stays_pending():
    book = portfolio()
    pending = trigger(book, **LIMIT, entry_plan_b_pct="0.001")
    order = working(book, pending.id)
    book.entry_timeouts(TS + 30_000)
    end = book.order_ended(order, "CANCELED", filled_quantity=D(0))
    assert end.ended is Ended.PLAN_B and end.submit.quantity == D("0.1")
    assert end.position.status is PositionStatus.PENDING and end.position.pending_order_id == f"{pending.id}-B"
    result = book.apply(fill(request(book, pending.id), "0.1", "30000.00"))
    assert result.change is Change.OPENED and result.position.entry_order is None


def test_a_plan_b_market_order_that_fails_ends_the_entry_as_any_entry():
    book = portfolio()
    pending = trigger(book, **LIMIT, entry_plan_b_pct="0.001")
    order = working(book, pending.id)
    book.entry_timeouts(TS + 30_000)
    book.order_ended(order, "CANCELED", filled_quantity=D(0))
    end = book.order_ended(request(book, pending.id), "INSUFFICIENT_BALANCE")
    assert end.ended is Ended.ENTRY_FAILED and end.position.exit_reason == "ENTRY_REJECTED: INSUFFICIENT_BALANCE"


def test_an_exit_after_the_time_limit_wins_over_plan_b():
    book = portfolio()
    pending = trigger(book, **LIMIT, entry_plan_b_pct="0.001")
    order = working(book, pending.id)
    book.apply(fill(order, "0.03", "29999.00", cumulative="0.03"))
    (timeout,) = book.entry_timeouts(TS + 30_000)
    assert timeout.decision is PlanB.TAKE
    start = book.begin_exit(pending.id, "MANUAL", D(30000), TS + 30_001)
    assert start.cancel is None  # already being canceled
    assert start.position.status is PositionStatus.CLOSING and start.position.exit_order is None
    end = book.order_ended(order, "CANCELED", filled_quantity=D("0.03"))
    assert end.ended is Ended.EXIT_SENT and end.submit == end.position.exit_order  # no plan B: the exit
    assert end.position.status is PositionStatus.CLOSING and end.position.exit_order.quantity == D("0.03")


def test_a_limit_entry_whose_price_cannot_be_computed_cancels_the_condition():
    book = portfolio()
    cond = condition(trigger="0.5", size=3000, entry_type="limit", entry_offset_ticks=-50, entry_timeout_s=30)
    (decision,) = book.on_tick("BTC", D("0.51"), TS, fired=lambda: [cond]).entries
    assert decision.position is None and decision.canceled.startswith("entry_offset:")


# --- scale-in --------------------------------------------------------------------------------------


def test_the_scale_in_leg_is_placed_once_the_first_leg_filled_whole_and_grows_the_position_on_the_pullback():
    book = portfolio()
    pending = trigger(book, **SCALE)
    first = request(book, pending.id)
    assert first.quantity == D("0.06") and first.order_type is OrderType.MARKET  # 0.1 less 40 %
    part = book.apply(fill(first, "0.02", 30000, cumulative="0.02"))
    assert part.submit is None and part.position.add_order is None  # not whole yet
    result = book.apply(fill(first, "0.04", 30000, cumulative="0.06"))
    add = result.submit
    assert add is not None and add.client_order_id == f"{pending.id}-S"
    assert (add.order_type, add.time_in_force, add.limit_price, add.quantity) == (
        OrderType.LIMIT, TimeInForce.GTC, D("29700.00"), D("0.04"))
    assert result.position.add_order == add and result.position.entry_plan.add_deadline_ms == TS + 60_000
    assert result.position.stop_loss_price == D("29400.00")

    order = working(book, pending.id, "add_order")
    assert book.entry_timeouts(TS + 59_999) == []
    grown = book.apply(fill(order, "0.04", "29700.00"))
    assert grown.change is Change.INCREASED and grown.order_done and grown.submit is None
    held = grown.position
    assert held.quantity == D("0.1") and held.add_order is None
    assert [(lot.quantity, lot.price) for lot in held.lots] == [(D("0.02"), D(30000)), (D("0.04"), D(30000)),
                                                                  (D("0.04"), D("29700.00"))]
    assert held.entry_price == D(29880)
    assert held.stop_loss_price == D("29282.40")  # 2 % below the average entry


def test_the_scale_in_leg_is_canceled_at_its_time_limit_and_the_position_keeps_the_first_leg():
    book = portfolio()
    pending = trigger(book, **SCALE)
    book.apply(fill(request(book, pending.id), "0.06", 30000))
    order = working(book, pending.id, "add_order")
    book.apply(fill(order, "0.01", "29700.00", cumulative="0.01"))
    (timeout,) = book.entry_timeouts(TS + 60_000)
    assert timeout.cancel == f"{pending.id}-S" and timeout.decision is None
    assert book.entry_timeouts(TS + 70_000) == []
    end = book.order_ended(order, "CANCELED: SCALE_IN_TIMEOUT", filled_quantity=D("0.01"))
    assert end.ended is Ended.ENTRY_ENDED
    assert end.position.add_order is None and end.position.quantity == D("0.07")
    assert end.position.status is PositionStatus.OPEN


def test_an_exit_cancels_the_working_scale_in_leg_first_and_exits_what_is_held():
    book = portfolio()
    pending = trigger(book, **SCALE)
    book.apply(fill(request(book, pending.id), "0.06", 30000))
    add = working(book, pending.id, "add_order")
    start = book.on_tick("BTC", D("29399"), TS + 1_000).exits[0]  # the stop (29400.00)
    assert start.cancel_add == add.client_order_id and start.cancels == (add.client_order_id,)
    assert start.position.exit_order is None  # it waits for the add's end
    assert start.position.add_order.cancel_requested
    # the add canceled having filled nothing: the exit covers the first leg
    end = book.order_ended(add, "CANCELED: exit STOP_LOSS", filled_quantity=D(0))
    assert end.ended is Ended.EXIT_SENT and end.submit.quantity == D("0.06")
    closed = book.apply(fill(request(book, pending.id, "exit_order"), "0.06", 29399))
    assert closed.change is Change.CLOSED


def test_a_scale_in_fill_after_the_exit_started_is_covered_by_the_exit():
    book = portfolio()
    pending = trigger(book, **SCALE)
    book.apply(fill(request(book, pending.id), "0.06", 30000))
    add = working(book, pending.id, "add_order")
    book.begin_exit(pending.id, "MANUAL", D(29700), TS + 1_000)
    part = book.apply(fill(add, "0.01", "29700.00", cumulative="0.01"))  # before the cancel reached the venue
    assert part.submit is None and part.position.exit_order is None
    end = book.order_ended(add, "CANCELED: exit MANUAL", filled_quantity=D("0.01"))
    assert end.ended is Ended.EXIT_SENT and end.submit.quantity == D("0.07")
    result = book.apply(fill(request(book, pending.id, "exit_order"), "0.07", 29700))
    assert result.change is Change.CLOSED and not result.reexit


def test_a_limit_entry_completed_by_plan_b_places_the_scale_in_leg():
    book = portfolio()
    pending = trigger(book, **LIMIT, **SCALE, entry_plan_b_pct="0.001")
    order = working(book, pending.id)
    assert order.quantity == D("0.06")
    book.apply(fill(order, "0.02", "29900.00", cumulative="0.02"))
    book.entry_timeouts(TS + 30_000)
    end = book.order_ended(order, "CANCELED", filled_quantity=D("0.02"))
    assert end.submit.quantity == D("0.04")
    result = book.apply(fill(request(book, pending.id), "0.04", "30000.00"))
    assert result.submit is not None and result.submit.quantity == D("0.04")
    # the first leg's average (0.02 @ 29900, 0.04 @ 30000: 29966.666...) less 1 %, rounded down
    assert result.submit.limit_price == D("29667.00")


def test_a_limit_entry_canceled_partly_filled_places_no_scale_in_leg():
    book = portfolio()
    pending = trigger(book, **LIMIT, **SCALE)
    order = working(book, pending.id)
    book.apply(fill(order, "0.02", "29900.00", cumulative="0.02"))
    book.entry_timeouts(TS + 30_000)
    end = book.order_ended(order, "CANCELED", filled_quantity=D("0.02"))
    assert end.ended is Ended.ENTRY_ENDED and end.position.add_order is None and end.position.quantity == D("0.02")


def test_a_split_too_small_for_the_market_is_no_split():
    book = portfolio()
    cond = condition(trigger=30000, size=8, **SCALE)  # 0.4 of $8 is below the $5 minimum
    (decision,) = book.on_tick("BTC", D(30000), TS, fired=lambda: [cond]).entries
    assert decision.position.entry_order.quantity == D("0.00026") and decision.position.entry_plan is None
    result = book.apply(fill(request(book, decision.position.id), "0.00026", 30000))
    assert result.submit is None


# --- persistence -------------------------------------------------------------------------------------


def test_a_position_with_its_plan_and_scale_in_leg_round_trips_through_the_store_codec():
    book = portfolio()
    pending = trigger(book, **LIMIT, **SCALE, entry_plan_b_pct="0.001")
    order = working(book, pending.id)
    book.entry_timeouts(TS + 30_000)
    book.order_ended(order, "CANCELED", filled_quantity=D(0))
    book.apply(fill(request(book, pending.id), "0.06", 30000))
    held = book.get(pending.id)
    assert held.add_order is not None and held.entry_plan.plan_b is PlanB.TAKE
    assert decode(Position, encode(held)) == held


def test_a_position_stored_before_entry_plans_loads_without_them():
    book = portfolio()
    pending = trigger(book)
    data = encode(pending)
    del data["entry_plan"], data["add_order"]
    loaded = book.load(decode(Position, data))
    assert loaded.entry_plan is None and loaded.add_order is None and loaded.orders == (pending.entry_order,)


# --- an exit waits for the end of the entry orders it cancels --------------------------------------


def partly_filled(book: Portfolio, quantity: Any = "0.03") -> tuple[Position, OrderRequest]:
    """An OPEN position whose limit entry works with ``quantity`` of its 0.1 filled."""
    pending = trigger(book, **LIMIT)
    order = working(book, pending.id)
    opened = book.apply(fill(order, quantity, "29999.00", cumulative=quantity)).position
    assert opened.status is PositionStatus.OPEN and opened.entry_order is not None
    return opened, order


def test_an_exit_started_while_the_entry_works_sends_no_exit_order_until_the_entry_ends():
    book = portfolio()
    opened, order = partly_filled(book)
    start = book.on_tick("BTC", D("25000"), TS + 1_000).exits[0]  # through the stop
    assert start.cancel == order.client_order_id and start.position.entry_order.cancel_requested
    assert start.position.status is PositionStatus.CLOSING and start.position.exit_reason == "STOP_LOSS"
    assert start.position.exit_order is None and book.exit_waits(start.position)
    assert book.has_orders("BTC")  # the coin's entries are not looked at meanwhile
    end = book.order_ended(order, "CANCELED: exit STOP_LOSS", filled_quantity=D("0.03"))
    assert end.ended is Ended.EXIT_SENT and end.submit == end.position.exit_order
    assert end.submit.quantity == D("0.03") and end.submit.client_order_id == f"{opened.id}-X1"
    assert end.position.entry_order is None and not book.exit_waits(end.position)
    closed = book.apply(fill(book.order_request(end.position, end.submit), "0.03", "25000"))
    assert closed.change is Change.CLOSED and closed.position.exit_reason == "STOP_LOSS"


def test_a_fill_after_the_exit_started_and_before_the_cancels_end_is_covered_by_the_exit():
    book = portfolio()
    opened, order = partly_filled(book)
    book.begin_exit(opened.id, "MANUAL", D(30000), TS + 1_000)
    more = book.apply(fill(order, "0.02", "29999.00", cumulative="0.05"))  # raced the cancel
    assert more.change is Change.INCREASED and more.submit is None and more.position.quantity == D("0.05")
    end = book.order_ended(order, "CANCELED: exit MANUAL", filled_quantity=D("0.05"))
    assert end.ended is Ended.EXIT_SENT and end.submit.quantity == D("0.05")
    closed = book.apply(fill(book.order_request(end.position, end.submit), "0.05", 30000))
    assert closed.change is Change.CLOSED and closed.position.quantity == D("0.05")


def test_the_fill_that_completes_the_entry_after_the_exit_started_sends_the_exit():
    book = portfolio()
    opened, order = partly_filled(book)
    book.begin_exit(opened.id, "MANUAL", D(30000), TS + 1_000)
    done = book.apply(fill(order, "0.07", "29999.00", cumulative="0.1"))
    assert done.order_done and done.submit is not None and done.submit.intent is OrderIntent.EXIT
    assert done.submit.quantity == D("0.1") and done.position.exit_order == done.submit
    assert book.order_ended(order, "CANCELED", filled_quantity=D("0.1")) is None  # already final


def test_an_exit_of_a_pending_limit_entry_that_filled_nothing_closes_it_without_an_exit_order():
    book = portfolio()
    pending = trigger(book, **LIMIT)
    order = working(book, pending.id)
    start = book.begin_exit(pending.id, "MANUAL", D(30000), TS + 1_000)
    assert start.cancel == order.client_order_id and start.position.status is PositionStatus.CLOSING
    assert start.position.exit_order is None
    end = book.order_ended(order, "CANCELED: exit MANUAL", filled_quantity=D(0))
    assert end.ended is Ended.ENTRY_FAILED and end.submit is None
    assert end.position.status is PositionStatus.CLOSED and end.position.exit_order is None
    assert end.position.exit_reason == "ENTRY_CANCELED: canceled by the exit (MANUAL); nothing filled"
    assert len(book) == 0 and book.balance == START  # nothing paid, nothing held


def test_an_exit_waiting_for_its_entrys_end_survives_a_restart_and_is_not_repaired():
    book = portfolio()
    opened, order = partly_filled(book)
    book.begin_exit(opened.id, "MANUAL", D(30000), TS + 1_000)
    stored = decode(Position, encode(book.get(opened.id)))
    again = portfolio()
    again.load(stored)
    assert again.repair_orderless(0) == []
    assert again.exit_waits(again.get(opened.id))
    end = again.order_ended(order, "CANCELED: exit MANUAL", filled_quantity=D("0.03"))
    assert end.ended is Ended.EXIT_SENT and end.submit.quantity == D("0.03")
