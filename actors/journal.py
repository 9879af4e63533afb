"""The Journal: the durable record of everything worth knowing about a session.

**Owns** the ``events`` table: one row per condition, order, fill, position and state event,
with its correlation id, so a condition's whole story can be read back.

**Accepts** every event the bus routes to it and an audit copy of order and position commands.

**Emits** nothing on the hot path; answers queries (``events``).

Writes are batched off the hot path: rows are buffered and written in one transaction on the
engine's flush timer (every 0.25 s) or at 500 rows, never in the middle of an order flow; the
same timer checkpoints SQLite's write-ahead log. The buffer is flushed on stop and on failure,
and a batch whose write fails stays buffered.

**On crash** rows not yet flushed are written by ``_close`` in ``on_failure``; mail still queued is
handed to the successor by the bus.
"""

from __future__ import annotations

import json
from typing import Any

from actors.base import EngineActor
from actors.bus import JOURNAL
from state.messages import InjectCrash, TimerFired
from state.store import Store, jsonable

FLUSH_ROWS = 500


class Journal(EngineActor):
    role = JOURNAL
    crash_on_error = True

    def __init__(self, *, store: Store, **base: Any) -> None:
        super().__init__(**base)
        self._store = store
        self._buffer: list[dict[str, Any]] = []
        self.written = 0

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, InjectCrash):
            super()._dispatch(message)
        if isinstance(message, TimerFired):
            self._flush()
            self._store.checkpoint()
            return
        self._buffer.append({
            "ts_ns": message.ts_init_ns,
            "kind": type(message).__name__,
            "correlation_id": message.correlation_id,
            "data": _dumps(jsonable(message)),
        })
        if len(self._buffer) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        rows = self._buffer
        self._store.append_events(rows)  # on failure the rows stay buffered for _close
        self._buffer = []
        self.written += len(rows)

    def _close(self) -> None:
        try:
            self._flush()
        except Exception as error:  # noqa: BLE001 - closing: report, never raise from cleanup
            self.log.error("JOURNAL_FLUSH_FAILED: {} row(s) not written: {!r}", len(self._buffer), error)

    def _ask_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        self._flush()
        return self._store.load_events(kind)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
