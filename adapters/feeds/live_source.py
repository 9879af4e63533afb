"""A live exchange feed (Binance or Bybit public streams): the market source of a live session.

**Owns** one websocket connection (``WsConnection``: its own thread, reconnects with jittered
backoff, resubscribes, keeps alive, drops a connection that has gone silent, hands the stream
over to a new connection before Binance's 24-hour cut), the frame parser of its exchange, the
per-coin trade and quote de-duplication, the bad-frame log, and the REST fallback poller.

**Hands over** each trade as a tick (``sink``) and each best bid/ask as a quote
(``quote_sink``), from the connection's thread; the Feed turns them into messages.

**De-duplication.** A reconnect can replay trades the previous connection already delivered,
and during a planned reconnect (a handover) the old and the new connection deliver the frames
of their overlap both, the new one's copies after the old one's. A trade whose id was already
seen for its coin is dropped and counted (``duplicates``), so no tick is delivered twice. A
quote that carries a sequence (Binance's ``u``, Bybit's ``cs``) not above the last one handed
over for its coin is dropped and counted (``stale_quotes``), so the best bid/ask never goes
back to an older one; the last sequences are forgotten when the connection goes down
(``on_state`` other than ``open``), so an exchange that restarts its sequences cannot silence
the quotes. A quote without a sequence is always handed over.

**REST fallback.** While the stream has been down for ``rest_fallback_after_s``, the poller
fetches last prices over REST (every call through the process-wide rate limiter) so open
positions keep being managed; it stops as soon as the stream is back. Those prices keep stops
working but do not end a stale period: entries wait for the stream.

**Bad frames** (malformed JSON, truncated frames, unknown streams or fields) are counted and
logged once per kind with a sample; a frame can never stop the feed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from loguru import logger

from adapters.feeds.frame_log import BadFrameLog
from adapters.feeds.stream_events import ParsedFrame, QuoteEvent, TradeEvent

QuoteSink = Callable[[str, Decimal, Decimal, Decimal, Decimal, "int | None"], None]
SEEN_IDS = 4096  # per coin: how many recent trade ids a reconnect is checked against


class FrameParser(Protocol):
    def parse(self, text: str) -> ParsedFrame: ...


class Connection(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class Poller(Protocol):
    @property
    def active(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def activate(self, reason: str) -> None: ...

    def deactivate(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class _RecentIds:
    """The last ``SEEN_IDS`` trade ids of one coin, oldest forgotten first."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, trade_id: str) -> bool:
        if trade_id in self._ids:
            return True
        self._ids[trade_id] = None
        if len(self._ids) > SEEN_IDS:
            self._ids.popitem(last=False)
        return False


class LiveSource:
    simulated = False
    accepts_quotes = True

    def __init__(
        self,
        name: str,
        *,
        parser: FrameParser,
        make_connection: Callable[[Callable[[str, int], None], Callable[[str, dict[str, Any]], None]], Connection],
        make_poller: Callable[[Callable[..., None]], Poller] | None = None,
        rest_fallback_after_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``make_connection(on_text, on_state)`` builds the websocket connection;
        ``make_poller(sink)`` the REST fallback (``None``: no fallback)."""
        self.name = name
        self._parser = parser
        self._parse = parser.parse  # once per frame: the bound method saves two lookups
        self._make_connection = make_connection
        self._make_poller = make_poller
        self._fallback_after_s = rest_fallback_after_s
        self._monotonic = monotonic
        self._bad = BadFrameLog(name)
        self._recent: dict[str, _RecentIds] = {}
        self._quote_seq: dict[str, int] = {}  # coin -> sequence of the last quote handed over
        self._sink: Callable[..., None] | None = None
        self._quote_sink: QuoteSink | None = None
        self._connection: Connection | None = None
        self._poller: Poller | None = None
        self._down_since: float | None = None
        self._watch_stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._lock = threading.Lock()
        self.trades = 0
        self.quotes = 0
        self.duplicates = 0
        self.stale_quotes = 0
        self.handler_errors = 0
        self.top_of_book: dict[str, QuoteEvent] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._connection is not None

    def start(self, sink: Callable[..., None], quote_sink: QuoteSink | None = None) -> None:
        if self._connection is not None:
            return
        self._sink, self._quote_sink = sink, quote_sink
        self._down_since = self._monotonic()  # down until the first connection opens
        self._watch_stop.clear()
        if self._make_poller is not None:
            self._poller = self._make_poller(
                lambda coin, price, ts_ms, qty, seq=None: sink(coin, price, ts_ms, qty, seq, origin="rest"))
            self._poller.start()
            self._watch = threading.Thread(target=self._watch_stream, name=f"{self.name}-fallback", daemon=True)
            self._watch.start()
        self._connection = self._make_connection(self._on_text, self._on_state)
        self._connection.start()

    def stop(self) -> None:
        self._watch_stop.set()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.stop()
        if self._poller is not None:
            self._poller.stop()
        watch = self._watch
        if watch is not None and watch is not threading.current_thread():
            watch.join(timeout=2)

    # --- the connection's thread ------------------------------------------------------------------

    def _on_text(self, text: str, received_ns: int) -> None:
        parsed = self._parse(text)
        if parsed.problem is not None:
            self._bad(parsed.problem)
            return
        for event in parsed.events:
            if type(event) is TradeEvent:
                self._on_trade(event)
            else:
                self._on_quote(event)  # type: ignore[arg-type]

    def _on_trade(self, trade: TradeEvent) -> None:
        if trade.trade_id is not None:
            recent = self._recent.get(trade.coin)
            if recent is None:
                recent = self._recent[trade.coin] = _RecentIds()
            if recent.seen(trade.trade_id):
                self.duplicates += 1
                return
        self.trades += 1
        assert self._sink is not None
        self._sink(trade.coin, trade.price, trade.ts_ms, trade.qty, None)

    def _on_quote(self, quote: QuoteEvent) -> None:
        coin = quote.coin
        seq = quote.seq
        if seq is not None:
            if seq <= self._quote_seq.get(coin, -1):  # the parsers give sequences >= 0
                self.stale_quotes += 1  # a handover's overlap: the new connection repeats it
                return
            self._quote_seq[coin] = seq
        self.quotes += 1
        self.top_of_book[coin] = quote
        sink = self._quote_sink
        if sink is not None:
            sink(coin, quote.bid, quote.bid_qty, quote.ask, quote.ask_qty, quote.ts_ms)

    def _on_state(self, state: str, info: dict[str, Any]) -> None:
        if state != "open":
            # Down: the next connection's quotes are all newer (nothing of the old one is read
            # any more), and its sequences may have restarted. On the connection's thread, like
            # _on_quote.
            self._quote_seq.clear()
        with self._lock:
            if state == "open":
                self._down_since = None
            elif self._down_since is None:
                self._down_since = self._monotonic()
        if state == "open" and self._poller is not None and self._poller.active:
            self._poller.deactivate()
            logger.bind(actor="feed").info("REST_FALLBACK_OFF: {} stream is back", self.name)

    def _watch_stream(self) -> None:
        """Turn the REST fallback on once the stream has been down for long enough."""
        while not self._watch_stop.wait(0.25):
            with self._lock:
                down_since = self._down_since
            poller = self._poller
            if poller is None or down_since is None or poller.active:
                continue
            down_for = self._monotonic() - down_since
            if down_for >= self._fallback_after_s:
                logger.bind(actor="feed").warning(
                    "REST_FALLBACK_ON: {} stream down for {:.1f}s; polling last prices over REST",
                    self.name, down_for)
                poller.activate(f"stream down for {down_for:.1f}s")

    # --- reporting ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        connection = self._connection.stats() if self._connection is not None else {}
        return {
            "trades": self.trades, "quotes": self.quotes, "duplicates": self.duplicates,
            "stale_quotes": self.stale_quotes,
            "bad_frames": self._bad.summary(), "connection": connection,
            "reconnects": connection.get("reconnects", 0), "state": connection.get("state", "stopped"),
            "rest_fallback": self._poller.stats() if self._poller is not None else None,
            "top_of_book": {coin: {"bid": str(q.bid), "ask": str(q.ask)} for coin, q in sorted(self.top_of_book.items())},
        }

