"""kill -9 of a running engine, then a new engine on the same data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from state.store import jsonable
from state.types import OrderStatus, PositionStatus
from tests.conftest import WAIT
from tests.support.child import kill_when_ready

CHILD = Path(__file__).with_name("engine_child.py")


def run_child_and_kill(data_dir: Path, out: Path, mode: str) -> None:
    kill_when_ready(CHILD, str(data_dir), str(out), mode)


@pytest.mark.slow
def test_kill_9_then_restart_gives_the_same_snapshot_working_stops_and_no_reused_order_id(make_engine, tmp_path, ts):
    data_dir, out = tmp_path / "data", tmp_path / "child.json"
    run_child_and_kill(data_dir, out, "settled")
    before = json.loads(out.read_text())
    assert len(before["snapshot"]["positions"]) == 2 and len(before["snapshot"]["conditions"]) == 3

    engine = make_engine(data_dir=data_dir)
    assert jsonable(engine.sniper.snapshot()) == before["snapshot"]

    engine.push_tick("BTC", "41000", ts(10_000))  # below the LONG stop
    engine.push_tick("ETH", "3100", ts())  # above the SHORT stop
    assert engine.wait_idle(WAIT)
    snap = engine.sniper.snapshot()
    assert snap.positions == ()
    closed = engine.store.load_positions(active_only=False)
    assert sorted(p.exit_reason for p in closed) == ["STOP_LOSS", "STOP_LOSS"]

    placed_now = engine.venue.submissions
    assert all(count == 1 for count in placed_now.values()), placed_now
    assert not set(placed_now) & set(before["orders"]), "an order placed before the kill was placed again"
    records = engine.store.load_orders()
    assert len(records) == len({r.client_order_id for r in records}) == 4
    assert all(r.status is OrderStatus.FILLED for r in records)


@pytest.mark.slow
def test_kill_9_with_an_entry_in_flight_then_restart_opens_it_exactly_once(make_engine, tmp_path, ts):
    data_dir, out = tmp_path / "data", tmp_path / "child.json"
    run_child_and_kill(data_dir, out, "inflight")
    engine = make_engine(data_dir=data_dir)
    engine.push_tick("BTC", "42002", ts(5))
    assert engine.wait_idle(WAIT)
    positions = engine.store.load_positions(active_only=False)
    entries = [r for r in engine.store.load_orders() if r.client_order_id.endswith("-E")]
    # However far the entry got before the kill, there is exactly one position and one fill.
    (position,) = positions
    assert position.status is PositionStatus.OPEN
    assert [r.status for r in entries] == [OrderStatus.FILLED]
    assert sum(engine.venue.submissions.values()) <= 1
    assert engine.sniper.snapshot().positions == (position,)
