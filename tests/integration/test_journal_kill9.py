"""``kill -9`` at random moments of a replay, then the same command again on the same folder:
every journal table ends row for row as an uninterrupted run's (DESIGN.md 6: the journal is as
durable as the engine).

Each trial runs ``run.py`` on a small file of real trades (the first rows of the shared day,
written to the test's own folder), waits until a seeded random number of bars is stored (the
child's progress, read from its store), waits a seeded random extra moment, kills the process
with SIGKILL (in some trials the restarted process is killed again the same way), runs the same
command to the end, and compares every column of every journal table with the reference run,
except the columns that name a process (see ``PER_PROCESS``). The seed is in the test id and in
every failure message.

Run more trials by hand: ``python -m tests.integration.test_journal_kill9 --trials 50``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
DAY = "trades/binance-futures_BTCUSDT_trades_2020-02-22.csv.gz"
ROWS = 8_000  # about 80 minutes of trading: ~80 bars of 60 s, several trades
TRIALS = 10
JOURNAL_TABLES = ("trades", "orders", "order_events", "fills", "daily_pnl", "equity", "events")
# Columns that name the process, not what happened: ``run_id`` is the run of the process that
# made the decision (two processes here, one in the reference); ``msg_id`` is a random UUID each
# message gets when it is built (a re-sent message gets a new one).
PER_PROCESS = frozenset({"run_id", "msg_id"})
POLL_S = 0.005  # reading the child's store: polling another process, not synchronizing threads


def write_inputs(folder: Path, shared_data: Path) -> Path:
    """The first ``ROWS`` trades of the shared day as ts_ms,price,qty, and a replay config."""
    trades = folder / "slice.csv"
    with gzip.open(shared_data / DAY, "rt") as reader, trades.open("w") as writer:
        next(reader)
        writer.write("ts_ms,price,qty\n")
        for _, line in zip(range(ROWS), reader):
            _id, price, qty, _quote, ts_ms, _maker = line.rstrip("\n").split(",")
            writer.write(f"{ts_ms},{price},{qty}\n")
    config = folder / "replay.toml"
    config.write_text(
        f'[feed]\nsource = "replay"\nsymbols = ["BTC"]\nfiles = [{{ coin = "BTC", path = "{trades}" }}]\n'
        'speed = "max"\nbar_seconds = 60\n[strategist]\nstrategies = ["breakout"]\n'
        "[strategist.breakout]\nlookback_bars = 3\nstop_loss_pct = 0.001\ntake_profit_pct = 0.001\n"
        "position_size_usd = 100\n"
    )
    return config


def command(config: Path, data_dir: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir", str(data_dir)]


def run_to_end(config: Path, data_dir: Path) -> None:
    result = subprocess.run(command(config, data_dir), cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def whole_journal(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every journal table in insertion order, without the per-process columns."""
    with sqlite3.connect(data_dir / "journal.db") as db:
        db.row_factory = sqlite3.Row
        return {table: [{k: row[k] for k in row.keys() if k not in PER_PROCESS}
                        for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]  # noqa: S608
                for table in JOURNAL_TABLES}


def bars_stored(data_dir: Path) -> int:
    """How many bars the child has stored (0 while its store does not exist yet)."""
    path = data_dir / "engine.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM bars").fetchone()[0]
    except sqlite3.OperationalError:  # the child is creating its tables
        return 0


def kill_at_random(config: Path, data_dir: Path, rng: random.Random, total_bars: int) -> str:
    """Start the command, wait until a random number of bars is stored and a random extra
    moment more, then SIGKILL it. Returns what happened, for the failure message."""
    start = bars_stored(data_dir)
    target = rng.randrange(start, max(start + 1, total_bars - 20))  # leaves the child time to be killed
    extra = rng.uniform(0, 0.05)
    proc = subprocess.Popen(command(config, data_dir), cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and bars_stored(data_dir) < target:
            time.sleep(POLL_S)
        time.sleep(extra)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (
        f"the child ended ({proc.returncode}) before the kill at bar {target}: a trial must kill it")
    return f"killed at bar {bars_stored(data_dir)} (waited for {target}, +{extra * 1000:.1f} ms)"


def trial(config: Path, folder: Path, seed: int, reference: dict[str, list[dict[str, Any]]], total_bars: int) -> None:
    rng = random.Random(seed)
    data_dir = folder / f"trial-{seed}"
    story = [kill_at_random(config, data_dir, rng, total_bars)]
    if rng.random() < 0.3 and bars_stored(data_dir) < total_bars - 30:
        story.append("restarted and " + kill_at_random(config, data_dir, rng, total_bars))
    run_to_end(config, data_dir)
    journal = whole_journal(data_dir)
    for table in JOURNAL_TABLES:
        if journal[table] != reference[table]:
            pytest.fail(f"seed {seed} ({'; '.join(story)}): journal table {table} differs from the uninterrupted "
                        f"run:\n{_difference(reference[table], journal[table])}")


def _difference(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str:
    for index, (want, got) in enumerate(zip(expected, actual)):
        if want != got:
            changed = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
            return f"row {index} (of {len(expected)} expected, {len(actual)} got): {json.dumps(changed)[:1500]}"
    extra = actual[len(expected):] or expected[len(actual):]
    return f"{len(expected)} rows expected, {len(actual)} got; first unmatched: {json.dumps(extra[0])[:1500]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any, int]:
    """The reference run, once for every trial (``shared_data`` is per test, so its check is
    repeated here)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    folder = tmp_path_factory.mktemp("kill9")
    config = write_inputs(folder, SHARED_DATA)
    reference = folder / "reference"
    run_to_end(config, reference)
    journal = whole_journal(reference)
    closed = [t for t in journal["trades"] if t["status"] == "CLOSED"]
    assert len(closed) >= 3, "the reference run must trade several times for the trials to mean anything"
    return folder, config, journal, bars_stored(reference)


@pytest.mark.slow
@pytest.mark.timeout(600)  # up to three whole replays per trial (the first also makes the reference) on a busy machine
@pytest.mark.parametrize("seed", [int(os.environ.get("KILL9_SEED", "9000")) + n for n in range(TRIALS)])
def test_kill_9_at_a_random_moment_then_the_same_command_gives_the_uninterrupted_journal(uninterrupted, seed):
    folder, config, reference, total_bars = uninterrupted
    trial(config, folder, seed, reference, total_bars)


def main() -> None:  # pragma: no cover - a tool for running many trials by hand
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--folder", type=Path, default=Path("var/kill9"))
    args = parser.parse_args()
    args.folder = args.folder.resolve()  # the config names its file relative to its own folder
    args.folder.mkdir(parents=True, exist_ok=True)
    config = write_inputs(args.folder, SHARED_DATA)
    reference_dir = args.folder / f"reference-{args.seed}"
    run_to_end(config, reference_dir)
    reference, total = whole_journal(reference_dir), bars_stored(reference_dir)
    failures = 0
    for seed in range(args.seed, args.seed + args.trials):
        try:
            trial(config, args.folder, seed, reference, total)
            print(f"seed {seed}: same journal")
        except BaseException as error:  # noqa: BLE001 - report every trial
            failures += 1
            print(f"seed {seed}: {error}")
    print(f"{args.trials - failures} of {args.trials} trials gave the uninterrupted journal")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
