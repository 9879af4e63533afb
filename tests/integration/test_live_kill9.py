"""kill -9 of a live session with an entry in flight and a resting order, then a restart on the same
folder (issue 11, "What must hold").

The exchange is the test's ``LocalBinance``; the first engine runs in a child process
(``live_kill9_child.py``) with a BTC market entry and an ETH limit entry armed. The test
triggers the ETH entry (its limit order rests on the exchange's book), then makes the exchange
hold its answer to the next order and triggers the BTC entry: the exchange places and fills it,
but the child never hears back, and is killed with SIGKILL while the request is in flight.

A new engine on the same folder must find, before trading, the BTC order and its fill (the
store had it as submitted), hold the position the exchange holds, find the ETH order still
working, use no client order id twice, and go on trading: the resting ETH order fills into a
position, and the BTC position exits at its target.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.bus import EXECUTOR
from run import build_engine
from state.models import entry_order_id
from state.types import OrderStatus
from tests.conftest import WAIT
from tests.integration.live_kill9_child import BTC_TRIGGER, ETH_OFFSET_TICKS, ETH_TRIGGER
from tests.support.local_binance import LocalBinance

CHILD = Path(__file__).with_name("live_kill9_child.py")
KEY, SECRET = "kill9-key-visible-77aa", "kill9-secret-visible-88bb"
ETH_TICK = Decimal("0.01")  # the built-in exchangeInfo's ETHUSDT tick size


def live_config(local: LocalBinance) -> dict[str, Any]:
    return {
        "engine": {"mode": "live"},
        "feed": {"source": "binance", "symbols": ["BTC", "ETH"], "url": local.market_ws_url,
                 "rest_url": local.rest_url, "stale_after_s": 3600, "silence_timeout_s": 60,
                 "rest_fallback_after_s": 3600, "reconnect_first_s": 0.05, "reconnect_max_s": 0.5},
        "venue": {"rest_url": local.rest_url, "ws_url": local.user_ws_url, "reconcile_every_s": 0,
                  "timeout_s": 60},
        "strategist": {"strategies": []},
        "paper": {"initial_balance": 10000},
        "sniper": {"max_exposure_pct": 1},
        "risk": {"max_position_usd": 1000},
    }


class Child:
    """The first engine, in a process of its own, until it says ARMED."""

    def __init__(self, data_dir: Path, config: Path) -> None:
        env = {**os.environ, "SNIPER_API_KEY": KEY, "SNIPER_API_SECRET": SECRET}
        self.proc = subprocess.Popen([sys.executable, str(CHILD), str(data_dir), str(config)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.armed = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.strip() == "ARMED":
                self.armed.set()
                return

    def wait_armed(self, timeout: float = 60) -> None:
        if not self.armed.wait(timeout):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            pytest.fail(f"the child engine never armed its conditions: {err[-3000:]}")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        assert self.proc.returncode == -signal.SIGKILL


def subscribed(local: LocalBinance) -> bool:
    return all(local.market_stream.subscribers(f"{symbol}@trade") > 0 for symbol in ("btcusdt", "ethusdt"))


@pytest.mark.slow
def test_kill9_with_an_entry_in_flight_and_a_resting_order_then_a_restart_reconciles_and_trades_on(
        tmp_path, monkeypatch):
    monkeypatch.setenv("SNIPER_API_KEY", KEY)
    monkeypatch.setenv("SNIPER_API_SECRET", SECRET)
    data_dir = tmp_path / "live"
    with LocalBinance(KEY, SECRET, balances={"USDT": Decimal("10000")}) as local:
        config = live_config(local)
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        local.feed_trade("BTCUSDT", BTC_TRIGGER - 100, "0.1")  # the tape before the child watches it
        local.feed_trade("ETHUSDT", ETH_TRIGGER - 5, "1")

        child = Child(data_dir, config_file)
        child.wait_armed()
        assert local.wait_until(subscribed, WAIT), "the child never subscribed to the trade streams"

        local.feed_trade("ETHUSDT", ETH_TRIGGER + ETH_TICK, "1")  # triggers: a buy limit 50 ticks under rests
        assert local.wait_until(lambda ex: any(o["symbol"] == "ETHUSDT" for o in ex.orders()), WAIT)
        (eth_order,) = [o for o in local.orders("ETHUSDT")]
        assert eth_order["status"] == "NEW" and eth_order["type"] == "LIMIT"
        assert Decimal(eth_order["price"]) == ETH_TRIGGER + ETH_OFFSET_TICKS * ETH_TICK

        local.accept_then_timeout()  # the next order is placed and filled, its answer held
        local.feed_trade("BTCUSDT", BTC_TRIGGER + 1, "0.1")
        assert local.wait_for_request("/fapi/v1/order", count=2, timeout=WAIT, method="POST")
        assert local.wait_until(lambda ex: ex.position("BTCUSDT")[0] > 0, WAIT)
        child.kill()  # with the BTC entry in flight: the child's store has it as submitted
        local.faults.release_delayed()
        (btc_order,) = local.orders("BTCUSDT")
        held = local.position("BTCUSDT")[0]
        with sqlite3.connect(data_dir / "engine.db") as db:
            stored = dict(db.execute("SELECT client_order_id, status FROM orders"))
        assert stored == {btc_order["clientOrderId"]: "SUBMITTING", eth_order["clientOrderId"]: "ACCEPTED"}, \
            "the kill must find the BTC entry in flight and the ETH entry resting"

        engine = build_engine(config, data_dir=data_dir).start()
        try:
            assert engine.wait_idle(WAIT)
            reconciliation = engine.reconciliation
            assert reconciliation is not None and reconciliation["differences"] == [], reconciliation
            assert reconciliation["blocked"] == {}

            # The order in flight: found at the exchange with its fill, applied once.
            btc_id = btc_order["clientOrderId"]
            record = engine.handles[EXECUTOR].ask("order", btc_id)
            assert record.status is OrderStatus.FILLED
            exchange_fills = {str(t["id"]): Decimal(t["qty"]) for t in local.trades("BTCUSDT")}
            assert {f.trade_id: f.quantity for f in record.fills} == exchange_fills
            positions = {p.coin: p for p in engine.sniper.snapshot().positions}
            assert positions["BTC"].quantity == held and entry_order_id(positions["BTC"].id) == btc_id

            # The resting order: still working on both sides.
            eth_record = engine.handles[EXECUTOR].ask("order", eth_order["clientOrderId"])
            assert eth_record.status is OrderStatus.ACCEPTED
            assert local.order(eth_order["clientOrderId"])["status"] == "NEW"

            # The session goes on trading: the resting order fills, the BTC position takes profit.
            assert local.wait_until(subscribed, WAIT)
            local.feed_trade("ETHUSDT", eth_order["price"], "5")
            assert local.wait_until(lambda ex: ex.position("ETHUSDT")[0] > 0, WAIT)
            target = positions["BTC"].take_profit_price
            local.feed_trade("BTCUSDT", target + 10, "0.1")
            assert local.wait_until(lambda ex: ex.position("BTCUSDT")[0] == 0, WAIT), "the BTC exit never filled"
            assert engine.wait_idle(WAIT)
            assert local.wait_until(
                lambda ex: {p.coin for p in engine.sniper.snapshot().positions if p.status.value == "OPEN"} == {"ETH"},
                WAIT)
            eth = next(p for p in engine.sniper.snapshot().positions if p.coin == "ETH")
            assert eth.quantity == local.position("ETHUSDT")[0]
        finally:
            engine.shutdown()

        # No client order id went out twice, across the kill and the restart.
        orders = local.orders()
        assert len(orders) == 3  # the ETH entry, the BTC entry and its exit (the ETH position is kept)
        for order in orders:
            assert local.submissions(order["clientOrderId"]) == 1, order["clientOrderId"]
