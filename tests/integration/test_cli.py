"""The command line: bad config, --status, a short sim session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from state.store import jsonable
from tests.conftest import WAIT, condition

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL,
    )


def test_bad_config_lists_every_problem_and_exits_2_without_starting(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(
        '[engine]\ndata_dir = "data"\n'
        '[sniper]\nmax_positons = 5\n'
        '[feed]\nsource = "nope"\n'
        '[paper]\ntaker_fee = -1\n'
        '[sniperr]\nx = 1\n'
    )
    result = run_cli("--config", str(config))
    assert result.returncode == 2
    for problem in (
        "sniper.max_positons: unknown key (did you mean 'max_positions'?)",
        "feed.source: must be one of",
        "paper.taker_fee: must be at least 0",
        "sniperr: unknown section (did you mean 'sniper'?)",
    ):
        assert problem in result.stderr, result.stderr
    assert not (tmp_path / "data").exists(), "no actor (and no store) may start on a bad config"


def test_status_prints_the_durable_state_as_json_without_starting(make_engine, tmp_path, ts):
    data_dir = tmp_path / "data"
    engine = make_engine(data_dir=data_dir)
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=300))
    engine.sniper.add_condition(condition(coin="ETH", trigger=5000, size=300))
    engine.push_tick("BTC", "42001", ts())
    assert engine.wait_idle(WAIT)
    snap = engine.sniper.snapshot()
    engine.stop()

    config = tmp_path / "config.toml"
    config.write_text('[feed]\nsource = "manual"\n')
    result = run_cli("--config", str(config), "--data-dir", str(data_dir), "--status")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["conditions"] == [jsonable(c) for c in snap.conditions]
    assert status["positions"] == [jsonable(p) for p in snap.positions]
    assert status["balance"] == str(snap.balance)
    assert status["realized_pnl"] == str(snap.realized_pnl)
    assert status["trading_state"] == "ACTIVE"


def test_a_short_sim_session_says_the_market_is_simulated_and_stops_cleanly(tmp_path):
    result = run_cli("--config", str(ROOT / "config.toml"), "--data-dir", str(tmp_path / "d"),
                     "--duration", "1.5", "--status-every", "0.5")
    assert result.returncode == 0, result.stderr
    assert "SIMULATED market" in result.stdout
    assert "ENGINE_STOPPED: exit code 0" in result.stderr


def test_a_sim_session_with_the_breakout_trades_and_reports_what_the_journal_holds(tmp_path):
    config = tmp_path / "fast.toml"
    config.write_text(
        '[feed]\nsource = "sim"\nsymbols = ["BTC", "ETH", "SOL"]\nticks_per_second = 40\nbar_seconds = 1\n'
        '[strategist]\nstrategies = ["breakout"]\n'
        '[strategist.breakout]\nlookback_bars = 3\nstop_loss_pct = 0.0005\ntake_profit_pct = 0.0005\n'
        'position_size_usd = 100\n'
        '[session]\non_stop = "flatten"\n'
    )
    data_dir = tmp_path / "d"
    result = run_cli("--config", str(config), "--data-dir", str(data_dir), "--duration", "10",
                     "--status-every", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "POSITION_OPENED" in result.stderr
    runs = sorted((data_dir / "runs").iterdir())
    report = json.loads((runs[-1] / "summary.json").read_text())
    assert report["simulated"] is True and report["end_reason"] == "--duration 10s"
    assert report["total_trades"] >= 1 and report["open_positions_at_end"] == 0
    assert f"trades {report['total_trades']} " in result.stdout
