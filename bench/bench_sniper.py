#!/usr/bin/env python3
"""Benchmark (not a test) of the Sniper path with the real actors on a real engine.

Measures, on a manual feed and a temporary data dir:

1. Tick throughput, end to end (``engine.push_tick`` -> Feed -> Sniper, until
   ``engine.wait_idle`` returns), with a small and a large number of armed conditions
   (default 10 and 10,000, over 100 coins) that no tick ever triggers.
2. Tick-to-order latency on the paper venue: from just before ``push_tick`` of a tick that
   triggers one armed condition to the moment the venue's ``submit`` is called
   (Feed -> Sniper -> RiskGate -> Executor -> venue), one entry per sample on an idle engine.

Prints a table and writes JSON to ``bench/results/sniper.json``. Run::

    python bench/bench_sniper.py [--ticks 50000] [--samples 500] ...

Never collected by pytest (not named ``test_*``, outside ``tests/``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.clock import TickClock  # noqa: E402
from adapters.console.logs import configure_logging  # noqa: E402
from adapters.venues.paper import PaperExchange  # noqa: E402
from adapters.venues.paper_interim import InterimPaperVenue  # noqa: E402
from run import Engine, build_engine, resolve_config  # noqa: E402
from state.messages import OrderRequest  # noqa: E402
from state.models import TradeCondition  # noqa: E402
from state.types import OrderIntent  # noqa: E402

__test__ = False  # belt and braces: never a pytest module

DEFAULT_RESULTS = ROOT / "bench" / "results" / "sniper.json"
MARKET = {"tick_size": "0.01", "qty_step": "0.001", "min_notional": "5"}
ASK_TIMEOUT = 120.0  # arming 10,000 conditions in one ask takes a while
IDLE_TIMEOUT = 300.0


# --- setup -----------------------------------------------------------------------------------

def coin_names(count: int) -> list[str]:
    return [f"C{k:03d}" for k in range(count)]


def config_mapping(coins: Sequence[str]) -> dict[str, Any]:
    """The mapping from the brief, plus a ``markets`` table per coin."""
    return {
        "feed": {"source": "manual", "symbols": list(coins)},
        "sniper": {"max_positions": 5},
        "paper": {"slippage_bps": 0},
        "engine": {"log_level": "WARNING"},
        "markets": {coin: dict(MARKET) for coin in coins},
    }


def base_price(k: int) -> Decimal:
    return Decimal(100 + k)


def never_triggering_conditions(count: int, coins: Sequence[str], run_id: str) -> list[TradeCondition]:
    """``count`` conditions spread round-robin over ``coins``; per coin, LONG ABOVE 2x the base
    price and SHORT BELOW 0.5x alternate, so ticks within +-1 % of the base never fire any."""
    valid_until = datetime.now() + timedelta(days=1)
    conditions = []
    n_coins = len(coins)
    for j in range(count):
        k = j % n_coins
        rank = j // n_coins  # the rank-th condition on this coin
        base = base_price(k)
        offset = Decimal(rank) * Decimal("0.01")
        if (rank + k) % 2 == 0:
            direction, trigger_type, trigger = "LONG", "ABOVE", base * 2 + offset
        else:
            direction, trigger_type, trigger = "SHORT", "BELOW", base / 2 - offset
        conditions.append(TradeCondition(
            id=f"{run_id}-{j:06d}",
            coin=coins[k],
            direction=direction,
            trigger_type=trigger_type,
            trigger_price=trigger,
            stop_loss_pct="0.02",
            take_profit_pct="0.015",
            position_size_usd=100,
            valid_until=valid_until,
            strategy_id="bench",
        ))
    return conditions


def tick_prices(coins: Sequence[str], count: int) -> list[tuple[str, Decimal]]:
    """``count`` (coin, price) pairs, round-robin over ``coins``, each price within +-1 % of
    the coin's base price (a deterministic wiggle)."""
    wiggle = [Decimal(w) / Decimal(1000) for w in (0, 3, 7, 10, 6, 2, -2, -6, -10, -7, -3)]
    n_coins = len(coins)
    cycle = []
    for step in range(len(wiggle)):
        for k, coin in enumerate(coins):
            price = (base_price(k) * (1 + wiggle[(step + k) % len(wiggle)])).quantize(Decimal("0.01"))
            cycle.append((coin, price))
    return [cycle[i % len(cycle)] for i in range(count)] if n_coins else []


class TsCounter:
    """Strictly increasing tick timestamps (ms), starting at wall time: every tick is newer than
    the last of its coin, so the Feed never drops one as out of order."""

    def __init__(self) -> None:
        self.next = time.time_ns() // 1_000_000

    def take(self, count: int = 1) -> int:
        first = self.next
        self.next += count
        return first


def start_engine(mapping: dict[str, Any], data_dir: Path, **kwargs: Any) -> Engine:
    engine = build_engine(mapping, data_dir=data_dir, ask_timeout=ASK_TIMEOUT, **kwargs)
    engine.start()
    return engine


def settle(engine: Engine, what: str) -> None:
    if not engine.wait_idle(IDLE_TIMEOUT):
        raise RuntimeError(f"engine not idle after {what} within {IDLE_TIMEOUT}s: {engine.bus.outstanding()}")


# --- 1. throughput ---------------------------------------------------------------------------

def push_ticks(engine: Engine, ticks: Sequence[tuple[str, Decimal]], ts: TsCounter) -> tuple[int, int, int]:
    """Push every tick, then wait until idle. Returns (start, all pushed, idle) perf ns."""
    push = engine.push_tick
    stamp = ts.take(len(ticks))
    start = time.perf_counter_ns()
    for coin, price in ticks:
        push(coin, price, stamp)
        stamp += 1
    pushed = time.perf_counter_ns()
    if not engine.wait_idle(IDLE_TIMEOUT):
        raise RuntimeError(f"engine not idle after ticks: {engine.bus.outstanding()}")
    idle = time.perf_counter_ns()
    return start, pushed, idle


class ThroughputCase:
    """One engine with ``n_conditions`` armed, ready to be fed measured batches of ticks."""

    def __init__(self, n_conditions: int, coins: Sequence[str], args: argparse.Namespace, data_root: Path) -> None:
        self.n_conditions = n_conditions
        self.coins = coins
        self.engine = start_engine(config_mapping(coins), data_root / f"throughput-{n_conditions}")
        self.ts = TsCounter()
        self.runs: list[dict[str, Any]] = []
        conditions = never_triggering_conditions(n_conditions, coins, f"t{n_conditions}")
        armed_at = time.perf_counter_ns()
        armed = self.engine.sniper.set_conditions(conditions)
        settle(self.engine, "arming")
        self.arm_seconds = (time.perf_counter_ns() - armed_at) / 1e9
        if len(armed) != n_conditions:
            raise RuntimeError(f"armed {len(armed)} of {n_conditions} conditions")
        if args.warmup_ticks:
            push_ticks(self.engine, tick_prices(coins, args.warmup_ticks), self.ts)
        self.feed_before = self.engine.handles["feed"].stats()["ticks"]

    def measure(self, ticks: Sequence[tuple[str, Decimal]]) -> None:
        gc.collect()
        start, pushed, idle = push_ticks(self.engine, ticks, self.ts)
        seconds = (idle - start) / 1e9
        self.runs.append({
            "ticks": len(ticks),
            "seconds": seconds,
            "ticks_per_s": len(ticks) / seconds,
            "us_per_tick": seconds * 1e6 / len(ticks),
            "push_seconds": (pushed - start) / 1e9,
            "drain_after_push_seconds": (idle - pushed) / 1e9,
        })

    def check(self) -> dict[str, Any]:
        """The runs count only if every tick went through and nothing fired or restarted."""
        engine = self.engine
        feed = engine.handles["feed"].stats()
        sniper = engine.sniper.stats()
        expected = sum(run["ticks"] for run in self.runs)
        checks = {
            "feed_ticks_accepted": feed["ticks"] - self.feed_before,
            "feed_ticks_expected": expected,
            "feed_out_of_order": feed["out_of_order"],
            "conditions_still_armed": sniper["conditions"],
            "positions": sniper["positions"],
            "restarts": engine.restarts,
        }
        problems = []
        if checks["feed_ticks_accepted"] != expected or feed["out_of_order"]:
            problems.append("the Feed did not accept every tick")
        if sniper["conditions"] != self.n_conditions or sniper["positions"]:
            problems.append("a condition fired (prices were meant never to trigger)")
        if any(engine.restarts.values()):
            problems.append(f"actor restarts during the run: {engine.restarts}")
        if problems:
            raise RuntimeError(f"throughput with {self.n_conditions} conditions invalid: {'; '.join(problems)}")
        return checks

    def summary(self, checks: dict[str, Any], warmup_ticks: int) -> dict[str, Any]:
        tps = [r["ticks_per_s"] for r in self.runs]
        us = [r["us_per_tick"] for r in self.runs]
        return {
            "conditions": self.n_conditions,
            "coins": len(self.coins),
            "coins_with_conditions": min(self.n_conditions, len(self.coins)),
            "conditions_per_coin_max": math.ceil(self.n_conditions / len(self.coins)),
            "arm_seconds": self.arm_seconds,
            "ticks_per_run": self.runs[0]["ticks"],
            "warmup_ticks": warmup_ticks,
            "runs": self.runs,
            "ticks_per_s_median": statistics.median(tps),
            "ticks_per_s_best": max(tps),
            "ticks_per_s_worst": min(tps),
            "us_per_tick_median": statistics.median(us),
            "us_per_tick_best": min(us),
            "checks": checks,
        }


def throughput(coins: Sequence[str], args: argparse.Namespace, data_root: Path) -> dict[str, Any]:
    """All cases' engines are up at once and their runs interleaved (A B A B ...), so a drift
    in background load hits every case alike; idle engines cost next to nothing."""
    cases: list[ThroughputCase] = []
    try:
        for n in args.conditions:
            print(f"throughput: arming {n:,} condition(s) over {len(coins)} coins ...", file=sys.stderr, flush=True)
            cases.append(ThroughputCase(n, coins, args, data_root))
        ticks = tick_prices(coins, args.ticks)
        for repeat in range(args.repeats):
            print(f"throughput: round {repeat + 1} of {args.repeats} ...", file=sys.stderr, flush=True)
            for case in cases:
                case.measure(ticks)
        summaries = [case.summary(case.check(), args.warmup_ticks) for case in cases]
    finally:
        for case in cases:
            case.engine.stop()
    ratios = {}
    first = summaries[0]
    for case, summary in zip(cases[1:], summaries[1:]):
        # Median of the per-round ratios (each from two adjacent runs) and ratio of medians.
        per_round = [b["us_per_tick"] / a["us_per_tick"] for a, b in zip(cases[0].runs, case.runs)]
        ratios[f"{summary['conditions']} vs {first['conditions']}"] = {
            "ratio_of_medians": summary["us_per_tick_median"] / first["us_per_tick_median"],
            "median_of_round_ratios": statistics.median(per_round),
            "round_ratios": per_round,
        }
    return {"cases": summaries, "cost_ratios": ratios}


# --- 2. latency ------------------------------------------------------------------------------

class TimingVenue(InterimPaperVenue):
    """The paper venue (behind ``VenuePort``) that records when each order reaches it
    (perf_counter_ns, keyed by the order's reference tick timestamp)."""

    def __init__(self, inner: PaperExchange) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self.received_ns: dict[int, int] = {}
        self.intents: dict[int, OrderIntent] = {}
        self.submitted = 0

    def submit(self, order: OrderRequest) -> None:
        now = time.perf_counter_ns()
        with self._lock:
            self.submitted += 1
            self.received_ns.setdefault(order.reference_ts_ms, now)
            self.intents.setdefault(order.reference_ts_ms, order.intent)
        super().submit(order)

    def received(self, reference_ts_ms: int) -> int | None:
        with self._lock:
            return self.received_ns.get(reference_ts_ms)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize_us(values_ns: Sequence[int]) -> dict[str, Any]:
    us = sorted(v / 1000 for v in values_ns)
    return {
        "samples": len(us),
        "p50_us": percentile(us, 50),
        "p90_us": percentile(us, 90),
        "p99_us": percentile(us, 99),
        "max_us": us[-1],
        "min_us": us[0],
        "mean_us": statistics.fmean(us),
    }


def latency_case(coins: Sequence[str], args: argparse.Namespace, data_root: Path) -> dict[str, Any]:
    mapping = config_mapping(coins)
    config, _ = resolve_config(mapping)
    clock = TickClock()
    venue = TimingVenue(PaperExchange(
        clock=clock,
        markets=config.market,
        slippage_bps=config.paper.slippage_bps,
        taker_fee_rate=config.paper.taker_fee,
        max_price_age_s=config.paper.max_price_age_s,
    ))
    engine = start_engine(mapping, data_root / "latency", clock=clock, venue=venue)
    ts = TsCounter()
    entry_ns: list[int] = []
    exit_ns: list[int] = []
    total = args.latency_warmup + args.samples
    try:
        # One tick per coin first, so every coin has a last price below the trigger.
        for coin in coins:
            engine.push_tick(coin, "99", ts.take())
        settle(engine, "the first ticks")
        valid_until = datetime.now() + timedelta(days=1)
        for i in range(total):
            coin = coins[i % len(coins)]
            engine.sniper.add_condition(TradeCondition(
                id=f"lat-{i:06d}",
                coin=coin,
                direction="LONG",
                trigger_type="ABOVE",
                trigger_price=100,
                stop_loss_pct="0.02",
                take_profit_pct="0.015",  # entry 101 -> target 102.51
                position_size_usd=50,
                valid_until=valid_until,
                strategy_id="bench",
            ))
            settle(engine, "arming")

            gc.collect()
            trigger_ts = ts.take()
            pushed = time.perf_counter_ns()
            engine.push_tick(coin, "101", trigger_ts)
            settle(engine, "the trigger tick")
            received = venue.received(trigger_ts)
            if received is None or venue.intents[trigger_ts] is not OrderIntent.ENTRY:
                raise RuntimeError(f"sample {i}: no entry order reached the venue for tick {trigger_ts}")

            exit_ts = ts.take()
            pushed_exit = time.perf_counter_ns()
            engine.push_tick(coin, "103", exit_ts)  # at or above the take-profit: closes it
            settle(engine, "the exit tick")
            received_exit = venue.received(exit_ts)
            if received_exit is None or venue.intents[exit_ts] is not OrderIntent.EXIT:
                raise RuntimeError(f"sample {i}: no exit order reached the venue for tick {exit_ts}")

            if i >= args.latency_warmup:
                entry_ns.append(received - pushed)
                exit_ns.append(received_exit - pushed_exit)

        snap = engine.sniper.snapshot()
        checks = {
            "venue_submissions": venue.submitted,
            "venue_submissions_expected": 2 * total,
            "open_positions_at_end": len(snap.positions),
            "closed_positions": snap.closed_positions,
            "restarts": engine.restarts,
        }
        if venue.submitted != 2 * total or snap.positions or snap.closed_positions != total:
            raise RuntimeError(f"latency run invalid: {checks}")
        if any(engine.restarts.values()):
            raise RuntimeError(f"latency run invalid: actor restarts {engine.restarts}")
    finally:
        engine.stop()
    return {
        "warmup_samples": args.latency_warmup,
        "entry": summarize_us(entry_ns),
        "exit": summarize_us(exit_ns),
        "checks": checks,
    }


# --- report ----------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_full": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "switch_interval_s": sys.getswitchinterval(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    packages = {}
    for name in ("pykka", "loguru", "peewee"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    info["packages"] = packages
    return info


def git_info() -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def print_table(result: dict[str, Any]) -> None:
    out = []
    throughput = result.get("throughput")
    if throughput:
        out.append("Tick throughput (push_tick -> Feed -> Sniper, until wait_idle), "
                   f"{throughput['cases'][0]['ticks_per_run']:,} ticks x {result['args']['repeats']} runs")
        out.append(f"  {'armed':>8} {'on coins':>8} {'ticks/s med':>12} {'best':>8} {'worst':>8} "
                   f"{'us/tick med':>12} {'arm s':>7}")
        for case in throughput["cases"]:
            out.append(f"  {case['conditions']:>8,} {case['coins_with_conditions']:>8} "
                       f"{case['ticks_per_s_median']:>12,.0f} {case['ticks_per_s_best']:>8,.0f} "
                       f"{case['ticks_per_s_worst']:>8,.0f} {case['us_per_tick_median']:>12.2f} "
                       f"{case['arm_seconds']:>7.3f}")
        for name, ratio in throughput["cost_ratios"].items():
            out.append(f"  per-tick cost ratio {name}: {ratio['median_of_round_ratios']:.3f} "
                       f"(median of per-round ratios {', '.join(f'{r:.2f}' for r in ratio['round_ratios'])}; "
                       f"ratio of medians {ratio['ratio_of_medians']:.3f}; ~1.0 = independent of the count)")
    latency = result.get("latency")
    if latency:
        out.append("")
        out.append("Tick-to-order latency on the paper venue "
                   "(push_tick -> Feed -> Sniper -> RiskGate -> Executor -> venue.submit)")
        out.append(f"  {'order':>6} {'samples':>8} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} "
                   f"{'max us':>9} {'min us':>9}")
        for name in ("entry", "exit"):
            s = latency[name]
            out.append(f"  {name:>6} {s['samples']:>8} {s['p50_us']:>9.0f} {s['p90_us']:>9.0f} "
                       f"{s['p99_us']:>9.0f} {s['max_us']:>9.0f} {s['min_us']:>9.0f}")
    m = result["machine"]
    out.append("")
    out.append(f"Python {m['python']} on {m['platform']}, {m['cpu_count']} CPU(s)"
               + (f" ({m['cpu_model']})" if m.get("cpu_model") else "")
               + f"; total {result['elapsed_s']:.1f}s")
    print("\n".join(out), flush=True)


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not counts or any(c < 0 for c in counts):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return counts


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sniper benchmark on the real actors (not a test).")
    parser.add_argument("--ticks", type=positive_int, default=50_000, help="ticks per throughput run (default 50000)")
    parser.add_argument("--repeats", type=positive_int, default=7, help="throughput runs per case, interleaved (default 7)")
    parser.add_argument("--warmup-ticks", type=int, default=2_000, help="unmeasured ticks first (default 2000)")
    parser.add_argument("--conditions", type=parse_counts, default=[10, 10_000],
                        help="armed-condition counts to compare, comma-separated (default 10,10000)")
    parser.add_argument("--coins", type=positive_int, default=100, help="coins C000.. to tick (default 100)")
    parser.add_argument("--samples", type=positive_int, default=500, help="latency samples (default 500)")
    parser.add_argument("--latency-warmup", type=int, default=20, help="unrecorded latency samples first (default 20)")
    parser.add_argument("--only", choices=("throughput", "latency"), help="run one part only")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help=f"JSON output (default {DEFAULT_RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)

    configure_logging("WARNING", None)
    coins = coin_names(args.coins)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "sniper",
        "timestamp": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "cwd": os.getcwd(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "git": git_info(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-sniper-") as tmp:
        data_root = Path(tmp)
        if args.only in (None, "throughput"):
            result["throughput"] = throughput(coins, args, data_root)
        if args.only in (None, "latency"):
            print(f"latency: {args.latency_warmup} + {args.samples} samples ...", file=sys.stderr, flush=True)
            result["latency"] = latency_case(coins, args, data_root)
    result["elapsed_s"] = time.perf_counter() - started

    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
