"""A session that placed 5 resting limit entries and is stopped cancels all 5, the venue confirms,
the report lists them, and the final state is persisted (issue 10, "What must hold"): through
the whole engine on the paper venue, from five limit-entry conditions on five coins to the
engine store, the venue's own book (``venue.db``) and the journal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from run import build_engine
from state.journal_store import JournalStore
from state.models import TradeCondition, entry_order_id
from state.store import Store
from state.types import OrderStatus, OrderType, PositionStatus
from state.venue_store import VenueStore
from tests.conftest import WAIT, manual_config

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
