"""How a session ends: keep or flatten on a graceful stop, the kill switch, the report."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from run import EXIT_KILL_SWITCH
from state.journal_store import JournalStore
from state.store import Store
from tests.conftest import WAIT, condition

ROOT = Path(__file__).resolve().parents[2]
REPORT_KEYS = {"run_id", "started_at", "ended_at", "duration_s", "ticks", "total_trades", "wins", "losses",
               "realized_pnl_usd", "fees_paid_usd", "slippage_avg_bps", "max_drawdown_pct",
               "open_positions_at_end", "restarts"}


def open_a_position(engine, ts) -> None:
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=500))
    engine.push_tick("BTC", "41990", ts())
    engine.push_tick("BTC", "42010", ts())
    engine.push_tick("BTC", "42050", ts())
    assert engine.wait_idle(WAIT)
    assert [p.status.value for p in engine.sniper.snapshot().positions] == ["OPEN"]


def test_on_stop_keep_leaves_the_position_open_and_the_report_says_so(make_engine, ts):
    engine = make_engine(session={"on_stop": "keep"})
    open_a_position(engine, ts)
    report = engine.shutdown()
    assert REPORT_KEYS <= set(report)
    assert report["open_positions_at_end"] == 1 and report["total_trades"] == 0
    saved = json.loads((engine.data_dir / "runs" / engine.run_id / "summary.json").read_text())
    assert saved == report
    store = Store(engine.data_dir / "engine.db")
    try:
        assert [p.status.value for p in store.load_positions()] == ["OPEN"]
    finally:
        store.close()


def test_on_stop_flatten_closes_the_position_at_the_last_price_and_reports_the_trade(make_engine, ts):
    engine = make_engine(session={"on_stop": "flatten"})
    open_a_position(engine, ts)
    report = engine.shutdown()
    assert report["open_positions_at_end"] == 0
    assert report["total_trades"] == 1 and report["wins"] + report["losses"] == 1
    journal = JournalStore(engine.data_dir / "journal.db")
    try:
        trades = journal.trades(status="CLOSED")
    finally:
        journal.close()
    assert [t["exit_reason"] for t in trades] == ["SESSION_END"]
    assert Decimal(report["realized_pnl_usd"]) == Decimal(trades[0]["pnl"])
    assert Decimal(report["fees_paid_usd"]) == Decimal(trades[0]["fees"])


def test_the_kill_switch_halts_flattens_and_ends_the_session_with_exit_code_99(tmp_path):
    trades = tmp_path / "falling.csv"
    rows = ["ts_ms,price,qty"]
    start = 1_582_329_600_000
    prices = [100 + (i % 3) * 0.01 for i in range(40)] + [100.5 + i * 0.05 for i in range(20)] + \
             [101 - i * 0.5 for i in range(40)]
    rows += [f"{start + i * 1000},{price:.2f},1" for i, price in enumerate(prices)]
    trades.write_text("\n".join(rows) + "\n")
    config = tmp_path / "kill.toml"
    config.write_text(
        '[feed]\nsource = "replay"\nsymbols = ["BTC"]\n'
        f'files = [{{ coin = "BTC", path = "{trades}" }}]\nbar_seconds = 5\n'
        '[strategist]\nstrategies = ["breakout"]\n'
        '[strategist.breakout]\nlookback_bars = 3\nstop_loss_pct = 0.5\ntake_profit_pct = 0.5\n'
        'position_size_usd = 900\n'
        '[risk]\nmax_daily_loss_pct = 0.001\nmax_stop_loss_pct = 0.9\n'
    )
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir",
                             str(tmp_path / "d")], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == EXIT_KILL_SWITCH, result.stderr[-3000:]
    assert "KILL_SWITCH: daily loss" in result.stderr
    runs = sorted((tmp_path / "d" / "runs").iterdir())
    report = json.loads((runs[-1] / "summary.json").read_text())
    assert report["end_reason"].startswith("KILL_SWITCH")
    assert report["exit_code"] == EXIT_KILL_SWITCH
    assert report["open_positions_at_end"] == 0
    assert report["trading_state"] == "HALTED"
