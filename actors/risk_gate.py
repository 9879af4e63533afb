"""The RiskGate: the only road to the Executor, and the account's risk state.

**Owns** the trading state (ACTIVE, REDUCING, HALTED), persisted so a halt survives any restart;
the kill switch's ``EquityWatch`` (the day's starting equity and the equity peak, persisted
too); condition vetting and sizing.

**Accepts** ``ProposeCondition`` and ``ProposeConditions`` (vet, size, then arm on the Sniper),
``SubmitOrder`` (gate, then build the one and only ``ExecuteOrder``), ``SetTradingState``,
``EquityMarked`` (the Sniper's equity after every fill and, while marks change, at most every
``[risk] mark_report_ms`` of engine time), ``AccountMarked`` (at bar closes) and position
events (equity, and which positions are open).

**Emits** ``ArmCondition`` / ``ArmConditions`` to the Sniper, ``ExecuteOrder`` to the Executor,
``ConditionRejected`` (with the reason), ``OrderDenied`` (a local decision: the order never
reaches a venue), ``TradingStateChanged``, and on a kill switch ``KillSwitchTriggered`` plus a
``ClosePosition`` for every open position; ``EquityChecked`` after each ``EquityMarked`` (after
those commands, so a tick clock's Sniper, which waits for it, trips at the same tick in every
replay).

Gate: HALTED lets no entry through (exits pass); REDUCING passes only orders that reduce a
position; ACTIVE passes everything. Exits are never denied: a stop must always be able to act.
A coin blocked by the reconciliation with a live venue (``BlockCoins``: the engine's position
or orders there are not the venue's, ``state/reconcile.py``) takes no order that is not
reduce-only (``OrderDenied`` reason ``RECONCILE_MISMATCH: <sentence>``); the blocks are
persisted (``BLOCKED_KEY``), so a restart keeps them, and each start's reconciliation replaces
them (a coin that reconciles clean is free again). Asks: ``blocked_coins`` and
``unblock_coin(coin, reason)`` (an operator who checked the account).

The venue (``VenueAlert``, published by the Executor for each ``VenueNotice`` of a live venue):
``BANNED`` (a 418 or a 429 with ``until_ms``) denies every new ENTRY order with ``OrderDenied``
reason ``VENUE_BANNED until <UTC time>`` until ``until_ms`` has passed by the engine clock or
``BAN_LIFTED`` arrives (a ban without ``until_ms`` lasts until ``BAN_LIFTED``); exits pass (the
venue refuses them itself while banned, and the Sniper retries a failed exit). A ban with an
end is persisted (``BAN_KEY``), so a restart keeps it. ``AUTH_FAILED`` (keys refused while
running) HALTs trading with the reason ``VENUE_HALTED: <message>``; the engine stops on it
(exit code 6). ``STREAM_DOWN``/``STREAM_UP`` change nothing here (the venue polls meanwhile).

Vetting (``state/risk.py``): known coin, not expired, trigger on the tick grid with an order
size the market accepts, stop and take-profit sane and on the right sides of the trigger,
trigger near the last price. Sizing: ``[risk] sizing``. Vetting never crashes the RiskGate:
whatever a condition makes it raise is a ``ConditionRejected`` (``VET_FAILED: ...``), so
``propose_and_wait`` always gets an answer. ``vet`` (an ask) does the same for
``engine.sniper.add_condition`` and answers the sized condition or ``ValueError``.

Kill switch: every equity the RiskGate learns of (balance plus unrealized PnL at the marks) is
checked, so a loss is acted on within one report of the Sniper, not at the next bar close. When
equity falls ``[risk] max_daily_loss_pct`` below the day's starting equity (``KILL_SWITCH: daily
loss ...``) or ``max_drawdown_pct`` below the highest equity ever seen (``KILL_SWITCH: drawdown
...``), trading is HALTED with that reason, every open position is closed, and the engine stops
with exit code 99. Trading stays HALTED across restarts until resumed by command; resuming
after a drawdown halt restarts the peak at the equity of that moment (else the next mark would
trip again).

The day's starting equity is fixed at start (the store's balance plus the stored unrealized PnL
of the open positions, unless the stored day is today's, by engine time, UTC), and at the first
equity seen on a new UTC day: the new day starts at the last equity known before it (the equity
at the day change), so a loss first seen after midnight, or on the first trade of the day,
counts. The day's start and the peak are persisted (``DAY_KEY``, ``PEAK_KEY``). Live, the
store's balance is the account's at the first start (``initial_balance`` is then the account's
cash, from ``run.py``) and the engine's ledger after: the account's balance is never followed
(a deposit or a withdrawal by hand is no gain or loss of the engine's; the start-up
reconciliation reports the difference).

Replays: reports carry their tick's time and come at the same ticks, so a replay trips at the
same report every time; with ``[risk] replay_trips = "exact"`` the Sniper, on a tick clock,
holds its later ticks until the ``EquityChecked`` that answers each report, so the positions
close at the price of the tick that tripped in every replay (by default it does not wait: a
trip between bar closes may then close a few ticks later at max speed).

**On crash** the restart reloads the trading state, a venue ban, the day's start and the peak from the store,
announces the state again, learns the open positions from the store, and trips at once if the
equity in the store already breaches a limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import RISK_GATE
from adapters.ports import PriceBoard
from state import risk
from state.config import RiskConfig
from state.market import MarketRules, default_rules
from state.messages import (
    AccountMarked,
    ArmCondition,
    ArmConditions,
    BlockCoins,
    ClosePosition,
    ConditionRejected,
    EquityChecked,
    EquityMarked,
    ExecuteOrder,
    KillSwitchTriggered,
    OrderDenied,
    OrderRequest,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    ProposeCondition,
    ProposeConditions,
    SetTradingState,
    SubmitOrder,
    TradingStateChanged,
    VenueAlert,
)
from state.models import TradeCondition, account_equity
from state.order import NoticeKind
from state.store import Store
from state.types import OrderIntent, PositionStatus, TradingState

DAY_KEY = "risk_day_start"  # "YYYY-MM-DD equity"
PEAK_KEY = "risk_equity_peak"  # the highest equity seen, ever (the drawdown's reference)
BLOCKED_KEY = "risk_blocked_coins"  # JSON {coin: why}: no new entries (reconciliation with the venue)
RECONCILE_MISMATCH = "RECONCILE_MISMATCH"
DRAWDOWN_REASON = "KILL_SWITCH: drawdown"
BAN_KEY = "venue_banned_until_ms"  # a venue ban's end (epoch ms); empty: none
VENUE_HALTED = "VENUE_HALTED"  # the reason's start when the venue refused the keys while running


def utc_text(ms: int) -> str:
    """``2026-12-05 14:03:00 UTC``: an epoch time in ms as the operator reads it."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class RiskGate(EngineActor):
    role = RISK_GATE
    crash_on_error = True

    def __init__(
        self,
        *,
        store: Store,
        limits: RiskConfig | None = None,
        known_coins: Collection[str] | None = None,
        markets: Callable[[str], MarketRules] | None = None,
        board: PriceBoard | None = None,
        initial_balance: Decimal = Decimal("10000"),
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self._store = store
        self._limits = limits or RiskConfig()
        self._known = frozenset(known_coins) if known_coins is not None else None
        self._markets = markets or default_rules
        self._board = board
        self._initial_balance = initial_balance
        self._state = TradingState.ACTIVE
        self._reason = ""
        self._watch = risk.EquityWatch(day="", day_start=initial_balance, peak=initial_balance,
                                       equity=initial_balance)
        self._open: dict[str, PositionStatus] = {}
        self._banned = False  # the venue banned new orders (VenueAlert BANNED) ...
        self._banned_until_ms: int | None = None  # ... until then (None: until BAN_LIFTED)
        self._blocked: dict[str, str] = {}  # coin -> why (BlockCoins), persisted under BLOCKED_KEY
        self.passed = 0
        self.denied = 0
        self.rejected = 0
        self._last_rejection = ""

    def on_start(self) -> None:
        self._state = self._store.load_trading_state()
        self._reason = self._store.load_trading_reason()
        positions = self._store.load_positions()
        self._open = {p.id: p.status for p in positions}
        self._start_watch(positions)
        self._load_ban()
        self._blocked = _load_blocked(self._store.get_setting(BLOCKED_KEY))
        for coin, why in sorted(self._blocked.items()):
            self.log.warning("COIN_BLOCKED: {} takes no new entry: {}", coin, why)
        if self._state is not TradingState.ACTIVE:
            self.log.warning("TRADING_STATE: {} since before this start ({})", self._state.value, self._reason)
        self.publish(TradingStateChanged(ts_init_ns=self.now_ns(), state=self._state, reason=self._reason))
        self._observe_equity(self._watch.equity)  # a loss the store already shows trips now

    # --- conditions ---------------------------------------------------------------------------------

    def _on_propose_condition(self, command: ProposeCondition) -> None:
        vetted = self._vet(command.condition)
        if vetted is not None:
            self.send(ArmCondition(ts_init_ns=self.now_ns(), correlation_id=vetted.id, condition=vetted))

    def _on_propose_conditions(self, command: ProposeConditions) -> None:
        if self._state is not TradingState.ACTIVE:
            for condition in command.conditions:
                self._reject(condition, f"trading is {self._state.value}")
            return
        vetted = tuple(v for c in command.conditions if (v := self._vet(c)) is not None)
        self.send(ArmConditions(ts_init_ns=self.now_ns(), correlation_id=command.correlation_id,
                                strategy_id=command.strategy_id, coin=command.coin, conditions=vetted))

    def _vet(self, condition: TradeCondition, *, check_state: bool = True) -> TradeCondition | None:
        """The sized condition, or ``None`` after publishing why it was rejected. Vetting never
        crashes the RiskGate: whatever a condition makes it raise is a rejection naming it."""
        try:
            problem, sized = self._vet_and_size(condition, check_state=check_state)
        except Exception as error:  # noqa: BLE001 - a bad condition must never take the gate down
            problem, sized = f"VET_FAILED: cannot vet this condition: {type(error).__name__}: {error}", None
        if problem is not None or sized is None:
            self._reject(condition, problem or "VET_FAILED")
            return None
        return sized

    def _ask_vet(self, condition: TradeCondition) -> TradeCondition:
        """For ``engine.sniper.add_condition``: the condition vetted and sized exactly as a
        proposed one, or ``ValueError`` with the reason (also published as ``ConditionRejected``).
        One difference: it is not refused while trading is not ACTIVE (an operator arms ahead;
        the Sniper blocks its entry until trading is ACTIVE again)."""
        if not isinstance(condition, TradeCondition):
            raise ValueError(f"condition: expected a TradeCondition, got {type(condition).__name__}")
        vetted = self._vet(condition, check_state=False)
        if vetted is None:
            raise ValueError(f"condition {condition.id} rejected: {self._last_rejection}")
        return vetted

    def _vet_and_size(self, condition: TradeCondition, *,
                      check_state: bool = True) -> tuple[str | None, TradeCondition | None]:
        """(problem, None) or (None, the sized condition)."""
        if check_state and self._state is not TradingState.ACTIVE:
            return f"trading is {self._state.value}", None
        last = self._board.last(condition.coin) if self._board is not None else None
        known = self._known if self._known is not None else frozenset({condition.coin})
        problem = risk.vet_condition(
            condition, now_ns=self.now_ns(), known_coins=known, market=self._markets(condition.coin),
            last_price=last[0] if last else None, limits=self._limits,
        )
        if problem is not None:
            return problem, None
        size = risk.position_size(condition, self._watch.equity, self._limits)
        if size <= 0:
            return f"position_size_usd: sizing gave {size} (equity {self._watch.equity})", None
        if size == condition.position_size_usd:
            return None, condition
        self.log.info("CONDITION_SIZED: {} {} -> {} USD ({})", condition.id, condition.position_size_usd,
                      size, self._limits.sizing)
        return None, replace(condition, position_size_usd=size)

    def _reject(self, condition: TradeCondition, problem: str) -> None:
        self.rejected += 1
        self._last_rejection = problem
        self.log.warning("CONDITION_REJECTED: {}: {}", condition.id, problem)
        self.publish(ConditionRejected(ts_init_ns=self.now_ns(), correlation_id=condition.id,
                                       condition_id=condition.id, reason=problem))

    # --- orders -------------------------------------------------------------------------------------------

    def _on_submit_order(self, command: SubmitOrder) -> None:
        order = command.order
        reason = self._denial(order)
        if reason is not None:
            self.denied += 1
            self.log.warning("ORDER_DENIED: {} {}", order.client_order_id, reason)
            self.publish(OrderDenied(ts_init_ns=self.now_ns(), correlation_id=command.correlation_id,
                                     order=order, reason=reason))
            return
        self.passed += 1
        self.send(ExecuteOrder(ts_init_ns=self.now_ns(), correlation_id=command.correlation_id, order=order))

    def _denial(self, order: OrderRequest) -> str | None:
        """Why ``order`` may not go to the venue now, or ``None``: trading not ACTIVE (only
        orders that reduce pass), a venue ban (entries wait), a coin blocked by the
        reconciliation (only orders that reduce pass)."""
        if not order.reduce_only and self._state is not TradingState.ACTIVE:
            return f"trading is {self._state.value}: only orders that reduce a position pass"
        if order.intent is OrderIntent.ENTRY and self._ban_lasts():
            until = "it is lifted" if self._banned_until_ms is None else utc_text(self._banned_until_ms)
            return f"VENUE_BANNED until {until}"
        blocked = self._blocked.get(order.coin)
        if blocked is not None and not order.reduce_only:
            return f"{RECONCILE_MISMATCH}: {blocked}"
        return None

    # --- the venue ------------------------------------------------------------------------------------

    def _on_venue_alert(self, alert: VenueAlert) -> None:
        if alert.kind == NoticeKind.BANNED:
            self._banned, self._banned_until_ms = True, alert.until_ms
            self._store.set_setting(BAN_KEY, "" if alert.until_ms is None else str(alert.until_ms))
            until = "it is lifted" if alert.until_ms is None else utc_text(alert.until_ms)
            self.log.error("VENUE_BANNED: no new entry until {} ({}); exits still go out", until, alert.message)
        elif alert.kind == NoticeKind.BAN_LIFTED:
            if self._banned:
                self.log.warning("VENUE_BAN_LIFTED: entries pass again ({})", alert.message)
            self._lift_ban()
        elif alert.kind == NoticeKind.AUTH_FAILED:
            if self._state is not TradingState.HALTED:
                self._set_state(TradingState.HALTED, f"{VENUE_HALTED}: {alert.message}"[:500])
            else:  # a halt for another reason (the kill switch) keeps its reason: it is not lifted by new keys
                self.log.critical("VENUE_AUTH_FAILED: {} (trading was already HALTED: {})", alert.message,
                                  self._reason)
        else:
            self.log.info("VENUE_{}: {}", alert.kind, alert.message)

    def _ban_lasts(self) -> bool:
        """Whether a venue ban still holds by the engine clock (one past its end is lifted)."""
        if not self._banned:
            return False
        if self._banned_until_ms is not None and self.now_ns() // 1_000_000 >= self._banned_until_ms:
            self.log.warning("VENUE_BAN_LIFTED: the ban ended at {}; entries pass again",
                             utc_text(self._banned_until_ms))
            self._lift_ban()
            return False
        return True

    def _lift_ban(self) -> None:
        if self._banned:
            self._store.set_setting(BAN_KEY, "")
        self._banned, self._banned_until_ms = False, None

    def _load_ban(self) -> None:
        """A ban with an end that a previous run of this folder recorded, if not yet over."""
        saved = self._store.get_setting(BAN_KEY)
        if saved and saved.isdigit() and int(saved) > self.now_ns() // 1_000_000:
            self._banned, self._banned_until_ms = True, int(saved)
            self.log.warning("VENUE_BANNED: since before this start, no new entry until {}", utc_text(int(saved)))

    # --- coins blocked by the reconciliation with the venue -------------------------------------------

    def _on_block_coins(self, command: BlockCoins) -> None:
        blocked = dict(command.coins) if command.replace else {**self._blocked, **command.coins}
        self._set_blocked(blocked)

    def _set_blocked(self, blocked: dict[str, str]) -> None:
        for coin in sorted(set(self._blocked) - set(blocked)):
            self.log.warning("COIN_UNBLOCKED: {} takes entries again", coin)
        for coin, why in sorted(blocked.items()):
            if self._blocked.get(coin) != why:
                self.log.error("COIN_BLOCKED: {} takes no new entry: {}", coin, why)
        with self._store.transaction():
            self._store.set_setting(BLOCKED_KEY, json.dumps(blocked, sort_keys=True))
        self._blocked = blocked

    def _ask_blocked_coins(self) -> dict[str, str]:
        return dict(self._blocked)

    def _ask_unblock_coin(self, coin: str, reason: str = "requested") -> dict[str, str]:
        if coin not in self._blocked:
            raise ValueError(f"coin: {coin!r} is not blocked (blocked: {', '.join(sorted(self._blocked)) or 'none'})")
        self.log.warning("COIN_UNBLOCK_REQUESTED: {} ({})", coin, reason)
        self._set_blocked({c: why for c, why in self._blocked.items() if c != coin})
        return dict(self._blocked)

    # --- trading state ---------------------------------------------------------------------------------

    def _on_set_trading_state(self, command: SetTradingState) -> None:
        self._set_state(command.state, command.reason)

    def _ask_set_trading_state(self, state: str, reason: str = "requested") -> str:
        command = SetTradingState(ts_init_ns=self.now_ns(), state=state, reason=reason)
        self._set_state(command.state, command.reason)
        return self._state.value

    def _ask_trading_state(self) -> str:
        return self._state.value

    def _ask_kill_switch(self, reason: str = "requested") -> str:
        self._trip(f"KILL_SWITCH: {reason}")
        return self._state.value

    def _set_state(self, state: TradingState, reason: str) -> None:
        self._rebase_peak_on_resume(state, reason)
        self._store.save_trading_state(state, reason)
        changed = state is not self._state
        self._state, self._reason = state, reason
        if changed:
            log = self.log.critical if state is TradingState.HALTED else self.log.warning
            log("TRADING_STATE: {} ({})", state.value, reason)
        self.publish(TradingStateChanged(ts_init_ns=self.now_ns(), state=state, reason=reason))

    # --- equity and the kill switch -----------------------------------------------------------------

    def _on_account_marked(self, event: AccountMarked) -> None:
        self._observe_equity(event.equity)

    def _on_equity_marked(self, event: EquityMarked) -> None:
        self._observe_equity(event.equity)
        # Answered after a trip's commands, so a Sniper that waits for it (tick clock) handles
        # them before its next tick: a replay trips and closes at the same tick every time.
        self.publish(EquityChecked(ts_init_ns=self.now_ns(), reported_ns=event.ts_init_ns))

    def _on_position_opened(self, event: PositionOpened) -> None:
        self._open[event.position.id] = event.position.status

    def _on_position_changed(self, event: PositionChanged) -> None:
        if event.position.id in self._open:
            self._open[event.position.id] = event.position.status

    def _on_position_closed(self, event: PositionClosed) -> None:
        self._open.pop(event.position.id, None)
        if not self._open:
            self._observe_equity(event.balance)  # flat: cash is the whole equity

    def _rebase_peak_on_resume(self, state: TradingState, reason: str) -> None:
        """Leaving a drawdown halt accepts the drawdown: the peak restarts at the equity now
        (else the next mark, still as far below the old peak, would trip again)."""
        if self._state is TradingState.HALTED and state is not TradingState.HALTED \
                and self._reason.startswith(DRAWDOWN_REASON):
            self._watch = self._watch.rebase_peak()
            self._store.set_setting(PEAK_KEY, str(self._watch.peak))
            self.log.warning("DRAWDOWN_PEAK_RESET: the peak restarts at {} ({})", self._watch.peak, reason)

    def _start_watch(self, positions: Collection[Any]) -> None:
        """Fix the day's start and the peak from the store (see the module docstring)."""
        account = self._store.load_account()
        balance = Decimal(account.get("balance", str(self._initial_balance)))
        equity = account_equity(balance, positions)
        saved_day = self._store.get_setting(DAY_KEY)
        saved_peak = self._store.get_setting(PEAK_KEY)
        self._watch = risk.EquityWatch.start(
            equity, risk.utc_day(self.now_ns()),
            saved_day=risk.parse_day_start(saved_day) if saved_day else None,
            saved_peak=risk.parse_equity(saved_peak, PEAK_KEY) if saved_peak else None,
        )
        self._save_watch(saved_day, saved_peak)
        self.log.info("EQUITY_WATCH: equity {}, day {} started at {}, peak {}", equity, self._watch.day,
                      self._watch.day_start, self._watch.peak)

    def _save_watch(self, saved_day: str | None, saved_peak: str | None) -> None:
        """Persist the day's start and the peak where they differ from what is stored."""
        day = risk.format_day_start(self._watch.day, self._watch.day_start)
        peak = str(self._watch.peak)
        if day != saved_day or peak != saved_peak:
            with self._store.transaction():
                if day != saved_day:
                    self._store.set_setting(DAY_KEY, day)
                if peak != saved_peak:
                    self._store.set_setting(PEAK_KEY, peak)

    def _observe_equity(self, equity: Decimal) -> None:
        before = self._watch
        self._watch, breach = before.observe(equity, risk.utc_day(self.now_ns()), self._limits)
        if self._watch.day != before.day or self._watch.peak != before.peak:
            self._save_watch(risk.format_day_start(before.day, before.day_start), str(before.peak))
        if self._watch.day != before.day:
            self.log.info("DAY_STARTED: {} at equity {}", self._watch.day, self._watch.day_start)
        if breach is not None and self._state is not TradingState.HALTED:
            self._trip(breach)

    def _trip(self, reason: str) -> None:
        self.log.critical("{}", reason)
        self._set_state(TradingState.HALTED, reason)
        now = self.now_ns()
        self.publish(KillSwitchTriggered(ts_init_ns=now, reason=reason, equity=self._watch.equity))
        for position_id, status in sorted(self._open.items()):
            if status is PositionStatus.OPEN:
                self.send(ClosePosition(ts_init_ns=now, position_id=position_id, reason="KILL_SWITCH"))

    def _ask_stats(self) -> dict[str, Any]:
        return {"state": self._state.value, "reason": self._reason, "passed": self.passed, "denied": self.denied,
                "rejected": self.rejected, "equity": str(self._watch.equity), "day": self._watch.day,
                "venue_banned": self._banned, "venue_banned_until_ms": self._banned_until_ms,
                "day_start_equity": str(self._watch.day_start), "peak_equity": str(self._watch.peak),
                "blocked_coins": dict(self._blocked)}


def _load_blocked(text: str | None) -> dict[str, str]:
    """The persisted blocks (``BLOCKED_KEY``); ``ValueError`` naming the key for a damaged value
    (the RiskGate must not start without knowing what is blocked)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"setting {BLOCKED_KEY}: not JSON: {error}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"setting {BLOCKED_KEY}: expected {{coin: reason}}, got {text[:200]!r}")
    return value

