"""state/report.py: the journal's rows and the session report's numbers, pure (no I/O, no threads)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from state.messages import OrderRequest
from state.models import Position, PositionTrigger
from state.report import (
    RUN_TOTAL_KEYS,
    SCOPE_TOTAL_KEYS,
    DailyRow,
    JournalOrderStatus,
    Ledger,
    Mark,
    TradeStatus,
    average_slippage_bps,
    daily_rows,
    day_after_close,
    day_after_kill_switch,
    day_after_mark,
    fill_fees,
    first_day_of_window,
    cents,
    format_report,
    is_rejected_entry,
    max_drawdown_pct,
    new_day,
    open_position_rows,
    order_row,
    report_money,
    run_totals,
    scope_totals,
    slippage_bps,
    trade_row,
    trade_stats,
    utc_day,
)
from state.store import jsonable
from state.types import OrderIntent

D = Decimal
DAY1 = 1_709_294_400_000_000_000  # 2024-03-01 12:00:00 UTC
HOUR = 3_600_000_000_000
DAY = 24 * HOUR


def trade(pnl: Any, fees: Any = "1", status: str = "CLOSED") -> dict[str, Any]:
    return {"status": status, "pnl": None if pnl is None else str(pnl), "fees": str(fees)}


def pending(position_id: str = "p1") -> Position:
    return Position(
        id=position_id, coin="BTC", direction="LONG", size_usd=D("500"), condition_id="c-1",
        strategy_id="breakout", reasoning="range break", stop_loss_pct=D("0.02"), take_profit_pct=D("0.015"),
    )


def opened(position_id: str = "p1") -> Position:
    return pending(position_id).transition(
        PositionTrigger.ENTRY_FILLED, entry_price=D("100"), quantity=D("5"),
        entry_time=datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc), stop_loss_price=D("98"),
        take_profit_price=D("101.5"), fees_paid=D("0.25"), unrealized_pnl=D("-0.25"), current_price=D("100"),
    )


def closed(position_id: str = "p1", exit_price: Any = "101.5", fees: Any = "0.5") -> Position:
    position = opened(position_id)
    closing = position.transition(PositionTrigger.EXIT_SUBMITTED, pending_order_id=f"{position_id}-X1",
                                  exit_reason="TAKE_PROFIT", exit_attempts=1)
    gross = (D(str(exit_price)) - D("100")) * D("5")
    return closing.transition(
        PositionTrigger.EXIT_FILLED, exit_price=D(str(exit_price)),
        exit_time=datetime(2024, 3, 1, 13, 0, tzinfo=timezone.utc), realized_pnl=gross - D(str(fees)),
        fees_paid=D(str(fees)), unrealized_pnl=D(0), pending_order_id=None,
    )


def order(side: str = "BUY", ref: Any = "100", client_order_id: str = "p1-E") -> OrderRequest:
    return OrderRequest(client_order_id=client_order_id, position_id="p1", coin="BTC", side=side,
                        quantity=D("5"), intent=OrderIntent.ENTRY if side == "BUY" else OrderIntent.EXIT,
                        reference_price=D(str(ref)), reference_ts_ms=1)


# --- slippage ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("side", "reference", "fill", "expected"),
    [
        ("BUY", "100", "100.05", "5.0000"),  # paid more: worse, positive
        ("BUY", "100", "99.99", "-1.0000"),  # paid less: better, negative
        ("SELL", "100", "99.95", "5.0000"),  # sold lower: worse, positive
        ("SELL", "100", "100.01", "-1.0000"),
        ("BUY", "42000", "42000", "0.0000"),
        ("BUY", "3", "3.00001", "0.0333"),  # 0.03333... bps, 4 decimals
    ],
)
def test_slippage_bps_when_price_is_worse_for_the_trader_then_positive(side, reference, fill, expected):
    assert str(slippage_bps(side, reference, fill)) == expected


def test_slippage_bps_when_reference_is_not_positive_then_value_error():
    with pytest.raises(ValueError, match="reference"):
        slippage_bps("BUY", "0", "1")


# --- drawdown -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([], "0.0000"),
        (["100"], "0.0000"),
        (["100", "110", "120"], "0.0000"),  # rising
        (["100", "100", "100"], "0.0000"),  # flat
        (["100", "90"], "10.0000"),
        (["100", "120", "90", "130", "117"], "25.0000"),  # the worst fall, not the last one
        (["10000", "9999.5"], "0.0050"),
        (["-5", "-10"], "0.0000"),  # no percentage of a non-positive peak
    ],
)
def test_max_drawdown_pct_when_curve_given_then_largest_fall_from_running_peak(curve, expected):
    assert str(max_drawdown_pct(D(x) for x in curve)) == expected


# --- trade stats and run totals ----------------------------------------------------------------------

def test_trade_stats_when_pnl_is_exactly_zero_then_it_counts_as_a_loss():
    stats = trade_stats([trade("5.5", "0.5"), trade("0", "1"), trade("-2.25", "0.75")])

    assert (stats.total_trades, stats.wins, stats.losses) == (3, 1, 2)
    assert stats.realized_pnl_usd == D("3.25")
    assert stats.fees_paid_usd == D("2.25")


def test_trade_stats_when_rows_are_open_or_rejected_then_they_are_not_trades():
    stats = trade_stats([trade("4"), trade(None, "0", "REJECTED"), trade(None, "0.25", "OPEN")])

    assert (stats.total_trades, stats.wins, stats.losses, stats.fees_paid_usd) == (1, 1, 0, D("1"))


def test_run_totals_when_given_rows_then_exactly_the_report_keys_and_exact_sums():
    trades = [trade("10.10", "0.40"), trade("-3.05", "0.45"), trade(None, "0", "REJECTED"),
              trade(None, "0.25", "OPEN")]
    orders = [  # the two closed trades' entries and exits, the open position's entry, a denial
        {"status": "FILLED", "slippage_bps": "2.0000", "fee": "0.20"},
        {"status": "FILLED", "slippage_bps": "-1.0000", "fee": "0.20"},
        {"status": "FILLED", "slippage_bps": "0.5000", "fee": "0.22"},
        {"status": "FILLED", "slippage_bps": "0.5000", "fee": "0.23"},
        {"status": "FILLED", "slippage_bps": "0.0000", "fee": "0.25"},
        {"status": "DENIED", "slippage_bps": None, "fee": None},
    ]

    totals = run_totals(trades, orders, ["10050", "9900", "10007.05"], "10000")

    assert tuple(totals) == RUN_TOTAL_KEYS
    assert totals == {
        "total_trades": 2, "wins": 1, "losses": 1,
        "realized_pnl_usd": D("7.05"),
        "fees_paid_usd": D("1.10"),  # every fill's fee: the open position's entry too
        "slippage_avg_bps": D("0.4000"),
        "max_drawdown_pct": D("1.4925"),  # 10050 -> 9900
    }


def test_scope_totals_when_given_rows_then_the_closed_trades_gross_result_too():
    trades = [trade("10.10", "0.40"), trade("-3.05", "0.45"), trade(None, "0.25", "OPEN")]
    orders = [{"status": "FILLED", "slippage_bps": "1", "fee": "0.85"}, {"status": "FILLED", "fee": "0.25"}]

    totals = scope_totals(trades, orders, [], "10000")

    assert tuple(totals) == SCOPE_TOTAL_KEYS
    assert totals["gross_pnl_usd"] == D("7.90"), "7.05 net + 0.85 of the closed trades' fees"
    assert totals["fees_paid_usd"] == D("1.10")
    assert fill_fees([{"status": "REJECTED", "fee": "9"}, {"status": "FILLED", "fee": None}]) == D(0)


def test_run_totals_when_equity_falls_below_the_start_then_drawdown_counts_from_the_start():
    assert run_totals([], [], ["9500"], "10000")["max_drawdown_pct"] == D("5.0000")


def test_average_slippage_when_no_fill_then_zero():
    assert average_slippage_bps([{"status": "REJECTED", "slippage_bps": None}]) == D("0")


# --- the report's money: the ledger against the journal ----------------------------------------------

def marked(position_id: str = "p2", last: Any = "101") -> Position:
    """``opened`` (5 at 100, entry fee 0.25) marked at ``last``, as the Sniper marks it."""
    price = D(str(last))
    return replace(opened(position_id), current_price=price, unrealized_pnl=D("5") * (price - D("100")) - D("0.25"))


def test_open_position_rows_when_marked_then_coin_direction_qty_entry_last_price_and_unrealized():
    (row,) = open_position_rows([marked(last="101.03")])

    assert row == {"position_id": "p2", "coin": "BTC", "direction": "LONG", "status": "OPEN", "quantity": D("5"),
                   "entry_price": D("100"), "last_price": D("101.03"), "unrealized_pnl_usd": D("4.90"),
                   "entry_fee_usd": D("0.25")}


def test_report_money_when_a_position_is_still_open_then_its_entry_fee_is_paid_and_the_balance_adds_up():
    # One trade closed (gross 7.50, fees 0.25 + 0.25, net 7.00), one still open (entry fee 0.25).
    start = Ledger.fresh("10000")
    end = Ledger(balance=D("10006.75"), realized_pnl=D("7.00"), fees_paid=D("0.75"))
    journal = {"realized_pnl_usd": "7.00", "gross_pnl_usd": "7.50", "fees_paid_usd": "0.75"}

    money = report_money(start=start, end=end, journal=journal, open_positions=[marked()])

    assert money["fees_paid_usd"] == D("0.75"), "the open position's entry fee is a fee paid"
    assert money["start_balance"] - end.balance == money["fees_paid_usd"] - money["gross_pnl_usd"]
    assert (money["realized_pnl_usd"], money["unrealized_pnl_usd"]) == (D("7.00"), D("4.75"))
    assert [p["position_id"] for p in money["open_positions"]] == ["p2"]
    assert money["account"] == {"balance": D("10006.75"), "realized_pnl": D("7.00"), "fees_paid": D("0.75")}
    assert money["mismatches"] == []


def test_report_money_when_the_account_did_not_start_fresh_then_the_run_s_fees_are_the_difference():
    start = Ledger(balance=D("10006.75"), realized_pnl=D("7.00"), fees_paid=D("0.75"))
    end = Ledger(balance=D("10005.50"), realized_pnl=D("5.50"), fees_paid=D("1.00"))  # the open one closed
    journal = {"realized_pnl_usd": "-1.50", "gross_pnl_usd": "-1.00", "fees_paid_usd": "0.25"}

    money = report_money(start=start, end=end, journal=journal, open_positions=[])

    assert money["fees_paid_usd"] == D("0.25") and money["mismatches"] == []
    assert money["account"]["fees_paid"] == D("1.00"), "cumulative, as --status prints it"


def test_report_money_when_the_journal_disagrees_or_is_silent_then_each_mismatch_is_named():
    start, end = Ledger.fresh("10000"), Ledger(balance=D("10006.75"), realized_pnl=D("7"), fees_paid=D("0.75"))
    short = {"realized_pnl_usd": "7", "gross_pnl_usd": "7.50", "fees_paid_usd": "0.50"}

    (fees,) = report_money(start=start, end=end, journal=short, open_positions=[])["mismatches"]
    silent = report_money(start=start, end=end, journal={}, open_positions=[])

    assert fees == "fees: the journal's fills were charged 0.50, the account 0.75"
    assert silent["mismatches"] == [
        "journal: no realized_pnl_usd, gross_pnl_usd, fees_paid_usd (the journal did not answer)"]
    assert silent["realized_pnl_usd"] is None and silent["fees_paid_usd"] == D("0.75")


# --- trade and order rows ------------------------------------------------------------------------------

def test_trade_row_when_position_closes_then_net_pnl_fraction_fees_and_order_ids():
    open_row = trade_row(opened(), status=TradeStatus.OPEN, run_id="r1", ts_ns=DAY1, venue="paper")
    row = trade_row(closed(), status=TradeStatus.CLOSED, run_id="r2", ts_ns=DAY1 + HOUR, previous=open_row)

    assert row.status == "CLOSED"
    assert row.pnl == D("7.0")  # 5 x 1.5 - 0.5 fees
    assert row.pnl_pct == D("0.01400000")  # of the 500 entry notional, a fraction
    assert row.fees == D("0.5")
    assert (row.entry_order_id, row.exit_order_id) == ("p1-E", "p1-X1")
    assert row.venue == "paper", "kept from the open row"
    assert (row.opened_ts_ns, row.closed_ts_ns, row.run_id) == (DAY1, DAY1 + HOUR, "r2")
    assert row.exit_time == datetime(2024, 3, 1, 13, 0, tzinfo=timezone.utc)
    assert row.unrealized_pnl == 0 and row.equity_share == 0
    assert open_row.equity_share == D("0"), "an open position marked at entry adds nothing over cash"


def test_trade_row_when_entry_was_rejected_then_rejected_without_pnl():
    failed = pending().transition(PositionTrigger.ENTRY_FAILED, exit_reason="ENTRY_REJECTED: no liquidity")

    assert is_rejected_entry(failed)
    row = trade_row(failed, status=TradeStatus.REJECTED, run_id="r1", ts_ns=DAY1)
    assert (row.status, row.pnl, row.pnl_pct, row.entry_price, row.opened_ts_ns) == ("REJECTED", None, None, None, None)
    assert row.closed_ts_ns == DAY1
    assert not is_rejected_entry(closed())


def test_order_row_when_filled_then_slippage_and_kept_fields():
    requested = order_row(order("BUY", "100"), status=JournalOrderStatus.REQUESTED, run_id="r1",
                          ts_ns=1, correlation_id="c-1")
    filled = order_row(order("BUY", "100"), status=JournalOrderStatus.FILLED, run_id="r1", ts_ns=2,
                       correlation_id=None, previous=requested, fill_price=D("100.02"), fee=D("0.25"),
                       venue="paper", venue_order_id="v-1")

    assert requested.is_final is False and filled.is_final
    assert filled.slippage_bps == D("2.0000")
    assert (filled.correlation_id, filled.venue, filled.ts_ns) == ("c-1", "paper", 2)


# --- daily rows -------------------------------------------------------------------------------------------

def test_utc_day_when_engine_time_given_then_its_utc_calendar_day():
    assert utc_day(DAY1) == "2024-03-01"
    assert utc_day(DAY1 + 12 * HOUR - 1) == "2024-03-01"
    assert utc_day(DAY1 + 12 * HOUR) == "2024-03-02"


def test_first_day_of_window_when_one_day_then_the_latest_day_alone():
    assert first_day_of_window(DAY1, 1) == "2024-03-01"
    assert first_day_of_window(DAY1, 7) == "2024-02-24"
    assert first_day_of_window(DAY1, 0.5) == "2024-03-01"
    with pytest.raises(ValueError, match="days"):
        first_day_of_window(DAY1, 0)


def test_day_rows_when_marks_and_closes_then_equity_drawdown_and_counts():
    row = new_day("2024-03-01", None)
    row = day_after_mark(row, Mark(D("10000"), D("0")))
    row = day_after_mark(row, Mark(D("10200"), D("150")))
    row = day_after_close(row, D("-20"), D("1"))
    row = day_after_mark(row, Mark(D("9996"), D("-4")))
    row = day_after_close(row, D("0"), D("1"))
    row = day_after_kill_switch(row)

    assert row == DailyRow(
        date="2024-03-01", starting_equity=D("10000"), ending_equity=D("9996"), peak_equity=D("10200"),
        realized_pnl=D("-20"), unrealized_pnl=D("-4"), fees=D("2"), trades=2, wins=0, losses=2,
        max_drawdown_pct=D("2.0000"), kill_switch=True,
    )


def test_new_day_when_an_earlier_mark_exists_then_it_starts_from_that_equity():
    row = day_after_mark(new_day("2024-03-02", Mark(D("10100"), D("5"))), Mark(D("10000"), D("0")))

    assert (row.starting_equity, row.ending_equity) == (D("10100"), D("10000"))
    assert row.max_drawdown_pct == D("0.9901"), "the fall from the day's opening equity counts"


def test_daily_rows_when_built_from_scratch_then_days_carry_the_last_mark():
    rows = daily_rows(
        marks=[(DAY1, "10000", "0"), (DAY1 + HOUR, "10050", "50"), (DAY1 + 2 * DAY, "10080", "0")],
        closes=[(DAY1 + 2 * HOUR, "30", "1"), (DAY1 + DAY, "-5", "1")],
        kill_switches=[DAY1 + DAY],
    )

    assert [r.date for r in rows] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert (rows[0].starting_equity, rows[0].ending_equity, rows[0].trades, rows[0].wins) == (
        D("10000"), D("10050"), 1, 1)
    assert (rows[1].starting_equity, rows[1].ending_equity, rows[1].unrealized_pnl) == (D("10050"), D("10050"), D("50"))
    assert (rows[1].losses, rows[1].kill_switch) == (1, True)
    assert rows[2].starting_equity == D("10050") and rows[2].ending_equity == D("10080")
    assert not rows[2].kill_switch


def test_daily_rows_when_a_trade_closes_before_any_mark_then_the_first_mark_starts_the_day():
    (row,) = daily_rows(marks=[(DAY1 + HOUR, "10000", "0")], closes=[(DAY1, "1", "0")])

    assert row.starting_equity == D("10000") and row.trades == 1


# --- the report as text -------------------------------------------------------------------------------


def _report(**overrides: Any) -> dict[str, Any]:
    report = {
        "run_id": "20261121T100000Z-abc123", "source": "replay", "simulated": False, "duration_s": 12.5,
        "ticks": 137988, "end_reason": "end of data", "total_trades": 3, "wins": 1, "losses": 2,
        "realized_pnl_usd": "-0.70123", "fees_paid_usd": "0.3", "slippage_avg_bps": "5.0001",
        "max_drawdown_pct": "0.0071", "start_equity": "10000", "end_equity": "9999.29877",
        "open_positions_at_end": 0, "on_stop": "keep", "restarts": 0, "trading_state": "ACTIVE",
        "data_dir": "/tmp/var",
    }
    report.update(overrides)
    return report


def test_format_report_when_given_a_summary_then_its_numbers_in_cents_and_where_it_was_written():
    text = format_report(_report())
    assert text.splitlines() == [
        "Session 20261121T100000Z-abc123 (replay): 12.5s, 137988 ticks, ended by end of data",
        "  trades 3 (wins 1, losses 2) | realized -0.70 USD | fees 0.30 USD | slippage 5.0001 bps | "
        "max drawdown 0.0071 %",
        "  equity 10000.00 -> 9999.30 | open positions 0 (keep) | restarts 0 | trading ACTIVE",
        "  report: /tmp/var/runs/20261121T100000Z-abc123/summary.json",
    ]


def test_format_report_when_simulated_and_recorded_then_both_said():
    text = format_report(_report(source="sim", simulated=True, realized_pnl_usd=None,
                                 recorded={"BTC": "/tmp/rec.BTC.csv"}))
    assert text.startswith("Session 20261121T100000Z-abc123 (sim SIMULATED)")
    assert "realized - USD" in text
    assert text.endswith("  recorded: BTC /tmp/rec.BTC.csv")


def test_format_report_when_empty_then_says_there_is_none():
    assert format_report({}) == "no session report (the engine stopped before it could make one)"


@pytest.mark.parametrize(("value", "text"), [
    ("0.74939", "0.75"), ("-0.70123", "-0.70"), ("0.125", "0.12"), ("0.135", "0.14"), ("-0.004", "0.00"),
    ("10000", "10000.00"), (None, "-"),
])
def test_cents_when_money_given_then_rounded_half_even_to_the_cent_and_never_minus_zero(value, text):
    assert cents(value) == text


def test_format_report_when_positions_are_open_then_each_line_to_the_cent_and_the_balance_adds_up():
    text = format_report(_report(
        scope="replay", runs=["20261121T090000Z-aaaaaa", "20261121T100000Z-abc123"],
        fees_paid_usd="0.74939", gross_pnl_usd="-1.8006", start_balance="10000", balance="9997.44999",
        open_positions_at_end=1,
        open_positions=[{"position_id": "p9", "coin": "BTC", "direction": "SHORT", "status": "OPEN",
                         "quantity": "0.01", "entry_price": "9650.12", "last_price": "9640.5",
                         "unrealized_pnl_usd": "0.04793994", "entry_fee_usd": "0.0482506"}],
        mismatches=["fees: the journal's fills were charged 0.69943, the account 0.74939"]))

    lines = text.splitlines()
    assert lines[1] == ("  whole replay (2 runs: 20261121T090000Z-aaaaaa, 20261121T100000Z-abc123): ticks, trades, "
                        "PnL, fees, slippage and drawdown cover all of it")
    assert "| fees 0.75 USD |" in lines[2]
    assert lines[4] == "  balance 10000.00 -> 9997.45 (closed trades' gross -1.80, fees -0.75)"
    assert lines[5] == ("  open BTC SHORT 0.01 @ 9650.12, last 9640.5, unrealized +0.05 USD "
                        "(after its 0.05 entry fee)")
    assert lines[6] == ("  WARNING the journal and the account disagree: fees: the journal's fills were charged "
                        "0.69943, the account 0.74939")


def test_format_report_when_a_run_resumed_an_account_then_the_cumulative_account_is_said_apart():
    text = format_report(_report(source="sim", scope="run", runs=["20261121T100000Z-abc123"], resumed_account=True,
                                 account={"balance": "10012.346", "realized_pnl": "13.5", "fees_paid": "1.048"}))

    assert ("  account since the data folder began (as --status): balance 10012.35 | realized 13.50 USD | "
            "fees 1.05 USD; the figures above are this run's") in text.splitlines()
    assert "whole replay" not in text


def test_format_report_when_an_entry_is_still_in_flight_then_it_is_listed_without_a_price():
    rows = open_position_rows([pending("p7")])
    text = format_report(_report(open_positions=jsonable(rows)))

    assert rows[0]["entry_price"] is None and rows[0]["unrealized_pnl_usd"] == D(0)
    assert "  open BTC LONG 0 (PENDING: its entry is in flight)" in text.splitlines()
