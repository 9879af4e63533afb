"""adapters/feeds/replay_source.py on its own thread: delivery and numbering, resume, end of data,
pacing, stop, a failing sink, back-pressure, bad-row logs and the progress bar.

Every wait is bounded (events with timeouts); nothing sleeps to synchronize and no assertion
depends on how fast the machine is, except lower bounds of paced runs and a generous bound
on how long ``stop`` may take.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.feeds.replay_source import BadRowLog, ReplaySource, parse_speed
from adapters.feeds.trade_files import BadRow
from state.config import ReplayFile
from tests.conftest import WAIT, LogCapture

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000


class Sink:
    """Records ``(coin, price, ts_ms, qty, seq)``; can raise at a given call."""

    def __init__(self, raise_at: int | None = None) -> None:
        self.ticks: list[tuple[str, Decimal, int, Decimal, int | None]] = []
        self._raise_at = raise_at
        self._changed = threading.Condition()
        self.raised = threading.Event()
        self.at: list[float] = []  # monotonic arrival times

    def __call__(self, coin: str, price: Decimal, ts_ms: int, qty: Decimal, seq: int | None) -> None:
        if self._raise_at is not None and len(self.ticks) == self._raise_at:
            self.raised.set()
            raise RuntimeError("feed stopped")
        with self._changed:
            self.ticks.append((coin, price, ts_ms, qty, seq))
            self.at.append(time.monotonic())
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.ticks) >= count, timeout)

    @property
    def seqs(self) -> list[int | None]:
        return [tick[4] for tick in self.ticks]


class Finished:
    """An ``on_finished`` callback that records its calls."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.event = threading.Event()
        self._then = then

    def __call__(self, ticks: int, bad_rows: int) -> None:
        self.calls.append((ticks, bad_rows))
        if self._then is not None:
            self._then()
        self.event.set()


def replay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "replay-source" and t.is_alive()]


@pytest.fixture
def make_source() -> Iterator[Callable[..., ReplaySource]]:
    """Builds sources and stops every one at teardown; fails if a replay thread outlives it."""
    made: list[ReplaySource] = []

    def factory(files: list[tuple[str, Path]], **options: Any) -> ReplaySource:
        source = ReplaySource([ReplayFile(coin=coin, path=path) for coin, path in files], **options)
        made.append(source)
        return source

    yield factory
    for source in made:
        source.stop()
    assert replay_threads() == []


def write_ticks(path: Path, rows: list[str], *, header: str | None = "ts_ms,price,qty", gz: bool = False) -> Path:
    text = "\n".join(([header] if header else []) + rows) + "\n"
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if gz else text.encode())
    return path


def spaced(count: int, step_ms: int, start: int = T0, price: str = "100") -> list[str]:
    return [f"{start + i * step_ms},{price}.{i},{i + 1}" for i in range(count)]


# --- construction ------------------------------------------------------------------------------

def test_identity_and_stats_before_start(tmp_path: Path, make_source: Callable[..., ReplaySource]) -> None:
    path = write_ticks(tmp_path / "a.csv", spaced(3, 1))
    source = make_source([("BTC", path)])
    assert (source.name, source.simulated, source.resumable) == ("replay", False, True)
    stats = source.stats()
    assert stats["ticks"] == stats["skipped"] == stats["bad_rows"] == stats["bytes_read"] == 0
    assert (stats["files"], stats["bytes_total"], stats["percent"], stats["finished"]) == (
        1, path.stat().st_size, 0.0, False)
    assert stats["eta_s"] is None


@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: [("BTC", d / "missing.csv")], "missing.csv: cannot read"),
    (lambda d: [("BTC", write_ticks(d / "ok.csv", spaced(2, 1))),
                ("ETH", write_ticks(d / "odd.csv", ["x,1"], header="when,what"))], "odd.csv: unrecognised header"),
    (lambda d: [], "no replay files"),
])
def test_unusable_files_are_refused_before_any_thread_starts(tmp_path: Path, make: Callable[[Path], Any],
                                                             needle: str) -> None:
    files = [ReplayFile(coin=coin, path=path) for coin, path in make(tmp_path)]
    with pytest.raises(ValueError, match=needle):
        ReplaySource(files)
    assert replay_threads() == []


@pytest.mark.parametrize("speed", ["fast", "0x", "-2x", "x", "nanx", "infx", "10", ""])
def test_a_bad_speed_is_refused(tmp_path: Path, speed: str) -> None:
    path = write_ticks(tmp_path / "a.csv", spaced(2, 1))
    with pytest.raises(ValueError, match="speed"):
        ReplaySource([ReplayFile(coin="BTC", path=path)], speed=speed)


def test_parse_speed() -> None:
    assert parse_speed("max") is None
    assert parse_speed("realtime") == 1.0
    assert parse_speed("10x") == 10.0
    assert parse_speed("0.5x") == 0.5


# --- delivery ----------------------------------------------------------------------------------------

def test_files_are_merged_numbered_and_the_end_is_reported_once(tmp_path: Path,
                                                                make_source: Callable[..., ReplaySource]) -> None:
    btc = write_ticks(tmp_path / "btc.csv.gz", [f"{T0},64000.5,0.1", f"{T0 + 20},64001,0.2", f"{T0 + 30},oops,1",
                                                f"{T0 + 40},64002.25,0.3"], gz=True)
    eth = write_ticks(tmp_path / "eth.csv", [f"1,3400,0.5,7,7,{T0 + 10},true,true",  # aggTrades, no header
                                             f"2,3401,0.6,8,9,{T0 + 20},false,true"], header=None)
    finished = Finished()
    source = make_source([("BTC", btc), ("ETH", eth)], on_finished=finished)
    sink = Sink()
    source.start(sink)
    assert finished.event.wait(WAIT)
    source.stop()  # joins: on_finished can no longer be called again
    assert sink.ticks == [
        ("BTC", Decimal("64000.5"), T0, Decimal("0.1"), 0),
        ("ETH", Decimal("3400"), T0 + 10, Decimal("0.5"), 1),
        ("BTC", Decimal("64001"), T0 + 20, Decimal("0.2"), 2),  # a tie: file order
        ("ETH", Decimal("3401"), T0 + 20, Decimal("0.6"), 3),
        ("BTC", Decimal("64002.25"), T0 + 40, Decimal("0.3"), 4),  # the bad row got no number
    ]
    assert finished.calls == [(5, 1)]
    stats = source.stats()
    assert (stats["ticks"], stats["skipped"], stats["bad_rows"], stats["finished"]) == (5, 0, 1, True)
    assert (stats["percent"], stats["bytes_read"], stats["eta_s"]) == (100.0, stats["bytes_total"], 0.0)
    assert stats["bytes_total"] == btc.stat().st_size + eth.stat().st_size


def test_resume_after_skips_without_pacing_and_counts_the_skipped_in_the_end(
        tmp_path: Path, make_source: Callable[..., ReplaySource]) -> None:
    # Hours between the skipped ticks: pacing them at real time would never finish.
    rows = [f"{T0},1,1", f"{T0 + HOUR_MS},2,1", f"{T0 + 2 * HOUR_MS},3,1",
            f"{T0 + 2 * HOUR_MS + 10},4,1", f"{T0 + 2 * HOUR_MS + 20},5,1"]
    finished = Finished()
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", rows))], speed="realtime", on_finished=finished)
    sink = Sink()
    source.start(sink, resume_after=2)
    assert finished.event.wait(WAIT)
    assert sink.seqs == [3, 4]
    assert [tick[1] for tick in sink.ticks] == [Decimal("4"), Decimal("5")]
    assert finished.calls == [(5, 0)]
    assert (source.stats()["ticks"], source.stats()["skipped"]) == (2, 3)


def test_resume_after_minus_one_or_none_skips_nothing(tmp_path: Path,
                                                      make_source: Callable[..., ReplaySource]) -> None:
    path = write_ticks(tmp_path / "a.csv", spaced(4, 1))
    for resume_after in (None, -1):
        finished = Finished()
        source = make_source([("BTC", path)], on_finished=finished)
        sink = Sink()
        source.start(sink, resume_after=resume_after)
        assert finished.event.wait(WAIT)
        assert sink.seqs == [0, 1, 2, 3]


def test_ten_x_pacing_follows_the_ticks_own_times(tmp_path: Path,
                                                  make_source: Callable[..., ReplaySource]) -> None:
    # 2 s of data at 10x: at least ~0.2 s from the first tick to the last (a lower bound only).
    finished = Finished()
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(5, 500)))], speed="10x",
                         on_finished=finished)
    sink = Sink()
    source.start(sink)
    assert finished.event.wait(WAIT)
    assert sink.seqs == [0, 1, 2, 3, 4]
    assert sink.at[-1] - sink.at[0] >= 0.15
    assert all(later >= earlier for earlier, later in zip(sink.at, sink.at[1:], strict=False))


def test_stop_during_a_long_paced_wait_returns_promptly(tmp_path: Path,
                                                        make_source: Callable[..., ReplaySource]) -> None:
    finished = Finished()
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(3, HOUR_MS)))], speed="realtime",
                         on_finished=finished)
    sink = Sink()
    source.start(sink)
    assert sink.wait_for(1)
    began = time.monotonic()
    source.stop()
    assert time.monotonic() - began < 2.0
    assert replay_threads() == []
    assert sink.seqs == [0]
    assert finished.calls == [] and source.stats()["finished"] is False


def test_a_sink_that_raises_ends_the_replay_quietly(tmp_path: Path, make_source: Callable[..., ReplaySource],
                                                    logs: LogCapture) -> None:
    finished = Finished()
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(10, 1)))], on_finished=finished)
    sink = Sink(raise_at=3)
    source.start(sink)
    assert sink.raised.wait(WAIT)
    assert logs.wait_for("REPLAY_STOPPED")
    source.stop()
    assert sink.seqs == [0, 1, 2]
    assert finished.calls == []
    assert not any(line.startswith(("ERROR", "CRITICAL")) for line in logs.lines)
    assert source.stats()["ticks"] == 3 and source.stats()["finished"] is False


def test_stop_is_idempotent_and_works_from_any_thread(tmp_path: Path,
                                                      make_source: Callable[..., ReplaySource]) -> None:
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(3, HOUR_MS)))], speed="realtime")
    source.stop()  # before start
    sink = Sink()
    source.start(sink)
    assert sink.wait_for(1)
    other = threading.Thread(target=source.stop)
    other.start()
    other.join(WAIT)
    assert not other.is_alive()
    assert replay_threads() == []
    source.stop()
    source.stop()


def test_stop_from_the_end_of_data_callback_does_not_deadlock(tmp_path: Path,
                                                              make_source: Callable[..., ReplaySource]) -> None:
    holder: list[ReplaySource] = []
    finished = Finished(then=lambda: holder[0].stop())
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(3, 1)))], on_finished=finished)
    holder.append(source)
    source.start(Sink())
    assert finished.event.wait(WAIT)
    assert finished.calls == [(3, 0)]


def test_start_again_ends_the_running_pass_and_begins_a_new_one(tmp_path: Path,
                                                                make_source: Callable[..., ReplaySource]) -> None:
    finished = Finished()
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(4, HOUR_MS)))], speed="1000x",
                         on_finished=finished)
    first = Sink()
    source.start(first)
    assert first.wait_for(1)  # now waiting 3.6 s for the next tick
    second = Sink()
    source.start(second, resume_after=1)  # as the Feed does after its own restart
    assert second.wait_for(1)
    assert first.seqs == [0]  # the first pass was stopped
    source.stop()
    assert second.seqs[0] == 2 and finished.calls == []


def test_high_water_holds_the_next_tick_until_it_clears(tmp_path: Path,
                                                        make_source: Callable[..., ReplaySource]) -> None:
    full = threading.Event()
    full.set()
    asked = threading.Event()

    def high_water() -> bool:
        asked.set()
        return full.is_set()

    finished = Finished()
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(3, 1)))], high_water=high_water,
                         on_finished=finished)
    sink = Sink()
    source.start(sink)
    assert asked.wait(WAIT)
    assert sink.ticks == []  # asked before every tick: nothing passed while full
    full.clear()
    assert finished.event.wait(WAIT)
    assert sink.seqs == [0, 1, 2]


def test_stop_while_held_by_high_water_is_prompt(tmp_path: Path,
                                                 make_source: Callable[..., ReplaySource]) -> None:
    asked = threading.Event()
    source = make_source([("BTC", write_ticks(tmp_path / "a.csv", spaced(3, 1)))],
                         high_water=lambda: asked.set() or True)
    source.start(Sink())
    assert asked.wait(WAIT)
    began = time.monotonic()
    source.stop()
    assert time.monotonic() - began < 2.0


# --- bad rows and the progress bar -------------------------------------------------------------------------

def test_bad_rows_are_logged_with_file_and_line(tmp_path: Path, make_source: Callable[..., ReplaySource],
                                                logs: LogCapture) -> None:
    rows = [f"{T0},1,1"] + [f"{T0 + i},-{i},1" for i in range(1, 26)] + [f"{T0 + 99},2,1"]
    path = write_ticks(tmp_path / "bad.csv", rows)
    finished = Finished()
    source = make_source([("BTC", path)], on_finished=finished)
    sink = Sink()
    source.start(sink)
    assert finished.event.wait(WAIT)
    assert finished.calls == [(2, 25)] and sink.seqs == [0, 1]
    assert logs.wait_for("REPLAY_FINISHED")
    listed = [line for line in logs.lines if "REPLAY_BAD_ROW:" in line]
    assert len(listed) == 20
    assert listed[0] == f"WARNING feed REPLAY_BAD_ROW: {path}:3: price must be > 0, got -1"
    assert any("REPLAY_BAD_ROWS: 25 bad rows in total" in line for line in logs.lines)


def test_bad_row_log_lists_twenty_then_summarises_every_thousand(logs: LogCapture) -> None:
    log = BadRowLog()
    for line in range(1, 2_501):
        log(BadRow(Path("f.csv"), line, "price must be > 0, got 0"))
    assert log.count == 2_500
    listed = [line for line in logs.lines if "REPLAY_BAD_ROW:" in line]
    summaries = [line for line in logs.lines if "REPLAY_BAD_ROWS:" in line]
    assert listed[-1].endswith("REPLAY_BAD_ROW: f.csv:20: price must be > 0, got 0") and len(listed) == 20
    assert len(summaries) == 2
    assert "1000 bad rows so far" in summaries[0] and "f.csv:1000:" in summaries[0]
    assert "2000 bad rows so far" in summaries[1]


def test_progress_bar_is_one_line_on_stderr_only_when_asked(tmp_path: Path, make_source: Callable[..., ReplaySource],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = write_ticks(tmp_path / "a.csv", spaced(300, 1))
    for progress, speed in ((False, "max"), (True, "1000000x"), (True, "max")):
        finished = Finished()
        source = make_source([("BTC", path)], speed=speed, progress=progress, on_finished=finished)
        source.start(Sink())
        assert finished.event.wait(WAIT)
        source.stop()
        err = capsys.readouterr().err
        if progress and speed == "max":
            assert err.startswith("\rreplay [") and err.endswith("\n") and err.count("\n") == 1
            last = err.rsplit("\r", 1)[1]
            assert "100.0%" in last and "ticks/s" in last and "ETA 0:00" in last
        else:
            assert err == ""


# --- real data ------------------------------------------------------------------------------------------

def test_real_day_resumed_near_its_end(shared_data: Path, make_source: Callable[..., ReplaySource]) -> None:
    path = shared_data / "trades" / "binance-futures_BTCUSDT_trades_2020-02-22.csv.gz"
    finished = Finished()
    source = make_source([("BTC", path)], on_finished=finished)
    sink = Sink()
    source.start(sink, resume_after=137_000)
    assert finished.event.wait(30)
    assert finished.calls == [(137_988, 0)]
    assert sink.seqs == list(range(137_001, 137_988))
    assert sink.ticks[-1][:4] == ("BTC", Decimal("9659.2"), 1582415993624, Decimal("0.25"))
    stats = source.stats()
    assert (stats["ticks"], stats["skipped"], stats["percent"]) == (987, 137_001, 100.0)
