"""Sanity checks on market data at the Feed's door, pure: which ticks may reach the Sniper.

A tick is *rejected* (never delivered, counted by kind) when

- ``bad_price``: its price is not a finite number greater than 0, or above ``MAX_PRICE``;
- ``off_grid``: it is not on the coin's tick grid (``MarketRules.tick_size``) by more than
  rounding (``GRID_TOLERANCE`` of a tick; a price that close is snapped to the grid), or it is
  below one tick (a price of 0.0000000001 cannot be traded);
- ``jump``: it is more than ``max_jump_pct`` away from the last accepted price of its coin.
  A real move is not lost: ``confirm_ticks`` consecutive ticks beyond the band that agree with
  each other (each within ``max_jump_pct`` of the first of them) are a move, and the one that
  completes the run is accepted (the ones before it were rejected) and becomes the new
  reference. The first tick of a coin has no reference and is accepted (after the other
  checks); a lone bad first tick is corrected by the same rule once real ticks follow.
- ``clock_ahead`` / ``clock_behind``: on a wall clock (live and sim sources), its timestamp is
  more than ``max_clock_skew_s`` ahead of or behind the engine's clock.
  On a tick clock (replay, manual) the ticks *are* the clock, so "ahead" means ahead of the
  latest accepted tick (of any coin) by more than ``max_tick_gap_s``, or, for the very first
  tick, ahead of the wall clock by more than ``max_clock_skew_s`` (no data comes from the
  future). A gap in a replay (two files days apart) is a real jump in time: ``confirm_ticks``
  consecutive ticks that agree with each other (each within ``max_tick_gap_s`` of the first of
  them) are accepted as for prices. A single tick stamped ten years ahead can never move the
  engine clock. "Behind" on a tick clock is the Feed's out-of-order rule (older than the last
  accepted tick of the coin), not checked here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import NamedTuple

from state.types import MAX_PRICE

GRID_TOLERANCE = Decimal("0.000001")  # of a tick: a price this close to the grid is rounding noise
KINDS = ("bad_price", "off_grid", "jump", "clock_ahead", "clock_behind")


@dataclass(frozen=True, slots=True, kw_only=True)
class TickGuardSettings:
    """``[feed]`` keys: ``max_jump_pct``, ``jump_confirm_ticks``, ``max_clock_skew_s``,
    ``max_tick_gap_s`` (see the module docstring)."""

    max_jump_pct: Decimal = Decimal("0.10")
    confirm_ticks: int = 3
    max_clock_skew_s: float = 300.0
    max_tick_gap_s: float = 86_400.0


class Verdict(NamedTuple):
    """``price`` is the price to deliver (snapped to the grid) when ``kind`` is ``None``;
    otherwise the tick is rejected for ``kind`` as ``detail`` says. (A named tuple: one is made
    per tick on the hot path.)"""

    price: Decimal
    kind: str | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.kind is None


@dataclass(slots=True)
class _Run:
    """Consecutive ticks beyond the band that agree with each other."""

    anchor: Decimal | int
    count: int = 1


def grid_problem(price: Decimal, tick_size: Decimal) -> tuple[Decimal | None, str]:
    """``(price on the grid, "")``, or ``(None, why)`` when ``price`` is off the grid by more
    than rounding or below one tick."""
    try:
        if price >= tick_size and not price % tick_size:
            return price, ""  # the usual case: on the grid (one operation on the hot path)
        steps = price / tick_size
        whole = steps.to_integral_value(rounding=ROUND_HALF_EVEN)
        if whole < 1:
            return None, f"{price} is below one tick ({tick_size})"
        if abs(steps - whole) > GRID_TOLERANCE:
            return None, f"{price} is not a multiple of the tick size {tick_size}"
        return (whole * tick_size).quantize(tick_size), ""
    except ArithmeticError as error:
        return None, f"{price} cannot be put on the tick grid {tick_size} ({type(error).__name__})"


@dataclass(slots=True)
class TickGuard:
    """The Feed's per-coin memory for the checks: last accepted price, the engine's latest
    accepted tick time, runs of confirming ticks, and counters of rejections by kind."""

    settings: TickGuardSettings = field(default_factory=TickGuardSettings)
    rejected: Counter[str] = field(default_factory=Counter)
    _last_price: dict[str, Decimal] = field(default_factory=dict)
    _price_runs: dict[str, _Run] = field(default_factory=dict)
    _last_ts_ms: int | None = None
    _time_run: _Run | None = None
    _skew_ms: float = field(init=False, default=0.0)
    _gap_ms: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._skew_ms = self.settings.max_clock_skew_s * 1000
        self._gap_ms = self.settings.max_tick_gap_s * 1000

    def check(self, coin: str, price: Decimal, ts_ms: int, *, tick_size: Decimal | None, now_ms: int,
              tick_clock: bool) -> Verdict:
        """Judge one tick and, when it is accepted, remember it. ``now_ms`` is the engine's
        clock on a wall clock and the wall clock on a tick clock (only used for the first tick)."""
        verdict = self._judge(coin, price, ts_ms, tick_size, now_ms, tick_clock)
        if verdict.kind is not None:
            self.rejected[verdict.kind] += 1
        return verdict

    def _judge(self, coin: str, price: Decimal, ts_ms: int, tick_size: Decimal | None, now_ms: int,
               tick_clock: bool) -> Verdict:
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0 or price > MAX_PRICE:
            return Verdict(price, "bad_price", f"price {price!r} is not a finite number in (0, {MAX_PRICE:,}]")
        if tick_size is not None:
            snapped, why = grid_problem(price, tick_size)
            if snapped is None:
                return Verdict(price, "off_grid", why)
            price = snapped
        time_problem = self._time(ts_ms, now_ms, tick_clock)
        if time_problem is not None:
            return Verdict(price, *time_problem)
        jump = self._jump(coin, price)
        if jump is not None:
            return Verdict(price, "jump", jump)
        self._last_price[coin] = price
        self._price_runs.pop(coin, None)
        if tick_clock:
            self._time_run = None
            self._last_ts_ms = ts_ms if self._last_ts_ms is None else max(self._last_ts_ms, ts_ms)
        return Verdict(price)

    def _time(self, ts_ms: int, now_ms: int, tick_clock: bool) -> tuple[str, str] | None:
        settings = self.settings
        if not tick_clock:
            skew_ms = self._skew_ms
            if ts_ms > now_ms + skew_ms:
                return "clock_ahead", f"stamped {(ts_ms - now_ms) / 1000:.1f}s ahead of the engine clock"
            if ts_ms < now_ms - skew_ms:
                return "clock_behind", f"stamped {(now_ms - ts_ms) / 1000:.1f}s behind the engine clock"
            return None
        if self._last_ts_ms is None:
            if ts_ms > now_ms + self._skew_ms:
                return "clock_ahead", f"the first tick is stamped {(ts_ms - now_ms) / 1000:.1f}s ahead of the wall clock"
            return None
        gap_ms = self._gap_ms
        if ts_ms <= self._last_ts_ms + gap_ms:
            return None
        run = self._time_run
        if run is not None and abs(ts_ms - int(run.anchor)) <= gap_ms:
            run.count += 1
        else:
            run = self._time_run = _Run(ts_ms)
        if run.count >= settings.confirm_ticks:
            return None  # a real gap in the data, confirmed by agreeing ticks
        return "clock_ahead", (f"stamped {(ts_ms - self._last_ts_ms) / 1000:.1f}s after the latest accepted "
                               f"tick (at most {settings.max_tick_gap_s:g}s unless {settings.confirm_ticks} "
                               f"agreeing ticks confirm it)")

    def _jump(self, coin: str, price: Decimal) -> str | None:
        reference = self._last_price.get(coin)
        band = self.settings.max_jump_pct
        if reference is None or abs(price - reference) <= band * reference:
            return None
        run = self._price_runs.get(coin)
        if run is not None and abs(price - run.anchor) <= band * run.anchor:
            run.count += 1
        else:
            run = self._price_runs[coin] = _Run(price)
        if run.count >= self.settings.confirm_ticks:
            return None  # a real move: the run confirmed it
        move = (price - reference) / reference
        return (f"{price} is {move:+.2%} from the last accepted {reference} (band {band:.0%}; accepted once "
                f"{self.settings.confirm_ticks} consecutive ticks agree)")

    def seed(self, coin: str, price: Decimal, ts_ms: int) -> None:
        """Remember a price and time accepted before (a restarted Feed reads the price board), so
        a restart is not a free pass for a bad first tick."""
        self._last_price.setdefault(coin, price)
        self._last_ts_ms = ts_ms if self._last_ts_ms is None else max(self._last_ts_ms, ts_ms)

    def stats(self) -> dict[str, object]:
        return {"total": sum(self.rejected.values()), "by_kind": dict(sorted(self.rejected.items()))}
