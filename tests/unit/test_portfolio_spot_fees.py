"""state/portfolio.py with spot fees (``state/fees.py``): a fee charged in the coin (a spot BUY)
makes the holding net of it and counts in quote at the fill's price; the exit sells the net
holding floored to the quantity step and leaves the rest as dust; a fee in another currency
(BNB) leaves the quantity whole and is not counted; a quote fee is as before. Pure: no threads."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from state.fees import FeeKind, coin_moved, fee_in_quote, fee_kind
from state.market import MarketRules, default_rules
from state.messages import OrderFilled, OrderRequest
from state.models import Position, TradeCondition
from state.portfolio import Change, Portfolio
from state.rules import PositionLimits
from state.types import OrderIntent, PositionStatus, Side

D = Decimal
START = D(10000)
TS = 1_700_000_000_000
_trades = itertools.count(1)


def condition(coin: str, trigger: Any, size: Any) -> TradeCondition:
    return TradeCondition(coin=coin, direction="LONG", trigger_price=D(str(trigger)), trigger_type="ABOVE",
                          stop_loss_pct=D("0.02"), take_profit_pct=D("0.05"), position_size_usd=D(str(size)),
                          created_at=datetime.now(), valid_until=datetime.now() + timedelta(hours=1))


def book(markets: Any = default_rules) -> Portfolio:
    return Portfolio(markets=markets, limits=PositionLimits(max_exposure_pct=D(1)), balance=START)


def enter(portfolio: Portfolio, cond: TradeCondition, price: Any) -> Position:
    (decision,) = portfolio.on_tick(cond.coin, D(str(price)), TS, fired=lambda: [cond]).entries
    assert decision.position is not None, decision
    return decision.position


def request(portfolio: Portfolio, position_id: str, intent: OrderIntent) -> OrderRequest:
    position = portfolio.get(position_id)
    assert position is not None
    order = position.entry_order if intent is OrderIntent.ENTRY else position.exit_order
    assert order is not None
    return portfolio.order_request(position, order)


def fill(order: OrderRequest, quantity: Any, price: Any, fee: Any, fee_currency: str,
         cumulative: Any = None) -> OrderFilled:
    return OrderFilled(ts_init_ns=0, order=order, venue_order_id="v-" + order.client_order_id,
                       trade_id=f"t{next(_trades)}", fill_price=D(str(price)), fill_quantity=D(str(quantity)),
                       cumulative_quantity=D(str(cumulative if cumulative is not None else quantity)),
                       fee=D(str(fee)), fee_currency=fee_currency, ts_event_ms=TS)


def conserved(portfolio: Portfolio, gross: Decimal) -> None:
    """Cash: what the balance lost is every fee counted less the gross results."""
    assert START - portfolio.balance == portfolio.fees_paid - gross


# --- the pure classification ---------------------------------------------------------------------

def test_a_fee_is_quote_base_or_other_by_its_currency():
    assert fee_kind("USDT", "BTC") is FeeKind.QUOTE and fee_kind("", "BTC") is FeeKind.QUOTE
    assert fee_kind(None, "BTC") is FeeKind.QUOTE and fee_kind("usdc", "BTC") is FeeKind.QUOTE
    assert fee_kind("BTC", "BTC") is FeeKind.BASE and fee_kind("btc", "BTC") is FeeKind.BASE
    assert fee_kind("BNB", "BTC") is FeeKind.OTHER and fee_kind("BNB", "BNB") is FeeKind.BASE
    assert fee_in_quote(D("0.00001"), "BTC", "BTC", D("60000.5")) == D("0.600005")
    assert fee_in_quote(D("0.0012"), "BNB", "BTC", D("60000")) == 0
    assert fee_in_quote(D("0.60"), "USDT", "BTC", D("60000")) == D("0.60")
    assert coin_moved(Side.BUY, D("0.01"), D("0.00001"), "BTC", "BTC") == D("0.00999")
    assert coin_moved(Side.SELL, D("0.01"), D("0.00001"), "BTC", "BTC") == D("0.01001")
    assert coin_moved(Side.BUY, D("0.01"), D("0.6"), "USDT", "BTC") == D("0.01")


# --- a fee in the coin ---------------------------------------------------------------------------

def test_a_buy_whose_fee_is_charged_in_the_coin_holds_the_net_quantity_and_counts_the_fee_at_its_price():
    portfolio = book()
    position = enter(portfolio, condition("BTC", 30000, 600), 60000)
    entry = request(portfolio, position.id, OrderIntent.ENTRY)
    assert entry.quantity == D("0.01000")

    result = portfolio.apply(fill(entry, "0.01", "60000", "0.00001", "BTC"))

    held = result.position
    assert result.change is Change.OPENED and result.order_done  # the order traded its whole 0.01
    assert held is not None and held.quantity == D("0.00999") and held.lots[0].quantity == D("0.00999")
    assert held.fees_paid == D("0.6") and held.fees_coin == D("0.00001") and held.lots[0].fee == D("0.6")
    assert held.unrealized_pnl == D("-0.6") and held.entry_price == D("60000")
    assert portfolio.fees_paid == D("0.6") and portfolio.balance == START - D("0.6")
    assert result.fee_unvalued is None


def test_the_exit_sells_the_net_holding_and_closes_with_the_right_pnl():
    portfolio = book()
    position = enter(portfolio, condition("BTC", 30000, 600), 60000)
    portfolio.apply(fill(request(portfolio, position.id, OrderIntent.ENTRY), "0.01", "60000", "0.00001", "BTC"))

    start = portfolio.begin_exit(position.id, "MANUAL", D(61000), TS)
    assert start.position.exit_order is not None and start.position.exit_order.quantity == D("0.00999")
    exit_order = request(portfolio, position.id, OrderIntent.EXIT)
    result = portfolio.apply(fill(exit_order, "0.00999", "61000", "0.60939", "USDT"))  # a spot SELL: quote fee

    closed = result.position
    assert result.change is Change.CLOSED and closed is not None and closed.status is PositionStatus.CLOSED
    assert closed.dust == 0 and closed.quantity == D("0.00999") and closed.fees_coin == D("0.00001")
    assert closed.fees_paid == D("0.6") + D("0.60939")
    assert closed.realized_pnl == D("0.00999") * 1000 - D("0.6") - D("0.60939")  # 8.78061
    assert portfolio.realized_pnl == closed.realized_pnl and len(portfolio) == 0
    conserved(portfolio, D("9.99"))


def test_an_exit_is_floored_to_the_quantity_step_and_the_rest_is_dust_written_off_at_its_cost():
    portfolio = book()  # ETH: quantity step 0.0001
    position = enter(portfolio, condition("ETH", 1500, 150), 3000)
    entry = request(portfolio, position.id, OrderIntent.ENTRY)
    assert entry.quantity == D("0.0500")
    portfolio.apply(fill(entry, "0.05", "3000", "0.00005", "ETH"))
    assert portfolio.get(position.id).quantity == D("0.04995")  # type: ignore[union-attr]

    start = portfolio.begin_exit(position.id, "TAKE_PROFIT", D(3100), TS)
    assert start.position.exit_order is not None and start.position.exit_order.quantity == D("0.0499")
    result = portfolio.apply(fill(request(portfolio, position.id, OrderIntent.EXIT), "0.0499", "3100", "0.15469",
                                  "USDT"))

    closed = result.position
    assert result.change is Change.CLOSED and result.order_done and not result.reexit
    assert closed is not None and closed.status is PositionStatus.CLOSED and closed.exit_order is None
    assert closed.dust == D("0.00005") and closed.quantity == D("0.04995") and closed.exit_price == D("3100")
    gross = D("0.0499") * 100 - D("0.00005") * 3000  # the sold part's gain, the dust at its cost
    assert closed.realized_gross == gross and closed.realized_pnl == gross - D("0.15") - D("0.15469")
    assert len(portfolio) == 0 and portfolio.closed_positions == 1
    conserved(portfolio, gross)


def test_a_holding_that_is_all_dust_closes_without_an_order():
    def markets(coin: str) -> MarketRules:
        return default_rules(coin, {"min_notional": "10"})

    portfolio = book(markets)
    position = enter(portfolio, condition("ETH", 1500, 12), 3000)
    entry = request(portfolio, position.id, OrderIntent.ENTRY)
    assert entry.quantity == D("0.0040")
    portfolio.apply(fill(entry, "0.004", "3000", "0.000004", "ETH"))

    start = portfolio.begin_exit(position.id, "STOP_LOSS", D(2000), TS)  # 0.0039 x 2000 < 10

    closed = start.position
    assert closed.status is PositionStatus.CLOSED and closed.exit_order is None and closed.dust == D("0.003996")
    assert closed.exit_reason == "STOP_LOSS" and closed.exited_quantity == 0
    assert closed.realized_pnl == -(D("0.003996") * 3000) - D("0.012")
    assert len(portfolio) == 0
    conserved(portfolio, -(D("0.003996") * 3000))


def test_a_sell_whose_fee_is_charged_in_the_coin_takes_the_fee_from_the_holding_too():
    portfolio = book()
    position = enter(portfolio, condition("BTC", 30000, 1200), 60000)
    portfolio.apply(fill(request(portfolio, position.id, OrderIntent.ENTRY), "0.02", "60000", "1.2", "USDT"))
    portfolio.begin_exit(position.id, "MANUAL", D(60000), TS)
    exit_order = request(portfolio, position.id, OrderIntent.EXIT)

    result = portfolio.apply(fill(exit_order, "0.01", "60000", "0.00001", "BTC", cumulative="0.01"))

    after = result.position
    assert result.change is Change.REDUCED and after is not None
    assert after.quantity == D("0.00999") and after.exit_order is not None and after.exit_order.filled == D("0.01")
    assert after.fees_paid == D("1.2") + D("0.6") and after.fees_coin == D("0.00001")


# --- a fee in another currency, and the quote fee as before ---------------------------------------

def test_a_fee_in_another_currency_leaves_the_quantity_whole_and_is_not_counted():
    portfolio = book()
    position = enter(portfolio, condition("BTC", 30000, 600), 60000)

    result = portfolio.apply(fill(request(portfolio, position.id, OrderIntent.ENTRY), "0.01", "60000", "0.0012",
                                  "BNB"))

    held = result.position
    assert held is not None and held.quantity == D("0.01") and held.fees_paid == 0 and held.fees_coin == 0
    assert result.fee_unvalued == "BNB" and portfolio.balance == START and portfolio.fees_paid == 0
    start = portfolio.begin_exit(position.id, "MANUAL", D(60000), TS)
    assert start.position.exit_order is not None and start.position.exit_order.quantity == D("0.01")


@pytest.mark.parametrize("currency", ["USDT", ""])
def test_a_quote_fee_is_counted_as_it_is_and_the_exit_covers_exactly_the_quantity(currency: str):
    portfolio = book()
    position = enter(portfolio, condition("BTC", 30000, 600), 60000)

    result = portfolio.apply(fill(request(portfolio, position.id, OrderIntent.ENTRY), "0.01", "60000", "0.300",
                                  currency))

    held = result.position
    assert held is not None and held.quantity == D("0.01") and str(held.fees_paid) == "0.300"
    assert held.fees_coin == 0 and result.fee_unvalued is None
    start = portfolio.begin_exit(position.id, "MANUAL", D(61000), TS)
    assert start.position.exit_order is not None and str(start.position.exit_order.quantity) == "0.01"
    closed = portfolio.apply(fill(request(portfolio, position.id, OrderIntent.EXIT), "0.01", "61000", "0.305",
                                  currency)).position
    assert closed is not None and closed.realized_pnl == D(10) - D("0.605") and closed.dust == 0


def test_a_position_net_of_fees_in_the_coin_reads_back_from_the_store_and_exits_the_same():
    import json

    from state.store import decode, encode

    portfolio = book()
    position = enter(portfolio, condition("ETH", 1500, 150), 3000)
    portfolio.apply(fill(request(portfolio, position.id, OrderIntent.ENTRY), "0.05", "3000", "0.00005", "ETH"))
    held = portfolio.get(position.id)
    assert held is not None

    again = decode(Position, json.loads(json.dumps(encode(held))))
    restarted = book()
    restarted.load(again)

    assert again == held and again.fees_coin == D("0.00005")
    start = restarted.begin_exit(position.id, "MANUAL", D(3100), TS)
    assert start.position.exit_order is not None and start.position.exit_order.quantity == D("0.0499")
