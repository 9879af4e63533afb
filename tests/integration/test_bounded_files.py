"""Nothing grows without bound: a replay with a bar every fourth tick (the shape of the month
of bar-derived ticks, where the write-ahead log reached 1 GB and the journal 238,601 events)
keeps both write-ahead logs under their bound while it runs and leaves none behind, and the
journal gets one row per re-arming, not one per condition armed and canceled.

The bounds are lowered for the test (``state.store.WAL_TRUNCATE_BYTES``) so a short replay
crosses them many times; the full month is measured by ``bench/bench_files.py``.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from run import build_engine
from state.store import wal_file

BOUND = 128 * 1024
TICKS = 4_000
STEP_MS = 15_000  # four ticks per 60 s bar: 1,000 bars
REPLAY_WAIT = 240.0  # generous: thousands of bar barriers on a loaded 2-core machine


def bar_shaped_ticks(path: Path) -> Path:
    rng = random.Random(11)
    price = 40_000.0
    lines = ["ts_ms,price,qty"]
    for number in range(TICKS):
        price *= 1 + rng.gauss(0, 0.0008)
        lines.append(f"{1_640_995_200_000 + number * STEP_MS},{price:.1f},0.01")
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)  # polling file sizes another thread changes: no event to wait on
    return condition()


def test_a_bar_every_fourth_tick_keeps_the_logs_bounded_and_one_events_row_per_rearming(tmp_path, monkeypatch):
    monkeypatch.setattr("state.store.WAL_TRUNCATE_BYTES", BOUND)
    data = tmp_path / "data"
    config = {
        "feed": {"source": "replay", "symbols": ["BTC"], "speed": "max", "bar_seconds": 60,
                 "files": [{"coin": "BTC", "path": str(bar_shaped_ticks(tmp_path / "ticks.csv"))}]},
        "strategist": {"strategies": ["breakout"],
                       "breakout": {"lookback_bars": 5, "stop_loss_pct": 0.004, "take_profit_pct": 0.004,
                                    "position_size_usd": 100}},
    }
    engine = build_engine(config, data_dir=data).start()
    try:
        assert engine.finished.wait(REPLAY_WAIT), "the replay did not reach its end"
        assert engine.store.wal_truncations > 0, "the engine log passed the bound and was truncated"
        # the journal truncates after each write (a write may be in progress as this reads)
        assert wait_until(lambda: engine.journal_store.wal_size() <= BOUND, 30), \
            f"the journal log stayed at {engine.journal_store.wal_size()} bytes after the replay"
        assert wait_until(lambda: engine.store.wal_size() <= BOUND, 30), \
            f"the engine log stayed at {engine.store.wal_size()} bytes after the replay"
        report = engine.shutdown(reason="end of data")
    finally:
        engine.stop()
    assert report["ticks"] == TICKS and report["total_trades"] > 0

    for database in ("engine.db", "journal.db"):  # truncated at shutdown
        log = wal_file(data / database)
        assert not log.exists() or log.stat().st_size == 0, f"{log} left at {log.stat().st_size} bytes"

    with sqlite3.connect(data / "journal.db") as db:
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind"))
        total = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert total == sum(kinds.values())
    bars = report["bars"]
    assert bars >= TICKS // 4 - 1
    rearmings = kinds.get("ConditionsReplaced", 0)
    assert bars - 10 <= rearmings <= bars, "one row per bar the breakout re-armed at"
    assert "ConditionArmed" not in kinds and "ConditionCanceled" not in kinds, kinds
    assert kinds.get("AccountMarked", 0) <= bars  # at most one mark per bar
    # What is left is the trades' own rows (trigger, orders, fills, position events) and the
    # blocked re-armings while a position is open: per bar, never per condition.
    others = total - rearmings - kinds.get("AccountMarked", 0) - kinds.get("ConditionBlocked", 0)
    assert kinds.get("ConditionBlocked", 0) <= 2 * bars
    assert others <= 10 * (report["total_trades"] + report["open_positions_at_end"]) + 5, kinds
