"""The strategy plugin interface (see ``state/strategies/__init__.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from state.bars import Bar
from state.models import TradeCondition


class StrategySettingsError(ValueError):
    """Problems in a strategy's settings, each as ``key: problem``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyContext:
    """What a strategy may know about the session it runs in."""

    bar_seconds: int
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceConditions:
    """The complete set of conditions ``strategy_id`` wants armed on ``coin`` from now on."""

    strategy_id: str
    coin: str
    conditions: tuple[TradeCondition, ...]


class Strategy(Protocol):
    strategy_id: str

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: StrategyContext) -> Strategy: ...

    def on_bar(self, bar: Bar) -> ReplaceConditions | None: ...

    def warm_up(self, bars: Iterable[Bar]) -> None:
        """Rebuild indicator state from bars that closed before this start (no output)."""
