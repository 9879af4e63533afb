"""A store that can no longer be written: how its errors are recognized, and that a failed
transaction says what happened (a real SQLITE_FULL via ``PRAGMA max_page_count``)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from state.store import Store, is_store_unwritable, unwritable_cause
from tests.unit.test_store import make_condition


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("database or disk is full"),
    peewee.OperationalError("database or disk is full"),
    peewee.OperationalError("attempt to write a readonly database"),
    sqlite3.OperationalError("disk I/O error"),
    sqlite3.OperationalError("unable to open database file"),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EROFS, "Read-only file system"),
    OSError(errno.EACCES, "Permission denied"),
    "sniper: database or disk is full",
])
def test_the_errors_of_a_store_that_cannot_be_written_are_recognized(error):
    assert is_store_unwritable(error)


@pytest.mark.parametrize("error", [
    None, ValueError("price: must be positive"), sqlite3.OperationalError("no such table: positions"),
    OSError(errno.ECONNRESET, "Connection reset by peer"), RuntimeError("injected crash"), "stop requested",
])
def test_other_errors_are_not_taken_for_an_unwritable_store(error):
    assert not is_store_unwritable(error)
    assert unwritable_cause(error) is None


def test_the_cause_is_found_behind_the_error_that_surfaced():
    try:
        try:
            raise peewee.OperationalError("disk I/O error")
        except peewee.OperationalError:
            raise peewee.OperationalError("cannot rollback - no transaction is active")  # noqa: B904
    except peewee.OperationalError as surfaced:
        cause = unwritable_cause(surfaced)
    assert str(cause) == "disk I/O error"


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[Store]:
    """A store whose database may not grow by a single page (this thread's connection)."""
    store = Store(tmp_path / "engine.db")
    pages = store.db.execute_sql("PRAGMA page_count").fetchone()[0]
    store.db.execute_sql(f"PRAGMA max_page_count = {pages}")
    try:
        yield store
    finally:
        store.close()


def test_a_transaction_on_a_full_database_raises_sqlites_own_error_not_the_failed_rollback(full_store):
    with pytest.raises(peewee.OperationalError, match="database or disk is full"):
        with full_store.transaction():
            for seq in range(300):
                full_store.save_condition(make_condition(f"c-{seq}"), seq)
    assert full_store.load_conditions() == []  # all or nothing
