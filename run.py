"""Composition root and command line: the only module that wires actors, adapters and state.

Python API::

    from run import build_engine
    with build_engine("config.toml", data_dir="var") as engine:
        engine.sniper.add_condition(TradeCondition(...))
        engine.push_tick("BTC", "42001", ts_ms)      # with [feed] source = "manual"
        engine.wait_idle(5)
        print(engine.sniper.snapshot())

Command line::

    python run.py --config config.toml [--data-dir DIR] [--duration S] [--repl]
    python run.py --config config.toml --status    # durable state as JSON, starts nothing

A session ends on Ctrl-C / SIGTERM, after ``--duration``, at the end of a replay, or by the
kill switch; it then stops gracefully (``Engine.shutdown``): the Feed and the Strategist stop,
orders in flight settle, open positions are kept or flattened (``[session] on_stop``), and the
session report is printed and written to ``<data_dir>/runs/<run_id>/summary.json``.

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
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
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
from actors.handles import ActorHandle, JournalHandle, RiskGateHandle, SniperHandle
from actors.invariants import Invariants
from actors.journal import Journal
from actors.risk_gate import RiskGate
from actors.sniper import Sniper
from actors.strategist import Strategist
from actors.supervisor import ChildSpec, Supervisor
from adapters.clock import TickClock, WallClock
from adapters.logs import configure_logging, intercept_stdlib_logging
from adapters.paper_exchange import PaperExchange
from adapters.rate_limit import TokenBucket
from adapters.recorder import TradeRecorder
from adapters.ports import Clock, ExchangePort, MarketSource
from adapters.price_board import InMemoryPriceBoard
from adapters.sim_source import SimSource
from state.config import Config, ConfigError, ReplayFile, load_config, parse_config
from state.messages import (
    ConditionArmed,
    ConditionRejected,
    EndOfData,
    FeedFinished,
    InjectCrash,
    KillSwitchTriggered,
    ProposeSignal,
    PushTick,
    SetTradingState,
    TimerFired,
)
from state.market import MarketRules
from state.models import TradeCondition
from state.report import format_report
from state.store import Store, StoreOutbox, jsonable
from state.strategies import StrategyContext, build_strategy
from state.types import PositionStatus, TradingState

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_HALTED = 3
EXIT_KILL_SWITCH = 99

JOURNAL_FLUSH_S = 0.25
REST_RATE_PER_S = 20.0  # sustained, shared by every REST call of the process
REST_BURST = 50
RECONCILE_S = 5.0

# Consumers start before producers, so nobody's first message waits for a missing role.
START_ORDER = (JOURNAL, INVARIANTS, EXECUTOR, RISK_GATE, SNIPER, EXIT_MONITOR, STRATEGIST, FEED)
# Producers stop first, so the state owners see the last fills; the Journal stops last to flush.
STOP_ORDER = (FEED, STRATEGIST, EXIT_MONITOR, SNIPER, RISK_GATE, EXECUTOR, INVARIANTS, JOURNAL)
STATE_OWNERS = frozenset({SNIPER, RISK_GATE, EXECUTOR, JOURNAL})


class EngineStartError(RuntimeError):
    pass


def new_run_id() -> str:
    """Sortable and unique: ``20261121T101500Z-3f9a1c``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


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
        run_id: str | None = None,
        progress: bool = False,
        record: Path | str | None = None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.run_id = run_id or new_run_id()
        try:
            self.recorder = TradeRecorder(record) if record is not None else None
        except ValueError as error:
            raise ConfigError([str(error)]) from None
        self.store = Store(data_dir / "engine.db")
        self.bus = Bus(ROLES)
        self.bus.set_outbox(StoreOutbox(self.store, self.run_id))  # the Journal's copies, durable with their decisions
        self.rest_limiter = TokenBucket(REST_RATE_PER_S, REST_BURST)  # every REST call of the process
        try:
            self.source = source if source is not None else _make_source(
                config, self._source_finished, progress, self.rest_limiter)
            self.journal_store = _make_journal_store(config, data_dir)
        except ConfigError:
            self.store.close()
            raise
        self.clock: Clock = clock or _make_clock(config, self.store, self.source)
        self.board = InMemoryPriceBoard()
        self.market_rules: dict[str, MarketRules] = {}  # the venue's, when loaded at start
        self.market_rules_from = "config"
        self.venue: ExchangePort = venue or PaperExchange(
            clock=self.clock,
            markets=self.market,
            slippage_bps=config.paper.slippage_bps,
            taker_fee_rate=config.paper.taker_fee,
            max_price_age_s=config.paper.max_price_age_s,
            ledger=self.store,
        )
        self.supervisor = Supervisor(
            bus=self.bus, clock=self.clock, config=config.supervisor, on_escalate=self._escalate
        )
        self.sniper = SniperHandle(self.bus, ask_timeout)
        self.risk_gate = RiskGateHandle(self.bus, ask_timeout)
        self.handles = {role: ActorHandle(self.bus, role, ask_timeout) for role in ROLES}
        self.journal = JournalHandle(self.bus, ask_timeout)
        self.handles[SNIPER] = self.sniper
        self.handles[RISK_GATE] = self.risk_gate
        self.handles[JOURNAL] = self.journal
        self.exit_code: int | None = None
        self.halt_reason: str | None = None
        self.started_at: float | None = None
        self.started_wall: datetime | None = None
        self.start_equity = config.paper.initial_balance
        self.finished = threading.Event()  # a replay reached its end and everything settled
        self.killed = threading.Event()  # the kill switch tripped
        self.kill_reason = ""
        self.report: dict[str, Any] | None = None
        self.bus.add_tap(self._watch)
        # Wall-clock sources are watched for silence; replayed and manual time is not real time.
        self._stale_after_s = config.feed.stale_after_s if config.feed.source not in ("replay", "manual") else None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._timer_stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._specs = {role: ChildSpec(role, self._factory(role), role in STATE_OWNERS) for role in ROLES}

    # --- wiring ----------------------------------------------------------------------------------

    def _factory(self, role: str) -> Callable[[], pykka.ActorRef[Any]]:
        config = self.config
        base = {"bus": self.bus, "clock": self.clock, "on_failure_notice": self.supervisor.notify_failure}
        known_coins = frozenset(config.feed.symbols) | frozenset(f.coin for f in config.feed.files)
        factories: dict[str, Callable[[], pykka.ActorRef[Any]]] = {
            FEED: lambda: Feed.start(source=self.source, board=self.board, store=self.store,
                                     bar_seconds=config.feed.bar_seconds, stale_after_s=self._stale_after_s,
                                     watched=config.feed.symbols, recorder=self.recorder,
                                     hold_bars=True, **base),
            STRATEGIST: lambda: Strategist.start(make_strategies=self._make_strategies, store=self.store,
                                                 bar_seconds=config.feed.bar_seconds, **base),
            RISK_GATE: lambda: RiskGate.start(store=self.store, limits=config.risk, known_coins=known_coins,
                                              markets=self.market, board=self.board,
                                              initial_balance=config.paper.initial_balance, **base),
            SNIPER: lambda: Sniper.start(
                store=self.store,
                markets=self.market,
                limits=config.sniper,
                initial_balance=config.paper.initial_balance,
                **base,
            ),
            EXECUTOR: lambda: Executor.start(store=self.store, venue=self.venue, **base),
            EXIT_MONITOR: lambda: ExitMonitor.start(**base),
            INVARIANTS: lambda: Invariants.start(store=self.store, **base),
            JOURNAL: lambda: Journal.start(journal_store=self.journal_store, run_id=self.run_id,
                                           checkpoint=self.store.checkpoint, outbox=self.store, **base),
        }
        return factories[role]

    def _make_strategies(self) -> list[Any]:
        """Fresh strategy objects (a restarted Strategist warms them up from stored bars)."""
        context = StrategyContext(bar_seconds=self.config.feed.bar_seconds, symbols=self.config.feed.symbols)
        settings = self.config.strategist.settings
        return [build_strategy(name, settings.get(name, {}), context) for name in self.config.strategist.strategies]

    def _source_finished(self, ticks: int, bad_rows: int) -> None:
        """Called on a replay source's thread after its last tick."""
        self.bus.send(EndOfData(ts_init_ns=self.clock.now_ns(), ticks=ticks, bad_rows=bad_rows))

    def _watch(self, role: str, message: Any) -> None:
        """Bus tap (under the bus lock: quick, never sends): notice the end of a replay and
        the kill switch, which end the session."""
        kind = type(message)
        if kind is FeedFinished and role == JOURNAL:
            self.finished.set()
        elif kind is KillSwitchTriggered and role == JOURNAL:
            self.kill_reason = message.reason
            self.killed.set()

    # --- lifecycle -------------------------------------------------------------------------------

    def market(self, coin: str) -> MarketRules:
        """The rules of ``coin``: the venue's when they were loaded, else ``[markets]`` or the
        defaults."""
        return self.market_rules.get(coin) or self.config.market(coin)

    def _load_market_rules(self) -> None:
        """A live source's rules from the venue (``[feed] market_rules``), before any actor
        starts. A coin the venue does not list is a ``ConfigError``; a venue that cannot be read
        leaves ``[markets]`` and the defaults in force, with a warning."""
        from adapters.exchange_rules import MarketRulesUnavailable, UnknownMarkets
        from adapters.live_feeds import exchange_market_rules

        feed, log = self.config.feed, logger.bind(actor="engine")
        try:
            rules = exchange_market_rules(feed, self.rest_limiter)
        except UnknownMarkets as error:
            self._close_stores()
            raise ConfigError([f"feed.symbols: {error}"]) from None
        except MarketRulesUnavailable as error:
            log.warning("MARKET_RULES_UNAVAILABLE: {}; orders use [markets] and the defaults", error)
            self.market_rules_from = "config (venue unreachable)"
            return
        for coin, rule in sorted(rules.items()):
            configured = self.config.markets.get(coin)
            log.info("MARKET_RULES: {} from {}: tick {} step {} min qty {} min notional {}{}", coin, feed.source,
                     rule.tick_size, rule.qty_step, rule.min_qty, rule.min_notional,
                     f" ([markets.{coin}] ignored)" if configured is not None and configured != rule else "")
        self.market_rules, self.market_rules_from = rules, feed.source

    def _close_stores(self) -> None:
        self.store.close()
        self.journal_store.close()

    def start(self) -> Engine:
        """Start every actor in order (after loading a live venue's market rules). Raises
        ``ConfigError`` when the venue does not list a configured coin, ``EngineStartError``
        when an actor cannot start."""
        intercept_stdlib_logging()  # pykka reports crashes on stdlib logging: never lose them
        logger.bind(actor="engine").info(
            "ENGINE_STARTING: mode {} source {} data {}", self.config.engine.mode,
            self.config.feed.source, self.data_dir,
        )
        if self.config.feed.rules_from_exchange():
            self._load_market_rules()
        started = []
        try:
            for role in START_ORDER:
                self.supervisor.start_child(self._specs[role])
                started.append(role)
        except Exception as error:
            self._stop_roles([r for r in STOP_ORDER if r in started])
            self._close_stores()
            raise EngineStartError(f"could not start {START_ORDER[len(started)]}: {error}") from error
        self.supervisor.start()
        self._timer = threading.Thread(target=self._run_timers, name="engine-timers", daemon=True)
        self._timer.start()
        self.started_at = time.monotonic()
        self.started_wall = datetime.now(timezone.utc)
        try:
            self.start_equity = self.sniper.snapshot().equity
        except Exception as error:  # noqa: BLE001 - the report then starts from the initial balance
            logger.bind(actor="engine").warning("START_EQUITY_UNKNOWN: {!r}", error)
        logger.bind(actor="engine").info("ENGINE_STARTED: {} actors up, run {}", len(started), self.run_id)
        return self

    def shutdown(self, exit_code: int = EXIT_OK, reason: str = "stop requested") -> dict[str, Any]:
        """Stop gracefully and return the session report (also written to
        ``<data_dir>/runs/<run_id>/summary.json``): the Feed and the Strategist stop (no new
        ticks, no new conditions), orders in flight settle (up to ``settle_timeout_s``), open
        positions are kept or flattened as ``[session] on_stop`` says (always flattened by the
        kill switch), then every actor stops in order. Idempotent."""
        if self.report is not None or self.stopped:
            return self.report or {}
        log = logger.bind(actor="engine")
        log.info("SESSION_ENDING: {}", reason)
        settle_s = self.config.session.settle_timeout_s
        feed_stats = _ask_or(self.handles[FEED].stats, {})
        refs = {role: self.supervisor.current_ref(role) for role in (FEED, STRATEGIST)}
        for role in refs:
            self.supervisor.release(role)
        self._stop_roles((FEED, STRATEGIST), refs)
        if not self._settle(settle_s):
            log.warning("ORDERS_IN_FLIGHT: not settled within {}s; they stay recorded and are "
                        "reconciled at the next start", settle_s)
        if self.config.session.on_stop == "flatten" or exit_code == EXIT_KILL_SWITCH:
            self._flatten("SESSION_END" if exit_code != EXIT_KILL_SWITCH else "KILL_SWITCH")
            self._settle(settle_s)
        snapshot = _ask_or(self.sniper.snapshot, None)
        totals = _ask_or(lambda: self.journal.run_totals(self.run_id, str(self.start_equity)), {})
        self.report = self._build_report(exit_code, reason, feed_stats, snapshot, totals)
        self._write_report(self.report)
        self.stop(exit_code)
        return self.report

    def _settle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            idle = self.wait_idle(max(0.0, remaining))
            inflight = _ask_or(lambda: self.sniper.stats().get("inflight_coins", []), [])
            if idle and not inflight:
                return True
            if time.monotonic() >= deadline:
                return False
            self.bus.wait_idle(0.05)  # an order resolves through the bus: wait on it, bounded

    def _flatten(self, reason: str) -> None:
        snapshot = _ask_or(self.sniper.snapshot, None)
        for position in snapshot.positions if snapshot is not None else ():
            if position.status is PositionStatus.OPEN:
                try:
                    self.sniper.close_position(position.id, reason)
                except (ValueError, TimeoutError) as error:
                    logger.bind(actor="engine").error("FLATTEN_FAILED: {}: {}", position.id, error)

    def _build_report(self, exit_code: int, reason: str, feed: dict[str, Any], snapshot: Any,
                      totals: dict[str, Any]) -> dict[str, Any]:
        ended = datetime.now(timezone.utc)
        started = self.started_wall or ended
        source = feed.get("source", {}) if isinstance(feed, dict) else {}
        report: dict[str, Any] = {
            "run_id": self.run_id,
            "started_at": started.isoformat(),
            "ended_at": ended.isoformat(),
            "duration_s": round((ended - started).total_seconds(), 3),
            "ticks": feed.get("ticks", 0),
            "total_trades": totals.get("total_trades", 0),
            "wins": totals.get("wins", 0),
            "losses": totals.get("losses", 0),
            "realized_pnl_usd": str(totals.get("realized_pnl_usd", "0")),
            "fees_paid_usd": str(totals.get("fees_paid_usd", "0")),
            "slippage_avg_bps": str(totals.get("slippage_avg_bps", "0")),
            "max_drawdown_pct": str(totals.get("max_drawdown_pct", "0")),
            "open_positions_at_end": sum(1 for p in snapshot.positions) if snapshot is not None else None,
            "restarts": sum(self.restarts.values()),
            "restarts_by_actor": {role: n for role, n in self.restarts.items() if n},
            "exit_code": exit_code,
            "end_reason": reason,
            "source": self.config.feed.source,
            "simulated": bool(self.source is not None and self.source.simulated),
            "bars": feed.get("bars", 0),
            "stale_periods": feed.get("stale_periods", 0),
            "reconnects": source.get("reconnects", 0) if isinstance(source, dict) else 0,
            "bad_frames": source.get("bad_frames", {}).get("total", 0) if isinstance(source, dict) else 0,
            "rest": self.rest_limiter.stats(),
            "market_rules": {"from": self.market_rules_from,
                             **{coin: jsonable(rule) for coin, rule in sorted(self.market_rules.items())}},
            "top_of_book": feed.get("top_of_book", {}),
            "recorded": {coin: str(path) for coin, path in self.recorder.files().items()} if self.recorder else {},
            "bad_rows": source.get("bad_rows", 0) if isinstance(source, dict) else 0,
            "start_equity": str(self.start_equity),
            "end_equity": str(snapshot.equity) if snapshot is not None else None,
            "balance": str(snapshot.balance) if snapshot is not None else None,
            "trading_state": _ask_or(self.risk_gate.trading_state, None),
            "on_stop": self.config.session.on_stop,
            "data_dir": str(self.data_dir),
        }
        return report

    def _write_report(self, report: dict[str, Any]) -> None:
        folder = self.data_dir / "runs" / self.run_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "summary.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        temporary.replace(path)  # never a half-written report
        logger.bind(actor="engine").info("SESSION_REPORT: {}", path)

    def stop(self, exit_code: int = EXIT_OK) -> int:
        """Stop in order (producers first, Journal last); idempotent. Returns the exit code."""
        with self._stop_lock:
            if self._stopped.is_set():
                return self.exit_code if self.exit_code is not None else exit_code
            self._timer_stop.set()
            self.supervisor.stop()
            self._stop_roles(STOP_ORDER)
            self.bus.remove_tap(self._watch)
            if self.halt_reason is not None:
                # The RiskGate persists HALTED when it can; if it was the one that died, do it here.
                if self.store.load_trading_state() is not TradingState.HALTED:
                    self.store.save_trading_state(TradingState.HALTED, self.halt_reason)
            self.store.close()
            self.journal_store.close()
            if self.recorder is not None:
                self.recorder.close()
            self.rest_limiter.close()
            self.exit_code = exit_code
            self._stopped.set()
        logger.bind(actor="engine").info("ENGINE_STOPPED: exit code {}", exit_code)
        return exit_code

    def _stop_roles(self, roles: tuple[str, ...] | list[str],
                    refs: dict[str, pykka.ActorRef[Any] | None] | None = None) -> None:
        refs = dict(refs or {})
        for role in roles:
            ref = refs[role] if role in refs else self.supervisor.current_ref(role)
            if ref is not None and ref.is_alive():
                try:
                    ref.stop(block=True, timeout=10)
                except pykka.Timeout:
                    logger.bind(actor="engine").error("STOP_TIMEOUT: {} did not stop within 10s", role)
            self.bus.mark_stopped(role)
        leaked = [r for r in roles if (ref := refs.get(r) or self.supervisor.current_ref(r)) is not None
                  and ref.is_alive()]
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
        # A replay's time moves only with its ticks, which expire conditions themselves; a
        # sweep stamped by this thread would race them.
        due = {EXECUTOR: 0.0} if self.config.feed.source == "replay" else {SNIPER: 0.0, EXECUTOR: 0.0}
        every = {SNIPER: self.config.engine.sweep_interval_s, EXECUTOR: RECONCILE_S}
        names = {SNIPER: "sweep", EXECUTOR: "reconcile"}
        while not self._timer_stop.wait(step):
            now = self.clock.now_ns()
            self.bus.tell(JOURNAL, TimerFired(ts_init_ns=now, name="flush"))
            if self._stale_after_s is not None or self.recorder is not None:
                self.bus.tell(FEED, TimerFired(ts_init_ns=now, name="stale_check"))
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

    def propose_and_wait(self, condition: TradeCondition, timeout: float = 5.0) -> TradeCondition:
        """Propose ``condition`` and wait for its outcome: the armed condition (as the RiskGate
        sized it), or ``ValueError`` with the reason it was rejected; ``TimeoutError`` if
        neither came within ``timeout``."""
        outcome: dict[str, Any] = {}
        decided = threading.Event()

        def watch(role: str, message: Any) -> None:
            if role != JOURNAL:
                return
            if type(message) is ConditionArmed and message.condition.id == condition.id:
                outcome["armed"] = message.condition
                decided.set()
            elif type(message) is ConditionRejected and message.condition_id == condition.id:
                outcome["rejected"] = message.reason
                decided.set()

        self.bus.add_tap(watch)
        try:
            self.propose(condition)
            if not decided.wait(timeout):
                raise TimeoutError(f"condition {condition.id}: no decision within {timeout}s")
        finally:
            self.bus.remove_tap(watch)
        if "rejected" in outcome:
            raise ValueError(f"condition {condition.id} rejected: {outcome['rejected']}")
        return outcome["armed"]

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


def _make_clock(config: Config, store: Store, source: MarketSource | None) -> Clock:
    """Wall time for live sources; tick time for manual and replay. A replay's clock starts at
    the tick it resumes from, or at its first tick, never at today's date."""
    mode = config.engine.clock
    if mode == "auto":
        mode = "tick" if config.feed.source in ("manual", "replay") else "wall"
    if mode != "tick":
        return WallClock()
    start_ms = None
    if config.feed.source == "replay":
        resumed = store.load_account().get("tick_ts_ms")
        first = getattr(source, "first_ts_ms", None)
        start_ms = int(resumed) if resumed else (first() if first is not None else None)
    return TickClock(start_ms * 1_000_000 if start_ms else None)


def _make_source(config: Config, on_finished: Callable[[int, int], None], progress: bool,
                 limiter: TokenBucket) -> MarketSource | None:
    feed = config.feed
    if feed.source == "sim":
        rules = {coin: config.market(coin) for coin in feed.symbols}
        return SimSource(feed.symbols, rules, seed=feed.seed, ticks_per_second=feed.ticks_per_second)
    if feed.source == "replay":
        from adapters.replay_source import ReplaySource

        try:
            return ReplaySource(feed.files, speed=feed.speed, progress=progress and feed.speed == "max",
                                on_finished=on_finished)
        except ValueError as error:
            raise ConfigError([f"feed.files: {error}"]) from None
    if feed.source == "manual":
        return None
    if feed.live:
        from adapters.live_feeds import live_source

        return live_source(feed, limiter)
    raise ConfigError([f"feed.source: {feed.source!r} is not available in this version"])


def _make_journal_store(config: Config, data_dir: Path) -> Any:
    from state.journal_store import JournalStore

    try:
        return JournalStore(config.journal.url or data_dir / "journal.db")
    except (ValueError, ImportError) as error:
        message = str(error)
        raise ConfigError([message if message.startswith("journal.url:") else f"journal.url: {message}"]) from None


def _ask_or(ask: Callable[[], Any], default: Any) -> Any:
    """An answer for the report or the status line, or ``default`` if the actor cannot give it."""
    try:
        return ask()
    except Exception as error:  # noqa: BLE001 - a report with a gap beats no report
        logger.bind(actor="engine").warning("ASK_FAILED: {!r}", error)
        return default


def resolve_config(config_or_path: Config | Mapping[str, Any] | str | Path) -> tuple[Config, Path]:
    """A validated config and the folder relative data paths are resolved against (replay
    files are resolved here already)."""
    if isinstance(config_or_path, Config):
        config, base = config_or_path, Path.cwd()
    elif isinstance(config_or_path, Mapping):
        config, base = parse_config(config_or_path), Path.cwd()
    else:
        path = Path(config_or_path)
        config, base = load_config(path), path.resolve().parent
    files = tuple(ReplayFile(coin=f.coin, path=f.path if f.path.is_absolute() else base / f.path)
                  for f in config.feed.files)
    return replace(config, feed=replace(config.feed, files=files)), base


def build_engine(
    config_or_path: Config | Mapping[str, Any] | str | Path,
    data_dir: str | Path | None = None,
    *,
    clock: Clock | None = None,
    venue: ExchangePort | None = None,
    source: MarketSource | None = None,
    ask_timeout: float = 10.0,
    progress: bool = False,
    record: Path | str | None = None,
) -> Engine:
    """Build (not start) an engine from a config file, a mapping shaped like ``config.toml``,
    or a ``Config``. ``data_dir`` overrides ``[engine] data_dir``; a relative ``data_dir`` in a
    config file is resolved against the file's folder. Raises ``ConfigError`` (also for a
    replay file that cannot be read)."""
    config, folder = resolve_config_and_data_dir(config_or_path, data_dir)
    return Engine(config, data_dir=folder, clock=clock, venue=venue, source=source, ask_timeout=ask_timeout,
                  progress=progress, record=record)


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

def _status_line(engine: Engine, previous: dict[str, float] | None = None) -> str:
    """One line: feed state, ticks/s since the last line, armed, open, balance, realized PnL."""
    try:
        snap = engine.sniper.snapshot()
        feed = engine.handles[FEED].stats()
        trading = engine.risk_gate.trading_state()
    except Exception as error:  # noqa: BLE001 - a status line never kills the session
        return f"status unavailable: {error}"
    now = time.monotonic()
    state = previous if previous is not None else {}
    since, ticks_then = state.get("at", engine.started_at or now), state.get("ticks", 0.0)
    rate = (feed["ticks"] - ticks_then) / max(1e-9, now - since)
    state.update(at=now, ticks=float(feed["ticks"]))
    source = engine.config.feed.source
    if engine.source is not None and engine.source.simulated:
        source += " (SIMULATED market)"
    progress = feed.get("source", {}).get("percent")
    if progress is not None:
        source += f" {progress:.1f}%"
    if feed.get("finished"):
        source += " finished"
    top = feed.get("top_of_book", {})
    prices = ", ".join(
        f"{coin} {price}" + (f" ({top[coin]['bid']}/{top[coin]['ask']})" if coin in top else "")
        for coin, (price, _) in sorted(engine.board.all().items()))
    live = feed.get("source", {})
    if isinstance(live, dict) and "reconnects" in live:
        source += f" {live.get('state', '?')}, {live['reconnects']} reconnect(s)"
        if (live.get("bad_frames") or {}).get("total"):
            source += f", {live['bad_frames']['total']} bad frame(s)"
        if (live.get("rest_fallback") or {}).get("active"):
            source += ", REST fallback"
    trading_note = "" if trading == TradingState.ACTIVE.value else f" | trading {trading}"
    if feed.get("stale"):
        trading_note += f" | STALE {', '.join(feed['stale'])} (no new entries)"
    return (
        f"feed {source} | ticks {feed['ticks']} ({rate:.1f}/s) | "
        f"armed {len(snap.conditions)} | open {len(snap.positions)} | "
        f"balance {snap.balance:.2f} | realized {snap.realized_pnl:.2f}{trading_note} | {prices}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Autonomous trade-execution engine (paper session).")
    parser.add_argument("--config", default="config.toml", help="path to config.toml")
    parser.add_argument("--data-dir", help="overrides [engine] data_dir")
    parser.add_argument("--duration", type=float, help="stop after S seconds (default: until Ctrl-C)")
    parser.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--status", action="store_true",
                        help="print the durable state as JSON and exit without starting the engine")
    parser.add_argument("--record", metavar="FILE",
                        help="write every received trade to FILE (one CSV per coin: FILE.<COIN>.csv) "
                             "in a layout the replay source reads")
    parser.add_argument("--repl", action="store_true",
                        help="open an interactive console on the running engine; leaving it stops the engine")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration: must be a positive number of seconds")

    progress = sys.stderr.isatty() and not args.repl
    try:
        if args.status:  # read the store only: no engine, no actor
            config, data_dir = resolve_config_and_data_dir(args.config, args.data_dir)
            store = Store(data_dir / "engine.db")
            try:
                status = {"data_dir": str(data_dir), **store.durable_status(config.paper.initial_balance)}
            finally:
                store.close()
            print(json.dumps(status, indent=2, sort_keys=True))
            return EXIT_OK
        engine = build_engine(args.config, args.data_dir, progress=progress, record=args.record)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_BAD_INPUT
    level = engine.config.engine.log_level
    show_progress = progress and engine.config.feed.source == "replay" and engine.config.feed.speed == "max"
    if (args.repl or show_progress) and level in ("TRACE", "DEBUG", "INFO", "SUCCESS"):
        # The console is for typing, or for the progress bar; the full log is in <data_dir>/logs.
        level = "WARNING"
    configure_logging(level, engine.data_dir / "logs")

    stop_requested = threading.Event()
    stop_signal: list[str] = []

    def request_stop(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        logger.bind(actor="engine").info("STOP_REQUESTED: {}", name)
        stop_signal.append(name)
        stop_requested.set()

    if not args.repl:  # the console handles Ctrl-C itself (it cancels the line being typed)
        signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: pykka.debug.log_thread_tracebacks())

    try:
        engine.start()
    except ConfigError as error:  # found at start: a coin the live venue does not list
        print(str(error), file=sys.stderr)
        return EXIT_BAD_INPUT
    except EngineStartError as error:
        logger.bind(actor="engine").critical("ENGINE_START_FAILED: {}", error)
        return 1
    if args.repl:
        from adapters.repl import run_repl

        try:
            run_repl(engine, stop_requested=stop_requested)
        finally:
            code, reason = _session_outcome(engine, "console closed")
            report = engine.shutdown(code, reason)
        print(format_report(report), flush=True)
        return engine.exit_code if engine.exit_code is not None else code

    deadline = None if args.duration is None else time.monotonic() + args.duration
    rates: dict[str, float] = {}
    reason = "stop requested"
    try:
        while True:
            wait = args.status_every if deadline is None else min(args.status_every, max(0.0, deadline - time.monotonic()))
            ended_at = time.monotonic() + wait
            while time.monotonic() < ended_at and not _session_over(engine, stop_requested):
                stop_requested.wait(min(0.1, max(0.0, ended_at - time.monotonic())))
            if _session_over(engine, stop_requested):
                if stop_signal:
                    reason = stop_signal[0]
                break
            if deadline is not None and time.monotonic() >= deadline:
                reason = f"--duration {args.duration:g}s"
                break
            if not show_progress:
                print(_status_line(engine, rates), flush=True)
    finally:
        if not engine.stopped and not show_progress:
            print(_status_line(engine, rates), flush=True)
        if engine.stopped:  # halted by the supervisor: no actor left to report
            code, report = engine.exit_code or EXIT_HALTED, {}
        else:
            code, why = _session_outcome(engine, reason)
            report = engine.shutdown(code, why)
        engine.wait_stopped(30)
    print(format_report(report), flush=True)
    return engine.exit_code if engine.exit_code is not None else code


def _session_over(engine: Engine, stop_requested: threading.Event) -> bool:
    return stop_requested.is_set() or engine.stopped or engine.finished.is_set() or engine.killed.is_set()


def _session_outcome(engine: Engine, default_reason: str) -> tuple[int, str]:
    if engine.killed.is_set():
        return EXIT_KILL_SWITCH, engine.kill_reason or "KILL_SWITCH"
    if engine.finished.is_set():
        return EXIT_OK, "end of data"
    return EXIT_OK, default_reason


if __name__ == "__main__":
    sys.exit(main())
