#!/usr/bin/env python3
"""Benchmark (not a test): how big the data folder grows over a long replay.

The real engine (``run.build_engine``: eight actors, supervisor, SQLite store and journal, paper
venue) replays ``../shared/data/derived/btc-perp_1m-bars_as-ticks_2021-12-31_2022-02-01.csv.gz``
(180,124 ticks: four per 1-minute bar of a month of BTC-PERP, so a bar closes every fourth
tick) at max speed with the built-in breakout strategy, on a fresh data folder. While it runs,
a sampler notes the largest size each write-ahead log reached; at the end the session is shut
down as ``run.py`` does, and the script prints the size of every file under the data folder,
the peak of each ``-wal`` file, and the row count of every table of the journal and the
engine store (with the journal's ``events`` rows per bar).

Prints a table and writes JSON to ``bench/results/files.json``. Run::

    python bench/bench_files.py [--file PATH] [--data-dir DIR] [--bar-seconds 60] [--lookback 20]

``--data-dir`` keeps the folder (it must be empty or absent); by default a temporary one is
used and removed. Never collected by pytest (not named ``test_*``, outside ``tests/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.console.logs import configure_logging  # noqa: E402
from run import build_engine  # noqa: E402
from bench_replay import session_config  # noqa: E402 - the same session as the replay benchmark

__test__ = False

MONTH = ROOT.parent / "shared" / "data" / "derived" / "btc-perp_1m-bars_as-ticks_2021-12-31_2022-02-01.csv.gz"
DEFAULT_RESULTS = ROOT / "bench" / "results" / "files.json"


class WalSampler(threading.Thread):
    """Notes the largest size of every ``*-wal`` file under ``folder`` (every ``every_s``)."""

    def __init__(self, folder: Path, every_s: float = 0.2) -> None:
        super().__init__(name="wal-sampler", daemon=True)
        self.folder = folder
        self.every_s = every_s
        self.peaks: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        for path in self.folder.rglob("*-wal"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            name = str(path.relative_to(self.folder))
            self.peaks[name] = max(size, self.peaks.get(name, 0))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def row_counts(database: Path) -> dict[str, int]:
    if not database.is_file():
        return {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables}


def events_by_kind(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY COUNT(*) DESC"))


def one_session(path: Path, folder: Path, bar_seconds: int, lookback: int) -> dict[str, Any]:
    engine = build_engine(session_config(path, bar_seconds, lookback), data_dir=folder)
    sampler = WalSampler(folder)
    started = time.perf_counter()
    sampler.start()
    engine.start()
    if not engine.finished.wait(3600):
        engine.stop()
        sampler.stop()
        raise SystemExit("the replay did not finish within an hour")
    elapsed = time.perf_counter() - started
    report = engine.shutdown(0, "end of data")
    sampler.stop()
    if sum(engine.restarts.values()):
        raise SystemExit(f"actors restarted during the run: {engine.restarts}")
    return {"seconds": round(elapsed, 1), "ticks": report["ticks"], "bars": report["bars"],
            "trades": report["total_trades"], "realized_pnl_usd": report["realized_pnl_usd"],
            "wal_peaks": sampler.peaks, "engine_wal_truncations": getattr(engine.store, "wal_truncations", None),
            "engine_wal_truncate_max_ms": round(getattr(engine.store, "wal_truncate_max_s", 0.0) * 1000, 1),
            "journal_wal_truncations": getattr(engine.journal_store, "wal_truncations", None)}


def human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=MONTH)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--bar-seconds", type=int, default=60)
    parser.add_argument("--lookback", type=int, default=20)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    if not args.file.is_file():
        raise SystemExit(f"replay file not found: {args.file} (the shared data lives in ../shared/data)")
    if args.data_dir is not None and args.data_dir.exists() and any(args.data_dir.iterdir()):
        raise SystemExit(f"--data-dir {args.data_dir}: must be empty or absent (a fresh session)")
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="bench-files-") as scratch:
        folder = args.data_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        run = one_session(args.file, folder, args.bar_seconds, args.lookback)
        sizes = file_sizes(folder)
        journal_rows = row_counts(folder / "journal.db")
        store_rows = row_counts(folder / "engine.db")
        kinds = events_by_kind(folder / "journal.db") if journal_rows else {}
    events_per_bar = journal_rows.get("events", 0) / run["bars"] if run["bars"] else 0.0
    print(f"replayed {run['ticks']:,} ticks ({run['bars']:,} bars) in {run['seconds']} s; "
          f"{run['trades']} trades, realized {run['realized_pnl_usd']} USD")
    print("files under the data folder after shutdown:")
    for name, size in sizes.items():
        print(f"  {name:<44} {human(size):>12}")
    print("largest size of each write-ahead log during the session:")
    for name, size in sorted(run["wal_peaks"].items()):
        print(f"  {name:<44} {human(size):>12}")
    print(f"write-ahead logs truncated while running: engine {run['engine_wal_truncations']} "
          f"(the longest took {run['engine_wal_truncate_max_ms']} ms), journal {run['journal_wal_truncations']}")
    print("journal rows: " + ", ".join(f"{t} {n:,}" for t, n in journal_rows.items())
          + f" ({events_per_bar:.2f} events per bar)")
    print("events by kind: " + ", ".join(f"{k} {n:,}" for k, n in kinds.items()))
    print("engine store rows: " + ", ".join(f"{t} {n:,}" for t, n in store_rows.items()))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "run": run, "files": sizes, "journal_rows": journal_rows, "events_by_kind": kinds,
        "events_per_bar": round(events_per_bar, 3), "store_rows": store_rows,
        "command": shlex.join([sys.executable, *sys.argv]), "file": str(args.file),
        "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
        "commit": commit,
    }, indent=2))


if __name__ == "__main__":
    main()
