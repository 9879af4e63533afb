"""The report's sums of fills with spot fees (``state/report.py``, ``state/journal_store.py``; pure
and a journal file, no threads): a fee charged in the coin counts at its fill's price and the
trade's fills agree with its row net of it (its dust left behind too); a fee in another currency
(BNB) is listed by currency and never added to the quote fees."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.journal_store import JournalBatch, JournalStore
from state.report import FillRow, _fills_lines, closed_trade_results, fills_cash_flow, fills_fees, scope_totals
from tests.unit.test_journal_store import DAY1, HOUR, order, trade

D = Decimal


def row(trade_id: str, side: str, quantity: Any, price: Any, fee: Any, currency: str, *, coin: str = "ETH",
        position_id: str = "p1", liquidity: str = "TAKER") -> dict[str, Any]:
    return {"trade_id": trade_id, "client_order_id": f"{position_id}-{'E' if side == 'BUY' else 'X1'}",
            "position_id": position_id, "coin": coin, "side": side, "quantity": str(quantity), "price": str(price),
            "fee": str(fee), "fee_currency": currency, "liquidity": liquidity, "run_id": "r1"}


def closed(position_id: str, pnl: Any, fees: Any) -> dict[str, Any]:
    return {"position_id": position_id, "status": "CLOSED", "pnl": str(pnl), "fees": str(fees)}


# A spot long of ETH: bought 0.05 @ 3000 paying 0.00005 ETH (worth 0.15), so it held 0.04995; its
# exit sold the 0.0499 the quantity step allows @ 3100 for 0.15469 USDT; 0.00005 ETH is dust,
# written off at its cost (0.15), exactly as state/portfolio.py counts it.
SPOT = [row("t1", "BUY", "0.05", "3000", "0.00005", "ETH"), row("t2", "SELL", "0.0499", "3100", "0.15469", "USDT")]
SPOT_GROSS = D("0.0499") * 100 - D("0.00005") * 3000
SPOT_FEES = D("0.15") + D("0.15469")


def test_a_fee_in_the_coin_counts_at_its_price_and_the_trade_agrees_with_its_row_dust_included():
    realized, gross, problems = closed_trade_results([closed("p1", SPOT_GROSS - SPOT_FEES, SPOT_FEES)], SPOT)

    assert fills_fees(SPOT) == SPOT_FEES and fills_cash_flow(SPOT) == SPOT_GROSS
    assert (realized, gross, problems) == (SPOT_GROSS - SPOT_FEES, SPOT_GROSS, [])
    totals = scope_totals([closed("p1", SPOT_GROSS - SPOT_FEES, SPOT_FEES)], [], [], "10000", fills=SPOT,
                          position_fills=SPOT)
    assert totals["fees_paid_usd"] == SPOT_FEES and totals["fees_taker_usd"] == SPOT_FEES
    assert totals["dust"] == {"ETH": D("0.00005")} and totals["fees_other"] == {}
    assert totals["fill_mismatches"] == []


def test_a_trade_that_sold_less_than_it_bought_without_a_fee_in_the_coin_is_still_a_mismatch():
    fills = [row("t1", "BUY", "0.05", "3000", "0.15", "USDT"), row("t2", "SELL", "0.0499", "3100", "0.15", "USDT")]

    _, _, (problem,) = closed_trade_results([closed("p1", "4.69", "0.3")], fills)

    assert "bought 0.05 and sold 0.0499" in problem


def test_a_fee_in_another_currency_is_listed_by_currency_and_not_counted():
    fills = [row("t1", "BUY", "0.01", "60000", "0.0012", "BNB", coin="BTC"),
             row("t2", "SELL", "0.01", "61000", "0.0011", "BNB", coin="BTC"),
             row("t3", "BUY", "1", "3000", "1.5", "USDT", position_id="p2")]

    totals = scope_totals([closed("p1", "10", "0")], [], [], "10000", fills=fills, position_fills=fills[:2])

    assert totals["fees_paid_usd"] == D("1.5") and totals["fees_other"] == {"BNB": D("0.0023")}
    assert totals["realized_pnl_usd"] == D(10) and totals["fill_mismatches"] == [] and totals["dust"] == {}


def test_paper_fills_in_quote_sum_as_before():
    fills = [row("t1", "BUY", "0.01", "60000", "0.30", "USDT", coin="BTC"),
             row("t2", "SELL", "0.01", "61000", "0.305", "USDT", coin="BTC")]

    totals = scope_totals([closed("p1", "9.395", "0.605")], [], [], "10000", fills=fills, position_fills=fills)

    assert str(totals["fees_paid_usd"]) == "0.605" and str(totals["realized_pnl_usd"]) == "9.395"
    assert totals["fees_other"] == {} and totals["dust"] == {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JournalStore]:
    opened = JournalStore(tmp_path / "journal.db")
    yield opened
    opened.close()


def fill_row(trade_id: str, client_order_id: str, side: str, quantity: str, price: str, fee: str, currency: str,
             ts_ns: int = DAY1) -> FillRow:
    return FillRow(trade_id=trade_id, client_order_id=client_order_id, position_id=client_order_id.split("-")[0],
                   coin="ETH", side=side,
                   intent="ENTRY" if side == "BUY" else "EXIT", venue="binance", venue_order_id=f"v-{trade_id}",
                   price=D(price), quantity=D(quantity), fee=D(fee), fee_currency=currency, liquidity="TAKER",
                   cumulative_quantity=D(quantity), ts_event_ms=ts_ns // 1_000_000, ts_ns=ts_ns, run_id="r1")


def test_the_journal_totals_value_fees_in_the_coin_and_list_the_others(store: JournalStore):
    store.write(JournalBatch(
        trades=(trade("p1", pnl=str(SPOT_GROSS - SPOT_FEES), fees=str(SPOT_FEES), run_id="r1"),),
        orders=(order("p1-E"), order("p1-X1"), order("p2-E")),
        fills=(fill_row("t1", "p1-E", "BUY", "0.05", "3000", "0.00005", "ETH"),
               fill_row("t2", "p1-X1", "SELL", "0.0499", "3100", "0.15469", "USDT", ts_ns=DAY1 + HOUR),
               fill_row("t3", "p2-E", "BUY", "0.1", "3100", "0.0004", "BNB", ts_ns=DAY1 + HOUR)),  # p2 still open
    ))

    totals = store.totals("10000")

    assert D(totals["fees_paid_usd"]) == SPOT_FEES and D(totals["realized_pnl_usd"]) == SPOT_GROSS - SPOT_FEES
    assert totals["fees_other"] == {"BNB": "0.0004"} and totals["dust"] == {"ETH": "0.00005"}
    assert totals["fill_mismatches"] == []


def test_the_printed_report_names_unvalued_fees_and_dust_only_when_there_are_some():
    base = {"fees_maker_usd": "0", "fees_taker_usd": "0.30", "orders_by_status": {"filled": 2}}

    assert _fills_lines({**base, "fees_other": {}, "dust": {}}) == _fills_lines(base)
    assert len(_fills_lines(base)) == 1
    text = "\n".join(_fills_lines({**base, "fees_other": {"BNB": "0.0023"}, "dust": {"ETH": "0.00005"}}))
    assert "fees not counted (another currency): 0.0023 BNB" in text and "dust left in the account: 0.00005 ETH" in text
