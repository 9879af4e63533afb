"""The session report adds up: its fees are every fee charged (entries of positions still open
included) and equal what the balance lost to them, it agrees with ``--status``, it lists the
positions still open with their unrealized PnL, and a replay interrupted and resumed ends with a
report of the whole replay equal to an uninterrupted one's."""

from __future__ import annotations

import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.journal_store import JournalStore
from state.report import format_report
from state.store import Store
from tests.conftest import WAIT, condition
from tests.integration.test_replay_session import ROOT, _slice, run_cli, status_of, summary_of, write_config

D = Decimal
INITIAL = D("10000")
# The report's totals that must be the same for a replay, however many runs it took.
REPLAY_TOTALS = ("ticks", "total_trades", "wins", "losses", "realized_pnl_usd", "gross_pnl_usd", "fees_paid_usd",
                 "slippage_avg_bps", "max_drawdown_pct", "start_balance", "balance", "start_equity", "end_equity",
                 "open_positions_at_end", "open_positions", "unrealized_pnl_usd", "bad_rows")


def journal_of(data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    journal = JournalStore(data_dir / "journal.db")
    try:
        return journal.trades(), journal.orders()
    finally:
        journal.close()


def durable_status(data_dir: Path) -> dict[str, Any]:
    """What ``run.py --status`` prints for this folder."""
    store = Store(data_dir / "engine.db")
    try:
        return store.durable_status(INITIAL)
    finally:
        store.close()


def assert_report_adds_up(report: dict[str, Any], trades: list[dict[str, Any]], orders: list[dict[str, Any]],
                          runs: set[str]) -> None:
    """The engine's ledger: every fill's fee leaves the balance when charged and each exit adds
    its trade's gross result (net pnl + its fees), so over the report's scope
    ``start_balance - balance == fees_paid - gross of the trades closed``, to the last digit."""
    closed = [t for t in trades if t["status"] == "CLOSED" and t["run_id"] in runs]
    fills = [o for o in orders if o["status"] == "FILLED" and o["run_id"] in runs]
    fees, gross = D(report["fees_paid_usd"]), sum((D(t["pnl"]) + D(t["fees"]) for t in closed), D(0))
    assert fees == sum((D(o["fee"]) for o in fills), D(0)), "every fill's fee"
    assert D(report["gross_pnl_usd"]) == gross
    assert D(report["realized_pnl_usd"]) == sum((D(t["pnl"]) for t in closed), D(0))
    assert D(report["start_balance"]) - D(report["balance"]) == fees - gross
    assert report["mismatches"] == []


def open_and_close(engine, ts, coin: str, trigger: str, fill: str, exit_price: str | None) -> None:
    engine.sniper.add_condition(condition(coin=coin, trigger=trigger, size=500))
    engine.push_tick(coin, fill, ts())
    if exit_price is not None:
        engine.push_tick(coin, exit_price, ts())
    assert engine.wait_idle(WAIT)


def test_the_fees_include_the_entry_of_a_position_still_open_and_the_report_agrees_with_status(make_engine, ts):
    engine = make_engine(session={"on_stop": "keep"})
    data_dir = engine.data_dir
    open_and_close(engine, ts, "BTC", "42000", "42010", "42700")  # entry, then the take-profit
    open_and_close(engine, ts, "ETH", "3000", "3001.5", None)  # entry only: still open at the end
    engine.push_tick("ETH", "3004.25", ts())
    assert engine.wait_idle(WAIT)

    report = engine.shutdown()
    trades, orders = journal_of(data_dir)
    status = durable_status(data_dir)

    (btc,) = [t for t in trades if t["status"] == "CLOSED"]
    (eth,) = [t for t in trades if t["status"] == "OPEN"]
    assert D(report["fees_paid_usd"]) == D(btc["fees"]) + D(eth["fees"]) > D(btc["fees"]), "the open entry's fee"
    assert_report_adds_up(report, trades, orders, {engine.run_id})
    assert (report["fees_paid_usd"], report["balance"]) == (status["fees_paid"], status["balance"])
    assert D(report["realized_pnl_usd"]) == D(status["realized_pnl"])
    assert report["scope"] == "run" and report["runs"] == [engine.run_id] and report["resumed_account"] is False
    assert report["account"] == {"balance": status["balance"], "realized_pnl": status["realized_pnl"],
                                 "fees_paid": status["fees_paid"]}

    (position,) = report["open_positions"]
    quantity, entry = D(position["quantity"]), D(position["entry_price"])
    assert (position["coin"], position["direction"], position["status"]) == ("ETH", "LONG", "OPEN")
    assert (entry, position["last_price"]) == (D("3001.5"), "3004.25")
    assert D(position["unrealized_pnl_usd"]) == quantity * (D("3004.25") - entry) - D(position["entry_fee_usd"])
    assert D(position["entry_fee_usd"]) == D(eth["fees"]) == quantity * entry * D("0.0005")
    assert D(report["end_equity"]) - D(report["start_equity"]) == \
        D(report["realized_pnl_usd"]) + D(report["unrealized_pnl_usd"])

    text = format_report(report)
    cents = D(report["fees_paid_usd"]).quantize(D("0.01"))
    assert f"| fees {cents} USD |" in text
    unrealized = D(position["unrealized_pnl_usd"]).quantize(D("0.01"))
    assert (f"  open ETH LONG {position['quantity']} @ {position['entry_price']}, last 3004.25, "
            f"unrealized +{unrealized} USD") in text
    assert "WARNING" not in text


def test_a_run_on_a_resumed_folder_reports_its_own_fees_and_the_cumulative_account_apart(make_engine, tmp_path, ts):
    data_dir = tmp_path / "folder"
    first = make_engine(data_dir=data_dir)
    open_and_close(first, ts, "ETH", "3000", "3001.5", None)
    first.shutdown()
    first_fees = D(durable_status(data_dir)["fees_paid"])
    assert first_fees > 0

    second = make_engine(data_dir=data_dir)
    (held,) = second.sniper.snapshot().positions
    second.push_tick("ETH", "2900", ts())  # under the stop: the position opened by the first run closes
    assert second.wait_idle(WAIT)
    report = second.shutdown()
    trades, orders = journal_of(data_dir)
    status = durable_status(data_dir)

    (closed,) = [t for t in trades if t["status"] == "CLOSED"]
    assert closed["position_id"] == held.id and closed["run_id"] == second.run_id
    assert D(report["fees_paid_usd"]) == D(closed["fees"]) - first_fees, "this run charged the exit fee only"
    assert_report_adds_up(report, trades, orders, {second.run_id})
    assert report["resumed_account"] is True and report["start_balance"] != str(INITIAL)
    assert report["account"]["fees_paid"] == status["fees_paid"] == str(D(closed["fees"]))
    assert "  account since the data folder began (as --status)" in format_report(report)


def _run_until_a_trade_closed_and_a_position_open_then_sigint(command: list[str]) -> str:
    """Start ``command``, read its status lines until one shows a position open after a trade
    closed (realized PnL no longer zero), send SIGINT (Ctrl-C); return what it printed."""
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # a status line every 0.2 s; the loop ends when the process does
            seen.append(line)
            if " | open 1 | " in line and " realized 0.00 " not in line and " realized -0.00 " not in line:
                proc.send_signal(signal.SIGINT)
                break
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, "".join(seen[-5:])
    return "".join(seen) + out


@pytest.mark.slow
def test_a_replay_interrupted_by_ctrl_c_then_resumed_reports_the_whole_replay_as_an_uninterrupted_one(
        shared_data, tmp_path):
    trades = _slice(shared_data, tmp_path, 12_000)  # about two hours of trading
    reference_config = write_config(tmp_path, [("BTC", trades)], speed="max", bar_seconds=60, lookback=5)
    reference_dir = tmp_path / "reference"
    result = run_cli("--config", str(reference_config), "--data-dir", str(reference_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    reference = summary_of(reference_dir)
    assert reference["total_trades"] >= 3 and reference["end_reason"] == "end of data"
    assert_report_adds_up(reference, *journal_of(reference_dir), set(reference["runs"]))

    paced = tmp_path / "paced"
    paced.mkdir()
    config = write_config(paced, [("BTC", trades)], speed="600x", bar_seconds=60, lookback=5)
    data_dir = tmp_path / "interrupted"
    command = [sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir", str(data_dir),
               "--status-every", "0.2"]
    printed = _run_until_a_trade_closed_and_a_position_open_then_sigint(command)
    first = summary_of(data_dir)
    assert first["end_reason"] == "SIGINT" and first["scope"] == "replay"
    assert 0 < first["ticks"] < reference["ticks"], "stopped in the middle"
    assert first["open_positions_at_end"] == 1 and first["total_trades"] >= 1
    assert f"Session {first['run_id']}" in printed
    assert_report_adds_up(first, *journal_of(data_dir), {first["run_id"]})  # a graceful stop loses nothing
    assert first["fees_paid_usd"] == status_of(config, data_dir)["fees_paid"]

    result = subprocess.run(command, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    final = summary_of(data_dir)
    assert final["end_reason"] == "end of data"
    assert final["runs"] == [first["run_id"], final["run_id"]], "the report says which runs it covers"
    assert final["ticks_this_run"] < final["ticks"], "this run alone fed only the rest"
    assert {k: final[k] for k in REPLAY_TOTALS} == {k: reference[k] for k in REPLAY_TOTALS}
    assert_report_adds_up(final, *journal_of(data_dir), set(final["runs"]))
    status = status_of(config, data_dir)
    assert (final["fees_paid_usd"], final["balance"]) == (status["fees_paid"], status["balance"])
    assert f"whole replay (2 runs: {first['run_id']}, {final['run_id']})" in result.stdout
