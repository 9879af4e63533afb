"""The ``binance`` source against a local websocket server replaying real Binance captures.

The whole engine runs (eight actors, paper venue); only the exchange is local: its frames are
the captured ``btcusdt@trade`` / ``ethusdt@trade`` / ``@bookTicker`` lines of
``../shared/data/streams/binance-hftbacktest/usdm``, and the server drops, silences and
corrupts the stream on the test's command.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.bus import SNIPER
from run import build_engine
from state.messages import FeedRecovered, FeedStale, PushTick, Tick
from tests.conftest import condition
from tests.support.ws_server import ReplayServer

CAPTURES = "streams/binance-hftbacktest/usdm"
WAIT = 15.0


def captured_frames(shared_data: Path, trades_per_coin: int) -> list[str]:
    """The first trade and bookTicker frames of BTC and ETH, merged in capture order."""
    lines: list[tuple[int, str]] = []
    for coin in ("btcusdt", "ethusdt"):
        trades = 0
        with gzip.open(shared_data / CAPTURES / f"{coin}_20240808.gz", "rt") as capture:
            for line in capture:
                stamp, _, frame = line.rstrip("\n").partition(" ")
                if '"stream"' not in frame or "@depth" in frame:
                    continue
                if "@trade" in frame:
                    if trades == trades_per_coin:
                        break
                    trades += 1
                lines.append((int(stamp), frame))
    return [frame for _, frame in sorted(lines, key=lambda item: item[0])]


def trade_prices(frames: list[str]) -> list[tuple[str, Decimal]]:
    out = []
    for frame in frames:
        data = json.loads(frame)["data"]
        if data.get("e") == "trade" and data.get("X", "MARKET") == "MARKET":
            out.append((data["s"].removesuffix("USDT"), Decimal(data["p"])))
    return out


class TickLog:
    """Every Tick and feed event delivered to the Sniper, recorded by a bus tap."""

    def __init__(self, engine: Any) -> None:
        self.ticks: list[tuple[str, Decimal]] = []
        self.events: list[Any] = []
        self.changed = threading.Condition()
        engine.bus.add_tap(self)

    def __call__(self, role: str, message: Any) -> None:
        if role != SNIPER:
            return
        with self.changed:
            if type(message) is Tick:
                self.ticks.append((message.coin, message.price))
            elif type(message) in (FeedStale, FeedRecovered):
                self.events.append(message)
            self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float = WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)


# The capture is from 2024: its trade times are far behind this machine's clock, which the Feed
# rejects as ``clock_behind`` on a wall clock (see the test below). These tests are about the
# stream, not the clock check, so they allow any skew.
CAPTURE_SKEW_S = 10.0**10


def live_engine(tmp_path: Path, server: ReplayServer, **feed: Any) -> Any:
    config = {
        "feed": {"source": "binance", "symbols": ["BTC", "ETH"], "url": server.url,
                 "market_rules": "config", "reconnect_first_s": 0.05,
                 "reconnect_max_s": 0.2, "stale_after_s": 1.0, "silence_timeout_s": 30,
                 "rest_fallback_after_s": 3600, "max_clock_skew_s": CAPTURE_SKEW_S, **feed},
        "strategist": {"strategies": []},
        "paper": {"slippage_bps": 0},
    }
    return build_engine(config, data_dir=tmp_path / "data")


@pytest.fixture
def frames(shared_data) -> list[str]:
    return captured_frames(shared_data, trades_per_coin=150)


def test_captured_trades_stamped_two_years_ago_are_rejected_as_clock_behind_on_a_wall_clock(tmp_path, frames):
    old = frames[:40]
    now_ms = time.time_ns() // 1_000_000
    fresh = json.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": now_ms, "T": now_ms, "s": "BTCUSDT", "t": 999_999_999_999,
        "p": "61800.10", "q": "0.010", "X": "MARKET", "m": False}})
    with ReplayServer(old + [fresh], pace_s=0.0005) as server:
        engine = live_engine(tmp_path, server, max_clock_skew_s=300)
        log = TickLog(engine)  # before start: the first frame may arrive at once
        engine.start()
        try:
            assert log.wait(lambda l: len(l.ticks) >= 1), "the trade stamped now gets through"
            assert log.ticks == [("BTC", Decimal("61800.10"))]
            trades = len(trade_prices(old))
            assert engine.handles["feed"].stats()["rejected_ticks"] == {
                "total": trades, "by_kind": {"clock_behind": trades}}
        finally:
            report = engine.shutdown()
    assert report["rejected_ticks"] == {"total": trades, "by_kind": {"clock_behind": trades}}


def test_ticks_reach_the_sniper_with_the_captured_prices_for_two_symbols(tmp_path, frames):
    expected = trade_prices(frames)
    assert {coin for coin, _ in expected} == {"BTC", "ETH"}
    with ReplayServer(frames, pace_s=0.0005) as server:
        engine = live_engine(tmp_path, server)
        log = TickLog(engine)  # before start: the first frame may arrive at once
        engine.start()
        try:
            assert log.wait(lambda l: len(l.ticks) >= len(expected)), (
                f"{len(log.ticks)} of {len(expected)}; server sent {server.sent}; feed "
                f"{engine.handles['feed'].stats()}; bus {engine.bus.outstanding()}")
            assert log.ticks == expected
            assert "btcusdt@trade" in server.paths[0] and "ethusdt@bookTicker" in server.paths[0]
            top = engine.handles["feed"].stats()["top_of_book"]
            assert set(top) == {"BTC", "ETH"}
        finally:
            engine.stop()


def test_a_dropped_connection_reconnects_resumes_and_no_tick_is_delivered_twice(tmp_path, frames):
    expected = trade_prices(frames)
    half = len(frames) // 2
    with ReplayServer(frames[:half], pace_s=0.0005) as server:
        engine = live_engine(tmp_path, server)
        log = TickLog(engine)  # before start: the first frame may arrive at once
        engine.start()
        try:
            first_half = trade_prices(frames[:half])
            assert log.wait(lambda l: len(l.ticks) >= len(first_half))
            server.drop_clients()
            assert server.wait_for_connections(2, WAIT), "no reconnect"
            repeated = [f for f in frames[:half] if '@trade"' in f][-5:]
            for frame in repeated:  # the exchange repeats a few trades after a reconnect
                server.push(frame)
            server.extend(frames[half:])
            assert log.wait(lambda l: len(l.ticks) >= len(expected)), (
                f"{len(log.ticks)} of {len(expected)} ticks; server sent {server.sent} of {len(frames)} frames "
                f"to {server.clients} client(s) over {server.connections} connection(s); "
                f"feed {engine.handles['feed'].stats()}; bus {engine.bus.outstanding()}")
            assert log.ticks == expected, "every trade once, in order"
            stats = engine.handles["feed"].stats()["source"]
            assert 1 <= stats["reconnects"] <= 3
            assert stats["duplicates"] == len(repeated) == 5
            assert len(server.paths) == server.connections >= 2, "resubscribed on every connection"
        finally:
            report = engine.shutdown()
    assert report["reconnects"] >= 1


def test_a_silent_open_connection_makes_the_coins_stale_blocks_entries_then_recovers(tmp_path, frames):
    with ReplayServer(frames[:40], pace_s=0.0005) as server:
        engine = live_engine(tmp_path, server)
        log = TickLog(engine)  # before start: the first frame may arrive at once
        engine.start()
        try:
            wanted = len(trade_prices(frames[:40]))
            assert log.wait(lambda l: len(l.ticks) >= wanted)
            last_btc = [price for coin, price in log.ticks if coin == "BTC"][-1]
            engine.sniper.add_condition(condition(coin="BTC", trigger=last_btc + 1, size=200))
            server.pause()  # connected, but nothing comes: not even pongs
            paused = time.monotonic()
            assert log.wait(lambda l: {e.coin for e in l.events if type(e) is FeedStale} == {"BTC", "ETH"},
                            timeout=2.0), "FeedStale within stale_after_s + 1 s"
            assert time.monotonic() - paused <= 2.0
            assert engine.handles["feed"].stats()["stale"] == ["BTC", "ETH"]

            # A REST fallback price above the trigger: it keeps stops working, but no entry while stale.
            now_ms = time.time_ns() // 1_000_000  # a live venue's clock is ours (the capture's is 2024)
            engine.bus.send(PushTick(ts_init_ns=engine.clock.now_ns(), coin="BTC", price=last_btc + 5,
                                     ts_ms=now_ms, origin="rest"))
            assert engine.wait_idle(WAIT)
            assert engine.sniper.snapshot().positions == ()
            blocked = engine.journal.events("ConditionBlocked")
            assert blocked and blocked[-1]["data"]["reason"].startswith("ORDER_BOOK_STALE")

            server.resume()
            crossing = json.dumps({"stream": "btcusdt@trade", "data": {
                "e": "trade", "E": now_ms + 1, "T": now_ms + 1, "s": "BTCUSDT", "t": 999_999_999_999,
                "p": str(last_btc + 6), "q": "0.010", "X": "MARKET", "m": False}})
            server.push(crossing)
            assert log.wait(lambda l: any(type(e) is FeedRecovered and e.coin == "BTC" for e in l.events))
            assert engine.wait_idle(WAIT)
            assert len(engine.sniper.snapshot().positions) == 1, "entries resume once the coin recovered"
        finally:
            report = engine.shutdown()
    assert report["stale_periods"] >= 2


def test_malformed_and_truncated_frames_are_counted_and_skipped(tmp_path, frames):
    good = frames[:60]
    doge = json.dumps({"stream": "dogeusdt@trade", "data": {
        "e": "trade", "E": 1723161256400, "T": 1723161256400, "s": "DOGEUSDT", "t": 1, "p": "0.1",
        "q": "10", "X": "MARKET", "m": False}})
    mixed = good[:20] + ['{"stream": nope}', good[20][: len(good[20]) // 2], doge] + good[20:]
    with ReplayServer(mixed, pace_s=0.0005) as server:
        engine = live_engine(tmp_path, server)
        log = TickLog(engine)  # before start: the first frame may arrive at once
        engine.start()
        try:
            expected = trade_prices(good)
            assert log.wait(lambda l: len(l.ticks) >= len(expected))
            assert log.ticks == expected
            bad = engine.handles["feed"].stats()["source"]["bad_frames"]
            assert bad["total"] == 3
            assert set(bad["counts"]) == {"malformed_json", "truncated", "unknown_stream"}
        finally:
            report = engine.shutdown()
    assert report["bad_frames"] == 3


def shifted(frames: list[str], first_ms: int) -> list[str]:
    """The frames with their exchange times moved so the first is ``first_ms`` (a live venue's
    clock is ours; the capture's is 2024)."""
    base = min(json.loads(f)["data"].get("T") or json.loads(f)["data"].get("E") for f in frames)
    out = []
    for frame in frames:
        envelope = json.loads(frame)
        data = envelope["data"]
        for key in ("T", "E"):
            if key in data:
                data[key] += first_ms - base
        out.append(json.dumps(envelope))
    return out


@pytest.mark.slow
def test_a_breakout_session_on_the_local_server_trades_reports_reconnects_and_stale_periods_and_replays(
        shared_data, tmp_path):
    raw = captured_frames(shared_data, trades_per_coin=1500)
    # The frames go out faster than they happened; their market time is set well ahead of the wall
    # clock so that a condition made at a bar close is never already expired by wall time.
    frames = shifted(raw, time.time_ns() // 1_000_000 + 120_000)
    first, second = frames[: len(frames) // 2], frames[len(frames) // 2:]
    strategy = {"strategies": ["breakout"],
                "breakout": {"lookback_bars": 3, "stop_loss_pct": 0.0003, "take_profit_pct": 0.0003,
                             "position_size_usd": 100}}
    recording = tmp_path / "rec" / "live.csv"
    with ReplayServer(first, pace_s=0.0003) as server:
        config = {
            "feed": {"source": "binance", "symbols": ["BTC", "ETH"], "url": server.url,
                 "market_rules": "config", "bar_seconds": 1,
                     "reconnect_first_s": 0.05, "reconnect_max_s": 0.2, "stale_after_s": 0.5,
                     "silence_timeout_s": 30, "rest_fallback_after_s": 3600},
            "strategist": strategy,
            # A recording holds trades, not quotes: to replay to the same fills, the live session
            # prices market orders from the last trade too (by default it takes the quotes' mid).
            "paper": {"slippage_bps": 0, "quote_max_age_s": 0},
            "session": {"on_stop": "flatten"},
        }
        engine = build_engine(config, data_dir=tmp_path / "live", record=recording)
        log = TickLog(engine)
        engine.start()
        try:
            half = trade_prices(first)
            assert log.wait(lambda l: len(l.ticks) >= len(half), timeout=60)
            server.drop_clients()
            assert server.wait_for_connections(2, WAIT)
            server.pause()
            assert log.wait(lambda l: any(type(e) is FeedStale for e in l.events), timeout=3)
            server.resume()
            server.extend(second)
            everything = len(trade_prices(frames))
            assert log.wait(lambda l: len(l.ticks) >= everything, timeout=60)
            assert engine.wait_idle(WAIT)
        finally:
            report = engine.shutdown()
    assert report["reconnects"] >= 1 and report["stale_periods"] >= 1
    assert report["total_trades"] >= 1
    live_trades = engine_trades(tmp_path / "live")

    files = [{"coin": coin, "path": path} for coin, path in report["recorded"].items()]
    replay = build_engine({"feed": {"source": "replay", "symbols": ["BTC", "ETH"], "files": files,
                                    "bar_seconds": 1},
                           "strategist": strategy, "paper": {"slippage_bps": 0, "quote_max_age_s": 0},
                           "session": {"on_stop": "flatten"}}, data_dir=tmp_path / "replayed").start()
    try:
        assert replay.finished.wait(60)
    finally:
        replay.shutdown()
    assert engine_trades(tmp_path / "replayed") == live_trades


def engine_trades(data_dir: Path) -> list[tuple[str, str, str, str | None]]:
    import sqlite3

    with sqlite3.connect(data_dir / "journal.db") as db:
        rows = db.execute("SELECT position_id, entry_price, exit_price, exit_reason FROM trades "
                          "WHERE status = 'CLOSED' ORDER BY position_id")
        return [tuple(row) for row in rows]


def test_the_bybit_source_subscribes_pings_and_turns_v5_frames_into_ticks_and_quotes(tmp_path, shared_data):
    ticker = json.loads((shared_data / "payloads/bybit/ws_ticker_linear.json").read_text())
    now = time.time_ns() // 1_000_000
    trades = []
    for number, (symbol, price) in enumerate([("BTCUSDT", "17216.50"), ("ETHUSDT", "1265.20"),
                                              ("BTCUSDT", "17217.00")]):
        trades.append(json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": now + number,
                                  "data": [{"T": now + number, "s": symbol, "S": "Buy", "v": "0.010", "p": price,
                                            "i": f"id-{number}", "BT": False}]}))
    with ReplayServer([json.dumps(ticker), *trades], pace_s=0.01) as server:
        engine = build_engine({
            "feed": {"source": "bybit", "symbols": ["BTC", "ETH"], "url": server.url,
                 "market_rules": "config", "ping_interval_s": 0.2,
                     "stale_after_s": 60, "rest_fallback_after_s": 3600},
            "strategist": {"strategies": []},
        }, data_dir=tmp_path / "data")
        log = TickLog(engine)
        engine.start()
        try:
            assert log.wait(lambda l: len(l.ticks) == 3)
            assert log.ticks == [("BTC", Decimal("17216.50")), ("ETH", Decimal("1265.20")), ("BTC", Decimal("17217.00"))]
            assert server.wait_until(lambda s: any('"op": "ping"' in t or '"op":"ping"' in t for t in s.received), WAIT)
            subscribe = json.loads(server.received[0])
            assert subscribe["op"] == "subscribe"
            assert set(subscribe["args"]) >= {"publicTrade.BTCUSDT", "publicTrade.ETHUSDT", "tickers.BTCUSDT"}
            top = engine.handles["feed"].stats()["top_of_book"]
            assert top["BTC"]["bid"] == "17215.50" and top["BTC"]["ask"] == "17216.00"
        finally:
            engine.stop()


def test_while_the_stream_is_down_rest_prices_keep_coming_under_the_shared_rate_limit(tmp_path, shared_data):
    """No websocket server at all: after rest_fallback_after_s, ccxt polls the local REST server
    (the real USD-M exchangeInfo, a ticker in the venue's shape) and its prices reach the Sniper;
    every request paid a token of the process-wide bucket."""
    from tests.support.http_server import LocalHttpServer

    with gzip.open(shared_data / "payloads/binance-live-rest/binance-usdm_fapi_v1_exchangeInfo_2021-07-22.json.gz",
                   "rt") as info:
        exchange_info = info.read()
    now = time.time_ns() // 1_000_000
    prices = iter(["40100.10", "40100.20", "40100.30"] + ["40100.30"] * 100)

    def ticker(request: Any) -> dict[str, Any]:
        return {"symbol": "BTCUSDT", "lastPrice": next(prices), "closeTime": now, "openPrice": "40000",
                "highPrice": "40200", "lowPrice": "39900", "volume": "1", "quoteVolume": "40000"}

    rest = LocalHttpServer().start()
    rest.route("/fapi/v1/exchangeInfo", exchange_info).route("/fapi/v1/ticker/24hr", ticker)
    closed = ReplayServer()  # started and stopped at once: a port where nothing listens
    closed.start()
    url = closed.url
    closed.stop()
    try:
        engine = build_engine({
            "feed": {"source": "binance", "symbols": ["BTC"], "url": url, "rest_url": rest.url,
                     "reconnect_first_s": 0.05, "reconnect_max_s": 0.2, "rest_fallback_after_s": 0.5,
                     "rest_poll_s": 0.05, "stale_after_s": 60},
            "strategist": {"strategies": []},
        }, data_dir=tmp_path / "data")
        log = TickLog(engine)
        engine.start()
        try:
            assert log.wait(lambda l: len(l.ticks) >= 3)
            assert log.ticks[:3] == [("BTC", Decimal("40100.10")), ("BTC", Decimal("40100.20")),
                                     ("BTC", Decimal("40100.30"))]
            source = engine.handles["feed"].stats()["source"]
            assert source["rest_fallback"]["active"] and source["trades"] == 0
        finally:
            report = engine.shutdown()
        assert report["rest"]["requests"] >= 4 and "waited_s" in report["rest"]
        # Compared once the poller has stopped: while it polls, a request takes its token before
        # it reaches the server, so the two counts differ by the request in flight (this failed
        # under load when read mid-session).
        deadline = time.monotonic() + WAIT
        while engine.rest_limiter.stats()["requests"] != rest.count() and time.monotonic() < deadline:
            time.sleep(0.05)  # the last request, if any, is finishing on the stopped poller's thread
        assert engine.rest_limiter.stats()["requests"] == rest.count()
    finally:
        rest.stop()
