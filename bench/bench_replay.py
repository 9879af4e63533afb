#!/usr/bin/env python3
"""Benchmark (not a test): a whole paper session replaying a day of real trades at max speed.

The real engine (``run.build_engine``: the eight actors, the supervisor, the SQLite store and
journal, the paper venue) replays ``../shared/data/trades/binance-futures_BTCUSDT_trades_
2020-02-22.csv.gz`` (137,988 BTCUSDT trades) with the built-in breakout strategy, from
``engine.start()`` until the replay has ended and everything it caused has been handled.
Reports ticks/s, the trades and the PnL of each run, and checks that every run gives the same
trades and PnL (the replay is deterministic) before printing a number.

Prints a table and writes JSON to ``bench/results/replay.json``. Run::

    python bench/bench_replay.py [--runs 3] [--file PATH] [--bar-seconds 60] [--lookback 20]

Never collected by pytest (not named ``test_*``, outside ``tests/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.console.logs import configure_logging  # noqa: E402
from run import build_engine  # noqa: E402

__test__ = False

DAY = ROOT.parent / "shared" / "data" / "trades" / "binance-futures_BTCUSDT_trades_2020-02-22.csv.gz"
DEFAULT_RESULTS = ROOT / "bench" / "results" / "replay.json"


def session_config(path: Path, bar_seconds: int, lookback: int) -> dict[str, Any]:
    return {
        "feed": {"source": "replay", "symbols": ["BTC"], "files": [{"coin": "BTC", "path": str(path)}],
                 "speed": "max", "bar_seconds": bar_seconds},
        "strategist": {"strategies": ["breakout"],
                       "breakout": {"lookback_bars": lookback, "stop_loss_pct": 0.005,
                                    "take_profit_pct": 0.005, "position_size_usd": 100}},
    }


def one_run(path: Path, bar_seconds: int, lookback: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as folder:
        engine = build_engine(session_config(path, bar_seconds, lookback), data_dir=Path(folder))
        started = time.perf_counter()
        engine.start()
        if not engine.finished.wait(900):
            engine.stop()
            raise SystemExit("the replay did not finish within 15 minutes")
        elapsed = time.perf_counter() - started
        report = engine.shutdown(0, "end of data")
        trades = [
            (t["position_id"], t["entry_price"], t["exit_price"], t["pnl"])
            for t in engine_trades(Path(folder))
        ]
    if sum(engine.restarts.values()):
        raise SystemExit(f"actors restarted during the run: {engine.restarts}")
    return {"seconds": round(elapsed, 3), "ticks": report["ticks"], "ticks_per_s": round(report["ticks"] / elapsed),
            "trades": report["total_trades"], "wins": report["wins"], "losses": report["losses"],
            "realized_pnl_usd": report["realized_pnl_usd"], "fees_paid_usd": report["fees_paid_usd"],
            "slippage_avg_bps": report["slippage_avg_bps"], "max_drawdown_pct": report["max_drawdown_pct"],
            "bars": report["bars"], "trade_list": trades}


def engine_trades(folder: Path) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(folder / "journal.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM trades WHERE status = 'CLOSED' ORDER BY position_id")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--file", type=Path, default=DAY)
    parser.add_argument("--bar-seconds", type=int, default=60)
    parser.add_argument("--lookback", type=int, default=20)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    if not args.file.is_file():
        raise SystemExit(f"replay file not found: {args.file} (the shared data lives in ../shared/data)")
    configure_logging("WARNING")
    runs = []
    for number in range(1, args.runs + 1):
        run = one_run(args.file, args.bar_seconds, args.lookback)
        runs.append(run)
        print(f"run {number}: {run['ticks']} ticks in {run['seconds']}s = {run['ticks_per_s']} ticks/s, "
              f"{run['trades']} trades, realized {run['realized_pnl_usd']} USD", flush=True)
    first = runs[0]
    for run in runs[1:]:
        if run["trade_list"] != first["trade_list"] or run["realized_pnl_usd"] != first["realized_pnl_usd"]:
            raise SystemExit("two runs of the same replay gave different trades: not deterministic")
    rates = [r["ticks_per_s"] for r in runs]
    summary = {
        "ticks_per_s_median": int(statistics.median(rates)), "ticks_per_s_best": max(rates),
        "ticks_per_s_worst": min(rates), "seconds_median": statistics.median(r["seconds"] for r in runs),
        "ticks": first["ticks"], "trades": first["trades"], "wins": first["wins"], "losses": first["losses"],
        "realized_pnl_usd": first["realized_pnl_usd"], "fees_paid_usd": first["fees_paid_usd"],
        "slippage_avg_bps": first["slippage_avg_bps"], "max_drawdown_pct": first["max_drawdown_pct"],
        "bars": first["bars"], "identical_runs": len(runs),
    }
    print(json.dumps(summary, indent=2))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "summary": summary, "runs": [{k: v for k, v in r.items() if k != "trade_list"} for r in runs],
        "command": shlex.join([sys.executable, *sys.argv]), "file": str(args.file),
        "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
        "commit": commit,
    }, indent=2))


if __name__ == "__main__":
    main()
