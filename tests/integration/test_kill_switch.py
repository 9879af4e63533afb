"""The kill switch in a whole engine (manual ticks, engine time seeded at a fixed noon UTC):
it sees every loss, not only the equity at bar closes.

- a mark between bar closes breaches the daily limit: HALTED, KillSwitchTriggered, the position
  closed, before any bar closed;
- the first trade of the day loses more than the limit and closes before any bar close: trips
  (the day's start is fixed when the engine starts, not at the first equity seen);
- a fall from the equity peak trips the drawdown limit;
- a restart on the same data directory keeps the day's start and the peak.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from run import Engine
from state.messages import BarClosed
from state.types import epoch_ns
from tests.conftest import WAIT, condition

NOON_MS = epoch_ns(datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)) // 1_000_000
LIMITS = {"max_position_usd": 10000, "max_stop_loss_pct": 0.5}


def start(make_engine: Callable[..., Engine], data_dir: Path, at_ms: int, **risk: Any) -> tuple[Engine, list[Any]]:
    """An engine on ``data_dir`` whose engine time starts at ``at_ms``; one bar a day, so no
    bar closes in these tests. Returns it with the list of every BarClosed the bus delivers."""
    engine = make_engine(data_dir=data_dir, start=False, feed={"bar_seconds": 86_400}, sniper={"max_exposure_pct": 1},
                         risk={**LIMITS, **risk})
    bars: list[Any] = []
    engine.bus.add_tap(lambda _role, message: bars.append(message) if isinstance(message, BarClosed) else None)
    engine.clock.seed(at_ms * 1_000_000)
    engine.start()
    return engine, bars


def enter_long(engine: Engine, at_ms: int, *, stop: str = "0.2", target: str = "0.5") -> None:
    """A LONG of 5000 USD filled at 42010 (fee 2.5): half the account on one coin."""
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=5000, stop=stop, target=target))
    engine.push_tick("BTC", "41990", at_ms + 1)
    engine.push_tick("BTC", "42010", at_ms + 2)
    assert engine.wait_idle(WAIT)
    assert [p.status.value for p in engine.sniper.snapshot().positions] == ["OPEN"]


def wait_flat(engine: Engine) -> None:
    assert engine.wait_idle(WAIT)
    assert engine.sniper.snapshot().positions == ()


def test_a_mark_between_bar_closes_that_breaches_the_daily_limit_halts_and_flattens(make_engine, tmp_path):
    engine, bars = start(make_engine, tmp_path / "d", NOON_MS, max_daily_loss_pct=0.01, max_drawdown_pct=0)
    enter_long(engine, NOON_MS)
    engine.push_tick("BTC", "41800", NOON_MS + 500)  # about -0.3 %: reported, nothing happens
    assert engine.wait_idle(WAIT)
    assert engine.risk_gate.trading_state() == "ACTIVE"

    engine.push_tick("BTC", "40700", NOON_MS + 1_600)  # about -1.6 % unrealized

    assert engine.killed.wait(WAIT), "the kill switch did not trip on a mark between bar closes"
    assert engine.kill_reason.startswith("KILL_SWITCH: daily loss 1.5")
    wait_flat(engine)
    assert engine.risk_gate.trading_state() == "HALTED"
    (trade,) = engine.journal.trades(status="CLOSED")
    assert (trade["exit_reason"], Decimal(trade["exit_price"])) == ("KILL_SWITCH", Decimal("40700"))
    assert [e["kind"] for e in engine.journal.events("KillSwitchTriggered")] == ["KillSwitchTriggered"]
    assert bars == [], "tripped before any bar closed"


def test_a_first_trade_that_loses_more_than_the_limit_trips_before_any_bar_close(make_engine, tmp_path):
    engine, bars = start(make_engine, tmp_path / "d", NOON_MS, max_daily_loss_pct=0.01, max_drawdown_pct=0,
                         mark_report_ms=60_000)
    enter_long(engine, NOON_MS, stop="0.02")

    engine.push_tick("BTC", "41000", NOON_MS + 100)  # through the stop: about -1.25 % with fees

    assert engine.killed.wait(WAIT), "a losing first trade did not count against the day's start"
    assert engine.kill_reason.startswith("KILL_SWITCH: daily loss 1.2")
    wait_flat(engine)
    (trade,) = engine.journal.trades(status="CLOSED")
    assert trade["exit_reason"] == "STOP_LOSS"
    assert engine.risk_gate.stats()["day_start_equity"] == "10000"
    assert bars == []


def test_a_fall_from_the_equity_peak_trips_the_drawdown_limit(make_engine, tmp_path):
    engine, bars = start(make_engine, tmp_path / "d", NOON_MS, max_daily_loss_pct=0, max_drawdown_pct=0.01)
    enter_long(engine, NOON_MS)
    engine.push_tick("BTC", "43000", NOON_MS + 1_500)  # about +1.2 %: the peak
    assert engine.wait_idle(WAIT)
    peak = Decimal(engine.risk_gate.stats()["peak_equity"])
    assert peak > Decimal("10100")

    engine.push_tick("BTC", "42100", NOON_MS + 3_000)  # still above the day's start, 1 % below the peak

    assert engine.killed.wait(WAIT), "the drawdown from the peak did not trip"
    assert engine.kill_reason.startswith("KILL_SWITCH: drawdown 1.0")
    assert f"from the peak {peak:.2f}" in engine.kill_reason
    wait_flat(engine)
    assert engine.risk_gate.trading_state() == "HALTED"
    assert bars == []


def test_a_restart_keeps_the_days_start_and_the_peak(make_engine, tmp_path):
    data_dir = tmp_path / "d"
    first, _ = start(make_engine, data_dir, NOON_MS, max_daily_loss_pct=0.01, max_drawdown_pct=0)
    enter_long(first, NOON_MS)
    first.push_tick("BTC", "42500", NOON_MS + 1_500)  # the peak, about +0.56 %
    first.push_tick("BTC", "41700", NOON_MS + 3_000)  # about -0.4 %
    assert first.wait_idle(WAIT)
    (position,) = first.sniper.snapshot().positions
    first.sniper.close_position(position.id)
    wait_flat(first)
    before = first.risk_gate.stats()
    assert first.risk_gate.trading_state() == "ACTIVE"
    first.stop()

    later = NOON_MS + 1_800_000  # half an hour later, the same UTC day
    second, _ = start(make_engine, data_dir, later, max_daily_loss_pct=0.01, max_drawdown_pct=0)
    after = second.risk_gate.stats()
    assert (after["day_start_equity"], after["peak_equity"]) == ("10000", before["peak_equity"])
    assert Decimal(after["equity"]) < Decimal("9960")  # the first session's loss is in the balance

    enter_long(second, later)
    second.push_tick("BTC", "41500", later + 1_500)  # -0.65 % more: over 1 % from the day's start

    assert second.killed.wait(WAIT), "the restart lost the day's start"
    assert second.kill_reason.startswith("KILL_SWITCH: daily loss 1.0")
    assert "from 10000.00" in second.kill_reason
    wait_flat(second)


def test_a_trip_between_bar_closes_closes_at_the_price_of_the_tick_that_tripped(make_engine, tmp_path):
    """With ``[risk] replay_trips = "exact"``, on a tick clock the Sniper holds its later ticks
    until the RiskGate has answered each report, so the close comes at the tripping tick's price however far the Feed has read ahead:
    here every later tick is already queued when the RiskGate decides (a replay at max speed),
    and without the wait the close would take whichever later price the Sniper reached first."""
    engine, bars = start(make_engine, tmp_path / "d", NOON_MS, max_daily_loss_pct=0.01, max_drawdown_pct=0,
                         mark_report_ms=0, replay_trips="exact")
    enter_long(engine, NOON_MS)

    engine.push_tick("BTC", "40700", NOON_MS + 1_000)  # about -1.6 %: the report of this tick trips
    for n in range(1, 41):  # pushed at once, all far from the tripping price
        engine.push_tick("BTC", str(41_990 - n), NOON_MS + 1_000 + n)

    assert engine.killed.wait(WAIT)
    wait_flat(engine)
    (trade,) = engine.journal.trades(status="CLOSED")
    assert (trade["exit_reason"], Decimal(trade["exit_price"])) == ("KILL_SWITCH", Decimal("40700"))
    (order,) = [o for o in engine.journal.orders() if o["intent"] == "EXIT"]
    assert order["ts_ns"] == (NOON_MS + 1_000) * 1_000_000, "the close is stamped with the tripping tick's time"
    assert bars == []
