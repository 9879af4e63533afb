"""Two replays with limit entries give identical journals, row for row, and do trade (issue 10,
"What must hold"): the breakout with ``entry_type = "limit"`` (a buy limit 20 ticks under the
trigger, a sell limit 20 above, 60 s to fill, plan B within 0.03 %) on the paper venue with
``fill_model = "traded_volume"`` (a resting order fills at most what each trade traded), over
the first 40,000 trades of the shared BTCUSDT day: once through the command line, once in
process with the paper venue answering after random delays (a resting order is matched against
each tick before the Sniper decides on it, whatever the venue's latency).

The run must show the lifecycle it claims to replay: limit entries that fill whole, entries
that fill in part, and entries that time out (plan B takes the rest at market, or cancels).

It must also show exits that start while their entry still works (a stop or target reached
before the entry's time limit): the Sniper cancels the entry, waits for its end and exits what
filled. Before the exit waited for that end, the entry's cancel and the exit ran through two
actors at once and the journal's rows of the two came in either order, one run in two.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.venues.paper import PaperVenue
from run import build_engine
from tests.integration.test_replay_session import RUN_FIELDS, _slice, run_cli, summary_of, write_config

ROWS = 40_000  # about 6.5 hours of the day: ~100 limit entries with lookback 3
JOURNAL_TABLES = ("trades", "orders", "order_events", "fills", "daily_pnl", "equity", "events")
VENUE_TABLES = ("orders", "fills", "positions")
PER_RUN_COLUMNS = {"id", "run_id", "msg_id"}  # a run's own id and the random message ids
LIMIT_PLAN = (
    'entry_type = "limit"\nentry_offset_ticks = -20\nentry_timeout_s = 60\nentry_plan_b_pct = 0.0003\n'
)
# Each run takes about 10 s of CPU; the two, with a 2-core machine shared by other suites,
# can take several times that: a bound of its own, far above what the test needs.
RUN_TIMEOUT_S = 240


def write_limit_config(folder: Path, trades: Path) -> Path:
    config = write_config(folder, [("BTC", trades)], bar_seconds=60, lookback=3, exit_pct="0.001",
                          extra='[paper]\nfill_model = "traded_volume"\n')
    text = config.read_text()
    assert "position_size_usd = 100\n" in text
    config.write_text(text.replace("position_size_usd = 100\n", "position_size_usd = 500\n" + LIMIT_PLAN))
    return config


def rows_of(path: Path, tables: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables`` in insertion order, without what names the run."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return {table: [{k: row[k] for k in row.keys() if k not in PER_RUN_COLUMNS}
                        for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]  # noqa: S608
                for table in tables}


def entry_outcomes(journal: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """The limit entries (``-E``) by what became of them: filled whole in one fill, filled in
    several parts, timed out partly filled, timed out with nothing filled; and plan B's market
    orders (``-B``)."""
    fills: dict[str, int] = defaultdict(int)
    for fill in journal["fills"]:
        fills[fill["client_order_id"]] += 1
    timed_out = {e["client_order_id"] for e in journal["order_events"]
                 if e["event"] == "CANCEL_REQUESTED" and (e["reason"] or "").startswith("ENTRY_TIMEOUT")}
    outcomes: dict[str, list[str]] = defaultdict(list)
    for order in journal["orders"]:
        coid = order["client_order_id"]
        if coid.endswith("-B"):
            outcomes["plan_b"].append(coid)
        if not coid.endswith("-E"):
            continue
        assert order["order_type"] == "LIMIT", order
        filled = Decimal(order["fill_quantity"] or 0)
        if order["status"] == "FILLED":
            outcomes["filled_in_parts" if fills[coid] > 1 else "filled_whole"].append(coid)
        elif coid in timed_out:
            outcomes["timed_out_partly_filled" if filled > 0 else "timed_out_unfilled"].append(coid)
    return outcomes


def slow_venue(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every ``PaperVenue`` take a random moment before it places or matches anything;
    returns the list of what was slowed."""
    jitter = random.Random(11)
    slowed: list[str] = []
    submit, observe_trade = PaperVenue.submit, PaperVenue.observe_trade

    def slow_submit(venue: PaperVenue, order: Any) -> None:
        time.sleep(jitter.uniform(0, 0.004))  # a venue that takes its time, not a synchronization
        slowed.append(order.client_order_id)
        submit(venue, order)

    def slow_observe(venue: PaperVenue, coin: str, price: Any, quantity: Any, ts_ms: int) -> None:
        time.sleep(jitter.uniform(0, 0.002))
        slowed.append(f"trade {ts_ms}")
        observe_trade(venue, coin, price, quantity, ts_ms)

    monkeypatch.setattr(PaperVenue, "submit", slow_submit)
    monkeypatch.setattr(PaperVenue, "observe_trade", slow_observe)
    return slowed


def replay_in_process(config: Path, data_dir: Path) -> None:
    engine = build_engine(config, data_dir).start()
    try:
        assert engine.finished.wait(RUN_TIMEOUT_S), "the replay did not reach its end"
        report = engine.shutdown(reason="end of data")
    finally:
        engine.stop()
    assert report["end_reason"] == "end of data"


@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_TIMEOUT_S + 60)
def test_two_replays_with_limit_entries_give_identical_journals_and_trade(shared_data, tmp_path, monkeypatch):
    config = write_limit_config(tmp_path, _slice(shared_data, tmp_path, ROWS))
    result = run_cli("--config", str(config), "--data-dir", str(tmp_path / "first"), timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    slowed = slow_venue(monkeypatch)
    replay_in_process(config, tmp_path / "second")
    assert sum(1 for s in slowed if s.startswith("trade")) > 1000, "resting orders were matched by the slow venue"
    runs = []
    for name in ("first", "second"):
        data_dir = tmp_path / name
        report = summary_of(data_dir)
        assert report["end_reason"] == "end of data" and report["ticks"] == ROWS
        runs.append((report, rows_of(data_dir / "journal.db", JOURNAL_TABLES),
                     rows_of(data_dir / "venue.db", VENUE_TABLES)))
    (first, first_journal, first_venue), (second, second_journal, second_venue) = runs

    outcomes = entry_outcomes(first_journal)
    counts = {kind: len(ids) for kind, ids in outcomes.items()}
    assert len(outcomes["filled_whole"]) >= 5, counts
    assert outcomes["filled_in_parts"] or outcomes["timed_out_partly_filled"], f"no partial fill: {counts}"
    assert outcomes["timed_out_partly_filled"], f"no entry kept a part at its time limit: {counts}"
    assert len(outcomes["timed_out_unfilled"]) >= 5 and outcomes["plan_b"], counts
    exits_racing_entries = [e for e in first_journal["order_events"] if e["event"] == "CANCEL_REQUESTED"
                            and e["client_order_id"].endswith("-E") and (e["reason"] or "").startswith("exit")]
    assert exits_racing_entries, f"no exit started while its entry worked: {counts}"
    closed = [t for t in first_journal["trades"] if t["status"] == "CLOSED"]
    assert len(closed) >= 10, "the limit entries trade"
    maker = [f for f in first_journal["fills"] if f["client_order_id"].endswith("-E")]
    assert maker and {f["liquidity"] for f in maker} == {"MAKER"}, "a resting limit fills as maker"

    for table in JOURNAL_TABLES:
        assert first_journal[table] == second_journal[table], f"journal table {table} differs"
    for table in VENUE_TABLES:
        assert first_venue[table] == second_venue[table], f"venue.db table {table} differs"
    assert json.dumps({k: v for k, v in first.items() if k not in RUN_FIELDS | {"data_dir"}}, sort_keys=True) == \
        json.dumps({k: v for k, v in second.items() if k not in RUN_FIELDS | {"data_dir"}}, sort_keys=True)
