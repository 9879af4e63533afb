"""Composition root and command line: the only module that wires actors, adapters and state.

Python API::

    from run import build_engine
    with build_engine("config.toml", data_dir="var") as engine:
        engine.sniper.add_condition(TradeCondition(...))
        engine.push_tick("BTC", "42001", ts_ms)      # with [feed] source = "manual"
        engine.wait_idle(5)
        print(engine.sniper.snapshot())

Command line::

    python run.py --config config.toml [--data-dir DIR] [--fresh] [--duration S] [--repl]
    python run.py --config config.toml --status    # durable state as JSON, starts nothing

A data folder (default ``var/<config file name>/`` beside the config file) belongs to one
session: its store records what produced it (``state/session.py``), and a session of another
kind, or a replay of other files or settings, is refused before anything starts (exit 2,
naming each difference); ``--fresh`` moves the old contents to ``<data_dir>/archive/<UTC
timestamp>/`` first. One engine per folder: the engine holds ``<data_dir>/engine.lock``
(flock) for its life. A finished replay run again prints its report and replays nothing.

A session ends on Ctrl-C / SIGTERM, after ``--duration``, at the end of a replay, by the
kill switch, or when a live source has received nothing since start (``FEED_GAVE_UP``); it
then stops gracefully (``Engine.shutdown``): the Feed and the Strategist stop, orders in
flight settle, orders working at the venue are canceled (all but the protective exits of kept
positions; ``ORDERS_CANCELED``, ``canceled_orders`` in the report), open positions are kept or
flattened (``[session] on_stop``), and the session report is printed and written to
``<data_dir>/runs/<run_id>/summary.json``. A replay's report covers the whole replay (every
run on its data folder); other sources' cover the run, beside the cumulative account that
``--status`` shows.

SIGTERM and SIGINT are caught from the first moment of the process (even during its imports):
one that arrives before the engine started ends the process at once with exit code 0 and a
one-line "Session not started" report (no actor runs); one during the start lets the start
finish and then stops in order with the full report.

A halt by the supervisor (an actor could not be kept alive, e.g. because a store can no longer
be written) stops the engine within seconds; the report is then built from the durable state
(ticks counted by the engine itself, trades from the journal database, positions and balance
from the engine store) and says so, and one plain line on stderr gives the reason.

Exit codes: 0 clean stop (also a finished replay run again, and a stop signal before the
start), 2 bad config or input (also a data folder that holds another session, is in use by
another engine, cannot be created or written, or, for ``--status``, where no session ever
ran; also, live, a start refused by the reconciliation with the venue: ``[venue] on_unknown =
"halt"`` and an order or position the store does not know, or an account that cannot be
read), 3 halted by the supervisor (an actor could not be kept alive), 4 a live source received
nothing at all for ``[feed] give_up_after_s`` after start (``FEED_GAVE_UP``: no trade, no
quote, no REST price), 5 store unwritable (the engine or journal database refused writes: disk
full, lost permissions, I/O error; the halt may not be persisted then; also when an actor
cannot start for it), 6 the live venue halted trading while running (``VENUE_HALTED``: it
refused the keys; the reason is in the report and on stderr), 99 stopped by the kill switch; 1
when an actor could not start for another reason.

Live mode (``[engine] mode = "live"``): before any actor starts, the API key and secret are read
from the environment variables ``[venue] key_env``/``secret_env`` name (unset or empty: exit 2
naming the variables, before the data folder is touched), the venue is built
(``adapters/venues/ccxt_venue.py``, on the process's one token bucket) and connected (keys
proven, account mode checked, leverage and margin set); keys refused, an account mode the engine
does not trade, a venue that cannot be reached, or market rules that cannot be read are exit 2
with the cause (never the key). The engine's cash is the account's: on a fresh live folder the
account's balance of the cash asset (the markets' settle/quote asset) seeds the store's account
in place of ``[paper] initial_balance`` (none of it: exit 2 naming the asset); a restart goes on
with the store's cash and the reconciliation reports a ``BALANCE`` difference (never a block);
the kill switch keeps the engine's own equity as its reference. A live session does not open the paper venue's book
(``venue.db``), prints a banner (TESTNET or LIVE with real money), shows the venue on the status
line, in the report (``mode``, ``venue``) and ``--status``; the key and secret are masked in
every log record. A data folder of a paper session is refused in live mode and the reverse
(``state/session.py``). ``Engine.stop`` closes the live venue.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields, is_dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # The command line: a stop signal while the imports below run (a second or more on a busy
    # machine) is kept for main(), which takes it over, instead of killing the process with no
    # report. Imported as a module (tests, scripts), run.py installs no handler.
    _EARLY_SIGNALS: list[int] = []
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda signum, _frame: _EARLY_SIGNALS.append(signum))

import pykka  # noqa: E402 - after the early signal handlers on purpose
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
from actors.venue_reconcile import VenueWatch, reconcile_at_start
from adapters.clock import TickClock, WallClock
from adapters.data_folder import (
    VENUE_STORE_NAME,
    FolderLock,
    archive_contents,
    fingerprint_file,
    lock_holder,
    write_report,
)
from adapters.console.logs import configure_logging, intercept_stdlib_logging
from adapters.console.status import live_banner, status_line
from adapters.timers import PeriodicTimers, TimerJob
from adapters.venues.paper import PaperVenue, adopt_positions
from adapters.net.rate_limit import TokenBucket
from adapters.feeds.recorder import TradeRecorder
from adapters.errors import AuthenticationFailed, TemporaryError, UnsupportedAccount
from adapters.ports import Clock, LiveVenuePort, MarketSource, VenuePort
from adapters.price_board import InMemoryPriceBoard
from adapters.feeds.sim_source import SimSource
from state.account import VenueStartup, VenueStatus
from state.config import Config, ConfigError, ReplayFile, load_config, parse_config
from state.messages import (
    ConditionArmed,
    ConditionRejected,
    EndOfData,
    FeedFinished,
    FeedGaveUp,
    InjectCrash,
    KillSwitchTriggered,
    ProposeSignal,
    PushTick,
    SetTradingState,
    Tick,
    TimerFired,
    VenueAlert,
)
from state.market import MarketRules
from state.matching import VenuePosition
from state.models import TradeCondition, account_equity
from state.order import NoticeKind
from state.report import Ledger, format_report
from state.session_report import ReportContext, report_scope, report_ticks, session_report, with_durable_state
from state.session import (
    DataDirError,
    DataDirUnusable,
    ReplayAlreadyComplete,
    SessionIdentity,
    SessionMismatch,
    as_dict,
    describe,
    differences,
    identity_from_config,
)
from state.secrets import Credentials, MissingCredentials, load_credentials, redact_values
from state.reconcile import cash_asset_of, start_cash
from state.store import Store, StoreOutbox, hold_open, is_store_unwritable
from state.strategies import StrategyContext, build_strategy
from state.types import OrderIntent, OrderStatus, PositionStatus, TradingState
from state.venue_store import VenueStore, VenueStoreMismatch

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_HALTED = 3
EXIT_FEED_GAVE_UP = 4
EXIT_STORE_UNWRITABLE = 5
EXIT_VENUE_HALTED = 6
EXIT_KILL_SWITCH = 99
HALT_STOP_WAIT_S = 60.0  # how long main waits for a halted engine's stop before it gives up on it
EXIT_JOIN_S = 10.0  # how long the process waits for threads left running before it exits anyway

JOURNAL_FLUSH_S = 0.25
REST_RATE_PER_S = 20.0  # sustained, shared by every REST call of the process
REST_BURST = 50
RECONCILE_S = 5.0
VENUE_CASH_KEY = "venue_cash_at_start"  # store setting (JSON): a live start's account cash beside the engine's

# Consumers start before producers, so nobody's first message waits for a missing role.
START_ORDER = (JOURNAL, INVARIANTS, EXECUTOR, RISK_GATE, SNIPER, EXIT_MONITOR, STRATEGIST, FEED)
# Producers stop first, so the state owners see the last fills; the Journal stops last to flush.
STOP_ORDER = (FEED, STRATEGIST, EXIT_MONITOR, SNIPER, RISK_GATE, EXECUTOR, INVARIANTS, JOURNAL)
STATE_OWNERS = frozenset({SNIPER, RISK_GATE, EXECUTOR, JOURNAL})


class EngineStartError(RuntimeError):
    pass


class VenueStartError(RuntimeError):
    """The live venue refused the session at start (keys, account mode) or could not be
    reached; nothing was started (the command line exits 2). The text names the cause, never
    a key."""


def new_run_id() -> str:
    """Sortable to the millisecond, and unique: ``20261121T101500123Z-3f9a1c`` (two runs started
    within the same second sort in the order they started)."""
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


class Engine:
    """The running system: eight supervised actors on one bus, one store, one venue.

    It owns its data folder from construction to ``stop()``: it takes the folder's lock before
    it opens anything there for writing (the stores are opened here, and ``fresh`` archives
    the folder first, so the lock cannot wait for ``start()``), and releases it last in
    ``stop()`` (or when construction or ``start()`` fails)."""

    def __init__(
        self,
        config: Config,
        *,
        data_dir: Path,
        clock: Clock | None = None,
        venue: VenuePort | None = None,
        source: MarketSource | None = None,
        ask_timeout: float = 10.0,
        run_id: str | None = None,
        progress: bool = False,
        record: Path | str | None = None,
        fresh: bool = False,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        # Live: the keys before anything else (missing: MissingCredentials, nothing made).
        self.credentials = _live_credentials(config, venue, os.environ)
        self.run_id = run_id or new_run_id()
        self.bus = Bus(ROLES)
        self.rest_limiter = TokenBucket(REST_RATE_PER_S, REST_BURST)  # every REST call of the process
        # Inputs first (replay files read and fingerprinted): bad input touches no folder.
        self.source = source if source is not None else _make_source(
            config, self._source_finished, progress, self.rest_limiter)
        try:
            self.identity = _session_identity(config)
            self.folder_lock, self.store, self.completion, self._folder_notes = _open_session_folder(
                data_dir, self.identity, fresh)
        except BaseException:
            self.rest_limiter.close()
            raise
        self.bus.set_outbox(_guarded_outbox(StoreOutbox(self.store, self.run_id), self.secrets()))  # the Journal's copies
        self.recorder: TradeRecorder | None = None
        try:
            try:
                self.recorder = TradeRecorder(record) if record is not None else None
            except ValueError as error:
                raise ConfigError([str(error)]) from None
            self.journal_store = _make_journal_store(config, data_dir)
            try:
                # The paper venue's own book; a live session's account is the exchange's.
                self.venue_store = _open_venue_book(data_dir, self.store) if venue is None and not config.live else None
            except BaseException:
                self.journal_store.close()
                raise
        except (ConfigError, DataDirUnusable):
            self.store.close()
            if self.recorder is not None:
                self.recorder.close()
            self.folder_lock.release()
            raise
        self.clock: Clock = clock or _make_clock(config, self.store, self.source)
        self.board = InMemoryPriceBoard()
        self.market_rules: dict[str, MarketRules] = {}  # the venue's, when loaded at start
        self.market_rules_from = "config"
        self.venue_startup: VenueStartup | None = None  # what a live venue's connect found and set
        self.venue_halted = threading.Event()  # a live venue refused the keys while running (exit 6)
        self.venue_halt_reason = ""
        self.venue: VenuePort = venue or (self._build_live_venue() if config.live else PaperVenue.from_config(
            config.paper, category=config.feed.market_category(), clock=self.clock, markets=self.market,
            ledger=self.venue_store, quotes=self.board.quote))
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
        # Paper: [paper] initial_balance; live: the account's cash at connect (_take_live_cash).
        self.initial_balance: Decimal = config.paper.initial_balance
        self.cash_asset = ""  # live: the asset the account's cash is in (USDT for BTCUSDT)
        self.venue_cash: dict[str, Any] | None = None  # live: the account's cash at start beside the engine's
        self.start_equity = self.initial_balance
        self.start_ledger = Ledger.fresh(self.initial_balance)  # the account when this run began
        self.finished = threading.Event()  # a replay reached its end and everything settled
        self.killed = threading.Event()  # the kill switch tripped
        self.kill_reason = ""
        self.gave_up = threading.Event()  # a live source received nothing for give_up_after_s
        self.gave_up_reason = ""
        self.report: dict[str, Any] | None = None
        self.ticks_seen = 0  # ticks the Feed delivered this session: counted on the bus, survives any actor
        self.store_error: str | None = None  # set when a halt came from a store that cannot be written
        self.durable: dict[str, Any] | None = None  # read from the stores as the engine stopped
        self._closed_before = 0  # closed positions in the store when the session started
        self._account_before: dict[str, str] = {}  # the store's account when the session started
        self._anchors: list[Any] = []  # idle connections that keep the stores readable (hold_open)
        self.bus.add_tap(self._watch)
        # Wall-clock sources are watched for silence; replayed and manual time is not real time.
        self._stale_after_s = config.feed.stale_after_s if config.feed.source not in ("replay", "manual") else None
        self._give_up_after_s = config.feed.give_up_after_s if config.feed.live and config.feed.give_up_after_s else None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self.timers: PeriodicTimers | None = None  # the periodic nudges (adapters/timers.py), from start()
        self.reconciliation: dict[str, Any] | None = None  # live: the start-up reconciliation (report block)
        self.venue_watch: VenueWatch | None = None  # live: the periodic check against the venue's account
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
                                     hold_bars=True, give_up_after_s=self._give_up_after_s,
                                     guard=config.feed.tick_guard(), markets=self.market, **base),
            STRATEGIST: lambda: Strategist.start(make_strategies=self._make_strategies, store=self.store,
                                                 bar_seconds=config.feed.bar_seconds, **base),
            RISK_GATE: lambda: RiskGate.start(store=self.store, limits=config.risk, known_coins=known_coins,
                                              markets=self.market, board=self.board,
                                              initial_balance=self.initial_balance, **base),
            SNIPER: lambda: Sniper.start(
                store=self.store,
                markets=self.market,
                limits=config.sniper,
                initial_balance=self.initial_balance,
                mark_report_ms=config.risk.mark_report_ms,
                await_risk_checks=config.risk.replay_trips == "exact",  # a replay's trip at the same tick every time
                quotes=self.board.quote,  # a limit entry's plan B: the top of book when fresh
                quote_max_age_ms=int(config.paper.quote_max_age_s * 1000),
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
        """Bus tap (under the bus lock: quick, never sends): notice the end of a replay, the
        kill switch and a live source giving up, which end the session."""
        kind = type(message)
        if kind is Tick:
            self.ticks_seen += 1  # one copy per tick: Tick goes to the Sniper only
        elif kind is FeedFinished and role == JOURNAL:
            self.finished.set()
        elif kind is KillSwitchTriggered and role == JOURNAL:
            self.kill_reason = message.reason
            self.killed.set()
        elif kind is FeedGaveUp and role == JOURNAL:
            self.gave_up_reason = (f"FEED_GAVE_UP: {message.source} received nothing in "
                                   f"{message.waited_s:g}s since start; {message.detail}")
            self.gave_up.set()
        elif kind is VenueAlert and role == JOURNAL and message.kind == NoticeKind.AUTH_FAILED:
            self.venue_halt_reason = self.redact(f"VENUE_HALTED: {message.message}")
            self.venue_halted.set()

    # --- lifecycle -------------------------------------------------------------------------------

    def market(self, coin: str) -> MarketRules:
        """The rules of ``coin``: the venue's when they were loaded, else ``[markets]`` or the
        defaults."""
        return self.market_rules.get(coin) or self.config.market(coin)

    def _load_market_rules(self) -> None:
        """A live source's rules from the venue (``[feed] market_rules``), before any actor
        starts. A coin the venue does not list is a ``ConfigError``; a venue that cannot be read
        leaves ``[markets]`` and the defaults in force, with a warning."""
        from adapters.venues.exchange_rules import MarketRulesUnavailable, UnknownMarkets
        from adapters.feeds.live_feeds import exchange_market_rules

        feed, log = self.config.feed, logger.bind(actor="engine")
        try:
            rules = exchange_market_rules(feed, self.rest_limiter)
        except UnknownMarkets as error:
            self._close_stores()
            raise ConfigError([f"feed.symbols: {error}"]) from None
        except MarketRulesUnavailable as error:
            if self.config.live:  # real orders are sized and rounded by the venue's rules only
                self._close_stores()
                raise VenueStartError(self.redact(f"the venue cannot be reached: its market rules cannot be read: "
                                                  f"{error}; nothing was started")) from None
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
        if self.venue_store is not None:
            self.venue_store.close()
        for anchor in self._anchors:
            anchor.close()
        self._anchors = []
        self.folder_lock.release()

    # --- the live venue ----------------------------------------------------------------------

    def _build_live_venue(self) -> VenuePort:
        """The live venue (``_make_live_venue``); if it cannot be built, the stores and the
        folder are released before the error goes up (the engine is not usable then)."""
        try:
            return _make_live_venue(self.config, self.credentials, self.rest_limiter, self.clock, self.market)
        except BaseException:
            for close in (self.store.close, self.journal_store.close, self.rest_limiter.close,
                          self.folder_lock.release):
                _step("release after a venue that cannot be built", close)
            raise

    def _connect_venue(self) -> None:
        """A live venue's ``connect`` (keys proven, account mode checked, leverage and margin set,
        private stream opened), before any actor starts: a refusal or an unreachable venue
        closes it and the stores and raises ``VenueStartError`` (exit 2) naming the cause. A
        halt an earlier run recorded because the venue refused the keys (``VENUE_HALTED``) is
        lifted once the keys are accepted again."""
        venue = self.venue
        if not getattr(venue, "live", False):
            return
        log = logger.bind(actor="engine")
        try:
            self.venue_startup = venue.connect()  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001 - every way a connect fails stops the start, named
            raise self._refuse_start("VENUE_REFUSED", _venue_refusal(self.config, self.credentials, error)) from None
        startup = self.venue_startup
        log.info("VENUE_CONNECTED: {} {} {}: position mode {}, server time offset {} ms, leverage {}, notes {}",
                 startup.exchange, startup.market, "TESTNET" if startup.testnet else "LIVE (REAL MONEY)",
                 startup.position_mode, startup.server_time_offset_ms, dict(startup.leverage), list(startup.notes))
        if self.config.live:  # a live venue injected into a paper session keeps [paper] initial_balance
            self._take_live_cash(startup)
        with self.store.connection():
            if (self.store.load_trading_state() is TradingState.HALTED
                    and self.store.load_trading_reason().startswith("VENUE_HALTED")):
                self.store.save_trading_state(TradingState.ACTIVE, "venue accepted the keys at start")
                log.warning("VENUE_HALT_LIFTED: the last run halted because the venue refused the keys; "
                            "they were accepted now, trading is ACTIVE again")

    def _take_live_cash(self, startup: VenueStartup) -> None:
        """Live: the account's balance of its cash asset (``live_cash``) is the engine's initial
        balance: a fresh folder's store is seeded with it by the Sniper, as ``[paper]
        initial_balance`` seeds a paper one (that setting is not used live), so sizing, the
        exposure limit and the kill switch count in the real account; a restart goes on with the
        store's cash (its ledger), and the reconciliation reports a ``BALANCE`` difference. The
        two figures are recorded (``VENUE_CASH_KEY``) for ``--status`` and the report. A fresh
        folder on an account without that asset: the venue is closed, the stores released and
        ``VenueStartError`` (exit 2) names the asset."""
        log = logger.bind(actor="engine")
        with self.store.connection():
            stored = self.store.load_account().get("balance")
        try:
            self.cash_asset, venue_cash = live_cash(self.config, startup, fresh=stored is None)
        except ValueError as error:
            account = f"{startup.exchange} {'testnet' if startup.testnet else 'LIVE account'}"
            raise self._refuse_start("VENUE_NO_CASH", f"{account}: {error}; nothing was started") from None
        if stored is None:
            self.initial_balance = self.start_equity = venue_cash
            self.start_ledger = Ledger.fresh(venue_cash)
        self.venue_cash = {"asset": self.cash_asset, "venue": str(venue_cash),
                           "engine": stored if stored is not None else str(venue_cash), "run_id": self.run_id,
                           "seeded": stored is None}
        with self.store.connection():
            self.store.set_setting(VENUE_CASH_KEY, json.dumps(self.venue_cash, sort_keys=True))
        log.info("VENUE_CASH: the account holds {} {}; the engine's cash {} {}", venue_cash, self.cash_asset,
                 self.venue_cash["engine"], "(a fresh folder: taken from the account)" if stored is None
                 else "(the store's ledger; a difference is reported by the reconciliation)")

    def _refuse_start(self, code: str, message: str) -> VenueStartError:
        """A live start that cannot go on: logged (``code``, the keys masked), the venue closed,
        the stores and the folder released; the error to raise (exit 2)."""
        message = self.redact(message)
        logger.bind(actor="engine").critical("{}: {}", code, message)
        _step("live venue", self.venue.close)  # type: ignore[attr-defined]
        self._close_stores()
        return VenueStartError(message)

    def redact(self, text: str) -> str:
        """``text`` with the live session's key and secret masked (``***``)."""
        return redact_values(text, self.secrets())

    def secrets(self) -> tuple[str, ...]:
        """The literal values no output may contain (the log setup masks them)."""
        return () if self.credentials is None else (self.credentials.key, self.credentials.secret)

    def venue_status(self) -> VenueStatus | None:
        """A live venue's health (``status()`` never blocks), ``None`` for paper."""
        if not getattr(self.venue, "live", False):
            return None
        return _ask_or(self.venue.status, None)  # type: ignore[attr-defined]

    def venue_report(self) -> dict[str, Any] | None:
        """The report's ``venue`` block: the live venue's status at the end and its start-up."""
        if not getattr(self.venue, "live", False):
            return None
        return {"status": self.venue_status(), "startup": self.venue_startup,
                "keys_from": [self.config.venue.key_env, self.config.venue.secret_env],
                "cash_at_start": self.venue_cash}

    def start(self) -> Engine:
        """Start every actor in order (after loading a live venue's market rules and connecting
        a live venue). Raises ``ReplayAlreadyComplete`` when this folder's replay reached its end
        before, ``ConfigError`` when the venue does not list a configured coin (and, live, when the
        reconciliation with the venue refuses the start: ``ReconcileRefused``),
        ``VenueStartError`` when a live venue refused the keys or the account or cannot be
        reached (nothing started, the folder released), ``EngineStartError``
        when an actor cannot start (``store_error`` is then set if a store refused a write:
        ``run.py`` exits with 5, else 1)."""
        if self.completion is not None:
            raise ReplayAlreadyComplete(self.data_dir, self.completion)
        if not self.folder_lock.held:  # stopped (or a failed start): its folder is no longer its own
            raise EngineStartError(f"this engine was stopped and released {self.data_dir}; build a new one")
        intercept_stdlib_logging()  # pykka reports crashes on stdlib logging: never lose them
        for note in self._folder_notes:  # now, when the session's log is set up
            logger.bind(actor="engine").warning(note)
        logger.bind(actor="engine").info(
            "ENGINE_STARTING: mode {} source {} data {}", self.config.engine.mode,
            self.config.feed.source, self.data_dir,
        )
        if self.config.feed.rules_from_exchange():
            self._load_market_rules()
        self._connect_venue()
        self._anchors = [a for db in (self.store.db, self.journal_store.db)
                         if (a := _step("store anchor not opened", hold_open, db)) is not None]
        with _reading(self.store.db):
            self._closed_before = _step("closed positions unknown", self.store.count_closed_positions) or 0
            self._account_before = _step("account unknown", self.store.load_account) or {}
        started = []
        try:
            for role in START_ORDER:
                if role == STRATEGIST and self.config.live:  # before anything can trade
                    self._reconcile_with_venue()
                self.supervisor.start_child(self._specs[role])
                started.append(role)
        except Exception as error:
            self._stop_roles([r for r in STOP_ORDER if r in started])
            self._close_stores()
            if isinstance(error, ConfigError):  # the reconciliation refused the start: exit 2
                raise
            self.store_error = self.supervisor.store_error()
            why = f"store unwritable: {self.store_error}" if self.store_error is not None else str(error)
            raise EngineStartError(f"could not start {START_ORDER[len(started)]}: {why}") from error
        self.supervisor.start()
        self.timers = self._make_timers().start()
        self.venue_watch = self._venue_watch()
        self.started_at = time.monotonic()
        self.started_wall = datetime.now(timezone.utc)
        try:
            begun = self.sniper.snapshot()
            self.start_equity = begun.equity
            self.start_ledger = Ledger(balance=begun.balance, realized_pnl=begun.realized_pnl,
                                       fees_paid=begun.fees_paid)
        except Exception as error:  # noqa: BLE001 - the report then starts from the initial balance
            logger.bind(actor="engine").warning("START_EQUITY_UNKNOWN: {!r}", error)
        logger.bind(actor="engine").info("ENGINE_STARTED: {} actors up, run {}", len(started), self.run_id)
        return self

    def shutdown(self, exit_code: int = EXIT_OK, reason: str = "stop requested") -> dict[str, Any]:
        """Stop gracefully and return the session report (also written to
        ``<data_dir>/runs/<run_id>/summary.json``): the Feed and the Strategist stop (no new
        ticks, no new conditions), orders in flight settle (up to ``settle_timeout_s``), every
        order working at the venue that is not a protective exit of a kept position is canceled
        and confirmed (``canceled_orders`` in the report), open positions are kept or flattened
        as ``[session] on_stop`` says (always flattened by the kill switch), then every actor
        stops in order. Idempotent."""
        if self.report is not None or self.stopped:
            return self.report or {}
        log = logger.bind(actor="engine")
        log.info("SESSION_ENDING: {}", reason)
        settle_s = self.config.session.settle_timeout_s
        feed_stats = _ask_or(self.handles[FEED].stats, {})
        if feed_stats:  # a restarted Feed counts from zero; the engine's own count does not
            feed_stats["ticks"] = max(feed_stats.get("ticks", 0), self.ticks_seen)
        refs = {role: self.supervisor.current_ref(role) for role in (FEED, STRATEGIST)}
        for role in refs:
            self.supervisor.release(role)
        self._stop_roles((FEED, STRATEGIST), refs)
        settled = self._settle(settle_s)
        if not settled:
            log.warning("ORDERS_IN_FLIGHT: not settled within {}s; they stay recorded and are "
                        "reconciled at the next start", settle_s)
        flatten = self.config.session.on_stop == "flatten" or exit_code == EXIT_KILL_SWITCH
        canceled = self._cancel_working_orders(settle_s, keep_exits=not flatten)
        if flatten:
            self._flatten("SESSION_END" if exit_code != EXIT_KILL_SWITCH else "KILL_SWITCH")
            settled = self._settle(settle_s) and settled
        snapshot = _ask_or(self.sniper.snapshot, None)
        totals = self._report_totals()
        self.report = self._build_report(exit_code, reason, feed_stats, snapshot, totals)
        if snapshot is None or not feed_stats or not totals:  # an actor could not answer
            self.report = with_durable_state(self.report, _read_durable(self), self.ticks_seen)
        self.report["canceled_orders"] = canceled
        self._write_report(self.report)
        if settled and exit_code == EXIT_OK and self.finished.is_set() and self.config.feed.source == "replay":
            self._record_completion(self.report)
        self.stop(exit_code)
        return self.report

    def _cancel_working_orders(self, timeout: float, *, keep_exits: bool) -> list[str]:
        """Cancel every order working at the venue that is not a protective exit of a position
        kept open (``keep_exits``: exits are kept when positions are), nor, live, an order never
        recorded here (placed by hand: ``FOREIGN_ORDER_KEPT``), wait (up to ``timeout``)
        until the venue confirmed each (the Executor's record is final and the venue no longer
        lists it), and return the client ids that ended CANCELED (``ORDERS_CANCELED``)."""
        log = logger.bind(actor="engine")
        executor = self.handles[EXECUTOR]
        working = _ask_or(lambda: executor.ask("open_orders"), None)
        if working is None:
            log.error("ORDERS_NOT_CANCELED: the Executor could not list the working orders")
            return []
        keep: set[str] = set()
        for order in working if keep_exits else ():
            record = _ask_or(lambda coid=order.client_order_id: executor.ask("order", coid), None)
            if record is not None and record.intent is OrderIntent.EXIT:
                keep.add(order.client_order_id)
        foreign = not self.config.live  # live: an order placed by hand is the account owner's, never canceled
        asked = list(_ask_or(lambda: executor.ask("cancel_open_orders", frozenset(keep), foreign=foreign), ()))
        records: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while asked:
            listed = {o.client_order_id for o in _ask_or(lambda: executor.ask("open_orders"), [])}
            records = {coid: _ask_or(lambda coid=coid: executor.ask("order", coid), None) for coid in asked}
            waiting = [c for c in asked if c in listed or records[c] is None or not records[c].is_final]
            if not waiting:
                break
            if time.monotonic() >= deadline:
                log.warning("ORDERS_NOT_CANCELED: {} not confirmed by the venue within {}s: {}", len(waiting),
                            timeout, waiting)
                break
            self.bus.wait_idle(0.05)  # a cancel resolves through the bus: wait on it, bounded
        if asked:  # the Sniper applies the cancels (and any fill that won the race) before the report
            self.wait_idle(max(0.0, deadline - time.monotonic()))
        canceled = [c for c in asked if records.get(c) is not None and records[c].status is OrderStatus.CANCELED]
        if keep:
            log.info("ORDERS_KEPT: {} protective exit(s) of kept positions stay working: {}", len(keep), sorted(keep))
        log.info("ORDERS_CANCELED: {} {}", len(canceled), canceled)
        return canceled

    def _record_completion(self, report: dict[str, Any]) -> None:
        """The replay reached its end and everything settled: a later run on this folder says
        so and shows this run's report instead of replaying nothing."""
        try:
            self.store.save_replay_completion(self.run_id, str(report.get("ended_at", "")))
        except Exception as error:  # noqa: BLE001 - the next run then resumes at the end instead
            logger.bind(actor="engine").error("REPLAY_COMPLETION_NOT_RECORDED: {!r}", error)
            return
        logger.bind(actor="engine").info("REPLAY_COMPLETE: run {} reached the end of data", self.run_id)

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

    def _report_scope(self) -> tuple[str, Ledger, Any]:
        """What the report's totals cover (``state/session_report.report_scope``)."""
        return report_scope(self.config.feed.source, self.initial_balance, self.start_ledger,
                            self.start_equity)

    def _report_totals(self) -> dict[str, Any]:
        """The journal's figures over the report's scope, and the runs it covers (``runs``)."""
        scope, _, start_equity = self._report_scope()
        if scope == "run":
            totals = _ask_or(lambda: self.journal.ask("totals", str(start_equity), (self.run_id,)), {})
            return {**totals, "runs": [self.run_id]}
        totals = _ask_or(lambda: self.journal.ask("totals", str(start_equity), None), {})
        runs = [r for r in _ask_or(lambda: self.journal.ask("run_ids"), []) if r != self.run_id]
        return {**totals, "runs": [*runs, self.run_id]}

    def _report_ticks(self, feed: dict[str, Any]) -> int:
        """``state/session_report.report_ticks``: a replay's position in its files (the source
        has stopped with the Feed: its final numbers), else the ticks the Feed delivered."""
        stats = getattr(self.source, "stats", None)
        position = _ask_or(stats, {}) if stats is not None and self.config.feed.source == "replay" else None
        return report_ticks(self.config.feed.source, feed.get("ticks", 0), position)

    def _build_report(self, exit_code: int, reason: str, feed: dict[str, Any], snapshot: Any,
                      totals: dict[str, Any]) -> dict[str, Any]:
        """The session report (``state/session_report.session_report``) from what the engine
        gathered; each way the journal disagrees with the account is logged (``REPORT_MISMATCH``)."""
        ended = datetime.now(timezone.utc)
        scope, start_ledger, start_equity = self._report_scope()
        context = ReportContext(
            run_id=self.run_id, source=self.config.feed.source,
            simulated=bool(self.source is not None and self.source.simulated), data_dir=str(self.data_dir),
            on_stop=self.config.session.on_stop, initial_balance=self.initial_balance,
            started_at=self.started_wall or ended, ended_at=ended,
        )
        report = session_report(
            context, exit_code=exit_code, reason=reason, scope=scope, start_ledger=start_ledger,
            start_equity=start_equity, totals=totals, snapshot=snapshot, feed=feed, ticks=self._report_ticks(feed),
            restarts=self.restarts, trading_state=_ask_or(self.risk_gate.trading_state, None),
            rest=self.rest_limiter.stats(), market_rules_from=self.market_rules_from, market_rules=self.market_rules,
            recorded={coin: str(path) for coin, path in self.recorder.files().items()} if self.recorder else {},
            mode=self.config.engine.mode, venue=self.venue_report(),
        )
        for mismatch in report["mismatches"]:
            logger.bind(actor="engine").warning("REPORT_MISMATCH: {}", mismatch)
        if self.reconciliation is not None:
            report["reconciliation"] = self.reconciliation
        if self.credentials is not None:  # a last guard: no key in a report, whatever text it quotes
            report = json.loads(self.redact(json.dumps(report)))
        return report

    def _write_report(self, report: dict[str, Any]) -> None:
        path = write_report(self.data_dir, self.run_id, report)
        logger.bind(actor="engine").info("SESSION_REPORT: {}", path)

    def stop(self, exit_code: int = EXIT_OK) -> int:
        """Stop in order (producers first, Journal last); idempotent. Returns the exit code.

        Every step runs even when an earlier one fails (a full disk makes the HALTED write, the
        stores' checkpoints and the recorder's flush raise): the failure is logged and the engine
        counts as stopped all the same, so ``wait_stopped`` never waits for a stop that died
        half-way. Without a session report (a halt), the durable state is read into ``durable``
        before the stores close, for the report built from it (``_durable_report``)."""
        with self._stop_lock:
            if self._stopped.is_set():
                return self.exit_code if self.exit_code is not None else exit_code
            try:
                if self.timers is not None:
                    self.timers.stop()
                if self.venue_watch is not None:
                    self.venue_watch.stop()
                _step("supervisor", self.supervisor.stop)
                _step("actors", self._stop_roles, STOP_ORDER)
                if getattr(self.venue, "live", False):
                    _step("live venue", self.venue.close)  # type: ignore[attr-defined]
                self.bus.remove_tap(self._watch)
                if self.halt_reason is not None:
                    _step("HALTED not saved", self._persist_halt)
                if self.report is None:
                    self.durable = _read_durable(self)
                _step("engine store", self.store.close)
                _step("journal store", self.journal_store.close)
                if self.venue_store is not None:
                    _step("venue book", self.venue_store.close)
                for anchor in self._anchors:
                    _step("store anchor", anchor.close)
                self._anchors = []
                if self.recorder is not None:
                    _step("recorder", self.recorder.close)
                _step("rest limiter", self.rest_limiter.close)
                _step("folder lock", self.folder_lock.release)  # last: the folder is free once nothing writes to it
            finally:
                self.exit_code = exit_code
                self._stopped.set()
        logger.bind(actor="engine").info("ENGINE_STOPPED: exit code {}", exit_code)
        return exit_code

    def _persist_halt(self) -> None:
        """The RiskGate persists HALTED when it can; if it was the one that died, do it here."""
        assert self.halt_reason is not None
        if self.store.load_trading_state() is not TradingState.HALTED:
            self.store.save_trading_state(TradingState.HALTED, self.halt_reason)

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
        """Called by the supervisor's thread: halt trading, then stop in order elsewhere, with
        exit code 3, or 5 when the failures that led here said a store cannot be written (a
        full disk, lost permissions, an I/O error): then the reason starts with
        ``store unwritable:`` and names the error."""
        code = EXIT_HALTED
        store_error = self.supervisor.store_error()
        if store_error is not None:
            code = EXIT_STORE_UNWRITABLE
            self.store_error = store_error
            reason = f"store unwritable: {store_error} ({reason})"
            logger.bind(actor="engine").critical(
                "STORE_UNWRITABLE: {}; the engine stops (free disk space or restore permissions, then "
                "start again on the same data directory)", store_error)
        self.halt_reason = reason
        try:
            self.bus.send(SetTradingState(ts_init_ns=self.clock.now_ns(), state=TradingState.HALTED,
                                          reason=f"supervisor: {reason}"))
        except Exception as error:  # noqa: BLE001 - stopping anyway
            logger.bind(actor="engine").error("HALT_NOT_DELIVERED: {!r}", error)
        threading.Thread(target=self.stop, args=(code,), name="engine-halt", daemon=True).start()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _make_timers(self) -> PeriodicTimers:
        """The periodic nudges (``adapters/timers.py``), each a ``TimerFired`` told to one role:
        Journal flush every 0.25 s, the Feed's stale check as often when it watches for
        silence or records, the Sniper's expiry sweep every ``sweep_interval_s`` (not in a
        replay: its time moves only with its ticks, which expire conditions themselves, and a
        sweep stamped by this thread would race them), the Executor's reconcile of unknown
        outcomes every 5 s."""
        sweep_s = self.config.engine.sweep_interval_s

        def nudge(role: str, name: str) -> Callable[[], None]:
            return lambda: self.bus.tell(role, TimerFired(ts_init_ns=self.clock.now_ns(), name=name))

        jobs = [TimerJob(name="flush", action=nudge(JOURNAL, "flush"))]
        if self._stale_after_s is not None or self._give_up_after_s is not None or self.recorder is not None:
            jobs.append(TimerJob(name="stale_check", action=nudge(FEED, "stale_check")))
        if self.config.feed.source != "replay":
            jobs.append(TimerJob(name="sweep", action=nudge(SNIPER, "sweep"), every_s=sweep_s))
        jobs.append(TimerJob(name="reconcile", action=nudge(EXECUTOR, "reconcile"), every_s=RECONCILE_S))
        return PeriodicTimers(min(JOURNAL_FLUSH_S, sweep_s), jobs, name="engine-timers")

    def _reconcile_with_venue(self) -> None:
        """Live: the start-up reconciliation with the venue (``actors/venue_reconcile.py``), once
        the Executor, the RiskGate and the Sniper run and before the Strategist and the Feed
        start. Raises ``ReconcileRefused`` (a ``ConfigError``: exit 2)."""
        venue: Any = self.venue  # a LiveVenuePort in live mode
        if not callable(getattr(venue, "account", None)):
            raise EngineStartError(f"live mode needs a live venue; {venue.name} cannot show its account")
        found = reconcile_at_start(bus=self.bus, venue=venue, store=self.store, clock=self.clock,
                                   on_unknown=self.config.venue.on_unknown,
                                   spot=self.config.venue.market_for(self.config.feed) == "spot",
                                   cash_asset=self.cash_asset)
        self.reconciliation = found.as_report()

    def _venue_watch(self) -> VenueWatch | None:
        """Live, ``[venue] reconcile_every_s`` > 0: the periodic check's thread, started."""
        venue: Any = self.venue
        every_s = self.config.venue.reconcile_every_s
        if not self.config.live or not every_s or not callable(getattr(venue, "account", None)):
            return None
        return VenueWatch(bus=self.bus, venue=venue, clock=self.clock, every_s=every_s,
                          spot=self.config.venue.market_for(self.config.feed) == "spot").start()

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
        sized it), or ``ValueError`` with the reason it was rejected (vetting never crashes the
        RiskGate: an error while vetting is a rejection too); ``TimeoutError`` only if neither
        came within ``timeout`` (an engine that is not running, or far behind)."""
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


class _RedactingOutbox:
    """A live session's outbox: a message whose text fields hold the key or the secret is
    journaled with them masked (a last guard: a venue never puts them in its texts)."""

    def __init__(self, outbox: StoreOutbox, secrets: tuple[str, ...]) -> None:
        self._outbox = outbox
        self._secrets = secrets
        self.begin_deferring = outbox.begin_deferring
        self.end_deferring = outbox.end_deferring
        self.holding = outbox.holding

    def append(self, message: Any) -> None:
        changes = {f.name: redact_values(value, self._secrets) for f in fields(message)
                   if isinstance(value := getattr(message, f.name), str)
                   and any(secret in value for secret in self._secrets)} if is_dataclass(message) else {}
        self._outbox.append(replace(message, **changes) if changes else message)


def _guarded_outbox(outbox: StoreOutbox, secrets: tuple[str, ...]) -> StoreOutbox | _RedactingOutbox:
    """The Journal's copies, durable with their decisions; masked first in a live session."""
    return _RedactingOutbox(outbox, secrets) if secrets else outbox


def _live_credentials(config: Config, venue: VenuePort | None, environ: Mapping[str, str]) -> Credentials | None:
    """The API key and secret of a live session that builds its own venue (``None`` for paper,
    or when a venue was given: it holds its own); ``MissingCredentials`` names the variables."""
    if not config.live or venue is not None:
        return None
    return load_credentials(config.venue, environ)


def live_cash(config: Config, startup: VenueStartup, *, fresh: bool = True) -> tuple[str, Decimal]:
    """(the cash asset, the account's balance of it at connect): the asset the venue named
    (``VenueStartup.cash_asset``), else the one the exchange symbols say (``BTCUSDT``: ``USDT``).
    ``ValueError`` naming the asset when ``fresh`` (no cash in the store yet) and the account
    holds none of it; on a restart a missing balance is 0 (the reconciliation reports it)."""
    from adapters.feeds.live_feeds import exchange_symbols

    asset = startup.cash_asset or cash_asset_of(exchange_symbols(config.feed))
    if fresh:
        return asset, start_cash(startup.balances, asset)
    return asset, startup.balances.get(asset, Decimal(0))


def _stored_venue_cash(store: Store) -> dict[str, Any] | None:
    """``--status``: the account's cash at the last live start beside the engine's
    (``VENUE_CASH_KEY``), or ``None``."""
    text = store.get_setting(VENUE_CASH_KEY)
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _status_initial_balance(config: Config, venue_cash: Mapping[str, Any] | None) -> Decimal:
    """What ``--status`` shows as the balance before the store holds one: the account's at the
    last live start, else ``[paper] initial_balance``."""
    if config.live and venue_cash is not None:
        try:
            return Decimal(str(venue_cash.get("venue")))
        except ArithmeticError:
            pass
    return config.paper.initial_balance


def _make_live_venue(config: Config, credentials: Credentials | None, limiter: TokenBucket, clock: Clock,
                     markets: Callable[[str], MarketRules]) -> VenuePort:
    """``CcxtVenue.from_config`` (imported here: only a live session needs ccxt's private API),
    on the process's one token bucket."""
    assert credentials is not None, "a live session reads its credentials first"
    try:
        from adapters.venues.ccxt_venue import CcxtVenue
    except ImportError as error:
        raise ConfigError([f"engine.mode: live trading is not available: {error}"]) from None
    venue: LiveVenuePort = CcxtVenue.from_config(config, credentials=credentials, limiter=limiter, clock=clock,
                                                 markets=markets)
    return venue


def _venue_refusal(config: Config, credentials: Credentials | None, error: Exception) -> str:
    """Why a live venue's connect failed, for the operator: the cause, the venue's own words,
    and what to check (never a key: the caller masks the text too)."""
    exchange = config.venue.exchange_for(config.feed)
    account = f"{exchange} {'testnet' if config.venue.testnet else 'LIVE account'}"
    keys = f"${config.venue.key_env} / ${config.venue.secret_env}"
    if isinstance(error, AuthenticationFailed):
        cause = (f"{account} refused the API keys from {keys} ({error}); check that they belong to the "
                 f"{'testnet' if config.venue.testnet else 'real'} account, may trade, and allow this IP")
    elif isinstance(error, UnsupportedAccount):
        cause = f"{account} is set up in a way the engine does not trade: {error}"
    elif isinstance(error, TemporaryError):
        cause = f"{account} cannot be reached: {error}"
    else:
        cause = f"connecting to {account} failed: {type(error).__name__}: {error}"
    if credentials is not None:
        cause = credentials.redact(cause)
    return f"{cause}; nothing was started"


def _session_identity(config: Config) -> SessionIdentity:
    """What this session is (``state/session.py``), with the replay files fingerprinted."""
    prints = []
    if config.feed.source == "replay":
        for file in config.feed.files:
            try:
                prints.append(fingerprint_file(file.coin, file.path))
            except OSError as error:
                raise ConfigError([f"feed.files: {file.path}: cannot read: {error.strerror or error}"]) from None
    return identity_from_config(config, prints)


def _open_venue_book(data_dir: Path, store: Store) -> VenueStore:
    """The paper venue's own book (``<data_dir>/venue.db``), tied to ``store``. A book that
    belongs to another store is refused (exit 2). A new book beside a store of an older version
    that holds open positions adopts them (``VENUE_ADOPTED``), so their reduce-only exits are
    not refused by a venue that never saw them."""
    try:
        book = VenueStore(data_dir / VENUE_STORE_NAME, owner=store.outbox_id)
    except VenueStoreMismatch as error:
        raise DataDirUnusable(f"data_dir {data_dir}: {error}; use another --data-dir, or --fresh to archive "
                              "this folder's contents first") from None
    if book.new_book:
        with store.connection():  # the building thread keeps no connection open
            stored = store.load_positions()
        held = [VenuePosition(coin=p.coin, side=p.direction, quantity=p.quantity, entry_price=p.entry_price)
                for p in stored if p.entry_price is not None and p.quantity > 0]
        for position in adopt_positions(book, held):
            logger.bind(actor="engine").warning(
                "VENUE_ADOPTED: the paper venue's new book takes over {} {} {} @ {} from this folder's store "
                "(written by a version without a venue book)", position.side.value, position.quantity, position.coin,
                position.entry_price)
    return book


def _open_session_folder(data_dir: Path, identity: SessionIdentity,
                         fresh: bool) -> tuple[FolderLock, Store, dict[str, Any] | None, list[str]]:
    """Lock the folder (``--fresh``: archive its contents), open its store and check that it
    belongs to this session: record the identity in a new folder, adopt a folder of an older
    version (no identity recorded) with a warning, refuse another session's
    (``SessionMismatch``). Returns the lock, the store, a finished replay's completion and the
    warnings to log when the session starts. Everything is released again when it raises."""
    notes: list[str] = []
    lock = FolderLock.acquire(data_dir)
    store: Store | None = None
    try:
        if fresh and (archived := archive_contents(data_dir)) is not None:
            notes.append(f"SESSION_ARCHIVED: --fresh moved the previous contents of {data_dir} to {archived}")
        existed = (data_dir / "engine.db").exists()
        try:
            store = Store(data_dir / "engine.db")
            with store.connection():
                stored = store.load_session_identity()
                if stored is None:
                    store.save_session_identity(identity)
                completion = store.load_replay_completion() if identity.source == "replay" else None
        except ValueError as error:
            raise DataDirUnusable(f"data_dir {data_dir}: {error}; use another --data-dir, or --fresh to "
                                  f"archive this folder and start empty") from None
        except Exception as error:  # noqa: BLE001 - a database that cannot be opened: say so, exit 2
            raise DataDirUnusable(f"data_dir {data_dir}: cannot use its store {data_dir / 'engine.db'}: "
                                  f"{error}") from None
        if stored is None and existed:
            notes.append(f"SESSION_ADOPTED: {data_dir} has a store made by an older version, with no record "
                         f"of the session that made it; it is now recorded as {describe(identity)} (run "
                         "--fresh instead if it held another session)")
        if stored is not None and (found := differences(stored, identity)):
            raise SessionMismatch(data_dir, stored, identity, found)
        return lock, store, completion, notes
    except BaseException:
        if store is not None:
            store.close()
        lock.release()
        raise


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
        from adapters.feeds.replay_source import ReplaySource

        try:
            return ReplaySource(feed.files, speed=feed.speed, progress=progress and feed.speed == "max",
                                on_finished=on_finished)
        except ValueError as error:
            raise ConfigError([f"feed.files: {error}"]) from None
    if feed.source == "manual":
        return None
    if feed.live:
        from adapters.feeds.live_feeds import live_source

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


def _step(what: str, action: Callable[..., Any], *args: Any) -> Any:
    """``action(*args)``, or ``None`` after logging why it failed (a stop goes on regardless)."""
    try:
        return action(*args)
    except Exception as error:  # noqa: BLE001 - stopping: report each failure, finish the rest
        unwritable = " (the store cannot be written)" if is_store_unwritable(error) else ""
        logger.bind(actor="engine").error("STOP_STEP_FAILED: {}: {!r}{}", what, error, unwritable)
        return None


@contextmanager
def _reading(db: Any) -> Iterator[None]:
    """Leave the calling thread's connection to ``db`` as it was: a read from a thread that
    had none (peewee opens one per thread on demand) closes it again afterwards."""
    was_closed = db.is_closed()
    try:
        yield
    finally:
        if was_closed and not db.is_closed():
            _step("close", db.close)


def _read_durable(engine: Engine) -> dict[str, Any]:
    """What the stores hold, read directly (no actor): the engine store's account, active
    positions and trading state, the closed positions this session added, and this run's
    totals from the journal database. A part that cannot be read is missing from the result."""
    durable: dict[str, Any] = {}
    store = engine.store

    def engine_store() -> dict[str, Any]:
        account = store.load_account()
        positions = store.load_positions()
        balance = Decimal(account.get("balance", str(engine.initial_balance)))
        before = engine._account_before
        return {
            "balance": balance,
            "equity": account_equity(balance, positions),
            "open_positions": len(positions),
            "closed_positions_this_session": store.count_closed_positions() - engine._closed_before,
            "realized_pnl_this_session": Decimal(account.get("realized_pnl", "0"))
            - Decimal(before.get("realized_pnl", "0")),
            "fees_paid_this_session": Decimal(account.get("fees_paid", "0")) - Decimal(before.get("fees_paid", "0")),
            "trading_state": store.load_trading_state().value,
        }

    with _reading(store.db):
        durable.update(_step("durable state: engine store unreadable", engine_store) or {})
    with _reading(engine.journal_store.db):
        scope, _, start_equity = engine._report_scope()  # a replay's report covers all its runs
        run_ids = None if scope == "replay" else (engine.run_id,)
        totals = _step("durable state: journal unreadable",
                       lambda: engine.journal_store.totals(start_equity, run_ids))
    if totals is not None:
        durable["journal_totals"] = totals
    return durable


def _durable_report(engine: Engine, exit_code: int, reason: str) -> dict[str, Any]:
    """The session report of an engine whose actors are gone (a halt): built from the durable
    state read as it stopped (``Engine.durable``), or now if that was not possible, and written
    to ``summary.json`` like any report (a full disk may refuse that: then it is only printed)."""
    durable = engine.durable if engine.durable is not None else _read_durable(engine)
    report = engine._build_report(exit_code, reason, {"ticks": engine.ticks_seen}, None, {})
    report = with_durable_state(report, durable, engine.ticks_seen)
    _step("report not written", engine._write_report, report)
    engine.report = report
    return report


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
    venue: VenuePort | None = None,
    source: MarketSource | None = None,
    ask_timeout: float = 10.0,
    progress: bool = False,
    record: Path | str | None = None,
    fresh: bool = False,
) -> Engine:
    """Build (not start) an engine from a config file, a mapping shaped like ``config.toml``,
    or a ``Config``, on its data folder (``resolve_config_and_data_dir``), which it locks for
    its life (``engine.stop()`` releases it). ``fresh`` first moves the folder's contents to
    ``<data_dir>/archive/<UTC timestamp>/``. Raises ``ConfigError`` (also for a replay file
    that cannot be read, or no data folder for a mapping), ``DataDirError`` when the folder
    cannot be used: ``SessionMismatch`` (it holds another session's state), ``FolderLocked``
    (another engine runs on it), ``DataDirUnusable`` (cannot be created or written). A replay
    that already reached its end builds, with ``engine.completion`` set, and ``start()``
    raises ``ReplayAlreadyComplete``."""
    config, folder = resolve_config_and_data_dir(config_or_path, data_dir)
    return Engine(config, data_dir=folder, clock=clock, venue=venue, source=source, ask_timeout=ask_timeout,
                  progress=progress, record=record, fresh=fresh)


def resolve_config_and_data_dir(
    config_or_path: Config | Mapping[str, Any] | str | Path, data_dir: str | Path | None = None
) -> tuple[Config, Path]:
    """The validated config and the absolute data folder: ``data_dir`` (relative to the
    working directory) if given, else ``[engine] data_dir`` (relative to the config file's
    folder), else ``var/<config file name>/`` beside the config file (``config.toml`` ->
    ``var/config/``, ``replay.toml`` -> ``var/replay/``), so sessions of different config files
    never share a folder. A mapping or ``Config`` has no file name: without ``data_dir`` or
    ``[engine] data_dir`` it is a ``ConfigError``."""
    config, base = resolve_config(config_or_path)
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_absolute():
            folder = Path.cwd() / folder
        return config, folder
    folder = config.engine.data_dir
    if folder is None:
        if isinstance(config_or_path, (Config, Mapping)):
            raise ConfigError(["engine.data_dir: a config given as a mapping or a Config has no file name to "
                               "name its data folder after; pass build_engine(..., data_dir=...) or set "
                               "[engine] data_dir"])
        folder = Path("var") / Path(config_or_path).stem
    return config, folder if folder.is_absolute() else base / folder


# --- command line ------------------------------------------------------------------------------

def _status_line(engine: Engine, previous: dict[str, float] | None = None) -> str:
    """One line (``adapters/console/status.py``): feed state, ticks/s since the last line,
    armed, open, balance, realized PnL."""
    try:
        snap = engine.sniper.snapshot()
        feed = engine.handles[FEED].stats()
        trading = engine.risk_gate.trading_state()
    except Exception as error:  # noqa: BLE001 - a status line never kills the session
        return f"status unavailable: {error}"
    return status_line(snapshot=snap, feed=feed, trading=trading, prices=engine.board.all(),
                       source=engine.config.feed.source,
                       simulated=engine.source is not None and engine.source.simulated,
                       now=time.monotonic(), started_at=engine.started_at, previous=previous,
                       venue=engine.venue_status())


def main(argv: list[str] | None = None) -> int:
    stop_requested = threading.Event()
    stop_signal: list[str] = []
    _install_signal_handlers(stop_requested, stop_signal)  # first: a stop at any moment ends in order
    parser = argparse.ArgumentParser(description="Autonomous trade-execution engine (paper session).")
    parser.add_argument("--config", default="config.toml", help="path to config.toml")
    parser.add_argument("--data-dir", help="the session's folder; overrides [engine] data_dir "
                                           "(default: var/<config file name>/ beside the config file)")
    parser.add_argument("--fresh", action="store_true",
                        help="move the folder's contents to <data_dir>/archive/<UTC timestamp>/ and start empty")
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
    if args.repl:  # the console handles Ctrl-C itself (it cancels the line being typed)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration: must be a positive number of seconds")
    if args.status and args.fresh:
        parser.error("--fresh: not with --status (which only reads)")

    progress = sys.stderr.isatty() and not args.repl
    try:
        if args.status:  # read the store only: no engine, no actor, no lock, nothing created
            return _status_command(args)
        engine = build_engine(args.config, args.data_dir, progress=progress, record=args.record,
                              fresh=args.fresh)
    except (ConfigError, DataDirError, MissingCredentials) as error:
        print(str(error), file=sys.stderr)
        return EXIT_BAD_INPUT
    if engine.completion is not None:
        return _already_complete(engine)
    level = engine.config.engine.log_level
    show_progress = progress and engine.config.feed.source == "replay" and engine.config.feed.speed == "max"
    if (args.repl or show_progress) and level in ("TRACE", "DEBUG", "INFO", "SUCCESS"):
        # The console is for typing, or for the progress bar; the full log is in <data_dir>/logs.
        level = "WARNING"
    configure_logging(level, engine.data_dir / "logs", secrets=engine.secrets())
    if stop_requested.is_set():  # a stop signal before any actor ran: do not start one
        return _never_started(engine, stop_signal)

    try:
        engine.start()
    except ConfigError as error:  # found at start: a coin the live venue does not list
        print(str(error), file=sys.stderr)
        return EXIT_BAD_INPUT
    except VenueStartError as error:  # keys refused, account not supported, venue unreachable
        _say(f"run.py: live venue: {error} (exit code {EXIT_BAD_INPUT})", sys.stderr)
        return EXIT_BAD_INPUT
    except EngineStartError as error:
        logger.bind(actor="engine").critical("ENGINE_START_FAILED: {}", error)
        code = EXIT_STORE_UNWRITABLE if engine.store_error is not None else 1
        _say(f"run.py: {error} (exit code {code})", sys.stderr)
        return code
    _print_live_banner(engine)
    if args.repl:
        from adapters.console.repl import run_repl

        try:
            run_repl(engine, stop_requested=stop_requested)
        finally:
            if _halting(engine):
                code, report = _halted_report(engine)
            else:
                code, reason = _session_outcome(engine, "console closed")
                report = engine.shutdown(code, reason)
        _say(_report_text(report))
        return _outcome(engine, code)

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
                    logger.bind(actor="engine").info("STOP_REQUESTED: {}", reason)
                break
            if deadline is not None and time.monotonic() >= deadline:
                reason = f"--duration {args.duration:g}s"
                break
            if not show_progress:
                line = _status_line(engine, rates)
                if _halting(engine):  # it stopped while the line was made: "unavailable" says nothing
                    break
                _say(line)
    finally:
        if _halting(engine):  # halted by the supervisor: the actors are gone, the stores remain
            code, report = _halted_report(engine)
        else:
            if not show_progress:
                _say(_status_line(engine, rates))
            code, why = _session_outcome(engine, reason)
            report = engine.shutdown(code, why)
        engine.wait_stopped(30)
    _say(_report_text(report))
    return _outcome(engine, code)


def _status_command(args: argparse.Namespace) -> int:
    """``--status``: the durable state as JSON, read without writing anything: no lock (a
    starting engine never fails because of it), the store opened read-only (also in a
    read-only folder); whether an engine runs on the folder, from its lock file. A folder
    where no session ever ran is ``NoSession`` (exit 2), and nothing is created."""
    config, data_dir = resolve_config_and_data_dir(args.config, args.data_dir)
    store = Store.open_read_only(data_dir / "engine.db")
    try:
        venue_cash = _stored_venue_cash(store)
        status = {"data_dir": str(data_dir), **store.durable_status(_status_initial_balance(config, venue_cash))}
        if venue_cash is not None:
            status["venue_cash_at_start"] = venue_cash
        try:
            identity = store.load_session_identity()
            status["identity"] = as_dict(identity) if identity is not None else None
        except ValueError as error:
            status["identity"] = f"unreadable: {error}"
        status["replay_complete"] = store.load_replay_completion()
        status["venue"] = _stored_venue(data_dir)  # a live session's, from its last report
        status["store_read_mode"] = store.read_mode
        if store.read_mode == "immutable" and (data_dir / "engine.db-wal").exists():
            status["store_note"] = ("read as immutable (the folder is read-only and has no -shm): the last "
                                    "changes, still in engine.db-wal, are not shown")
    finally:
        store.close()
    holder = lock_holder(data_dir)
    if holder is not None and holder.running:
        status["session"] = {"running": True, "pid": holder.pid, "started_at": holder.started_at}
    elif holder is not None:
        status["session"] = {"running": False, "last_pid": holder.pid, "last_started_at": holder.started_at,
                             "note": "the last engine on this folder did not stop cleanly (killed?)"}
    else:
        status["session"] = {"running": False}
    print(json.dumps(status, indent=2, sort_keys=True))
    return EXIT_OK


def _already_complete(engine: Engine) -> int:
    """A replay run again on its finished folder: say so, show the report of the run that
    finished it, replay nothing (exit 0)."""
    done = ReplayAlreadyComplete(engine.data_dir, engine.completion or {})
    engine.stop()
    print(str(done), flush=True)
    try:
        report = json.loads(done.report_path.read_text())
    except (OSError, ValueError) as error:
        print(f"its report cannot be read: {error}", file=sys.stderr)
        return EXIT_OK
    print(format_report(report), flush=True)
    return EXIT_OK


def _session_over(engine: Engine, stop_requested: threading.Event) -> bool:
    return (stop_requested.is_set() or _halting(engine) or engine.finished.is_set()
            or engine.killed.is_set() or engine.gave_up.is_set() or engine.venue_halted.is_set())


def _print_live_banner(engine: Engine) -> None:
    """Once a live venue connected: which exchange and market, TESTNET or real money
    (``adapters/console/status.live_banner``), on stdout and in the log."""
    if engine.venue_startup is None:
        return
    banner = engine.redact(live_banner(engine.venue_startup, key_env=engine.config.venue.key_env,
                                       secret_env=engine.config.venue.secret_env))
    _say(banner)
    log = logger.bind(actor="engine")
    (log.info if engine.venue_startup.testnet else log.warning)("LIVE_SESSION: {}", " / ".join(
        line.strip() for line in banner.splitlines() if line.strip(" =!")))


def _stored_venue(data_dir: Path) -> dict[str, Any] | None:
    """``--status``: the venue block of the newest report that has one (a live session's:
    exchange, TESTNET or live, stream, ban, halt as the last run ended), read from disk only."""
    runs = data_dir / "runs"
    for summary in sorted(runs.glob("*/summary.json"), reverse=True) if runs.is_dir() else ():
        try:
            report = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and report.get("venue"):
            return {"run_id": report.get("run_id"), "ended_at": report.get("ended_at"), **report["venue"]}
    return None


def _halting(engine: Engine) -> bool:
    """The supervisor gave up (or the engine stopped under the session's feet): no actor will
    answer again, so the session ends with a report from the durable state."""
    return engine.stopped or engine.supervisor.escalated is not None


def _install_signal_handlers(stop_requested: threading.Event, stop_signal: list[str]) -> None:
    """SIGTERM and SIGINT request an orderly stop from the first moment of ``main`` (a signal
    that came while ``run.py`` was still importing, kept by the handler at the top of the
    module, counts too): the handler only records the signal (logging inside a handler could
    re-enter a log call it interrupted); the main loop acts on it. SIGUSR1 logs every thread's
    stack."""

    def request_stop(signum: int, _frame: Any) -> None:
        stop_signal.append(signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: pykka.debug.log_thread_tracebacks())
    for signum in globals().get("_EARLY_SIGNALS", ()):  # only when run as a script
        request_stop(signum, None)


def _never_started(engine: Engine, stop_signal: list[str]) -> int:
    """A stop signal arrived before the engine started: close the stores, start nothing, say so
    (exit code 0: a requested stop is a clean stop)."""
    name = stop_signal[0] if stop_signal else "a stop request"
    logger.bind(actor="engine").info("STOP_REQUESTED: {} before the engine started", name)
    engine.stop(EXIT_OK)
    _say(f"Session not started: {name} arrived before the engine started (no actor ran, nothing traded; "
         f"data {engine.data_dir})")
    return EXIT_OK


def _halted_report(engine: Engine) -> tuple[int, dict[str, Any]]:
    """Wait (bounded) for a halted engine's stop, then its report: the one a graceful stop
    already made, else one built from the durable state (``_durable_report``)."""
    if not engine.wait_stopped(HALT_STOP_WAIT_S):
        logger.bind(actor="engine").critical("ENGINE_STOP_HUNG: not stopped within {}s; exiting anyway",
                                             HALT_STOP_WAIT_S)
    code = engine.exit_code if engine.exit_code is not None else (
        EXIT_STORE_UNWRITABLE if engine.store_error is not None else EXIT_HALTED)
    if engine.report is not None:
        return code, engine.report
    return code, _durable_report(engine, code, engine.halt_reason or "halted by the supervisor")


def _report_text(report: dict[str, Any]) -> str:
    text = format_report(report)
    if report.get("built_from"):
        text += f"\n  built from {report['built_from']}"
    return text


def _outcome(engine: Engine, code: int) -> int:
    """The exit code, and for a session that did not end cleanly one plain line on stderr that
    says why: printed, not logged, so it appears even when the console log sink is broken."""
    code = engine.exit_code if engine.exit_code is not None else code
    if code == EXIT_STORE_UNWRITABLE:
        _say(f"run.py: {engine.halt_reason} (exit code {code})", sys.stderr)
    elif code == EXIT_HALTED:
        _say(f"run.py: halted by the supervisor: {engine.halt_reason} (exit code {code})", sys.stderr)
    elif code not in (EXIT_OK,) and engine.report is not None:
        _say(f"run.py: {engine.report.get('end_reason', '')} (exit code {code})", sys.stderr)
    return code


def _say(text: str, stream: Any = None) -> None:
    """Print a line of the command line's own output; a stream that cannot be written (a full
    disk under a redirected stdout) must not turn an orderly exit into a traceback."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def _exit(code: int) -> None:
    """Exit with ``code`` even if a thread is left running (a hung actor thread is not a daemon
    and would keep the process alive after ``main`` returned)."""
    deadline = time.monotonic() + EXIT_JOIN_S
    for thread in threading.enumerate():  # stopped actors' threads are still finishing: let them
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not stuck:
        sys.exit(code)
    _say(f"run.py: threads still running at exit: {', '.join(stuck)}; exiting with code {code} anyway", sys.stderr)
    try:
        logger.remove()  # flush the log file's queue before the hard exit
    except Exception:  # noqa: BLE001 - exiting regardless
        pass
    os._exit(code)


def _session_outcome(engine: Engine, default_reason: str) -> tuple[int, str]:
    if engine.killed.is_set():
        return EXIT_KILL_SWITCH, engine.kill_reason or "KILL_SWITCH"
    if engine.venue_halted.is_set():
        return EXIT_VENUE_HALTED, engine.venue_halt_reason
    if engine.gave_up.is_set():
        return EXIT_FEED_GAVE_UP, engine.gave_up_reason
    if engine.finished.is_set():
        return EXIT_OK, "end of data"
    return EXIT_OK, default_reason


if __name__ == "__main__":
    _exit(main())
