"""The report's money as sums of fills (``state/report.py``, pure): fees paid are the fills'
fees (a maker rebate lowers them), realized PnL the closed positions' fills, and where the
journal's rows disagree with their fills the report says so."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from state.report import (
    ORDER_COUNT_KEYS,
    FillRow,
    Ledger,
    average_price,
    closed_trade_results,
    fees_by_liquidity,
    fills_cash_flow,
    order_status_counts,
    report_money,
    scope_totals,
    slippage_reference,
)

D = Decimal


def fill(trade_id: str, side: str, quantity: Any, price: Any, fee: Any, liquidity: str = "TAKER", *,
         position_id: str = "p1", order_id: str | None = None, run_id: str = "r1") -> dict[str, Any]:
    return {"trade_id": trade_id, "client_order_id": order_id or f"{position_id}-{'E' if side == 'BUY' else 'X1'}",
            "position_id": position_id, "side": side, "quantity": str(quantity), "price": str(price),
            "fee": str(fee), "liquidity": liquidity, "run_id": run_id}


def trade(position_id: str, pnl: Any, fees: Any) -> dict[str, Any]:
    return {"position_id": position_id, "status": "CLOSED", "pnl": str(pnl), "fees": str(fees)}


# A LONG entry limit of 10 that filled 3 as maker (1 @ 99.5 with a 0.0199 rebate, 2 @ 99.4 for
# 0.0397) and was canceled; its exit sold the 3 in two taker fills (1 @ 101, 2 @ 101.2).
ENTRY = [fill("t1", "BUY", 1, "99.5", "-0.0199", "MAKER"), fill("t2", "BUY", 2, "99.4", "0.0397", "MAKER")]
EXIT = [fill("t3", "SELL", 1, "101", "0.0505"), fill("t4", "SELL", 2, "101.2", "0.1012")]
GROSS = D("101") + 2 * D("101.2") - D("99.5") - 2 * D("99.4")  # 5.10
FEES = D("-0.0199") + D("0.0397") + D("0.0505") + D("0.1012")  # 0.1715
ORDERS = [{"client_order_id": "p1-E", "status": "CANCELED", "fill_quantity": "3", "fee": "0.0198",
           "slippage_bps": "-3.3333"},
          {"client_order_id": "p1-X1", "status": "FILLED", "fill_quantity": "3", "fee": "0.1517",
           "slippage_bps": "1.0000"}]


def test_a_partially_filled_entry_with_a_maker_rebate_and_an_exit_in_two_parts_sum_to_the_cent():
    totals = scope_totals([trade("p1", GROSS - FEES, FEES)], ORDERS, [], "10000", fills=ENTRY + EXIT,
                          position_fills=ENTRY + EXIT)

    assert GROSS == D("5.10") and FEES == D("0.1715")
    assert totals["gross_pnl_usd"] == GROSS and totals["realized_pnl_usd"] == D("4.9285")
    assert totals["fees_paid_usd"] == FEES
    assert (totals["fees_maker_usd"], totals["fees_taker_usd"]) == (D("0.0198"), D("0.1517"))
    assert totals["fill_mismatches"] == []
    assert totals["slippage_avg_bps"] == D("-1.1666"), "(-3.3333 + 1) / 2, half-even: the canceled order's fills count too"
    assert totals["orders_by_status"] == {**dict.fromkeys(ORDER_COUNT_KEYS, 0), "filled": 1,
                                          "partially_filled_canceled": 1}


def test_fees_of_the_scope_include_an_open_position_s_entry_and_results_only_closed_trades():
    open_entry = [fill("t9", "BUY", 1, "50", "0.025", position_id="p2")]
    totals = scope_totals([trade("p1", GROSS - FEES, FEES)], ORDERS, [], "10000",
                          fills=ENTRY + EXIT + open_entry, position_fills=ENTRY + EXIT)

    assert totals["fees_paid_usd"] == FEES + D("0.025")
    assert totals["realized_pnl_usd"] == GROSS - FEES


def test_the_balance_identity_holds_with_fills_as_the_ledger_moves_with_them():
    totals = scope_totals([trade("p1", GROSS - FEES, FEES)], ORDERS, [], "10000", fills=ENTRY + EXIT,
                          position_fills=ENTRY + EXIT)
    start = Ledger.fresh("10000")
    end = Ledger(balance=D("10000") + GROSS - FEES, realized_pnl=GROSS - FEES, fees_paid=FEES)

    money = report_money(start=start, end=end, journal=totals, open_positions=[])

    assert money["mismatches"] == []


def test_a_trade_row_that_disagrees_with_its_fills_is_a_mismatch_of_the_report():
    totals = scope_totals([trade("p1", "4.93", FEES)], ORDERS, [], "10000", fills=ENTRY + EXIT,
                          position_fills=ENTRY + EXIT)
    end = Ledger(balance=D("10000") + GROSS - FEES, realized_pnl=GROSS - FEES, fees_paid=FEES)

    (mismatch,) = report_money(start=Ledger.fresh("10000"), end=end, journal=totals, open_positions=[])["mismatches"]

    assert mismatch == "journal: trade p1: its fills made 4.9285, its row says 4.93"
    assert totals["realized_pnl_usd"] == D("4.9285"), "the fills count, not the row"


def test_fills_that_did_not_buy_and_sell_the_same_quantity_count_the_row_and_say_so():
    realized, gross, (problem,) = closed_trade_results([trade("p1", "1", "0.1")], ENTRY + EXIT[:1])

    assert (realized, gross) == (D("1"), D("1.1"))
    assert problem == "trade p1: its fills bought 3 and sold 1; its row's pnl 1 is counted"


def test_a_trade_whose_fills_predate_the_fills_table_counts_its_row_and_an_order_without_fills_its_fee():
    legacy_order = {"client_order_id": "p0-E", "status": "FILLED", "fee": "0.25", "slippage_bps": "0"}
    totals = scope_totals([trade("p0", "7", "0.5")], [legacy_order], [], "10000", fills=[], position_fills=[])

    assert (totals["realized_pnl_usd"], totals["gross_pnl_usd"], totals["fill_mismatches"]) == (D(7), D("7.5"), [])
    assert (totals["fees_paid_usd"], totals["fees_taker_usd"]) == (D("0.25"), D("0.25")), "market orders: taker"


def test_a_short_position_s_cash_flow_is_its_gross_result():
    assert fills_cash_flow([fill("a", "SELL", 2, "100", 0), fill("b", "BUY", 2, "90", 0)]) == D("20")


def test_fees_by_liquidity_splits_and_refuses_an_unknown_liquidity():
    assert fees_by_liquidity(ENTRY + EXIT) == {"MAKER": D("0.0198"), "TAKER": D("0.1517")}
    with pytest.raises(ValueError, match="liquidity"):
        fees_by_liquidity([fill("x", "BUY", 1, 1, 0, "BOTH")])


def test_order_status_counts_tell_a_cancel_after_a_partial_fill_from_a_plain_cancel():
    rows = [{"status": s, "fill_quantity": q} for s, q in
            [("FILLED", "1"), ("CANCELED", "0.3"), ("CANCELED", None), ("CANCELED", "0"), ("EXPIRED", None),
             ("REJECTED", None), ("DENIED", None), ("ACCEPTED", None), ("PARTIALLY_FILLED", "1")]]
    assert order_status_counts(rows) == {"filled": 1, "partially_filled_canceled": 1, "canceled": 2, "expired": 1,
                                         "rejected": 1, "denied": 1, "open": 2}


def fill_row(quantity: Any, price: Any, mid: Any = None) -> FillRow:
    return FillRow(trade_id=f"t{price}{quantity}", client_order_id="o", position_id="p", coin="BTC", side="BUY",
                   intent="ENTRY", venue="paper", venue_order_id="v", price=D(str(price)), quantity=D(str(quantity)),
                   fee=D(0), fee_currency="USDT", liquidity="TAKER", cumulative_quantity=D(str(quantity)),
                   mid_price=None if mid is None else D(str(mid)), ts_event_ms=1, ts_ns=1, run_id="r")


def test_average_price_is_the_price_itself_for_one_price_and_weighted_otherwise():
    assert str(average_price([fill_row("0.0119", "42010.50")])) == "42010.50", "a whole fill's price, as written"
    assert average_price([fill_row(1, "99.5"), fill_row(3, "99.1")]) == D("99.2")
    with pytest.raises(ValueError, match="at least one"):
        average_price([])


def test_slippage_is_measured_against_the_mids_only_when_every_fill_carries_one():
    assert slippage_reference(D("100"), [fill_row(1, "100.1", mid="100.05"), fill_row(1, "100.2")]) == D("100")
    assert slippage_reference(D("100"), [fill_row(1, "100.1", mid="100.05"), fill_row(3, "100.2", mid="100.25")]) \
        == D("100.2")
