"""state/session_report.py: the session report assembled from plain answers (no engine, no
store): scope, ticks, money checked against the journal's fills, the maker/taker split and the
orders by status, and the durable-state fallback after a halt."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from state.models import SniperSnapshot
from state.report import ORDER_COUNT_KEYS, Ledger, format_report
from state.session_report import ReportContext, report_scope, report_ticks, session_report, with_durable_state

D = Decimal
START = datetime(2026, 12, 5, 10, tzinfo=timezone.utc)
CONTEXT = ReportContext(run_id="r2", source="sim", simulated=True, data_dir="/tmp/d", on_stop="keep",
                        initial_balance=D("10000"), started_at=START, ended_at=START + timedelta(seconds=90.5))
TOTALS = {"runs": ["r2"], "total_trades": 1, "wins": 1, "losses": 0, "realized_pnl_usd": "4.9285",
          "gross_pnl_usd": "5.10", "fees_paid_usd": "0.1715", "fees_maker_usd": "0.0198", "fees_taker_usd": "0.1517",
          "orders_by_status": {**dict.fromkeys(ORDER_COUNT_KEYS, 0), "filled": 1, "partially_filled_canceled": 1},
          "slippage_avg_bps": "-1.1666", "max_drawdown_pct": "0.0000", "fill_mismatches": []}


def report(**overrides):
    values = dict(exit_code=0, reason="stop requested", scope="run", start_ledger=Ledger.fresh("10000"),
                  start_equity=D("10000"), totals=TOTALS,
                  snapshot=SniperSnapshot(conditions=(), positions=(), balance=D("10004.9285"),
                                          realized_pnl=D("4.9285"), fees_paid=D("0.1715")),
                  feed={"ticks": 40, "bars": 2, "source": {"reconnects": 1, "bad_frames": {"total": 2}}}, ticks=40,
                  restarts={"sniper": 1, "feed": 0}, trading_state="ACTIVE", rest={"calls": 0}, market_rules_from="config",
                  market_rules={}, recorded={})
    values.update(overrides)
    return session_report(CONTEXT, **values)


def test_a_run_s_report_has_the_fills_fee_split_and_order_counts_and_adds_up():
    made = report()

    assert (made["fees_paid_usd"], made["fees_maker_usd"], made["fees_taker_usd"]) == ("0.1715", "0.0198", "0.1517")
    assert made["orders_by_status"]["partially_filled_canceled"] == 1
    assert made["mismatches"] == [] and made["duration_s"] == 90.5
    assert (made["restarts"], made["restarts_by_actor"], made["reconnects"], made["bad_frames"]) == (1, {"sniper": 1},
                                                                                                     1, 2)
    assert made["resumed_account"] is False and made["end_equity"] == "10004.9285"
    assert ("  fees maker 0.02 USD, taker 0.15 USD | orders filled 1, partially filled then canceled 1, canceled 0, "
            "expired 0, rejected 0") in format_report(made).splitlines()


def test_a_journal_that_disagrees_with_the_account_or_with_itself_is_in_the_mismatches():
    made = report(totals={**TOTALS, "fees_paid_usd": "0.15", "fill_mismatches": ["trade p1: its fills made 1, its "
                                                                                 "row says 2"]})

    assert made["mismatches"] == ["journal: trade p1: its fills made 1, its row says 2",
                                  "fees: the journal's fills were charged 0.15, the account 0.1715"]


def test_without_the_sniper_the_money_is_the_journal_s_and_the_report_says_so():
    made = report(snapshot=None, totals={})

    assert made["mismatches"] == ["account: the Sniper did not answer; money from the journal alone"]
    assert made["open_positions_at_end"] is None and made["runs"] == ["r2"]
    assert made["orders_by_status"] == dict.fromkeys(ORDER_COUNT_KEYS, 0)


def test_scope_and_ticks_of_a_replay_cover_the_whole_replay():
    resumed = Ledger(balance=D("9990"), realized_pnl=D("-10"), fees_paid=D("1"))

    assert report_scope("replay", "10000", resumed, D("9990")) == ("replay", Ledger.fresh("10000"), "10000")
    assert report_scope("sim", "10000", resumed, D("9990")) == ("run", resumed, D("9990"))
    assert report_ticks("replay", 10, {"skipped": 90, "ticks": 10}) == 100
    assert report_ticks("replay", 10, {}) == 10 and report_ticks("sim", 10, {"skipped": 5, "ticks": 1}) == 10


def test_with_durable_state_takes_what_the_actors_could_not_give_from_the_stores():
    durable = {"balance": D("9999"), "equity": D("9999.5"), "open_positions": 1, "trading_state": "HALTED",
               "closed_positions_this_session": 2, "realized_pnl_this_session": D("-1"),
               "fees_paid_this_session": D("0.5")}
    from_engine_store = with_durable_state(report(snapshot=None, totals={}), durable, ticks_seen=77)
    from_journal = with_durable_state(report(snapshot=None, totals={}), {**durable, "journal_totals": TOTALS}, 3)

    assert (from_engine_store["ticks"], from_engine_store["total_trades"], from_engine_store["wins"]) == (77, 2, None)
    assert (from_engine_store["balance"], from_engine_store["trading_state"]) == ("9999", "HALTED")
    assert "journal unreadable" in from_engine_store["built_from"]
    assert from_journal["ticks"] == 40 and from_journal["fees_maker_usd"] == "0.0198"
    assert from_journal["durable"]["balance"] == "9999" and "journal_totals" not in from_journal["durable"]


def test_a_paper_report_says_paper_and_a_live_one_names_its_venue_and_account_kind():
    paper = report()
    assert (paper["mode"], paper["venue"]) == ("paper", None)
    assert "TESTNET" not in format_report(paper) and "LIVE" not in format_report(paper)

    status = {"name": "binanceusdm", "live": True, "exchange": "binanceusdm", "market": "usdm", "testnet": False,
              "stream": "down", "banned_until_ms": 1_700_000_000_000, "halted": "keys refused", "requests": 12}
    live = report(mode="live", venue={"status": status, "startup": {"position_mode": "one-way"}})
    text = format_report(live)
    assert live["mode"] == "live" and live["venue"]["status"]["requests"] == 12
    assert "LIVE (REAL MONEY) on binanceusdm): " in text.splitlines()[0]
    assert ("  venue: stream down | requests 12 | banned until 1700000000000 (epoch ms) | halted: keys refused | "
            "position mode one-way") in text
