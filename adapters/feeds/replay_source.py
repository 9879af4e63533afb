"""The ``replay`` market-data source: recorded trades from CSV / CSV.gz files, merged by time.

**Owns** its files (opened on its own thread, closed when a pass ends), one daemon thread per
``start``, the pacing, the bad-row count and the progress bar. Parsing and the merge live in
``adapters.feeds.trade_files``.

**Construction** checks every file (readable, format recognised) and the speed, and raises
``ValueError`` naming the file and the problem before any thread starts, so the engine can
refuse the config (exit code 2).

**A pass.** ``start(sink, resume_after)`` reads the files from their start, merges them by
time (ties: file order, then line order) and numbers the good ticks 0, 1, 2 ... (``seq``; bad
rows get no number, so the numbering is deterministic). Ticks with ``seq <= resume_after`` are
skipped without pacing and without calling the sink, so a replay continues after a crash. Every
other tick goes to ``sink(coin, price, ts_ms, qty, seq)``; the sink may block (back-pressure).
Bad rows are logged as ``REPLAY_BAD_ROW: <path>:<line>: <problem>`` (the first 20, then one
summary every 1000), counted and skipped. Calling ``start`` again (the Feed does after its own
restart) ends the pass still running, if any, and begins a new one; counters are per pass.

**Pacing.** ``speed = "max"`` does not wait; ``"realtime"`` and ``"<N>x"`` wait until the tick's
time, relative to the first tick delivered in this pass, divided by N has passed on the
monotonic clock. A tick that is already late (the sink blocked) goes at once: the schedule is
not shifted. Waits are ``Event.wait`` so ``stop`` is immediate. With ``progress`` at max speed a
one-line bar (percent, ticks/s, ETA) is redrawn on stderr at most 4 times a second.

**On stop** (``stop()``, from any thread, idempotent) the thread ends at the next tick or wait
and is joined with a bound; a sink that raises (the engine is stopping) ends it quietly too.
Neither calls ``on_finished``. **At end of data** ``on_finished(ticks, bad_rows)`` is called
once from the source's thread, ``ticks`` counting skipped ticks too (the stream's length).
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from adapters.ports import TickSink
from adapters.feeds.trade_files import BadRow, FileFormat, TradeFileReader, detect_format, file_size, merge_trades
from state.config import ReplayFile

JOIN_TIMEOUT_S = 2.0  # stop() waits at most this long for the thread
HIGH_WATER_POLL_S = 0.05  # how often a paused source asks ``high_water`` again
BAD_ROWS_LISTED = 20  # bad rows logged one by one; after that, one summary line ...
BAD_ROWS_SUMMARY_EVERY = 1000  # ... every this many
PROGRESS_INTERVAL_S = 0.25  # the progress bar is redrawn at most 4 times a second
PROGRESS_CHECK_EVERY = 64  # ticks between two looks at the clock for the progress bar
BAR_WIDTH = 30


def parse_speed(speed: str) -> float | None:
    """``None`` for ``"max"`` (no pacing), else the factor over real time: ``"realtime"`` is 1,
    ``"10x"`` is 10, ``"0.5x"`` is 0.5. Raises ``ValueError`` for anything else."""
    if speed == "max":
        return None
    if speed == "realtime":
        return 1.0
    if isinstance(speed, str) and speed.endswith("x"):
        try:
            factor = float(speed[:-1])
        except ValueError:
            factor = math.nan
        if math.isfinite(factor) and factor > 0:
            return factor
    raise ValueError(f"speed: must be 'max', 'realtime' or '<N>x' such as '10x' or '0.5x', not {speed!r}")


class BadRowLog:
    """Counts bad rows and logs them: the first ``listed`` one by one, then a summary line
    every ``every`` rows."""

    def __init__(self, listed: int = BAD_ROWS_LISTED, every: int = BAD_ROWS_SUMMARY_EVERY) -> None:
        self.count = 0
        self._listed = listed
        self._every = every
        self._log = logger.bind(actor="feed")

    def __call__(self, bad: BadRow) -> None:
        self.count += 1
        if self.count <= self._listed:
            self._log.warning("REPLAY_BAD_ROW: {}", bad)
        elif self.count % self._every == 0:
            self._log.warning("REPLAY_BAD_ROWS: {} bad rows so far (the first {} are listed); latest {}",
                              self.count, self._listed, bad)


@dataclass
class _Pass:
    """The state of one pass over the files (one ``start``); read by ``stats`` from any thread."""

    readers: list[TradeFileReader]
    bad: BadRowLog
    stopping: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    sent: int = 0
    skipped: int = 0
    finished: bool = False

    @property
    def bytes_read(self) -> int:
        return sum(reader.bytes_read for reader in self.readers)

    def elapsed(self) -> float:
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return max(0.0, end - self.started_at)


class ProgressBar:
    """One line on stderr redrawn in place with ``\\r``: percent, ticks/s, ETA."""

    def __init__(self, label: str = "replay", interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self._label = label
        self._interval = interval_s
        self._last = -math.inf

    def due(self) -> bool:
        """Whether enough time has passed since the last drawing."""
        return time.monotonic() - self._last >= self._interval

    def draw(self, stats: dict[str, Any]) -> None:
        self._last = time.monotonic()
        self._write("\r" + self.render(stats))

    def finish(self, stats: dict[str, Any]) -> None:
        """Draw the last state and end the line."""
        self._write("\r" + self.render(stats))
        self._write("\n")

    def render(self, stats: dict[str, Any]) -> str:
        percent = float(stats["percent"])
        filled = min(BAR_WIDTH, int(BAR_WIDTH * percent / 100))
        eta = stats["eta_s"]
        eta_text = "--:--" if eta is None else _clock(eta)
        return (f"{self._label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {percent:5.1f}%  "
                f"{stats['rate']:,.0f} ticks/s  ETA {eta_text}  ")

    def _write(self, text: str) -> None:
        stream = sys.stderr
        with contextlib.suppress(OSError, ValueError):  # stderr closed: the bar is a nicety
            stream.write(text)
            stream.flush()


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ReplaySource:
    """Replays recorded trades to the Feed; see the module docstring."""

    name = "replay"
    simulated = False
    resumable = True  # the Feed passes ``resume_after`` to ``start``

    def __init__(
        self,
        files: Sequence[ReplayFile],
        *,
        speed: str = "max",
        progress: bool = False,
        on_finished: Callable[[int, int], None] | None = None,
        high_water: Callable[[], bool] | None = None,
    ) -> None:
        """``files``: each with its coin, replayed merged by time. ``speed``: ``"max"``,
        ``"realtime"`` or ``"<N>x"``. ``progress``: draw a progress bar on stderr (at max speed
        only). ``on_finished(ticks, bad_rows)``: called once at end of data. ``high_water``: an
        optional back-pressure probe; while it returns ``True`` the next tick waits (the
        source re-asks every 50 ms and stays stoppable). Raises ``ValueError`` naming the file
        for a missing or unreadable file or one whose format is not recognised."""
        if not files:
            raise ValueError("no replay files given")
        self._speed = speed
        self._factor = parse_speed(speed)
        self._files = tuple(files)
        self._formats: tuple[FileFormat, ...] = tuple(detect_format(f.path) for f in self._files)
        self._progress = progress and self._factor is None
        self._on_finished = on_finished
        self._high_water = high_water
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pass: _Pass | None = None
        self._bytes_total = sum(file_size(f.path) for f in self._files)

    @property
    def formats(self) -> tuple[FileFormat, ...]:
        """What was recognised of each file, in file order."""
        return self._formats

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self, sink: TickSink, resume_after: int | None = None) -> None:
        """Begin a pass on a new daemon thread (ending a pass still running first)."""
        self.stop()
        bad = BadRowLog()
        readers = [TradeFileReader(f.path, fmt, bad) for f, fmt in zip(self._files, self._formats, strict=True)]
        run = _Pass(readers=readers, bad=bad)
        thread = threading.Thread(target=self._run, args=(run, sink, resume_after),
                                  name="replay-source", daemon=True)
        with self._lock:
            self._pass, self._thread = run, thread
        thread.start()

    def stop(self) -> None:
        """End the pass promptly and join its thread (bounded); idempotent, any thread."""
        with self._lock:
            run, thread = self._pass, self._thread
            self._thread = None
        if run is not None:
            run.stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.bind(actor="feed").warning(
                    "REPLAY_STOP_SLOW: the replay thread did not end within {}s (blocked in the sink?)",
                    JOIN_TIMEOUT_S)

    def first_ts_ms(self) -> int | None:
        """The time of the earliest first valid row over the files: a replay's clock starts
        there, so even what happens before the first tick is stamped the same in every run."""
        firsts = []
        for replay_file, fmt in zip(self._files, self._formats, strict=True):
            rows = iter(TradeFileReader(replay_file.path, fmt, lambda bad: None))
            first = next(rows, None)
            if first is not None:
                firsts.append(first.ts_ms)
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        return min(firsts) if firsts else None

    @property
    def running(self) -> bool:
        """True while a pass is under way (a restarted Feed then leaves it alone)."""
        with self._lock:
            thread = self._thread
        return thread is not None and thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """Progress of the current (or last) pass: ticks sent, skipped, bad rows, bytes and
        percent read (compressed bytes for .gz), ticks/s, ETA in seconds, finished."""
        return self._stats_of(self._pass)

    def _stats_of(self, run: _Pass | None) -> dict[str, Any]:
        total = self._bytes_total
        base = {"files": len(self._files), "bytes_total": total, "speed": self._speed}
        if run is None:
            return {"ticks": 0, "skipped": 0, "bad_rows": 0, "bytes_read": 0, "percent": 0.0, "rate": 0.0,
                    "eta_s": None, "finished": False, **base}
        read = total if run.finished else min(run.bytes_read, total)
        elapsed = run.elapsed()
        if run.finished:
            eta: float | None = 0.0
        elif read > 0 and elapsed > 0:
            eta = elapsed * (total - read) / read
        else:
            eta = None
        return {
            "ticks": run.sent,
            "skipped": run.skipped,
            "bad_rows": run.bad.count,
            "bytes_read": read,
            "percent": 100.0 if run.finished or total == 0 else round(100.0 * read / total, 1),
            "rate": run.sent / elapsed if elapsed > 0 else 0.0,
            "eta_s": eta,
            "finished": run.finished,
            **base,
        }

    # --- the source's thread ----------------------------------------------------------------------

    def _run(self, run: _Pass, sink: TickSink, resume_after: int | None) -> None:
        log = logger.bind(actor="feed")
        log.info("REPLAY_STARTED: {} file(s), speed {}{}", len(self._files), self._speed,
                 f", resuming after tick #{resume_after}" if resume_after is not None and resume_after >= 0 else "")
        for replay_file, fmt in zip(self._files, self._formats, strict=True):
            log.debug("REPLAY_FILE: {} {} ({})", replay_file.coin, replay_file.path, fmt.describe())
        bar = ProgressBar() if self._progress else None
        try:
            complete = self._deliver(run, sink, resume_after, bar)
        except Exception:  # noqa: BLE001 - a bug must not pass for the end of the data
            log.exception("REPLAY_FAILED: the replay thread failed; no end of data is reported")
            complete = False
        run.ended_at = time.monotonic()
        if complete:
            run.finished = True
        stats = self._stats_of(run)
        if bar is not None:
            bar.finish(stats)
        if run.bad.count > BAD_ROWS_LISTED:
            log.warning("REPLAY_BAD_ROWS: {} bad rows in total (the first {} are listed)", run.bad.count,
                        BAD_ROWS_LISTED)
        if not complete:
            log.info("REPLAY_STOPPED: after {} tick(s) sent, {} skipped, {} bad row(s)", run.sent, run.skipped,
                     run.bad.count)
            return
        log.info("REPLAY_FINISHED: {} tick(s) sent, {} skipped, {} bad row(s) in {:.1f}s ({:,.0f} ticks/s)",
                 run.sent, run.skipped, run.bad.count, run.elapsed(), stats["rate"])
        if self._on_finished is not None:
            try:
                self._on_finished(run.sent + run.skipped, run.bad.count)
            except Exception:  # noqa: BLE001 - the engine may be stopping
                log.exception("REPLAY_FINISHED: on_finished failed")

    def _deliver(self, run: _Pass, sink: TickSink, resume_after: int | None, bar: ProgressBar | None) -> bool:
        """Hand every tick over; ``True`` at end of data, ``False`` when stopped."""
        stopping = run.stopping
        factor = self._factor
        high_water = self._high_water
        skip_to = -1 if resume_after is None else resume_after
        anchor_wall = anchor_ts = 0.0
        anchored = False
        stream = merge_trades([(f.coin, reader) for f, reader in zip(self._files, run.readers, strict=True)])
        with contextlib.closing(stream):
            for seq, trade in enumerate(stream):
                if stopping.is_set():
                    return False
                if bar is not None and seq % PROGRESS_CHECK_EVERY == 0 and bar.due():
                    bar.draw(self._stats_of(run))
                if seq <= skip_to:
                    run.skipped += 1
                    continue
                if factor is not None:
                    if not anchored:
                        anchor_wall, anchor_ts, anchored = time.monotonic(), trade.ts_ms, True
                    else:
                        due = anchor_wall + (trade.ts_ms - anchor_ts) / (1000.0 * factor)
                        delay = due - time.monotonic()
                        if delay > 0 and stopping.wait(delay):
                            return False
                if high_water is not None:
                    while high_water():
                        if stopping.wait(HIGH_WATER_POLL_S):
                            return False
                try:
                    sink(trade.coin, trade.price, trade.ts_ms, trade.qty, seq)
                except Exception as error:  # noqa: BLE001 - the engine is stopping; end quietly
                    logger.bind(actor="feed").debug("REPLAY_SINK_CLOSED: tick #{} refused ({!r}); ending",
                                                    seq, error)
                    return False
                run.sent += 1
        return not stopping.is_set()

