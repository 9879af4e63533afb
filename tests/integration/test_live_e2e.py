"""The whole engine in live mode against the local Binance USD-M exchange, trading the breakout on
a replayed stream, and a paper session on the same stream (issue 11, "What must hold").

Both sessions watch the same real trades (the first BTC trades of the 2024-08-08 USD-M capture)
through the ``binance`` feed, each from its own ``LocalBinance`` market stream; the live one
places its orders on that exchange through ccxt (signed REST, fills from the user-data stream),
the paper one on the paper venue. The trades go out in lock-step with the engine: the next
trade is fed only once the engine has taken the previous one in, every order it caused has
ended at the exchange (its fills came back on the user-data stream) and every actor is idle.
So an order a trade triggers reaches the exchange before the next trade (the exchange fills a
market order at its last trade, the paper venue at the triggering tick: the same price), and
the engine decides on each trade knowing what the previous ones filled, as the paper session,
whose venue answers at once, does. Without the second wait a fill still on its way while the
next trades close a bar lets the strategy's new conditions meet ticks the Sniper held back
for the order in flight: a live market's timing, not a replay's.

With the same fees (taker 0.04 %, maker 0.02 %) and no slippage, the two journals must hold the
same trades (entry and exit prices, quantities, exit reasons), the same fees and the same PnL;
only the ids the venues give differ (trade ids, venue order ids). The live journal's fills must
also be exactly the exchange's trades.
"""

from __future__ import annotations

import sqlite3
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.bus import FEED
from run import build_engine
from state.messages import PushTick
from tests.conftest import WAIT
from tests.integration.test_live_feed import CAPTURE_SKEW_S, captured_frames, shifted
from tests.support.local_binance import LocalBinance

KEY, SECRET = "e2e-key-visible-4f1c", "e2e-secret-visible-9a2b"
TRADES = 3000  # BTC trades of the capture: several breakout round trips with one-second bars
STRATEGY = {"strategies": ["breakout"],
            "breakout": {"lookback_bars": 3, "stop_loss_pct": 0.0003, "take_profit_pct": 0.0003,
                         "position_size_usd": 200}}


def btc_trades(shared_data: Path) -> list[tuple[Decimal, Decimal, int]]:
    """``(price, quantity, ts_ms)`` of the first BTC trades, moved to just ahead of now."""
    import json
    import time

    frames = shifted(captured_frames(shared_data, trades_per_coin=TRADES), time.time_ns() // 1_000_000 + 120_000)
    out = []
    for frame in frames:
        data = json.loads(frame)["data"]
        if data.get("e") == "trade" and data["s"] == "BTCUSDT" and data.get("X", "MARKET") == "MARKET":
            out.append((Decimal(data["p"]), Decimal(data["q"]), int(data["T"])))
    return out


class RawTicks:
    """Counts the raw ticks the live source hands the Feed (a bus tap)."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __call__(self, role: str, message: Any) -> None:
        if role == FEED and type(message) is PushTick:
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, WAIT)


def session(tmp_path: Path, mode: str, trades: list[tuple[Decimal, Decimal, int]],
            monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one session on ``trades`` in lock-step; its report and the exchange's trades."""
    monkeypatch.setenv("SNIPER_API_KEY", KEY)
    monkeypatch.setenv("SNIPER_API_SECRET", SECRET)
    with LocalBinance(KEY, SECRET, balances={"USDT": Decimal("10000")}, taker_fee=Decimal("0.0004"),
                      maker_fee=Decimal("0.0002"), event_clock="trades") as local:
        config: dict[str, Any] = {
            "engine": {"mode": mode},
            "feed": {"source": "binance", "symbols": ["BTC"], "url": local.market_ws_url,
                     "rest_url": local.rest_url, "bar_seconds": 1, "max_clock_skew_s": CAPTURE_SKEW_S,
                     "stale_after_s": 3600, "silence_timeout_s": 60, "rest_fallback_after_s": 3600},
            "strategist": STRATEGY,
            "paper": {"initial_balance": 10000, "slippage_bps": 0, "quote_max_age_s": 0,
                      "taker_fee": 0.0004, "maker_fee": 0.0002},
            "risk": {"max_position_usd": 1000},
            "session": {"on_stop": "flatten"},
        }
        if mode == "live":
            config["venue"] = {"rest_url": local.rest_url, "ws_url": local.user_ws_url, "reconcile_every_s": 0}
        engine = build_engine(config, data_dir=tmp_path / mode)
        ticks = RawTicks()
        engine.bus.add_tap(ticks)
        engine.start()
        try:
            assert local.wait_until(lambda exchange: exchange.market_stream.subscribers("btcusdt@trade") > 0, WAIT), \
                f"{mode}: the feed never subscribed to the exchange's trade stream"
            for number, (price, quantity, ts_ms) in enumerate(trades, start=1):
                local.feed_trade("BTCUSDT", price, quantity, ts_ms=ts_ms)
                assert ticks.wait(number), f"{mode}: trade {number} never reached the Feed"
                assert engine.wait_idle(WAIT), f"{mode}: the engine did not settle after trade {number}"
                if mode == "live":  # the fills come back on the user-data stream: wait for them too
                    assert local.wait_until(lambda _: not engine.venue.in_flight(), WAIT), \
                        f"live: an order of trade {number} never ended"
                    assert engine.wait_idle(WAIT), f"live: the engine did not settle after trade {number}'s fills"
        finally:
            report = engine.shutdown()
        return report, [dict(trade) for trade in local.trades("BTCUSDT")] if mode == "live" else []


def journal(data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of the journal, numbers as ``Decimal`` (a venue's fee may carry fewer trailing zeros
    than the paper venue's: ``0.14836332`` is ``0.148363320``)."""
    with sqlite3.connect(data_dir / "journal.db") as db:
        return [tuple(_number(value) for value in row) for row in db.execute(query)]


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return value
    return value


TRADE_ROWS = ("SELECT coin, direction, status, quantity, entry_price, exit_price, exit_reason, fees, pnl "
              "FROM trades ORDER BY opened_ts_ns")


@pytest.mark.slow
def test_a_live_session_on_the_local_exchange_journals_what_a_paper_session_on_the_same_stream_does(
        shared_data, tmp_path, monkeypatch, logs):
    trades = btc_trades(shared_data)
    live_report, exchange_trades = session(tmp_path, "live", trades, monkeypatch)
    paper_report, _ = session(tmp_path, "paper", trades, monkeypatch)

    live_rows = journal(tmp_path / "live", TRADE_ROWS)
    assert len(live_rows) >= 2, "the stream must make the breakout trade more than once"
    assert live_rows == journal(tmp_path / "paper", TRADE_ROWS)
    for key in ("total_trades", "wins", "losses", "realized_pnl_usd", "fees_paid_usd", "gross_pnl_usd"):
        assert _number(live_report[key]) == _number(paper_report[key]), key
    assert live_report["mode"] == "live" and paper_report["mode"] == "paper"

    # The live journal's fills are the exchange's trades, one for one.
    fills = journal(tmp_path / "live", "SELECT trade_id, quantity, price, fee FROM fills ORDER BY trade_id")
    assert sorted((str(t["id"]), Decimal(t["qty"]), Decimal(t["price"]), Decimal(t["commission"]))
                  for t in exchange_trades) == sorted(
        (str(trade_id), quantity, price, fee) for trade_id, quantity, price, fee in fills)

    # A session that traded: neither the key nor the secret in a log message (as the code wrote
    # it, before the log sinks' own masking), the stores, the journal or the report.
    for secret in (KEY, SECRET):
        assert secret not in logs.text()
        for path in (tmp_path / "live").rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
