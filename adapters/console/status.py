"""The command line's status line: one line every ``--status-every`` seconds while a session runs.

``status_line`` formats what ``run.py`` asked the actors for (the Sniper's snapshot, the Feed's
statistics, the RiskGate's trading state, the price board): feed state and progress, ticks per
second since the previous line, armed conditions, open positions, balance, realized PnL, a
trading state other than ACTIVE, stale coins, and each coin's last price (with its top of book
when the feed has one). It reads no clock itself (``now`` is given) and keeps the previous
line's tick count in ``previous`` (a dict the caller keeps between lines), so it is tested
without threads.

A live session (``[engine] mode = "live"``) adds its venue to the line (``venue_text``: the
exchange, TESTNET or LIVE, the private stream up or down, a ban and until when, a halt), and
``live_banner`` is printed once at start: which exchange and market, and whether it is the
testnet or real money, unmistakably.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from state.account import StreamState, VenueStartup, VenueStatus
from state.models import SniperSnapshot
from state.types import TradingState


def status_line(
    *,
    snapshot: SniperSnapshot,
    feed: Mapping[str, Any],
    trading: str | None,
    prices: Mapping[str, tuple[Decimal, Any]],
    source: str,
    simulated: bool,
    now: float,
    started_at: float | None,
    previous: dict[str, float] | None = None,
    venue: VenueStatus | None = None,
) -> str:
    """One line: feed state, ticks/s since the last line, armed, open, balance, realized PnL.

    ``feed``: the Feed's ``stats()`` (``ticks``, ``source``, ``finished``, ``top_of_book``,
    ``stale``); ``prices``: coin -> (last price, its time), as the price board holds them;
    ``source``: the configured source's name; ``now``/``started_at``: monotonic seconds (the
    rate of the first line counts from the start); ``previous`` is updated with this line's
    time and tick count; ``venue``: a live venue's ``status()`` (``venue_text``)."""
    state = previous if previous is not None else {}
    since, ticks_then = state.get("at", started_at or now), state.get("ticks", 0.0)
    rate = (feed["ticks"] - ticks_then) / max(1e-9, now - since)
    state.update(at=now, ticks=float(feed["ticks"]))
    if simulated:
        source += " (SIMULATED market)"
    live = feed.get("source", {})
    progress = live.get("percent") if isinstance(live, Mapping) else None
    if progress is not None:
        source += f" {progress:.1f}%"
    if feed.get("finished"):
        source += " finished"
    top = feed.get("top_of_book", {})
    shown = ", ".join(
        f"{coin} {price}" + (f" ({top[coin]['bid']}/{top[coin]['ask']})" if coin in top else "")
        for coin, (price, _) in sorted(prices.items()))
    if isinstance(live, Mapping) and "reconnects" in live:
        source += f" {live.get('state', '?')}, {live['reconnects']} reconnect(s)"
        if (live.get("bad_frames") or {}).get("total"):
            source += f", {live['bad_frames']['total']} bad frame(s)"
        if (live.get("rest_fallback") or {}).get("active"):
            source += ", REST fallback"
    trading_note = "" if trading == TradingState.ACTIVE.value else f" | trading {trading}"
    if feed.get("stale"):
        trading_note += f" | STALE {', '.join(feed['stale'])} (no new entries)"
    venue_part = f"{venue_text(venue, now_ms=None)} | " if venue is not None and venue.live else ""
    return (
        f"{venue_part}feed {source} | ticks {feed['ticks']} ({rate:.1f}/s) | "
        f"armed {len(snapshot.conditions)} | open {len(snapshot.positions)} | "
        f"balance {snapshot.balance:.2f} | realized {snapshot.realized_pnl:.2f}{trading_note} | {shown}"
    )


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%H:%M:%S UTC")


def account_kind(testnet: bool) -> str:
    return "TESTNET" if testnet else "LIVE (REAL MONEY)"


def venue_text(venue: VenueStatus, *, now_ms: int | None = None) -> str:
    """``venue binanceusdm usdm TESTNET stream up``, then what is wrong: the stream down (and
    how many orders are polled meanwhile), ``BANNED until 14:03:00 UTC`` (not once ``now_ms``
    is past it), ``HALTED: <reason>``."""
    text = f"venue {venue.exchange or venue.name}{' ' + venue.market if venue.market else ''} " \
           f"{account_kind(venue.testnet)} stream {venue.stream.value}"
    if venue.stream is StreamState.DOWN and venue.polling:
        text += f" (polling {venue.polling} order(s))"
    if venue.banned_until_ms is not None and (now_ms is None or now_ms < venue.banned_until_ms):
        text += f" | BANNED until {_utc(venue.banned_until_ms)} (no new entries)"
    if venue.halted:
        text += f" | HALTED: {venue.halted}"
    return text


def live_banner(startup: VenueStartup, *, key_env: str, secret_env: str) -> str:
    """The lines printed once when a live session has connected: the exchange and market,
    TESTNET or LIVE (REAL MONEY) framed so it cannot be missed, the position mode, leverage and
    margin per coin, the balances read, the venue's notes, and where the keys came from (the
    variable names only)."""
    rule = ("!" if not startup.testnet else "=") * 72
    if startup.testnet:
        head = f"TESTNET session on {startup.exchange} {startup.market}: the exchange's sandbox, no real money"
    else:
        head = (f"LIVE TRADING WITH REAL MONEY on {startup.exchange} {startup.market}: every order is a real "
                "order on your account")
    lines = [rule, f"  {head}"]
    if startup.position_mode:
        lines.append(f"  position mode {startup.position_mode}, server time offset {startup.server_time_offset_ms} ms")
    if startup.leverage:
        lines.append("  leverage " + ", ".join(
            f"{coin} {lev}x {startup.margin_mode.get(coin, '')}".rstrip() for coin, lev in sorted(startup.leverage.items())))
    if startup.balances:
        lines.append("  balances " + ", ".join(f"{asset} {amount}" for asset, amount in sorted(startup.balances.items())))
    lines.extend(f"  {note}" for note in startup.notes)
    lines.append(f"  keys from ${key_env} / ${secret_env}")
    lines.append(rule)
    return "\n".join(lines)


__all__ = ["account_kind", "live_banner", "status_line", "venue_text"]
