"""``--record FILE``: every trade the Feed receives, written where the replay source reads it.

One CSV per coin, in the ``ts_ms,price,qty`` layout with a header: ``FILE`` gets the coin before
its suffix (``session.csv`` -> ``session.BTC.csv``, ``session.ETH.csv``). Prices and quantities
are written exactly as they arrived (their ``Decimal`` text), so replaying the files feeds the
engine the same ticks in the same order. Lines are buffered and flushed every ``flush_every``
trades and on ``flush``/``close``; a file that already exists is appended to (a session that
continues after a restart keeps one recording).
"""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import TextIO

HEADER = "ts_ms,price,qty\n"


def recording_path(path: Path, coin: str) -> Path:
    return path.with_name(f"{path.stem}.{coin}{path.suffix or '.csv'}")


class TradeRecorder:
    def __init__(self, path: Path | str, *, flush_every: int = 500) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"--record: {self.path} is a folder; give a file name such as session.csv")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._flush_every = flush_every
        self._files: dict[str, TextIO] = {}
        self._pending = 0
        self._lock = threading.Lock()
        self.written = 0

    def write(self, coin: str, ts_ms: int, price: Decimal, qty: Decimal) -> None:
        with self._lock:
            handle = self._files.get(coin)
            if handle is None:
                target = recording_path(self.path, coin)
                fresh = not target.exists() or target.stat().st_size == 0
                handle = self._files[coin] = target.open("a", encoding="utf-8")
                if fresh:
                    handle.write(HEADER)
            handle.write(f"{ts_ms},{price},{qty}\n")
            self.written += 1
            self._pending += 1
            if self._pending >= self._flush_every:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        for handle in self._files.values():
            handle.flush()
        self._pending = 0

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()

    def files(self) -> dict[str, Path]:
        with self._lock:
            return {coin: recording_path(self.path, coin) for coin in sorted(self._files)}
