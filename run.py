"""Composition root and command line: the only module that wires actors, adapters and state.

Python API::

    from run import build_engine
    with build_engine("config.toml", data_dir="var") as engine:
        engine.sniper.add_condition(TradeCondition(...))
        engine.push_tick("BTC", "42001", ts_ms)      # with [feed] source = "manual"
        engine.wait_idle(5)
        print(engine.sniper.snapshot())

Command line::

    python run.py --config config.toml [--data-dir DIR] [--duration S]
    python run.py --config config.toml --status    # durable state as JSON, starts nothing

Exit codes: 0 clean stop, 2 bad config or input, 3 halted by the supervisor (an actor could
not be kept alive), 99 stopped by the kill switch.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pykka
import pykka.debug
from loguru import logger

from actors.bus import (
    EXECUTOR,
    EXIT_MONITOR,
    FEED,
    INVARIANTS,
    JOURNAL,
    RISK_GATE,
    ROLES,
    SNIPER,
    STRATEGIST,
    Bus,
)
from actors.executor import Executor
from actors.exit_monitor import ExitMonitor
from actors.feed import Feed
from actors.handles import ActorHandle, RiskGateHandle, SniperHandle
from actors.invariants import Invariants
from actors.journal import Journal
from actors.risk_gate import STATE_KEY, REASON_KEY, RiskGate
from actors.sniper import Sniper
from actors.strategist import Strategist
from actors.supervisor import ChildSpec, Supervisor
from adapters.clock import TickClock, WallClock
from adapters.logs import configure_logging, intercept_stdlib_logging
from adapters.paper_exchange import PaperExchange
from adapters.ports import Clock, ExchangePort, MarketSource
from adapters.price_board import InMemoryPriceBoard
from adapters.sim_source import SimSource
from state.config import Config, ConfigError, load_config, parse_config
from state.messages import InjectCrash, ProposeSignal, PushTick, SetTradingState, TimerFired
from state.models import TradeCondition
from state.store import Store
from state.types import TradingState

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_HALTED = 3
EXIT_KILL_SWITCH = 99

JOURNAL_FLUSH_S = 0.25
RECONCILE_S = 5.0

# Consumers start before producers, so nobody's first message waits for a missing role.
START_ORDER = (JOURNAL, INVARIANTS, EXECUTOR, RISK_GATE, SNIPER, EXIT_MONITOR, STRATEGIST, FEED)
# Producers stop first, so the state owners see the last fills; the Journal stops last to flush.
STOP_ORDER = (FEED, STRATEGIST, EXIT_MONITOR, SNIPER, RISK_GATE, EXECUTOR, INVARIANTS, JOURNAL)
STATE_OWNERS = frozenset({SNIPER, RISK_GATE, EXECUTOR, JOURNAL})


class EngineStartError(RuntimeError):
    pass


class Engine:
    """The running system: eight supervised actors on one bus, one store, one venue."""

    def __init__(
        self,
        config: Config,
        *,
        data_dir: Path,
        clock: Clock | None = None,
        venue: ExchangePort | None = None,
        source: MarketSource | None = None,
        ask_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.clock: Clock = clock or _make_clock(config)
        self.store = Store(data_dir / "engine.db")
        self.board = InMemoryPriceBoard()
        self.venue: ExchangePort = venue or PaperExchange(
            clock=self.clock,
            markets=config.market,
            slippage_bps=config.paper.slippage_bps,
            taker_fee_rate=config.paper.taker_fee,
            max_price_age_s=config.paper.max_price_age_s,
        )
        self.source = source if source is not None else _make_source(config)
        self.bus = Bus(ROLES)
        self.supervisor = Supervisor(
            bus=self.bus, clock=self.clock, config=config.supervisor, on_escalate=self._escalate
        )
        self.sniper = SniperHandle(self.bus, ask_timeout)
        self.risk_gate = RiskGateHandle(self.bus, ask_timeout)
        self.handles = {role: ActorHandle(self.bus, role, ask_timeout) for role in ROLES}
        self.handles[SNIPER] = self.sniper
        self.handles[RISK_GATE] = self.risk_gate
        self.exit_code: int | None = None
        self.halt_reason: str | None = None
        self.started_at: float | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._timer_stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._specs = {role: ChildSpec(role, self._factory(role), role in STATE_OWNERS) for role in ROLES}

    # --- wiring ----------------------------------------------------------------------------------

    def _factory(self, role: str) -> Callable[[], pykka.ActorRef[Any]]:
        config = self.config
        base = {"bus": self.bus, "clock": self.clock, "on_failure_notice": self.supervisor.notify_failure}
        factories: dict[str, Callable[[], pykka.ActorRef[Any]]] = {
            FEED: lambda: Feed.start(source=self.source, board=self.board, **base),
            STRATEGIST: lambda: Strategist.start(strategies=config.strategist.strategies, **base),
            RISK_GATE: lambda: RiskGate.start(store=self.store, **base),
            SNIPER: lambda: Sniper.start(
                store=self.store,
                markets=config.market,
                limits=config.sniper,
                initial_balance=config.paper.initial_balance,
                **base,
            ),
            EXECUTOR: lambda: Executor.start(store=self.store, venue=self.venue, **base),
            EXIT_MONITOR: lambda: ExitMonitor.start(**base),
            INVARIANTS: lambda: Invariants.start(store=self.store, **base),
            JOURNAL: lambda: Journal.start(store=self.store, **base),
        }
        return factories[role]

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Engine:
        intercept_stdlib_logging()  # pykka reports crashes on stdlib logging: never lose them
        logger.bind(actor="engine").info(
            "ENGINE_STARTING: mode {} source {} data {}", self.config.engine.mode,
            self.config.feed.source, self.data_dir,
        )
        started = []
        try:
            for role in START_ORDER:
                self.supervisor.start_child(self._specs[role])
                started.append(role)
        except Exception as error:
            self._stop_roles([r for r in STOP_ORDER if r in started])
            self.store.close()
            raise EngineStartError(f"could not start {START_ORDER[len(started)]}: {error}") from error
        self.supervisor.start()
        self._timer = threading.Thread(target=self._run_timers, name="engine-timers", daemon=True)
        self._timer.start()
        self.started_at = time.monotonic()
        logger.bind(actor="engine").info("ENGINE_STARTED: {} actors up", len(started))
        return self

    def stop(self, exit_code: int = EXIT_OK) -> int:
        """Stop in order (producers first, Journal last); idempotent. Returns the exit code."""
        with self._stop_lock:
            if self._stopped.is_set():
                return self.exit_code if self.exit_code is not None else exit_code
            self._timer_stop.set()
            self.supervisor.stop()
            self._stop_roles(STOP_ORDER)
            if self.halt_reason is not None:
                # The RiskGate persists HALTED when it can; if it was the one that died, do it here.
                if self.store.get_setting(STATE_KEY) != TradingState.HALTED.value:
                    self.store.set_setting(STATE_KEY, TradingState.HALTED.value)
                    self.store.set_setting(REASON_KEY, self.halt_reason)
            self.store.close()
            self.exit_code = exit_code
            self._stopped.set()
        logger.bind(actor="engine").info("ENGINE_STOPPED: exit code {}", exit_code)
        return exit_code

    def _stop_roles(self, roles: tuple[str, ...] | list[str]) -> None:
        for role in roles:
            ref = self.supervisor.current_ref(role)
            if ref is not None and ref.is_alive():
                try:
                    ref.stop(block=True, timeout=10)
                except pykka.Timeout:
                    logger.bind(actor="engine").error("STOP_TIMEOUT: {} did not stop within 10s", role)
            self.bus.mark_stopped(role)
        leaked = [r for r in roles if (ref := self.supervisor.current_ref(r)) is not None and ref.is_alive()]
        if leaked:
            logger.bind(actor="engine").error("ACTORS_LEFT_RUNNING: {} (probably a bug)", leaked)

    def _escalate(self, reason: str) -> None:
        """Called by the supervisor's thread: halt trading, then stop in order elsewhere."""
        self.halt_reason = reason
        try:
            self.bus.send(SetTradingState(ts_init_ns=self.clock.now_ns(), state=TradingState.HALTED,
                                          reason=f"supervisor: {reason}"))
        except Exception as error:  # noqa: BLE001 - stopping anyway
            logger.bind(actor="engine").error("HALT_NOT_DELIVERED: {!r}", error)
        threading.Thread(target=self.stop, args=(EXIT_HALTED,), name="engine-halt", daemon=True).start()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_timers(self) -> None:
        """Periodic nudges: Journal flush every 0.25 s, the Sniper's expiry sweep every
        ``sweep_interval_s``, the Executor's reconcile of unknown outcomes every 5 s."""
        step = min(JOURNAL_FLUSH_S, self.config.engine.sweep_interval_s)
        due = {SNIPER: 0.0, EXECUTOR: 0.0}
        every = {SNIPER: self.config.engine.sweep_interval_s, EXECUTOR: RECONCILE_S}
        names = {SNIPER: "sweep", EXECUTOR: "reconcile"}
        while not self._timer_stop.wait(step):
            now = self.clock.now_ns()
            self.bus.tell(JOURNAL, TimerFired(ts_init_ns=now, name="flush"))
            for role in due:
                due[role] += step
                if due[role] + 1e-9 >= every[role]:
                    due[role] = 0.0
                    self.bus.tell(role, TimerFired(ts_init_ns=now, name=names[role]))

    # --- the public API -----------------------------------------------------------------------

    def push_tick(self, coin: str, price: Any, ts_ms: int | None = None, qty: Any = 0) -> None:
        """Deliver a tick through the Feed exactly as a real source would."""
        tick = PushTick(
            ts_init_ns=self.clock.now_ns(), coin=coin, price=price,
            ts_ms=ts_ms if ts_ms is not None else time.time_ns() // 1_000_000, qty=qty,
        )
        self.bus.send(tick)

    def propose(self, condition: TradeCondition) -> None:
        """Hand a condition to the Strategist (Strategist -> RiskGate -> Sniper)."""
        if not isinstance(condition, TradeCondition):
            raise ValueError(f"condition: expected a TradeCondition, got {type(condition).__name__}")
        self.bus.send(ProposeSignal(ts_init_ns=self.clock.now_ns(), correlation_id=condition.id,
                                    condition=condition))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every mailbox is drained (including mail held for a restarting role)."""
        return self.bus.wait_idle(timeout)

    def inject_crash(self, role: str, reason: str = "injected crash") -> None:
        """Make ``role``'s actor fail inside its own thread (chaos tests, the REPL)."""
        if role not in ROLES:
            raise ValueError(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
        self.bus.tell(role, InjectCrash(ts_init_ns=self.clock.now_ns(), reason=reason))

    def wait_for_restart(self, role: str, count: int = 1, timeout: float = 5.0) -> bool:
        return self.supervisor.wait_for_restart(role, count, timeout)

    @property
    def restarts(self) -> dict[str, int]:
        return dict(self.supervisor.restarts)


def _make_clock(config: Config) -> Clock:
    mode = config.engine.clock
    if mode == "auto":
        mode = "tick" if config.feed.source in ("manual", "replay") else "wall"
    return TickClock() if mode == "tick" else WallClock()


def _make_source(config: Config) -> MarketSource | None:
    feed = config.feed
    if feed.source == "sim":
        rules = {coin: config.market(coin) for coin in feed.symbols}
        return SimSource(feed.symbols, rules, seed=feed.seed, ticks_per_second=feed.ticks_per_second)
    if feed.source == "manual":
        return None
    raise ConfigError([f"feed.source: {feed.source!r} is not available in this version"])


def resolve_config(config_or_path: Config | Mapping[str, Any] | str | Path) -> tuple[Config, Path]:
    """A validated config and the folder relative data paths are resolved against."""
    if isinstance(config_or_path, Config):
        return config_or_path, Path.cwd()
    if isinstance(config_or_path, Mapping):
        return parse_config(config_or_path), Path.cwd()
    path = Path(config_or_path)
    return load_config(path), path.resolve().parent


def build_engine(
    config_or_path: Config | Mapping[str, Any] | str | Path,
    data_dir: str | Path | None = None,
    *,
    clock: Clock | None = None,
    venue: ExchangePort | None = None,
    source: MarketSource | None = None,
    ask_timeout: float = 10.0,
) -> Engine:
    """Build (not start) an engine from a config file, a mapping shaped like ``config.toml``,
    or a ``Config``. ``data_dir`` overrides ``[engine] data_dir``; a relative ``data_dir`` in a
    config file is resolved against the file's folder. Raises ``ConfigError``."""
    config, folder = resolve_config_and_data_dir(config_or_path, data_dir)
    return Engine(config, data_dir=folder, clock=clock, venue=venue, source=source, ask_timeout=ask_timeout)


def resolve_config_and_data_dir(
    config_or_path: Config | Mapping[str, Any] | str | Path, data_dir: str | Path | None = None
) -> tuple[Config, Path]:
    """The validated config and the absolute data directory: ``data_dir`` (relative to the
    working directory) if given, else ``[engine] data_dir`` (relative to the config file)."""
    config, base = resolve_config(config_or_path)
    folder = Path(data_dir) if data_dir is not None else config.engine.data_dir
    if not folder.is_absolute():
        folder = (Path.cwd() if data_dir is not None else base) / folder
    return config, folder


# --- command line ------------------------------------------------------------------------------

def _status_line(engine: Engine) -> str:
    try:
        snap = engine.sniper.snapshot()
        feed = engine.handles[FEED].stats()
    except Exception as error:  # noqa: BLE001 - a status line never kills the session
        return f"status unavailable: {error}"
    source = engine.config.feed.source + (" (SIMULATED market)" if engine.source is not None and engine.source.simulated else "")
    elapsed = max(1e-9, time.monotonic() - (engine.started_at or time.monotonic()))
    prices = ", ".join(f"{coin} {price}" for coin, (price, _) in sorted(engine.board.all().items()))
    return (
        f"feed {source} | ticks {feed['ticks']} ({feed['ticks'] / elapsed:.1f}/s) | "
        f"armed {len(snap.conditions)} | open {len(snap.positions)} | "
        f"balance {snap.balance:.2f} | realized {snap.realized_pnl:.2f} | {prices}"
    )


def durable_status(data_dir: Path, initial_balance: Decimal) -> dict[str, Any]:
    """The durable state as JSON-ready data, read straight from the store without starting
    any actor (safe while a session runs: SQLite WAL readers never block the writer)."""
    from state.store import jsonable

    store = Store(data_dir / "engine.db")
    try:
        account = store.load_account()
        return {
            "data_dir": str(data_dir),
            "conditions": [jsonable(condition) for _, condition, _ in store.load_conditions()],
            "positions": [jsonable(position) for position in store.load_positions()],
            "balance": account.get("balance", str(initial_balance)),
            "realized_pnl": account.get("realized_pnl", "0"),
            "fees_paid": account.get("fees_paid", "0"),
            "trading_state": store.get_setting(STATE_KEY) or TradingState.ACTIVE.value,
        }
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Autonomous trade-execution engine (paper session).")
    parser.add_argument("--config", default="config.toml", help="path to config.toml")
    parser.add_argument("--data-dir", help="overrides [engine] data_dir")
    parser.add_argument("--duration", type=float, help="stop after S seconds (default: until Ctrl-C)")
    parser.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--status", action="store_true",
                        help="print the durable state as JSON and exit without starting the engine")
    args = parser.parse_args(argv)

    try:
        if args.status:  # read the store only: no engine, no actor
            config, data_dir = resolve_config_and_data_dir(args.config, args.data_dir)
            status = durable_status(data_dir, config.paper.initial_balance)
            print(json.dumps(status, indent=2, sort_keys=True))
            return EXIT_OK
        engine = build_engine(args.config, args.data_dir)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_BAD_INPUT
    configure_logging(engine.config.engine.log_level, engine.data_dir / "logs")

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logger.bind(actor="engine").info("STOP_REQUESTED: {}", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: pykka.debug.log_thread_tracebacks())

    try:
        engine.start()
    except EngineStartError as error:
        logger.bind(actor="engine").critical("ENGINE_START_FAILED: {}", error)
        return 1
    deadline = None if args.duration is None else time.monotonic() + args.duration
    printed_last = False
    try:
        while not stop_requested.is_set() and not engine.stopped:
            wait = args.status_every if deadline is None else min(args.status_every, max(0.0, deadline - time.monotonic()))
            printed_last = False
            if stop_requested.wait(wait) or engine.stopped:
                break
            print(_status_line(engine), flush=True)
            printed_last = True
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        if not engine.stopped and not printed_last:
            print(_status_line(engine), flush=True)
        code = engine.stop() if not engine.stopped else (engine.exit_code or EXIT_OK)
        engine.wait_stopped(30)
    return engine.exit_code if engine.exit_code is not None else code


if __name__ == "__main__":
    sys.exit(main())
