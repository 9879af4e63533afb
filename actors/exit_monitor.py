"""The ExitMonitor: bar-level exit rules, which reach positions only as commands.

**Owns** a read model of the active positions (the frozen snapshots carried by position
events) and the state of bar-level rules (time stops, end-of-day, swing trailing). Tick-level
exits (stop-loss, take-profit) are the Sniper's, checked on every tick.

**Accepts** ``PositionOpened``, ``PositionChanged``, ``PositionClosed`` and ``BarClosed``.

**Emits** ``ClosePosition`` and ``AdjustStop`` to the Sniper; never an order.

**On crash** (a derived actor: a failing message is logged and skipped) the read model is
rebuilt from the position events that follow; nothing is lost because the Sniper owns the
positions.
"""

from __future__ import annotations

from typing import Any

from actors.base import EngineActor
from actors.bus import EXIT_MONITOR
from state.messages import BarClosed, PositionChanged, PositionClosed, PositionOpened
from state.models import Position


class ExitMonitor(EngineActor):
    role = EXIT_MONITOR
    crash_on_error = False

    def __init__(self, **base: Any) -> None:
        super().__init__(**base)
        self._positions: dict[str, Position] = {}

    def _on_position_opened(self, event: PositionOpened) -> None:
        self._positions[event.position.id] = event.position

    def _on_position_changed(self, event: PositionChanged) -> None:
        self._positions[event.position.id] = event.position

    def _on_position_closed(self, event: PositionClosed) -> None:
        self._positions.pop(event.position.id, None)

    def _on_bar_closed(self, event: BarClosed) -> None:
        """No bar-level exit rule is configured in this version: stop-loss and take-profit are
        tick-level (the Sniper's); time stops and end-of-day exits will hang here."""
        return None

    def _ask_watched(self) -> tuple[str, ...]:
        return tuple(self._positions)
