"""Reconciliation with a live venue through the whole engine, on a fake ``LiveVenuePort``
(``tests/support/fake_venue.FakeAccountVenue``): the start-up step (``actors/venue_reconcile.py``)
called directly on a running engine, and live-mode engines (``[engine] mode = "live"``) that
run it inside ``Engine.start`` and check the venue periodically through the Invariants.

Live mode here: a binance USD-M feed whose source is a silent stand-in (ticks are pushed with
``engine.push_tick``), market rules from the venue stubbed out (no network), fake keys in the
environment (live mode reads them once the wiring is merged).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.bus import INVARIANTS, JOURNAL, SNIPER
from actors.venue_reconcile import ReconcileRefused, VenueWatch, reconcile_at_start
from run import Engine, build_engine
from state.config import ConfigError
from state.messages import InvariantViolated, OrderDenied, SubmitOrder
from state.models import entry_order_id
from state.reconcile import DifferenceKind
from state.report import format_report
from state.types import PositionStatus, Side
from tests.actors.helpers import order_request
from tests.conftest import WAIT, condition, manual_config
from tests.support.fake_venue import FakeAccountVenue
from tests.support.quiet_source import QuietSource

D = Decimal


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the start-up step, called directly on a running (paper-mode) engine ---------------------------

@pytest.fixture
def manual_engine(tmp_path: Path) -> Iterator[tuple[Engine, FakeAccountVenue]]:
    venue = FakeAccountVenue(rest_market=True)  # market orders rest until the test fills them
    engine = build_engine(manual_config(), data_dir=tmp_path / "data", venue=venue).start()
    try:
        yield engine, venue
    finally:
        engine.stop()


def start_step(engine: Engine, venue: FakeAccountVenue, on_unknown: str = "report") -> Any:
    return reconcile_at_start(bus=engine.bus, venue=venue, store=engine.store, clock=engine.clock,
                              on_unknown=on_unknown, spot=False, timeout=WAIT)


def test_the_start_step_applies_a_fill_the_venue_has_and_the_store_lacks(manual_engine, ts):
    engine, venue = manual_engine
    engine.sniper.add_condition(condition(trigger=39999, size=4000))
    engine.push_tick("BTC", "40000", ts())
    assert engine.wait_idle(WAIT)
    (pending,) = engine.sniper.snapshot().positions
    entry = entry_order_id(pending.id)
    ordered = venue.book[entry].order.quantity
    made = venue.fill_silently(entry, ordered, price=D("40000"))  # filled while the engine did not hear

    found = start_step(engine, venue)

    assert engine.wait_idle(WAIT)
    (opened,) = engine.sniper.snapshot().positions
    assert opened.status is PositionStatus.OPEN and opened.quantity == ordered
    assert opened.trade_ids == (made.trade_id,), "applied once"
    # The Executor's own reconcile timer may have applied it first: either way, no difference.
    assert found.fills_applied in ((made.trade_id,), ())
    assert found.differences == ()
    assert engine.handles["executor"].stats()["fills"] == 1


def test_the_start_step_reports_and_blocks_a_position_opened_by_hand(manual_engine):
    engine, venue = manual_engine
    venue.trade_by_hand("ETH", "-3")

    found = start_step(engine, venue)

    [difference] = found.differences
    assert (difference.kind, difference.coin, difference.venue_side) == (DifferenceKind.UNKNOWN_POSITION, "ETH",
                                                                          Side.SELL)
    assert set(found.decision.blocked) == {"ETH"}
    assert engine.risk_gate.ask("blocked_coins") == {"ETH": difference.line()}
    [journaled] = engine.journal.events("VenueReconciled")
    assert journaled["data"]["blocked"] == {"ETH": difference.line()}
    assert journaled["data"]["differences"][0]["kind"] == "UNKNOWN_POSITION"
    assert found.as_report()["differences"][0]["venue_quantity"] == "3"


def test_the_start_step_with_halt_refuses_an_order_placed_by_hand(manual_engine):
    engine, venue = manual_engine
    venue.place_by_hand("SOL", Side.BUY, "10", client_order_id="web_42")

    with pytest.raises(ReconcileRefused) as refused:
        start_step(engine, venue, on_unknown="halt")

    assert isinstance(refused.value, ConfigError)
    assert "web_42" in str(refused.value) and "UNKNOWN_ORDER" in str(refused.value)
    [journaled] = engine.journal.events("VenueReconciled")
    assert journaled["data"]["halted"] is True


def test_the_start_step_asks_for_the_fills_since_the_latest_one_stored(manual_engine, ts):
    engine, venue = manual_engine
    engine.sniper.add_condition(condition(trigger=39999, size=4000))
    engine.push_tick("BTC", "40000", ts())
    assert engine.wait_idle(WAIT)
    (pending,) = engine.sniper.snapshot().positions
    entry = entry_order_id(pending.id)
    venue.emit(venue.fill_event(entry, venue.book[entry].order.quantity, price=D("40000")))
    assert engine.wait_idle(WAIT)
    stored = engine.store.get_order(entry_order_id(pending.id)).fills[0].ts_ms

    start_step(engine, venue)

    assert venue.account_calls[0] == stored - 60_000


def test_an_account_that_cannot_be_read_refuses_the_start(manual_engine):
    engine, venue = manual_engine
    venue.account_error = TimeoutError("read timed out")

    with pytest.raises(ReconcileRefused, match="account could not be read.*read timed out"):
        start_step(engine, venue)


def test_a_periodic_check_that_fails_is_logged_and_the_next_one_goes_on(manual_engine, logs):
    engine, venue = manual_engine
    watch = VenueWatch(bus=engine.bus, venue=venue, clock=engine.clock, every_s=60, spot=False)
    venue.account_error = ConnectionError("venue unreachable")

    assert watch.check_once() is False
    assert "VENUE_CHECK_FAILED: ConnectionError: venue unreachable" in logs.text()
    venue.account_error = None
    assert watch.check_once() is True
    assert engine.wait_idle(WAIT)
    assert engine.handles[INVARIANTS].stats()["venue_checks"] == 1
    assert (watch.checks, watch.failures) == (1, 1)
    with pytest.raises(ValueError, match="every_s"):
        VenueWatch(bus=engine.bus, venue=venue, clock=engine.clock, every_s=0, spot=False)


# --- live-mode engines -----------------------------------------------------------------------------

def live_config(**venue: Any) -> dict[str, Any]:
    config = manual_config(venue={"reconcile_every_s": 0, **venue})
    config["engine"]["mode"] = "live"
    config["feed"] = {"source": "binance", "market": "usdm", "symbols": ["BTC", "ETH", "SOL"], "give_up_after_s": 0}
    return config


@pytest.fixture
def live_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Engine]]:
    monkeypatch.setenv("SNIPER_API_KEY", "fake-key-for-reconcile-tests")
    monkeypatch.setenv("SNIPER_API_SECRET", "fake-secret-for-reconcile-tests")
    monkeypatch.setattr("adapters.feeds.live_feeds.exchange_market_rules", lambda feed, limiter: {})
    engines: list[Engine] = []

    def factory(venue: FakeAccountVenue, start: bool = True, **settings: Any) -> Engine:
        engine = build_engine(live_config(**settings), data_dir=tmp_path / "data", venue=venue,
                              source=QuietSource())
        engines.append(engine)
        return engine.start() if start else engine

    yield factory
    for engine in engines:
        engine.stop()


def denials(engine: Engine) -> list[OrderDenied]:
    seen: list[OrderDenied] = []
    engine.bus.add_tap(lambda role, m: seen.append(m) if type(m) is OrderDenied and role == SNIPER else None)
    return seen


def test_live_a_position_opened_by_hand_is_reported_its_coin_blocked_and_logged(live_engine, logs):
    venue = FakeAccountVenue()
    venue.trade_by_hand("ETH", "2")
    engine = live_engine(venue)
    denied = denials(engine)

    engine.sniper.add_condition(condition(coin="ETH", trigger=3000, size=500))
    engine.push_tick("ETH", "3001", now_ms())
    assert engine.wait_idle(WAIT)

    assert [d.reason.split(":")[0] for d in denied] == ["RECONCILE_MISMATCH"]
    assert "ETH: the venue holds long 2" in denied[0].reason
    assert venue.submits == [], "nothing reached the venue"
    assert "RECONCILE_UNKNOWN_POSITION: ETH" in logs.text()
    report = engine.shutdown()
    assert set(report["reconciliation"]["blocked"]) == {"ETH"}
    assert report["reconciliation"]["differences"][0]["kind"] == "UNKNOWN_POSITION"
    assert "reconciliation: 1 difference(s), 0 fill(s) applied | blocked: ETH" in format_report(report)


def test_live_with_halt_a_position_opened_by_hand_refuses_the_start(live_engine, tmp_path):
    venue = FakeAccountVenue()
    venue.trade_by_hand("SOL", "-1.5")
    engine = live_engine(venue, start=False, on_unknown="halt")

    with pytest.raises(ConfigError) as refused:  # run.py: exit 2, the differences printed
        engine.start()

    assert "UNKNOWN_POSITION: SOL: the venue holds short 1.5" in str(refused.value)
    assert not engine.folder_lock.held, "the folder is free again"
    assert venue.submits == []


def test_live_a_position_whose_size_differs_blocks_its_coin_at_the_next_start(live_engine, logs):
    venue = FakeAccountVenue()
    first = live_engine(venue)
    first.sniper.add_condition(condition(trigger=39999, size=4000))
    first.push_tick("BTC", "40000", now_ms())
    assert first.wait_idle(WAIT)
    (opened,) = first.sniper.snapshot().positions
    assert opened.status is PositionStatus.OPEN
    held = opened.quantity
    first.shutdown()
    venue.trade_by_hand("BTC", -held / 2)  # someone sold half on the website

    second = live_engine(venue)
    denied = denials(second)
    second.bus.send(SubmitOrder(ts_init_ns=second.clock.now_ns(), correlation_id="c-x",
                                order=order_request("p0099-E", position_id="p0099", coin="BTC")))
    assert second.wait_idle(WAIT)

    assert [d.order.client_order_id for d in denied] == ["p0099-E"]
    assert denied[0].reason.startswith("RECONCILE_MISMATCH: SIZE_MISMATCH: BTC")
    assert f"the engine holds long {held}, the venue long {held - held / 2}" in denied[0].reason
    assert "RECONCILE_SIZE_MISMATCH: BTC" in logs.text()
    assert second.risk_gate.ask("blocked_coins").keys() == {"BTC"}
    (still,) = second.sniper.snapshot().positions
    assert still.quantity == held, "the engine's position is not changed to match: it is blocked"


def test_live_a_periodic_check_reports_a_difference_seen_twice(live_engine):
    venue = FakeAccountVenue()
    engine = live_engine(venue, reconcile_every_s=0.05)
    violated: list[InvariantViolated] = []
    seen = threading.Event()

    def watch(role: str, message: Any) -> None:
        if type(message) is InvariantViolated and role == JOURNAL:
            violated.append(message)
            seen.set()

    engine.bus.add_tap(watch)
    checks_before = engine.handles[INVARIANTS].stats()["venue_checks"]
    venue.trade_by_hand("SOL", "4")  # opened by hand while the engine runs

    assert seen.wait(WAIT), "the periodic check reported nothing"
    assert engine.wait_idle(WAIT)
    assert [v.code for v in violated] == ["VENUE_UNKNOWN_POSITION"]
    assert "SOL: the venue holds long 4" in violated[0].detail
    assert engine.handles[INVARIANTS].stats()["venue_checks"] >= checks_before + 2
    assert engine.venue_watch is not None and engine.venue_watch.running
    engine.stop()
    assert engine.venue_watch.checks >= 2


def test_live_a_stop_leaves_an_order_placed_by_hand_working(live_engine, logs):
    venue = FakeAccountVenue()
    engine = live_engine(venue)
    venue.place_by_hand("BTC", Side.SELL, "1", client_order_id="web_7")  # after the start: nothing blocked

    report = engine.shutdown()

    assert "web_7" not in venue.cancels and report["canceled_orders"] == []
    assert "FOREIGN_ORDER_KEPT: web_7" in logs.text()


def test_live_a_restart_after_a_fill_missed_while_down_finds_no_difference_and_trades_on(live_engine):
    venue = FakeAccountVenue(rest_market=True)  # the entry rests until the venue fills it
    first = live_engine(venue)
    first.sniper.add_condition(condition(trigger=39999, size=400))
    first.push_tick("BTC", "40000", now_ms())
    assert first.wait_idle(WAIT)
    (pending,) = first.sniper.snapshot().positions
    entry = entry_order_id(pending.id)
    first.stop()  # as a kill would: the entry stays in flight, nothing canceled
    made = venue.fill_silently(entry, venue.book[entry].order.quantity, price=D("40000"))

    second = live_engine(venue)

    (opened,) = second.sniper.snapshot().positions
    assert opened.status is PositionStatus.OPEN and opened.trade_ids == (made.trade_id,)
    assert second.reconciliation == {"differences": [], "blocked": {}, "fills_applied": [],
                                     "fills_since_ms": second.reconciliation["fills_since_ms"],
                                     "taken_ms": second.reconciliation["taken_ms"],
                                     "cash": {"asset": "USDT", "engine": str(second.sniper.snapshot().balance),
                                              "venue": "10000"}}  # a fee apart: within the tolerance
    assert second.risk_gate.ask("blocked_coins") == {}
    assert venue.submissions == {entry: 1}, "no client id used twice"
    second.sniper.add_condition(condition(coin="ETH", trigger=2999, size=400))
    second.push_tick("ETH", "3000", now_ms())
    assert second.wait_idle(WAIT)
    assert len(venue.submissions) == 2, "the session goes on trading"
