"""The session report (``<data_dir>/runs/<run_id>/summary.json``) assembled from what the engine
gathered as it stopped: pure functions, no I/O, no clock.

``run.py`` asks the actors (or, after a halt, reads the stores) and passes the answers here:
the journal's totals over the report's scope (``JournalStore.totals``: sums of fills), the
Sniper's account (``SniperSnapshot``), the Feed's and the source's statistics. What comes out
is a JSON-ready dict; ``state.report.format_report`` prints it.

- **Scope** (``report_scope``): a replay's report covers the whole replay (every run on its data
  folder, from a fresh account); other sources' cover this run, from the account as it began.
- **Money** (``state.report.report_money``): ``fees_paid_usd`` is what the balance lost to fees
  (the Sniper's ledger), checked against the journal's fills; every disagreement is a sentence
  in ``mismatches`` (the engine logs each as ``REPORT_MISMATCH``).
- **Durable state** (``with_durable_state``): when an actor could not answer (a halt), the
  numbers it would have given come from the stores instead, and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from state.models import SniperSnapshot
from state.report import ORDER_COUNT_KEYS, Ledger, report_money
from state.store import jsonable


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportContext:
    """What a session is, for its report: its run, its source (``simulated``: a made-up
    market), its data folder, what a stop does to open positions, the initial balance of a
    fresh account, and when it started and ended (wall time)."""

    run_id: str
    source: str
    simulated: bool
    data_dir: str
    on_stop: str
    initial_balance: Decimal
    started_at: datetime
    ended_at: datetime


def report_scope(source: str, initial_balance: Any, start_ledger: Ledger, start_equity: Any) -> tuple[str, Ledger, Any]:
    """``(scope, start ledger, start equity)`` of the report's totals: a replay's whole data
    folder (every run of it, from a fresh account), else this run (from the account as it
    began)."""
    if source == "replay":
        return "replay", Ledger.fresh(initial_balance), initial_balance
    return "run", start_ledger, start_equity


def report_ticks(source: str, delivered: int, position: Mapping[str, Any] | None) -> int:
    """A replay's ticks are its position in its files (``position``: the source's final
    ``skipped`` and ``ticks``): every tick read from their start through the last one this run
    fed, so the report of a replay interrupted and resumed counts what an uninterrupted one
    does. Other sources, or a replay source that did not say: the ticks this run's Feed
    ``delivered``."""
    if source != "replay" or not position or "skipped" not in position or "ticks" not in position:
        return delivered
    return int(position["skipped"]) + int(position["ticks"])


def session_report(
    context: ReportContext,
    *,
    exit_code: int,
    reason: str,
    scope: str,
    start_ledger: Ledger,
    start_equity: Any,
    totals: Mapping[str, Any],
    snapshot: SniperSnapshot | None,
    feed: Mapping[str, Any],
    ticks: int,
    restarts: Mapping[str, int],
    trading_state: str | None,
    rest: Mapping[str, Any],
    market_rules_from: str,
    market_rules: Mapping[str, Any],
    recorded: Mapping[str, str],
    mode: str = "paper",
    venue: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The session report. ``totals`` are the journal's over the scope (``runs``: the runs they
    cover; empty when the journal did not answer), ``snapshot`` the Sniper's account at the
    end (``None``: it did not answer), ``feed`` the Feed's statistics (its ``source`` holds
    the source's), ``restarts`` per actor. Money follows ``report_money``; the maker/taker
    split of the fees and the count of orders by how they ended are the journal's. ``mode``:
    ``paper`` or ``live``; ``venue``: a live session's venue (``status``: its health at the end,
    ``startup``: what its connect found and set), ``None`` for paper."""
    source = feed.get("source", {}) if isinstance(feed, Mapping) else {}
    source = source if isinstance(source, Mapping) else {}
    if snapshot is not None:
        end_ledger = Ledger(balance=snapshot.balance, realized_pnl=snapshot.realized_pnl,
                            fees_paid=snapshot.fees_paid)
        money = jsonable(report_money(start=start_ledger, end=end_ledger, journal=totals,
                                      open_positions=snapshot.positions))
    else:
        money = {"mismatches": ["account: the Sniper did not answer; money from the journal alone"],
                 "realized_pnl_usd": totals.get("realized_pnl_usd"), "fees_paid_usd": totals.get("fees_paid_usd")}
    duration = context.ended_at - context.started_at
    return {
        "run_id": context.run_id,
        "scope": scope,
        "runs": list(totals.get("runs", [context.run_id])),
        "started_at": context.started_at.isoformat(),
        "ended_at": context.ended_at.isoformat(),
        "duration_s": round(duration.total_seconds(), 3),
        "ticks": ticks,
        "ticks_this_run": feed.get("ticks", 0),
        "total_trades": totals.get("total_trades", 0),
        "wins": totals.get("wins", 0),
        "losses": totals.get("losses", 0),
        "realized_pnl_usd": money.get("realized_pnl_usd"),
        "gross_pnl_usd": money.get("gross_pnl_usd"),
        "fees_paid_usd": money.get("fees_paid_usd"),
        "fees_maker_usd": totals.get("fees_maker_usd"),
        "fees_taker_usd": totals.get("fees_taker_usd"),
        "fees_other": dict(totals.get("fees_other") or {}),  # fees in another currency (BNB): not valued
        "dust": dict(totals.get("dust") or {}),  # what closed spot positions left of their coin
        "orders_by_status": dict(totals.get("orders_by_status") or dict.fromkeys(ORDER_COUNT_KEYS, 0)),
        "slippage_avg_bps": str(totals.get("slippage_avg_bps", "0")),
        "max_drawdown_pct": str(totals.get("max_drawdown_pct", "0")),
        "open_positions_at_end": len(snapshot.positions) if snapshot is not None else None,
        "open_positions": money.get("open_positions", []),
        "unrealized_pnl_usd": money.get("unrealized_pnl_usd"),
        "restarts": sum(restarts.values()),
        "restarts_by_actor": {role: n for role, n in restarts.items() if n},
        "exit_code": exit_code,
        "end_reason": reason,
        "source": context.source,
        "mode": mode,
        "venue": jsonable(dict(venue)) if venue is not None else None,
        "simulated": context.simulated,
        "bars": feed.get("bars", 0),
        "stale_periods": feed.get("stale_periods", 0),
        "reconnects": source.get("reconnects", 0),
        "bad_frames": (source.get("bad_frames") or {}).get("total", 0),
        "rejected_ticks": feed.get("rejected_ticks", {"total": 0, "by_kind": {}}),
        "rest": dict(rest),
        "market_rules": {"from": market_rules_from,
                         **{coin: jsonable(rule) for coin, rule in sorted(market_rules.items())}},
        "top_of_book": feed.get("top_of_book", {}),
        "recorded": dict(recorded),
        "bad_rows": source.get("bad_rows", 0),
        "start_equity": str(start_equity),
        "end_equity": str(snapshot.equity) if snapshot is not None else None,
        "start_balance": money.get("start_balance"),
        "balance": str(snapshot.balance) if snapshot is not None else None,
        "account": money.get("account"),
        "resumed_account": start_ledger != Ledger.fresh(context.initial_balance),
        "mismatches": money["mismatches"],
        "trading_state": trading_state,
        "on_stop": context.on_stop,
        "data_dir": context.data_dir,
    }


def with_durable_state(report: Mapping[str, Any], durable: Mapping[str, Any], ticks_seen: int) -> dict[str, Any]:
    """``report`` with the numbers the actors could not give taken from the durable state
    (``durable``: what ``run.py`` read from the stores): ticks from the engine's own count
    (``ticks_seen``), trades and PnL from the journal database (``journal_totals``), or, when
    the journal cannot be read, the engine store's own count (no wins/losses, slippage or
    drawdown then); positions, balance, equity and trading state from the engine store. Says
    so in ``built_from``."""
    out = dict(report)
    out["ticks"] = max(int(out.get("ticks") or 0), ticks_seen)
    trades_from = "the journal database"
    if "journal_totals" in durable:
        out.update(durable["journal_totals"])
    elif "balance" in durable:  # the journal cannot be read: the engine store's own count
        trades_from = "the engine store (journal unreadable: no wins/losses, slippage or drawdown)"
        out.update(total_trades=durable["closed_positions_this_session"], wins=None, losses=None,
                   realized_pnl_usd=str(durable["realized_pnl_this_session"]),
                   fees_paid_usd=str(durable["fees_paid_this_session"]))
    if "balance" in durable:
        out.update(balance=str(durable["balance"]), end_equity=str(durable["equity"]),
                   open_positions_at_end=durable["open_positions"], trading_state=durable["trading_state"])
    out["built_from"] = (f"durable state (the actors were down): ticks counted by the engine, trades from "
                         f"{trades_from}, positions and balance from the engine store")
    out["durable"] = {key: jsonable(value) for key, value in durable.items() if key != "journal_totals"}
    return out


__all__ = ["ReportContext", "report_scope", "report_ticks", "session_report", "with_durable_state"]
