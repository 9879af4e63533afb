"""A session that placed 5 resting limit entries and is stopped cancels all 5, the venue confirms,
the report lists them, and the final state is persisted (issue 10, "What must hold"): through
the whole engine on the paper venue, from five limit-entry conditions on five coins to the
engine store, the venue's own book (``venue.db``) and the journal.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from run import build_engine
from state.journal_store import JournalStore
from state.models import TradeCondition, entry_order_id
from state.store import Store
from state.types import OrderStatus, OrderType, PositionStatus
from state.venue_store import VenueStore
from tests.conftest import WAIT, manual_config
from tests.integration.test_replay_session import ROOT, _slice, summary_of, write_config

TRIGGERS = {"BTC": Decimal("40000"), "ETH": Decimal("3000"), "SOL": Decimal("200"), "BNB": Decimal("500"),
            "XRP": Decimal("0.5")}


def config() -> dict:
    return manual_config(feed={"symbols": sorted(TRIGGERS)}, paper={"fill_model": "traded_volume"},
                         sniper={"max_positions": 5, "max_exposure_pct": 1}, risk={"max_position_usd": 10000})


def limit_entry(coin: str) -> TradeCondition:
    """A LONG whose buy limit rests at the trigger once a tick above it triggers it."""
    return TradeCondition(
        id=f"limit-{coin}", coin=coin, direction="LONG", trigger_price=TRIGGERS[coin], trigger_type="ABOVE",
        stop_loss_pct="0.02", take_profit_pct="0.015", position_size_usd=500,
        valid_until=datetime.now() + timedelta(hours=1),
        entry_type="limit", entry_offset_ticks=0, entry_timeout_s=3600,
    )


def test_a_stop_with_5_resting_limit_entries_cancels_all_5_and_persists_it(tmp_path, ts, logs):
    data_dir = tmp_path / "data"
    engine = build_engine(config(), data_dir=data_dir).start()
    try:
        for coin in TRIGGERS:
            engine.sniper.add_condition(limit_entry(coin))
        for coin, trigger in TRIGGERS.items():
            engine.push_tick(coin, str(trigger * Decimal("1.001")), ts(), qty="1000")
        assert engine.wait_idle(WAIT)
        positions = engine.sniper.snapshot().positions
        ids = sorted(entry_order_id(p.id) for p in positions)
        assert len(ids) == 5
        working = engine.venue.open_orders()
        assert sorted(o.client_order_id for o in working) == ids
        assert all(o.status is OrderStatus.ACCEPTED and o.filled_quantity == 0 for o in working)
        report = engine.shutdown(reason="stop requested")
        venue_after = {i: engine.venue.fetch_order(i) for i in ids}
        assert engine.venue.open_orders() == []
    finally:
        engine.stop()

    assert sorted(report["canceled_orders"]) == ids
    assert logs.wait_for("ORDERS_CANCELED: 5 [")
    assert all(v is not None and v.status is OrderStatus.CANCELED for v in venue_after.values()), venue_after

    store = Store(data_dir / "engine.db")
    try:
        records = {r.client_order_id: r for r in store.load_orders()}
        active = store.load_positions()
        closed = store.load_positions(active_only=False)
    finally:
        store.close()
    assert sorted(records) == ids
    assert all(r.status is OrderStatus.CANCELED and r.order_type is OrderType.LIMIT and r.filled_quantity == 0
               for r in records.values())
    assert active == [] and len(closed) == 5, "nothing filled: no position is left"
    assert all(p.status is PositionStatus.CLOSED and p.quantity == 0 for p in closed)

    book = VenueStore(data_dir / "venue.db")
    try:
        assert book.load_working() == []
        assert sorted(book.order_ids()) == ids
        assert all(book.load_order(i)[0].status is OrderStatus.CANCELED for i in ids)  # type: ignore[index]
    finally:
        book.close()

    journal = JournalStore(data_dir / "journal.db")
    try:
        orders = {o["client_order_id"]: o for o in journal.orders()}
        events = journal.order_events()
    finally:
        journal.close()
    assert sorted(orders) == ids and {o["status"] for o in orders.values()} == {"CANCELED"}
    assert sorted(e["client_order_id"] for e in events if e["event"] == "CANCELED") == ids

    again = build_engine(config(), data_dir=data_dir).start()  # what a restart finds
    try:
        assert again.wait_idle(WAIT)
        assert again.venue.open_orders() == [] and again.sniper.snapshot().positions == ()
        assert again.venue.submissions == {}, "nothing is placed again"
    finally:
        again.stop()


# --- the same through the command line: SIGTERM of run.py -------------------------------------

COINS = ("BTC", "ETH", "SOL", "BNB", "ADA")  # each buys $100 at ~9,600 within its quantity step
POLL_S = 0.02  # reading the child's venue book: polling another process, not synchronizing threads


def working_entries(venue_db: Path) -> list[str]:
    """The client ids the (running) child's venue book holds as working."""
    if not venue_db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{venue_db}?mode=ro", uri=True, timeout=5) as db:
            return [row[0] for row in db.execute("SELECT client_order_id FROM orders WHERE working = 1")]
    except sqlite3.OperationalError:  # its tables are being created
        return []


def test_sigterm_of_run_py_with_5_resting_limit_entries_cancels_all_5_and_persists_it(shared_data, tmp_path):
    """Five coins replay the same trades (so their breakouts trigger together); each limit rests 5 %
    beyond its trigger for a week, so none fills: five entries rest until SIGTERM."""
    trades = _slice(shared_data, tmp_path, 8_000)
    config = write_config(tmp_path, [(coin, trades) for coin in COINS], speed="100x", bar_seconds=60, lookback=2,
                          extra="[sniper]\nmax_positions = 5\n")
    config.write_text(config.read_text().replace(
        "position_size_usd = 100\n",
        'position_size_usd = 100\nentry_type = "limit"\nentry_offset_pct = -0.05\nentry_timeout_s = 604800\n'))
    data_dir = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir",
                             str(data_dir)], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline and len(working_entries(data_dir / "venue.db")) < 5:
            time.sleep(POLL_S)
        working = sorted(working_entries(data_dir / "venue.db"))
        assert len(working) == 5, f"five entries never rested together: {working}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-3000:]
    assert "ORDERS_CANCELED: 5 [" in err

    report = summary_of(data_dir)
    assert report["end_reason"] != "end of data", "the stop came from SIGTERM, not from the end of the replay"
    assert sorted(report["canceled_orders"]) == working
    assert working_entries(data_dir / "venue.db") == []
    book = VenueStore(data_dir / "venue.db")
    try:
        assert sorted(book.order_ids()) == working
        assert all(book.load_order(i)[0].status is OrderStatus.CANCELED for i in working)  # type: ignore[index]
    finally:
        book.close()
    store = Store(data_dir / "engine.db")
    try:
        assert {r.client_order_id: r.status for r in store.load_orders()} == dict.fromkeys(working, OrderStatus.CANCELED)
        assert store.load_positions() == []
    finally:
        store.close()
    journal = JournalStore(data_dir / "journal.db")
    try:
        assert {o["client_order_id"]: o["status"] for o in journal.orders()} == dict.fromkeys(working, "CANCELED")
    finally:
        journal.close()
