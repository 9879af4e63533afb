#!/usr/bin/env python3
"""Benchmark (not a test) of the Binance live feed on real captured frames.

1. Parse-and-dispatch rate: every frame of
   ``../shared/data/streams/binance-hftbacktest/usdm/btcusdt_20240808.gz`` (trades, bookTicker,
   depth) through ``LiveSource``'s frame handler (parse, de-duplicate, hand trades and quotes
   to the sinks), with sinks that only count: messages/s of the adapter alone.
2. Tick-to-order latency, end to end: the whole engine with ``[feed] source = "binance"``
   connected to a local websocket server on 127.0.0.1; one armed condition, then a frame with a
   crossing trade is pushed; measured from the moment the server writes that frame to the
   socket to the moment the paper venue's ``submit`` is called (websocket read, parse,
   Feed, Sniper, RiskGate, Executor). One entry per sample, the position then closed.
3. The same in live mode against the local Binance USD-M exchange
   (``tests/support/local_binance``): from the moment the exchange writes the trade frame to
   the moment it has read the order request (the above plus ccxt: format, sign, HTTP).

Prints a table and writes JSON to ``bench/results/live.json``. Run::

    python bench/bench_live.py [--samples 200]

Never collected by pytest (not named ``test_*``, outside ``tests/``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.feeds.binance_frames import BinanceFrameParser  # noqa: E402
from adapters.clock import WallClock  # noqa: E402
from adapters.feeds.live_source import LiveSource  # noqa: E402
from adapters.console.logs import configure_logging  # noqa: E402
from adapters.venues.paper import PaperVenue  # noqa: E402
from run import build_engine, resolve_config  # noqa: E402
from state.models import TradeCondition  # noqa: E402
from tests.support.ws_server import ReplayServer  # noqa: E402

__test__ = False

CAPTURE = ROOT.parent / "shared" / "data" / "streams" / "binance-hftbacktest" / "usdm" / "btcusdt_20240808.gz"
DEFAULT_RESULTS = ROOT / "bench" / "results" / "live.json"


def frames_of(path: Path) -> list[str]:
    with gzip.open(path, "rt") as capture:
        return [line.rstrip("\n").partition(" ")[2] for line in capture]


def parse_rate(frames: list[str], repeats: int) -> dict[str, Any]:
    rates = []
    for _ in range(repeats):
        source = LiveSource("binance", parser=BinanceFrameParser({"BTC": "BTCUSDT"}), make_connection=None)  # type: ignore[arg-type]
        counts = {"ticks": 0, "quotes": 0}
        source._sink = lambda *a, **k: counts.__setitem__("ticks", counts["ticks"] + 1)  # noqa: SLF001
        source._quote_sink = lambda *a: counts.__setitem__("quotes", counts["quotes"] + 1)  # noqa: SLF001
        handle = source._on_text  # noqa: SLF001 - the connection thread's entry point
        started = time.perf_counter()
        for frame in frames:
            handle(frame, 0)
        rates.append(len(frames) / (time.perf_counter() - started))
    return {"frames": len(frames), "ticks": counts["ticks"], "quotes": counts["quotes"],
            "messages_per_s_median": int(statistics.median(rates)), "messages_per_s_best": int(max(rates))}


class TimedVenue(PaperVenue):
    """The paper venue (``PaperVenue``, no ledger), noting when each order reached it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reached: dict[str, int] = {}
        self.arrived = threading.Event()

    def submit(self, order: Any) -> None:
        self.reached[order.client_order_id] = time.perf_counter_ns()
        self.arrived.set()
        super().submit(order)


def trade_frame(price: Decimal, trade_id: int, ts_ms: int) -> str:
    return json.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": ts_ms, "T": ts_ms, "s": "BTCUSDT", "t": trade_id, "p": str(price), "q": "0.010",
        "X": "MARKET", "m": False}})


def latency(samples: int, warmup: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as folder, ReplayServer() as server:
        config, _ = resolve_config({
            "feed": {"source": "binance", "symbols": ["BTC"], "url": server.url, "market_rules": "config",
                     "stale_after_s": 3600,
                     "rest_fallback_after_s": 3600},
            "strategist": {"strategies": []}, "paper": {"slippage_bps": 0},
        })
        venue = TimedVenue(clock=WallClock(), markets=config.market)
        engine = build_engine(config, data_dir=Path(folder), venue=venue).start()
        try:
            server.wait_for_connections(1, 10)
            trade_id, price = 1, Decimal("60000")
            server.push(trade_frame(price, trade_id, time.time_ns() // 1_000_000))
            engine.wait_idle(10)
            measured = []
            for number in range(warmup + samples):
                condition = TradeCondition(coin="BTC", direction="LONG", trigger_price=price + 1,
                                           trigger_type="ABOVE", stop_loss_pct="0.01", take_profit_pct="0.01",
                                           position_size_usd=100)
                engine.sniper.add_condition(condition)
                venue.arrived.clear()
                trade_id += 1
                frame = trade_frame(price + 2, trade_id, time.time_ns() // 1_000_000)
                sent = time.perf_counter_ns()
                server.push(frame)
                if not venue.arrived.wait(10):
                    raise SystemExit("the entry never reached the venue")
                entry_id = next(cid for cid in venue.reached if cid.endswith("-E") and cid.startswith(
                    "p") and venue.reached[cid] >= sent)
                if number >= warmup:
                    measured.append((venue.reached[entry_id] - sent) / 1000)
                engine.wait_idle(10)
                position = engine.sniper.snapshot().positions[0]
                engine.sniper.close_position(position.id)
                engine.wait_idle(10)
            restarts = sum(engine.restarts.values())
        finally:
            engine.stop()
    if restarts:
        raise SystemExit(f"actors restarted during the run: {restarts}")
    return _percentiles(measured)


def live_latency(samples: int, warmup: int) -> dict[str, Any]:
    """The same measure in live mode: the engine trades the local Binance USD-M exchange
    (``tests/support/local_binance``) through ccxt, and the time runs from the moment the exchange
    writes the trade frame to its market stream to the moment it has read the order request's
    line (websocket read, parse, Feed, Sniper, RiskGate, Executor, ccxt: format, sign, HTTP)."""
    from tests.support.local_binance import LocalBinance

    key, secret = "bench-key", "bench-secret"
    os.environ["SNIPER_API_KEY"], os.environ["SNIPER_API_SECRET"] = key, secret
    with tempfile.TemporaryDirectory(prefix="bench-live-") as folder, \
            LocalBinance(key, secret, balances={"USDT": Decimal("1000000")}) as local:
        config, _ = resolve_config({
            "engine": {"mode": "live"},
            "feed": {"source": "binance", "symbols": ["BTC"], "url": local.market_ws_url, "rest_url": local.rest_url,
                     "stale_after_s": 3600, "rest_fallback_after_s": 3600},
            "venue": {"rest_url": local.rest_url, "ws_url": local.user_ws_url, "reconcile_every_s": 0},
            "strategist": {"strategies": []},
        })
        engine = build_engine(config, data_dir=Path(folder)).start()
        try:
            if not local.wait_until(lambda ex: ex.market_stream.subscribers("btcusdt@trade") > 0, 10):
                raise SystemExit("the engine never subscribed to the local exchange's trade stream")
            price, trade_id = Decimal("60000"), 1
            local.feed_trade("BTCUSDT", price, "0.01", trade_id=trade_id)
            engine.wait_idle(10)
            measured = []
            orders = 0
            for number in range(warmup + samples):
                condition = TradeCondition(coin="BTC", direction="LONG", trigger_price=price + 1,
                                           trigger_type="ABOVE", stop_loss_pct="0.01", take_profit_pct="0.01",
                                           position_size_usd=100)
                engine.sniper.add_condition(condition)
                trade_id += 1
                local.feed_trade("BTCUSDT", price + 2, "0.01", trade_id=trade_id)
                orders += 1
                if not local.wait_for_request("/fapi/v1/order", count=orders, timeout=10, method="POST"):
                    raise SystemExit("the entry never reached the exchange")
                request = local.requests("/fapi/v1/order", method="POST")[-1]
                sent = local.market_stream.trade_sent_ns("BTCUSDT", trade_id)
                if number >= warmup and sent is not None:
                    measured.append((request.received_ns - sent) / 1000)
                # the fill comes back on the user-data stream: wait for the position to open
                if not local.wait_until(lambda ex: _open_positions(engine) == 1, 10):
                    raise SystemExit("the entry's fill never reached the engine")
                position = engine.sniper.snapshot().positions[0]
                engine.sniper.close_position(position.id)
                orders += 1
                if not local.wait_for_request("/fapi/v1/order", count=orders, timeout=10, method="POST"):
                    raise SystemExit("the exit never reached the exchange")
                if not local.wait_until(lambda ex: not engine.sniper.snapshot().positions, 10):
                    raise SystemExit("the exit's fill never reached the engine")
                engine.wait_idle(10)
            restarts = sum(engine.restarts.values())
        finally:
            engine.shutdown()
    if restarts:
        raise SystemExit(f"actors restarted during the run: {restarts}")
    return _percentiles(measured)


def _open_positions(engine: Any) -> int:
    return sum(1 for p in engine.sniper.snapshot().positions if p.status.value == "OPEN")


def _percentiles(measured: list[float]) -> dict[str, Any]:
    ordered = sorted(measured)

    def pct(p: float) -> int:
        return int(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))])

    return {"samples": len(measured), "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
            "max_us": int(ordered[-1]), "min_us": int(ordered[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    if not CAPTURE.is_file():
        raise SystemExit(f"capture not found: {CAPTURE} (the shared data lives in ../shared/data)")
    configure_logging("WARNING")
    frames = frames_of(CAPTURE)
    rate = parse_rate(frames, args.repeats)
    print(f"parse and dispatch: {rate['frames']:,} frames ({rate['ticks']:,} trades, {rate['quotes']:,} quotes): "
          f"{rate['messages_per_s_median']:,} messages/s median, best {rate['messages_per_s_best']:,}", flush=True)
    lat = latency(args.samples, args.warmup)
    print(f"frame on the socket -> order at the paper venue, {lat['samples']} entries: p50 {lat['p50_us']} us, "
          f"p90 {lat['p90_us']} us, p99 {lat['p99_us']} us, max {lat['max_us']} us", flush=True)
    live = live_latency(args.samples, args.warmup)
    print(f"frame on the socket -> order request at the local exchange (live, ccxt), {live['samples']} entries: "
          f"p50 {live['p50_us']} us, p90 {live['p90_us']} us, p99 {live['p99_us']} us, max {live['max_us']} us",
          flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "parse_and_dispatch": rate, "tick_to_order": lat, "tick_to_order_live": live, "command": shlex.join([sys.executable, *sys.argv]),
        "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
        "commit": commit,
    }, indent=2))


if __name__ == "__main__":
    main()
