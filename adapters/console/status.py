"""The command line's status line: one line every ``--status-every`` seconds while a session runs.

``status_line`` formats what ``run.py`` asked the actors for (the Sniper's snapshot, the Feed's
statistics, the RiskGate's trading state, the price board): feed state and progress, ticks per
second since the previous line, armed conditions, open positions, balance, realized PnL, a
trading state other than ACTIVE, stale coins, and each coin's last price (with its top of book
when the feed has one). It reads no clock itself (``now`` is given) and keeps the previous
line's tick count in ``previous`` (a dict the caller keeps between lines), so it is tested
without threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

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
) -> str:
    """One line: feed state, ticks/s since the last line, armed, open, balance, realized PnL.

    ``feed``: the Feed's ``stats()`` (``ticks``, ``source``, ``finished``, ``top_of_book``,
    ``stale``); ``prices``: coin -> (last price, its time), as the price board holds them;
    ``source``: the configured source's name; ``now``/``started_at``: monotonic seconds (the
    rate of the first line counts from the start); ``previous`` is updated with this line's
    time and tick count."""
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
    return (
        f"feed {source} | ticks {feed['ticks']} ({rate:.1f}/s) | "
        f"armed {len(snapshot.conditions)} | open {len(snapshot.positions)} | "
        f"balance {snapshot.balance:.2f} | realized {snapshot.realized_pnl:.2f}{trading_note} | {shown}"
    )


__all__ = ["status_line"]
