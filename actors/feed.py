"""The Feed: the one door through which market data enters the engine.

**Owns** the market-data source (started in ``on_start``, stopped in ``_close``), per-coin
freshness (last accepted timestamp), the bars being built, the ``bars`` table of the store and
the replay resume point; it is the only writer of the price board.

**Accepts** ``PushTick`` from its source's thread (through the bus, so a restart of the Feed
loses nothing) or from ``engine.push_tick``; ``PushQuote`` (best bid/ask of a live source);
``ReleaseHeld`` (from the bus, see below); ``EndOfData`` from a replay source;
``TimerFired("stale_check")``.

**Emits** ``Tick`` to the Sniper; ``BarClosed`` to the Strategist, ExitMonitor and Sniper;
``FeedFinished`` when a replay has no more data and everything it caused has been handled;
``FeedStale`` / ``FeedRecovered`` per coin (live sources, see below); ``FeedGaveUp`` once when
a live source has delivered nothing at all since start (see below). A tick
older than the last accepted one of its coin is counted and dropped (time never runs
backwards); every accepted tick moves the engine clock and the price board.

**Bad market data** (with ``guard``, which the engine always passes from ``[feed]``): a tick whose
price is not finite and positive, is off the coin's tick grid (``markets``), jumps more than
``max_jump_pct`` from the last accepted price (unless ``jump_confirm_ticks`` agreeing ticks
confirm the move), or is stamped too far from the engine clock is rejected before it reaches
the bars, the price board, the clock or the Sniper: counted by kind (``stats()["rejected_ticks"]``,
the report) and logged once per kind with a sample (``TICK_REJECTED``). The rules and what
"ahead" means on a tick clock are in ``state/tick_guard.py``.

**Bars.** A bar ``[t, t + bar_seconds)`` closes when the first tick at or after its end
arrives; the bar is emitted before that tick. With ``hold_bars`` (the default on a causal
clock, i.e. in replay and with manual ticks; the engine turns it on for live sources too, so
that a recorded session replays to the same trades), the Feed *holds* that tick and every later one, and waits twice for every
role a bar can set working (Strategist, RiskGate, Sniper, Executor, ExitMonitor) to have handled
all its mail: once before emitting the bar (so every earlier tick, and an order in flight with
the ticks the Sniper deferred behind it, is settled first), once after (so the conditions the
bar produces are armed before the next tick). Two replays of the same data give the same
trades. A bar is stored when its effects are done, together with the
replay's resume point.

**Stale data** (with ``stale_after_s``, for live sources): a watched coin with no message (tick
or quote) for that long, by the receiving machine's monotonic clock, is announced stale
(``ORDER_BOOK_STALE``) at the next ``stale_check``: the Sniper takes no new entry on it, its
open positions keep their exits on the last good price. The first message after that
announces ``FeedRecovered``. An open connection that has gone silent is stale too.

**Giving up** (with ``give_up_after_s``, live sources): if nothing at all has arrived (no tick,
stream or REST, and no quote) that long after this Feed started, the next ``stale_check`` logs
``FEED_GAVE_UP`` with what the source tried (connect attempts and failures, errors, its url as
shown, credentials masked, the REST fallback's polls and errors) and publishes ``FeedGaveUp``
once; the engine ends the session with exit code 4. Once anything has arrived the Feed never
gives up (a later outage is stale periods and reconnects). A restarted Feed waits again from its
own start.

**Recording** (``--record``): every received trade is handed to the recorder before anything
else, so a replay of the recording feeds the same ticks.

**Back-pressure.** A source thread that reads faster than the engine trades (a replay at max
speed) is made to wait inside the sink while the Feed and the Sniper have ``flow_limit``
ticks not yet handled or held, so memory stays bounded.

**On crash** (a derived actor: a failing message is logged and skipped) the source keeps running
(its ticks wait on the bus for the successor) and the held ticks are handed back to the bus, so
no tick is lost; only the bar in progress is (the successor starts a new one). After a process
restart a replay resumes
at the first tick of the oldest bar still open when the last bar was stored; ticks the Sniper
had already seen are skipped by it (by replay sequence number), bars already stored are not
emitted twice.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import EXECUTOR, EXIT_MONITOR, FEED, RISK_GATE, SNIPER, STRATEGIST, RoleState
from adapters.ports import MarketSource, PriceBoard, TradeRecorder
from state.bars import Bar, BarBuilder
from state.messages import (
    ActorRestarted,
    BarClosed,
    EndOfData,
    FeedFinished,
    FeedGaveUp,
    FeedRecovered,
    FeedStale,
    PushQuote,
    PushTick,
    ReleaseHeld,
    Tick,
    TimerFired,
)
from state.market import MarketRules, TopOfBook
from state.store import Store
from state.tick_guard import TickGuard, TickGuardSettings

# Roles whose work a bar can start; the held tick waits for all of them to be idle.
BAR_EFFECT_ROLES = (STRATEGIST, RISK_GATE, SNIPER, EXECUTOR, EXIT_MONITOR)
RESUME_KEY = "replay_resume_seq"
KEEP_BARS = 2_000  # per coin in the store
FLOW_WAIT_S = 0.5  # a source thread re-checks for stop at least this often
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")  # user[:password]@ of a url


class Feed(EngineActor):
    role = FEED
    crash_on_error = False

    def __init__(
        self,
        *,
        source: MarketSource | None,
        board: PriceBoard,
        store: Store | None = None,
        bar_seconds: int = 60,
        flow_limit: int = 20_000,
        stale_after_s: float | None = None,
        watched: Iterable[str] = (),
        monotonic: Callable[[], float] = time.monotonic,
        recorder: TradeRecorder | None = None,
        hold_bars: bool | None = None,
        give_up_after_s: float | None = None,
        guard: TickGuardSettings | None = None,
        markets: Callable[[str], MarketRules] | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self._source = source
        self._board = board
        self._store = store
        self._bars = BarBuilder(bar_seconds)
        self._causal = bool(getattr(self.clock, "causal", False))  # stamps are tick time
        self._hold_bars = self._causal if hold_bars is None else hold_bars
        self._flow_limit = flow_limit
        self._last_ts: dict[str, int] = {}
        self._stored_bar_end: dict[str, int] = {}
        self._open_first_seq: dict[str, int] = {}
        self._held: deque[PushTick] = deque()
        self._holding: Bar | None = None
        self._held_closing = False  # the first held tick closed the bar being held for
        self._end: EndOfData | None = None
        self._finished = False
        self._bars_since_prune = 0
        self._stale_after_s = stale_after_s
        self._monotonic = monotonic
        self._heard: dict[str, float] = {coin: monotonic() for coin in watched}  # last message, per coin
        self._stale: dict[str, float] = {}  # coin -> when it went stale
        self._quotes: dict[str, PushQuote] = {}
        self._recorder = recorder
        self._give_up_after_s = give_up_after_s
        self._waiting_since = monotonic()  # give-up: when this Feed started waiting for data
        self._received = False  # anything at all (tick, from the stream or REST, or quote)
        self._gave_up = False
        self._guard = TickGuard(guard) if guard is not None else None
        self._markets = markets
        self._tick_sizes: dict[str, Decimal] = {}
        self.stale_periods = 0
        self.ticks = 0
        self.bars = 0
        self.out_of_order = 0

    # --- lifecycle --------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._seed_guard()
        resume_after = None
        if self._store is not None:
            self._stored_bar_end = self._store.last_bar_ends()
            saved = self._store.get_setting(RESUME_KEY)
            resume_after = int(saved) - 1 if saved is not None else None
        if self._source is None:
            return
        if getattr(self._source, "running", False):
            self.log.info("FEED_RESTARTED: source {} kept running; the bar in progress is lost", self._source.name)
            return
        resumable = getattr(self._source, "resumable", False)
        if resumable:
            self._source.start(self._from_source, resume_after=resume_after)  # type: ignore[call-arg]
        elif getattr(self._source, "accepts_quotes", False):
            self._source.start(self._from_source, quote_sink=self._quote_from_source)  # type: ignore[call-arg]
        else:
            self._source.start(self._from_source)
        self.log.info(
            "FEED_STARTED: source {}{}{}", self._source.name,
            " (SIMULATED market)" if self._source.simulated else "",
            f", resuming after tick #{resume_after}" if resumable and resume_after is not None and resume_after >= 0 else "",
        )

    def _seed_guard(self) -> None:
        """A restarted Feed judges the next tick of each coin against the last accepted price
        (the price board outlives the actor)."""
        if self._guard is None:
            return
        for coin, (price, ts_ms) in sorted(self._board.all().items()):
            self._guard.seed(coin, price, ts_ms)

    def _close(self) -> None:
        if self._source is not None:
            self._source.stop()
        if self._recorder is not None:
            self._recorder.flush()

    def _on_crash(self) -> None:
        """Keep the source running (its ticks reach the successor through the bus) and give
        the held ticks back, so a crash of the Feed loses no tick."""
        held = list(self._held)
        self._held.clear()
        if self.bus.hand_back(FEED, held):
            self.log.warning("FEED_CRASHED: {} held tick(s) handed to the successor", len(held))

    # --- the source's thread ------------------------------------------------------------------------

    def _from_source(self, coin: str, price: Decimal, ts_ms: int, qty: Decimal, seq: int | None = None,
                     origin: str = "stream") -> None:
        """Runs on the source's thread: waits for room (bounded), then hands the tick to the bus.
        It touches no state of this actor instance, so it keeps working for a successor after a
        crash of the Feed (the source keeps running)."""
        while not self.bus.wait_for_room((FEED, SNIPER), self._flow_limit, FLOW_WAIT_S):
            if self.bus.state(FEED) is RoleState.STOPPED:
                raise RuntimeError("feed stopped")
        self.bus.send(PushTick(ts_init_ns=ts_ms * 1_000_000 if self._causal else self.clock.now_ns(),
                               coin=coin, price=price, ts_ms=ts_ms, qty=qty, seq=seq, origin=origin))

    def _quote_from_source(self, coin: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal,
                           ts_ms: int | None = None) -> None:
        """Runs on the source's thread: best bid/ask to the bus (no flow control: quotes replace
        each other, and a live source is paced by the exchange)."""
        self.bus.send(PushQuote(ts_init_ns=self.clock.now_ns(), coin=coin, bid=bid, bid_qty=bid_qty, ask=ask,
                                ask_qty=ask_qty, ts_ms=ts_ms))

    # --- ticks ------------------------------------------------------------------------------------------

    def _on_push_tick(self, raw: PushTick) -> None:
        self._received = True
        if self._recorder is not None:
            self._recorder.write(raw.coin, raw.ts_ms, raw.price, raw.qty)
        if self._stale_after_s is not None and raw.origin == "stream":
            self._heard_from(raw.coin)
        if self._holding is not None:
            self._held.append(raw)
            self.bus.add_backlog(FEED, 1)  # held ticks count for the source's flow control
            return
        self._accept(raw)

    def _accept(self, raw: PushTick, *, bar_done: bool = False) -> None:
        """Bar step, then delivery. A tick that closes a bar is held (causal clock) with
        ``bar_done`` so that its release does not count it into the new bar twice."""
        coin = raw.coin
        last = self._last_ts.get(coin)
        if last is not None and raw.ts_ms < last:
            self.out_of_order += 1
            if self.out_of_order == 1 or self.out_of_order % 1000 == 0:
                self.log.warning("TICK_OUT_OF_ORDER: {} at {} is older than {}; dropped ({} so far)",
                                 coin, raw.ts_ms, last, self.out_of_order)
            return
        if not bar_done and self._guard is not None:
            checked = self._guarded(raw)
            if checked is None:
                return
            raw = checked
        if not bar_done and raw.ts_ms >= self._stored_bar_end.get(coin, 0):  # else: a stored bar's
            bar = self._bars.on_tick(coin, raw.price, raw.qty, raw.ts_ms)
            if raw.seq is not None and (bar is not None or coin not in self._open_first_seq):
                self._open_first_seq[coin] = raw.seq
            if bar is not None and bar.end_ms > self._stored_bar_end.get(coin, 0):
                if self._hold_bars:
                    self._held.appendleft(raw)
                    self._held_closing = True
                    self._holding = bar
                    self._release_when_idle(bar, "bar")
                    return
                self._close_bar(bar)
                self._store_bar(bar)
        self._last_ts[coin] = raw.ts_ms
        self.clock.observe_tick(raw.ts_ms)
        self._board.update(coin, raw.price, raw.ts_ms)
        self.ticks += 1
        stamp = raw.ts_ms * 1_000_000 if self._causal else self.clock.now_ns()
        if self._causal:
            self.clock.handling(stamp)
        self.publish(Tick(ts_init_ns=stamp, coin=coin, price=raw.price, ts_ms=raw.ts_ms, qty=raw.qty,
                          seq=raw.seq))

    def _guarded(self, raw: PushTick) -> PushTick | None:
        """The tick as it may enter (its price snapped to the grid), or ``None``: rejected,
        counted by kind and logged once per kind with a sample (``TICK_REJECTED``), then every
        1,000th of that kind. See ``state/tick_guard.py`` for the rules."""
        assert self._guard is not None
        tick_size = self._tick_sizes.get(raw.coin)
        if tick_size is None and self._markets is not None:
            try:
                tick_size = self._tick_sizes[raw.coin] = self._markets(raw.coin).tick_size  # fixed for the session
            except ValueError as error:
                self.log.warning("TICK_REJECTED: {} has no market rules ({}); tick dropped", raw.coin, error)
                self._guard.rejected["off_grid"] += 1
                return None
        now_ms = (time.time_ns() if self._causal else self.clock.now_ns()) // 1_000_000
        verdict = self._guard.check(raw.coin, raw.price, raw.ts_ms, tick_size=tick_size, now_ms=now_ms,
                                    tick_clock=self._causal)
        if verdict.kind is None:
            return raw if verdict.price == raw.price else replace(raw, price=verdict.price)
        count = self._guard.rejected[verdict.kind]
        if count == 1 or count % 1000 == 0:
            self.log.warning("TICK_REJECTED: {}: {} {} at {}: {} ({} of this kind so far; once per kind, "
                             "then every 1000th)", verdict.kind, raw.coin, raw.price, raw.ts_ms, verdict.detail,
                             count)
        return None

    # --- quotes and freshness (live sources) ----------------------------------------------------

    def _on_push_quote(self, quote: PushQuote) -> None:
        self._received = True
        self._quotes[quote.coin] = quote
        book = TopOfBook(bid=quote.bid, bid_qty=quote.bid_qty, ask=quote.ask, ask_qty=quote.ask_qty,
                         ts_ms=quote.ts_ms if quote.ts_ms is not None else self.clock.now_ns() // 1_000_000)
        if book.sane:
            self._board.update_quote(quote.coin, book)
        if self._stale_after_s is not None:
            self._heard_from(quote.coin)

    def _heard_from(self, coin: str) -> None:
        now = self._monotonic()
        self._heard[coin] = now
        if coin in self._stale:
            stale_s = now - self._stale.pop(coin)
            self.log.info("FEED_RECOVERED: {} after {:.1f}s stale", coin, stale_s)
            self.publish(FeedRecovered(ts_init_ns=self.clock.now_ns(), coin=coin, stale_s=round(stale_s, 3)))

    def _on_timer_fired(self, timer: TimerFired) -> None:
        """``stale_check`` (the engine's timer, several times a second): a coin with no message
        for ``stale_after_s`` is stale, also when its connection is open but silent; a live
        source that has delivered nothing since start gives up after ``give_up_after_s``."""
        if self._recorder is not None:
            self._recorder.flush()  # a recording is at most one timer period behind
        if timer.name == "stale_check" and self._give_up_after_s is not None:
            self._check_give_up()
        if timer.name != "stale_check" or self._stale_after_s is None:
            return
        now = self._monotonic()
        for coin, heard in self._heard.items():
            silent = now - heard
            if silent >= self._stale_after_s and coin not in self._stale:
                self._stale[coin] = now
                self.stale_periods += 1
                last = self._board.last(coin)
                self.log.warning("ORDER_BOOK_STALE: {} silent for {:.1f}s; no new entries on it until data "
                                 "returns (last price {})", coin, silent, last[0] if last else "none")
                self.publish(FeedStale(ts_init_ns=self.clock.now_ns(), coin=coin, silent_s=round(silent, 3),
                                       last_price=last[0] if last else None))

    def _check_give_up(self) -> None:
        """``FeedGaveUp`` once, when nothing at all has arrived ``give_up_after_s`` after start."""
        if self._received or self._gave_up or self._give_up_after_s is None:
            return
        waited = self._monotonic() - self._waiting_since
        if waited < self._give_up_after_s:
            return
        self._gave_up = True
        source = self._source.name if self._source is not None else "manual"
        stats = self._source.stats() if self._source is not None and hasattr(self._source, "stats") else {}
        detail = attempts_summary(stats)
        self.log.error("FEED_GAVE_UP: {} received nothing (no trade, no quote) in {:.1f}s since start; {}",
                       source, waited, detail)
        self.publish(FeedGaveUp(ts_init_ns=self.clock.now_ns(), source=source, waited_s=round(waited, 3),
                                detail=detail))

    def _on_actor_restarted(self, event: ActorRestarted) -> None:
        """A restarted Sniper has forgotten which coins are stale: tell it again."""
        if event.role != SNIPER:
            return
        now = self._monotonic()
        for coin, since in sorted(self._stale.items()):
            self.publish(FeedStale(ts_init_ns=self.clock.now_ns(), coin=coin,
                                   silent_s=round(now - self._heard.get(coin, since), 3)))

    # --- bars -------------------------------------------------------------------------------------------

    def _close_bar(self, bar: Bar) -> None:
        self.bars += 1
        self.clock.observe_tick(bar.end_ms)
        stamp = bar.end_ms * 1_000_000
        if self._causal:
            self.clock.handling(stamp)
        self.publish(BarClosed(ts_init_ns=stamp if self._causal else self.clock.now_ns(), bar=bar))

    def _store_bar(self, bar: Bar) -> None:
        self._stored_bar_end[bar.coin] = bar.end_ms
        if self._store is None:
            return
        settings = {}
        if self._open_first_seq:
            settings[RESUME_KEY] = str(min(self._open_first_seq.values()))
        self._store.save_bar(bar, settings=settings)
        self._bars_since_prune += 1
        if self._bars_since_prune >= 500:
            self._bars_since_prune = 0
            self._store.prune_bars(bar.coin, KEEP_BARS)

    def _release_when_idle(self, bar: Bar, stage: str) -> None:
        self.bus.when_idle(BAR_EFFECT_ROLES, lambda: self.bus.tell(
            FEED, ReleaseHeld(ts_init_ns=bar.end_ms * 1_000_000, bar_end_ms=bar.end_ms, stage=stage)))

    def _on_release_held(self, release: ReleaseHeld) -> None:
        """Two barriers per bar on a causal clock: first every earlier tick is handled (an
        order in flight, and the ticks the Sniper deferred behind it, settle before the bar's
        conditions can arrive), then the bar goes out; then everything it caused is handled,
        and the held ticks go on."""
        bar = self._holding
        if bar is None or bar.end_ms != release.bar_end_ms:
            return
        if release.stage == "bar":
            self._close_bar(bar)
            self._release_when_idle(bar, "ticks")
            return
        self._holding = None
        self._store_bar(bar)
        closing, self._held_closing = self._held_closing, False
        passed = 0
        if closing and self._held:
            self._accept(self._held.popleft(), bar_done=True)
        while self._held and self._holding is None:
            self._accept(self._held.popleft())
            passed += 1
        self.bus.add_backlog(FEED, -passed)
        if self._holding is None and self._end is not None:
            self._finish()

    # --- end of a replay ----------------------------------------------------------------------------

    def _on_end_of_data(self, end: EndOfData) -> None:
        self._end = end
        if self._holding is None:
            self._finish()

    def _finish(self) -> None:
        end = self._end
        if end is None or self._finished:
            return
        self._finished = True
        self.log.info("FEED_FINISHED: end of data after {} tick(s), {} bad row(s)", end.ticks, end.bad_rows)
        source = self._source.name if self._source is not None else "manual"
        # Stamped here, on the Feed's thread: the callback runs on whichever thread goes idle
        # last, where a tick clock answers with the time of the message that thread handles.
        stamp = self._last_tick_ns() if self.clock.causal else None
        stamp = stamp if stamp is not None else self.clock.now_ns()
        self.bus.when_idle(BAR_EFFECT_ROLES, lambda: self.bus.publish(FeedFinished(
            ts_init_ns=stamp, source=source, ticks=end.ticks, bad_rows=end.bad_rows)))

    def _last_tick_ns(self) -> int | None:
        """The time of the latest tick accepted (a replay's end: the same in every run of it)."""
        return max(self._last_ts.values()) * 1_000_000 if self._last_ts else None

    def _ask_stats(self) -> dict[str, Any]:
        source = self._source.stats() if self._source is not None and hasattr(self._source, "stats") else {}
        top = {coin: {"bid": str(q.bid), "ask": str(q.ask), "bid_qty": str(q.bid_qty), "ask_qty": str(q.ask_qty)}
               for coin, q in sorted(self._quotes.items())}
        return {"ticks": self.ticks, "bars": self.bars, "out_of_order": self.out_of_order,
                "held": len(self._held), "finished": self._finished,
                "coins": dict(self._last_ts), "source": source, "stale": sorted(self._stale),
                "stale_periods": self.stale_periods, "top_of_book": top,
                "rejected_ticks": self._guard.stats() if self._guard is not None else {"total": 0, "by_kind": {}}}


def attempts_summary(stats: dict[str, Any]) -> str:
    """What a live source tried, from its ``stats()``: ``5 connect attempt(s) to wss://... (0
    opened, 5 failed), 0 other error(s), last: ...; REST fallback: 3 poll(s), 3 error(s),
    last: ...``. Credentials in any url of it (``wss://user:secret@host``) are masked."""
    connection = stats.get("connection") or {}
    if not connection:
        return "no connection was made"
    opened, failed = connection.get("connects", 0), connection.get("connect_failures", 0)
    text = (f"{opened + failed} connect attempt(s) to {connection.get('url', '?')} ({opened} opened, {failed} "
            f"failed), {connection.get('errors', 0)} other error(s)")
    if connection.get("last_reason"):
        text += f", last: {connection['last_reason']}"
    rest = stats.get("rest_fallback")
    if rest and rest.get("activations"):
        text += f"; REST fallback: {rest.get('polls', 0)} poll(s), {rest.get('errors', 0)} error(s)"
        if rest.get("last_error"):
            text += f", last: {rest['last_error']}"
    elif rest:
        text += "; REST fallback: not started yet (rest_fallback_after_s not reached)"
    elif "rest_fallback" in stats:
        text += "; no REST fallback"
    return _CREDENTIALS.sub(r"\1***@", text)

