"""The write-ahead logs of the engine store and the journal stay small over a long session.

A PASSIVE checkpoint copies the log back but never restarts it while writers keep committing,
so the ``-wal`` file only grows; ``checkpoint()`` (the store) and ``write()`` (the journal)
truncate it once it passes a bound, without waiting long for a busy reader, and ``close()``
truncates it at shutdown.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from state.bars import Bar
from state.journal_store import EventRow, JournalBatch, JournalStore
from state.store import Store, wal_file
from tests.conftest import WAIT

BOUND = 64 * 1024


def write_bars(store: Store, count: int, start: int = 0) -> None:
    for number in range(start, start + count):  # one commit each, as the Feed writes them
        store.save_bar(Bar(coin="BTC", start_ms=number * 60_000, end_ms=(number + 1) * 60_000,
                           open="100", high="101", low="99", close="100.5", volume="3", trades=4))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "engine.db", wal_truncate_bytes=BOUND)
    yield opened
    opened.close()


def test_checkpoint_leaves_a_small_log_alone_and_truncates_one_past_the_bound(store: Store) -> None:
    write_bars(store, 5)
    store.checkpoint()
    assert 0 < store.wal_size() <= BOUND
    assert store.wal_truncations == 0

    write_bars(store, 200, start=5)
    assert store.wal_size() > BOUND
    store.checkpoint()

    assert store.wal_size() == 0
    assert store.wal_truncations == 1
    assert len(store.load_bars(per_coin=1000)) == 205  # everything is in the database file


def test_a_reader_holding_the_log_delays_the_truncation_to_a_later_checkpoint_without_an_error(
        store: Store, tmp_path: Path) -> None:
    write_bars(store, 200)
    reader = sqlite3.connect(tmp_path / "engine.db")
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM bars").fetchone() == (200,)  # a snapshot in the log
        write_bars(store, 100, start=200)

        store.checkpoint()  # waits CHECKPOINT_BUSY_MS for the reader, then leaves it for later

        assert store.wal_truncations == 0
        assert store.wal_size() > BOUND
        write_bars(store, 1, start=300)  # writers are not blocked meanwhile
    finally:
        reader.rollback()
        reader.close()
    store.checkpoint()
    assert store.wal_size() == 0 and store.wal_truncations == 1


def test_close_truncates_the_log_while_other_threads_still_hold_connections(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")  # the default bound: no truncation before close
    write_bars(store, 50)
    done = threading.Event()

    def other_actor() -> None:  # its thread's connection stays open, as an actor's does
        store.load_account()
        done.set()

    thread = threading.Thread(target=other_actor)
    thread.start()
    assert done.wait(WAIT)
    thread.join(WAIT)
    assert store.wal_size() > 0

    store.close()

    assert store.wal_size() == 0
    assert not wal_file(tmp_path / "engine.db").exists() or wal_file(tmp_path / "engine.db").stat().st_size == 0


def events(count: int, start: int) -> JournalBatch:
    return JournalBatch(events=tuple(
        EventRow(ts_ns=start + n, kind="ConditionsReplaced", correlation_id="breakout:BTC", msg_id=None,
                 run_id="r1", data='{"armed":[],"canceled":[]}' + " " * 200)
        for n in range(count)))


def test_the_journal_truncates_its_log_past_the_bound_and_at_close(tmp_path: Path) -> None:
    journal = JournalStore(tmp_path / "journal.db", wal_truncate_bytes=BOUND)
    try:
        for batch in range(60):
            journal.write(events(50, batch * 50))
            assert journal.wal_size() <= BOUND  # never left larger after a write
        assert journal.wal_truncations >= 1
        assert journal.wal_size() <= BOUND
        assert len(journal.events()) == 3000
        assert journal.wal_error == ""
    finally:
        journal.close()
    assert journal.wal_size() == 0
