"""The whole engine in live mode against the local Binance USD-M exchange, one fault at a time
(issue 11, "What must hold"): a submit that times out after the exchange accepted it, a dropped
user-data stream, a duplicated fill, a 418 ban, keys refused while running.

Each test arms one condition, feeds the exchange the trade that triggers it, and checks the
engine against the exchange: the orders it holds, the position it holds, what it was told.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.bus import EXECUTOR
from run import EXIT_VENUE_HALTED, _session_outcome, build_engine
from state.messages import OrderDenied, VenueAlert
from state.models import TradeCondition, entry_order_id
from state.types import OrderStatus, TradingState
from tests.conftest import WAIT
from tests.support.local_binance import LocalBinance

KEY, SECRET = "faults-key-visible-31d7", "faults-secret-visible-5e90"
TRIGGER = Decimal("60000")


class Watch:
    """Every ``VenueAlert`` and ``OrderDenied`` on the bus (a tap)."""

    def __init__(self) -> None:
        self.alerts: list[VenueAlert] = []
        self.denied: list[OrderDenied] = []
        self.changed = threading.Condition()

    def __call__(self, role: str, message: Any) -> None:
        with self.changed:
            if type(message) is VenueAlert and message not in self.alerts:
                self.alerts.append(message)
            elif type(message) is OrderDenied and message not in self.denied:
                self.denied.append(message)
            self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float = WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)


class Rig:
    def __init__(self, local: LocalBinance, engine: Any, watch: Watch) -> None:
        self.local, self.engine, self.watch = local, engine, watch
        self.trade_price = TRIGGER - 50

    def arm(self, name: str, trigger: Decimal = TRIGGER) -> str:
        """Arm a LONG BTC market entry above ``trigger``; the id of the entry order it will send."""
        from state.models import position_id_for

        condition = TradeCondition(id=name, coin="BTC", direction="LONG", trigger_price=trigger,
                                   trigger_type="ABOVE", stop_loss_pct="0.02", take_profit_pct="0.015",
                                   position_size_usd=300, valid_until=datetime.now() + timedelta(hours=1))
        self.engine.sniper.add_condition(condition)
        assert self.engine.wait_idle(WAIT)
        return entry_order_id(position_id_for(name))

    def trade(self, price: Decimal) -> None:
        self.local.feed_trade("BTCUSDT", price, "0.5")

    def record(self, client_order_id: str) -> Any:
        return self.engine.handles[EXECUTOR].ask("order", client_order_id)

    def position_quantity(self) -> Decimal:
        return sum((p.quantity for p in self.engine.sniper.snapshot().positions
                    if p.coin == "BTC" and p.status.value == "OPEN"), Decimal(0))

    def wait_position(self, quantity: Decimal) -> bool:
        return self.local.wait_until(lambda ex: self.position_quantity() == quantity, WAIT)


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("SNIPER_API_KEY", KEY)
    monkeypatch.setenv("SNIPER_API_SECRET", SECRET)
    with LocalBinance(KEY, SECRET, balances={"USDT": Decimal("10000")}) as local:
        local.feed_trade("BTCUSDT", TRIGGER - 50, "0.5")
        config = {
            "engine": {"mode": "live"},
            "feed": {"source": "binance", "symbols": ["BTC"], "url": local.market_ws_url, "rest_url": local.rest_url,
                     "stale_after_s": 3600, "silence_timeout_s": 60, "rest_fallback_after_s": 3600},
            "venue": {"rest_url": local.rest_url, "ws_url": local.user_ws_url, "reconcile_every_s": 0,
                      "timeout_s": 2, "poll_s": 0.2, "silence_timeout_s": 5},
            "strategist": {"strategies": []},
            "paper": {"initial_balance": 10000},
            "risk": {"max_position_usd": 1000},
        }
        engine = build_engine(config, data_dir=tmp_path / "live")
        watch = Watch()
        engine.bus.add_tap(watch)
        engine.start()
        try:
            assert local.wait_until(lambda ex: ex.market_stream.subscribers("btcusdt@trade") > 0, WAIT)
            yield Rig(local, engine, watch)
        finally:
            engine.shutdown()


def held(local: LocalBinance) -> Decimal:
    return local.position("BTCUSDT")[0]


def test_a_submit_that_times_out_after_the_exchange_took_it_ends_as_one_order_and_the_right_position(rig):
    order_id = rig.arm("fault-timeout")
    rig.local.accept_then_timeout(delay_s=None)  # placed and filled, the answer never comes in time
    rig.trade(TRIGGER + 1)
    assert rig.local.wait_until(lambda ex: held(ex) > 0, WAIT)
    assert rig.wait_position(held(rig.local)), "the engine never learned the fill of the order it lost"
    assert rig.local.submissions(order_id) == 1
    record = rig.record(order_id)
    assert record.status is OrderStatus.FILLED and record.filled_quantity == held(rig.local)
    rig.local.faults.release_delayed()


def test_a_dropped_user_data_stream_loses_no_fill(rig):
    order_id = rig.arm("fault-drop")
    rig.local.drop_user_stream(refuse_s=300.0)  # no reconnect until allowed: the fill can only come by polling
    assert rig.watch.wait(lambda w: any(a.kind == "STREAM_DOWN" for a in w.alerts))
    rig.trade(TRIGGER + 1)
    assert rig.local.wait_until(lambda ex: held(ex) > 0, WAIT)
    assert rig.wait_position(held(rig.local)), "a fill made while the stream was down was lost"
    record = rig.record(order_id)
    assert record.status is OrderStatus.FILLED
    assert {f.trade_id for f in record.fills} == {str(t["id"]) for t in rig.local.trades("BTCUSDT")}
    assert not any(a.kind == "STREAM_UP" for a in rig.watch.alerts)
    rig.local.allow_user_stream()
    # the stream's reconnect backoff grew while it was refused (at most 60 s: a generous bound)
    assert rig.watch.wait(lambda w: any(a.kind == "STREAM_UP" for a in w.alerts), timeout=90), \
        "the stream never came back"
    assert rig.engine.wait_idle(WAIT)
    assert len(rig.record(order_id).fills) == 1 and rig.position_quantity() == held(rig.local)


def test_a_duplicated_fill_changes_nothing(rig):
    order_id = rig.arm("fault-duplicate")
    rig.local.duplicate_events(3)  # every user-data event goes out three times
    rig.trade(TRIGGER + 1)
    assert rig.local.wait_until(lambda ex: held(ex) > 0, WAIT)
    assert rig.wait_position(held(rig.local))
    assert rig.engine.wait_idle(WAIT)
    record = rig.record(order_id)
    assert len(record.fills) == len(rig.local.trades("BTCUSDT")) == 1
    assert rig.position_quantity() == held(rig.local) == record.filled_quantity
    assert len(rig.engine.store.load_fills(order_id)) == 1


def test_a_418_stops_new_orders_and_trading_resumes_after_the_ban(rig):
    until = rig.local.ban(2.0)  # every request refused, 418 + Retry-After, for two seconds
    banned_id = rig.arm("fault-banned")
    rig.trade(TRIGGER + 1)  # triggers: the first request the venue makes meets the ban
    assert rig.watch.wait(lambda w: any(a.kind == "BANNED" for a in w.alerts)), "the ban was never noticed"
    banned = next(a for a in rig.watch.alerts if a.kind == "BANNED")
    assert banned.until_ms is not None and banned.until_ms >= until - 1000
    assert rig.local.submissions(banned_id) <= 1  # at most the request that met the ban
    assert rig.position_quantity() == 0 and held(rig.local) == 0

    # While the ban lasts no order goes out: a second condition is denied before the venue.
    during = rig.arm("fault-during-ban", trigger=TRIGGER + 10)
    rig.trade(TRIGGER + 11)
    assert rig.watch.wait(lambda w: any(d.order.client_order_id == during for d in w.denied)), \
        "an entry triggered during the ban was not stopped"
    assert "VENUE_BANNED" in next(d.reason for d in rig.watch.denied if d.order.client_order_id == during)
    assert rig.local.submissions(during) == 0

    # After the ban, trading resumes.
    assert rig.local.wait_until(lambda ex: ex.server_time_ms() > until + 200, WAIT)
    after = rig.arm("fault-after-ban", trigger=TRIGGER + 20)
    rig.trade(TRIGGER + 21)
    assert rig.local.wait_until(lambda ex: held(ex) > 0, WAIT), "no order went out after the ban"
    assert rig.wait_position(held(rig.local))
    assert rig.record(after).status is OrderStatus.FILLED and rig.local.submissions(after) == 1


def test_keys_refused_while_running_halt_trading_with_a_clear_message(rig):
    order_id = rig.arm("fault-keys")
    rig.local.revoke_api_key()  # -2015 from now on
    rig.trade(TRIGGER + 1)
    assert rig.watch.wait(lambda w: any(a.kind == "AUTH_FAILED" for a in w.alerts))
    assert rig.engine.venue_halted.wait(WAIT), "the engine went on after the venue refused its keys"
    code, reason = _session_outcome(rig.engine, "stop requested")
    assert code == EXIT_VENUE_HALTED and "-2015" in reason and "refused" in reason
    assert rig.record(order_id).status is OrderStatus.REJECTED
    assert rig.engine.wait_idle(WAIT)
    assert rig.engine.risk_gate.trading_state() == TradingState.HALTED.value
    stored = rig.engine.store.load_trading_reason()
    assert stored.startswith("VENUE_HALTED") and "-2015" in stored
    for text in (reason, stored):
        assert KEY not in text and SECRET not in text
    assert held(rig.local) == 0
