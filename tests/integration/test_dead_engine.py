"""An engine whose actors die must still end: a store that cannot be written (disk full, lost
permissions) halts it within seconds with exit code 5 and a reason on stderr, its report comes
from the durable state (never "0 ticks" for a session that traded), and a stop signal at any
moment of the process ends it in order with a report."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import peewee
import pytest

from run import EXIT_OK, EXIT_STORE_UNWRITABLE, EngineStartError, _halted_report, _report_text
from tests.conftest import WAIT, condition

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("dead_engine_child.py")
STORE_WRITES = ("save_condition", "set_condition_live", "delete_condition", "save_position", "save_marks",
                "delete_position", "save_account", "set_setting", "save_trading_state", "save_order",
                "save_bar", "prune_bars")
PROCESS_BOUND_S = 90.0  # generous: the process must end well within it (it takes seconds)


def refuse(*_args, **_kwargs):
    raise peewee.OperationalError("database or disk is full")


def disk_full(engine, monkeypatch) -> None:
    """Every write of both stores now fails as SQLite fails on a full disk."""
    for name in STORE_WRITES:
        monkeypatch.setattr(engine.store, name, refuse)
    monkeypatch.setattr(engine.journal_store, "write", refuse)


def test_a_full_disk_halts_with_exit_code_5_and_the_report_comes_from_durable_state(make_engine, ts, logs,
                                                                                     monkeypatch):
    engine = make_engine()
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=300))
    engine.sniper.add_condition(condition(coin="ETH", trigger=3000, size=300))
    engine.push_tick("BTC", "42001", ts())
    assert engine.wait_idle(WAIT)
    engine.push_tick("BTC", "42700", ts())  # take-profit: one closed trade
    engine.push_tick("ETH", "3001", ts())  # one position stays open
    assert engine.wait_idle(WAIT)
    assert len(engine.journal.trades(status="CLOSED")) == 1  # asked: the Journal flushes first
    before = engine.sniper.snapshot()

    disk_full(engine, monkeypatch)
    # Each new price makes the Sniper write its mark: the write fails, it crashes, it restarts,
    # the next price crashes it again, until the restart limit halts the engine.
    for step in range(40):
        if engine.supervisor.escalated is not None:
            break
        engine.push_tick("ETH", str(3002 + step), ts())
        engine.wait_stopped(0.5)  # bounded wait on the condition; the loop goes on otherwise
    assert engine.wait_stopped(WAIT * 4), "a halted engine must stop"
    assert engine.exit_code == EXIT_STORE_UNWRITABLE
    assert engine.halt_reason.startswith("store unwritable: ")
    assert "database or disk is full" in engine.halt_reason
    assert logs.wait_for("STORE_UNWRITABLE:")
    assert logs.wait_for("STOP_STEP_FAILED: HALTED not saved")  # the stop went on regardless

    code, report = _halted_report(engine)
    assert code == EXIT_STORE_UNWRITABLE and report["exit_code"] == EXIT_STORE_UNWRITABLE
    assert report["end_reason"] == engine.halt_reason
    assert report["ticks"] == engine.ticks_seen >= 4
    assert report["total_trades"] == 1 and report["wins"] == 1
    assert report["open_positions_at_end"] == 1
    assert report["balance"] == str(before.balance)
    assert report["durable"]["closed_positions_this_session"] == 1
    assert "durable state" in report["built_from"]
    assert "built from durable state" in _report_text(report)
    saved = json.loads((engine.data_dir / "runs" / engine.run_id / "summary.json").read_text())
    assert saved["total_trades"] == 1 and saved["ticks"] == report["ticks"]


def test_a_quiet_session_whose_bars_cannot_be_saved_halts_too_instead_of_idling_on(make_engine, ts, logs,
                                                                                   monkeypatch):
    """No position, no decision: only the Feed writes (its closed bars and the resume point).
    A derived actor skips a bad message, but a store that cannot be written crashes it."""
    engine = make_engine(feed={"bar_seconds": 1})
    monkeypatch.setattr(engine.store, "save_bar", refuse)
    start = ts()
    for second in range(40):
        if engine.supervisor.escalated is not None:
            break
        engine.push_tick("BTC", str(42000 + second), start + second * 1000)  # each one closes a bar
        engine.wait_stopped(0.5)  # bounded wait on the condition; the loop goes on otherwise
    assert engine.wait_stopped(WAIT * 4), "a halted engine must stop"
    assert engine.exit_code == EXIT_STORE_UNWRITABLE
    assert engine.halt_reason.startswith("store unwritable: feed: database or disk is full")
    assert "HANDLER_ERROR" not in logs.text()
    code, report = _halted_report(engine)
    assert code == EXIT_STORE_UNWRITABLE and report["ticks"] == engine.ticks_seen > 0
    assert report["trading_state"] == "HALTED"  # this store still took that write


def test_an_engine_that_cannot_write_its_first_balance_does_not_start_and_says_why(make_engine, monkeypatch):
    engine = make_engine(start=False)  # a fresh data directory: the Sniper's start writes the balance
    monkeypatch.setattr(engine.store, "save_account", refuse)
    with pytest.raises(EngineStartError, match="could not start sniper: store unwritable: sniper: database or disk "
                                               "is full"):
        engine.start()
    assert engine.store_error == "sniper: database or disk is full"


def test_a_halt_that_is_not_about_the_store_keeps_exit_code_3_and_names_the_last_crash(make_engine, ts):
    engine = make_engine(supervisor={"max_restarts": 1, "within_s": 60})
    engine.push_tick("BTC", "42001", ts())
    assert engine.wait_idle(WAIT)
    engine.inject_crash("exit_monitor", reason="poison one")
    assert engine.wait_for_restart("exit_monitor", 1, timeout=WAIT)
    engine.inject_crash("exit_monitor", reason="poison two")
    assert engine.wait_stopped(WAIT)
    code, report = _halted_report(engine)
    assert code == 3 and engine.store_error is None
    assert "last failure: crashed: InjectedCrash('exit_monitor: poison two')" in report["end_reason"]
    assert report["ticks"] == 1 and report["total_trades"] == 0


# --- the command line, in a child process -------------------------------------------------------

FAST_TRADING = (
    '[feed]\nsource = "sim"\nsymbols = ["BTC", "ETH", "SOL"]\nticks_per_second = 40\nbar_seconds = 1\n'
    '[strategist]\nstrategies = ["breakout"]\n'
    '[strategist.breakout]\nlookback_bars = 3\nstop_loss_pct = 0.0005\ntake_profit_pct = 0.0005\n'
    'position_size_usd = 100\n'
    '[supervisor]\nbackoff_s = [0.0, 0.05, 0.1]\n'
)


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, cwd=ROOT)


def test_the_cli_on_a_disk_that_fills_up_exits_5_within_seconds_with_a_durable_report(tmp_path):
    """A real full disk, as the OS gives it: once the session has closed a trade, the child
    process may no longer grow any file (RLIMIT_FSIZE: SQLite gets EFBIG, "disk I/O error";
    the log file fails too), and the process must end by itself."""
    config = tmp_path / "fast.toml"
    config.write_text(FAST_TRADING)
    data_dir = tmp_path / "d"
    child = spawn(str(CHILD), "--config", str(config), "--data-dir", str(data_dir), "--status-every", "1")
    try:
        stdout, stderr = child.communicate(timeout=PROCESS_BOUND_S)
    except subprocess.TimeoutExpired:
        child.kill()
        stdout, stderr = child.communicate()
        pytest.fail(f"the process did not end by itself\n{stdout[-2000:]}\n{stderr[-3000:]}")
    if "NO_TRADE" in stdout:
        pytest.fail(f"the session closed no trade before the bound\n{stderr[-3000:]}")
    assert "DISK_FULL" in stdout, stderr[-3000:]
    assert child.returncode == EXIT_STORE_UNWRITABLE, stderr[-3000:]
    assert re.search(r"run\.py: store unwritable: \w+: .*disk I/O error", stderr), stderr[-3000:]
    assert "built from durable state" in stdout
    # The log file failed too: said once, and the console stayed readable (no loguru error flood).
    assert stderr.count("LOG_FILE_UNWRITABLE") == 1, stderr[-3000:]
    assert "Logging error in Loguru Handler" not in stderr
    assert "STORE_UNWRITABLE:" in stderr

    ticks = int(re.search(r", (\d+) ticks, ended by store unwritable", stdout).group(1))
    trades = int(re.search(r"trades (\d+) \(wins", stdout).group(1))
    run_id = re.search(r"Session (\S+) ", stdout).group(1)
    assert ticks > 0
    with closing(sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True)) as journal:
        (closed,) = journal.execute("SELECT COUNT(*) FROM trades WHERE run_id = ? AND status = 'CLOSED'",
                                    (run_id,)).fetchone()
    assert trades == closed >= 1
    opened = int(re.search(r"open positions (\d+) \(", stdout).group(1))
    with closing(sqlite3.connect(f"file:{data_dir / 'engine.db'}?mode=ro", uri=True)) as store:
        (active,) = store.execute("SELECT COUNT(*) FROM positions WHERE status != 'CLOSED'").fetchone()
    assert opened == active


def _sigterm_handled(pid: int) -> bool:
    """The process has a handler for SIGTERM (bit 15 of SigCgt in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see the handler installed")
def test_sigterm_as_soon_as_the_process_can_catch_it_ends_in_order_with_a_report(tmp_path):
    child = spawn(str(ROOT / "run.py"), "--config", str(ROOT / "config.toml"), "--data-dir", str(tmp_path / "d"))
    try:
        deadline = time.monotonic() + WAIT * 6
        while not _sigterm_handled(child.pid):  # the first moment a handler exists (imports still running)
            assert child.poll() is None and time.monotonic() < deadline, "no SIGTERM handler appeared"
            threading.Event().wait(0.001)
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=PROCESS_BOUND_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == EXIT_OK, stderr[-3000:]
    assert "Session not started: SIGTERM arrived before the engine started" in stdout


def test_sigterm_once_the_session_runs_ends_it_with_the_full_report(tmp_path):
    child = spawn(str(ROOT / "run.py"), "--config", str(ROOT / "config.toml"), "--data-dir", str(tmp_path / "d"),
                  "--status-every", "0.2")
    try:
        first = child.stdout.readline()  # the first status line: the session runs
        assert first.startswith("feed "), first
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=PROCESS_BOUND_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == EXIT_OK, stderr[-3000:]
    assert re.search(r"Session \S+ \(sim SIMULATED\): [\d.]+s, \d+ ticks, ended by SIGTERM", stdout), stdout
    assert "STOP_REQUESTED: SIGTERM" in stderr
    assert "ENGINE_STOPPED: exit code 0" in stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigint_behaves_like_sigterm(tmp_path):
    child = spawn(str(ROOT / "run.py"), "--config", str(ROOT / "config.toml"), "--data-dir", str(tmp_path / "d"),
                  "--status-every", "0.2")
    try:
        assert child.stdout.readline().startswith("feed ")
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=PROCESS_BOUND_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == EXIT_OK, stderr[-3000:]
    assert "ended by SIGINT" in stdout
