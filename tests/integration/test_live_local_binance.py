"""The whole engine in live mode with the real ``CcxtVenue`` against the local Binance USD-M
exchange (tests/support/local_binance): keys from the environment, connect and reconcile before
any actor, an entry that fills through the user-data stream, the stop-loss exit that closes it,
and the exchange's position equal to the engine's at each step. Ticks are pushed by the test
(the exchange is fed the same prices, so its market orders fill where the engine expects)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from actors.bus import JOURNAL
from run import Engine, build_engine
from state.messages import PositionClosed, PositionOpened
from tests.conftest import WAIT, LogCapture, condition
from tests.support.local_binance import LocalBinance
from tests.support.quiet_source import QuietSource

KEY, SECRET = "FAKEKEY-visible-123", "FAKESECRET-visible-456"


class Seen:
    """Messages of some kinds the Journal receives, waited on with a bound."""

    def __init__(self, engine: Engine, *kinds: type) -> None:
        self.kinds = kinds
        self.items: list[Any] = []
        self._changed = threading.Condition()
        engine.bus.add_tap(self._tap)

    def _tap(self, role: str, message: Any) -> None:
        if role == JOURNAL and isinstance(message, self.kinds):
            with self._changed:
                self.items.append(message)
                self._changed.notify_all()

    def wait_for(self, kind: type, timeout: float = 3 * WAIT) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := [m for m in self.items if isinstance(m, kind)]):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {kind.__name__} within {timeout}s: {self.items}"
                self._changed.wait(remaining)
            return found[0]


@pytest.fixture
def local() -> Iterator[LocalBinance]:
    with LocalBinance(KEY, SECRET) as exchange:
        yield exchange


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def tick(engine: Engine, local: LocalBinance, price: str) -> None:
    local.feed_trade("BTCUSDT", price, "5")
    engine.push_tick("BTC", price, now_ms())


def test_a_live_session_trades_on_the_local_exchange(local: LocalBinance, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, logs: LogCapture) -> None:
    monkeypatch.setenv("SNIPER_API_KEY", KEY)
    monkeypatch.setenv("SNIPER_API_SECRET", SECRET)
    config = {
        "engine": {"mode": "live", "sweep_interval_s": 0.2},
        "feed": {"source": "binance", "symbols": ["BTC"], "rest_url": local.rest_url, "give_up_after_s": 0,
                 "stale_after_s": 3600},
        "venue": {"testnet": False, "rest_url": local.rest_url, "ws_url": local.user_ws_url, "leverage": {"BTC": 2},
                  "poll_s": 0.2},
        "strategist": {"strategies": []},
        "supervisor": {"backoff_s": [0.0, 0.05, 0.1], "poll_interval_s": 0.05},
    }
    engine = build_engine(config, data_dir=tmp_path / "data", source=QuietSource()).start()
    seen = Seen(engine, PositionOpened, PositionClosed)
    try:
        assert local.wait_for_user_clients(1, WAIT)
        tick(engine, local, "42000")
        engine.sniper.add_condition(condition(trigger="42000", size=100, stop="0.01", target="0.5"))
        tick(engine, local, "42010")
        opened = seen.wait_for(PositionOpened)
        amount, entry = local.position("BTCUSDT")
        assert amount == opened.position.quantity == D("0.002") and entry == D("42010")
        assert local.submissions(opened.position.id + "-E") == 1
        tick(engine, local, "41500")  # below the 1 % stop: the exit is a reduce-only market sell
        closed = seen.wait_for(PositionClosed)
        assert closed.position.id == opened.position.id
        assert local.position("BTCUSDT")[0] == 0
        exits = [r for r in local.requests("/fapi/v1/order", method="POST") if r.params.get("reduceOnly") == "true"]
        assert len(exits) == 1
        engine.shutdown()
    finally:
        engine.stop()
    assert KEY not in logs.text() and SECRET not in logs.text()


def test_a_restart_finds_the_exchange_as_the_store_left_it_and_trades_on(local: LocalBinance, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A session stopped with a position open; the next one on the same folder reconciles with the
    exchange at start (the position is there, the same size), and its stop closes it."""
    monkeypatch.setenv("SNIPER_API_KEY", KEY)
    monkeypatch.setenv("SNIPER_API_SECRET", SECRET)
    config = {
        "engine": {"mode": "live", "sweep_interval_s": 0.2},
        "feed": {"source": "binance", "symbols": ["BTC"], "rest_url": local.rest_url, "give_up_after_s": 0,
                 "stale_after_s": 3600},
        "venue": {"testnet": False, "rest_url": local.rest_url, "ws_url": local.user_ws_url, "poll_s": 0.2},
        "strategist": {"strategies": []},
        "supervisor": {"backoff_s": [0.0, 0.05, 0.1], "poll_interval_s": 0.05},
    }
    first = build_engine(config, data_dir=tmp_path / "data", source=QuietSource()).start()
    try:
        seen = Seen(first, PositionOpened)
        tick(first, local, "42000")
        first.sniper.add_condition(condition(trigger="42000", size=100, stop="0.01", target="0.5"))
        tick(first, local, "42010")
        opened = seen.wait_for(PositionOpened)
    finally:
        first.stop()  # no shutdown: the position stays open, as after a crash
    assert local.position("BTCUSDT")[0] == D("0.002")

    second = build_engine(config, data_dir=tmp_path / "data", source=QuietSource()).start()
    try:
        seen = Seen(second, PositionClosed)
        tick(second, local, "41500")
        closed = seen.wait_for(PositionClosed)
        assert closed.position.id == opened.position.id
        assert local.position("BTCUSDT")[0] == 0
        assert len({r.params.get("newClientOrderId") for r in local.requests("/fapi/v1/order", method="POST")}) == 2
        second.shutdown()
    finally:
        second.stop()
