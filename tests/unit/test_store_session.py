"""state/store.py: the session's identity and a replay's completion; the read-only open of
``--status`` that writes nothing."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from state.session import FileFingerprint, NoSession, SessionIdentity
from state.store import Store

IDENTITY = SessionIdentity(source="replay", mode="paper", venue="paper",
                           files=(FileFingerprint(coin="BTC", path="/d/b.csv", size=3, sha256="f" * 64),),
                           settings={"feed.bar_seconds": "60"})


def test_identity_and_completion_are_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    try:
        assert store.load_session_identity() is None and store.load_replay_completion() is None
        store.save_session_identity(IDENTITY)
        store.save_replay_completion("run-1", "2026-12-05T08:00:00+00:00")
    finally:
        store.close()
    again = Store(tmp_path / "engine.db")
    try:
        assert again.load_session_identity() == IDENTITY
        assert again.load_replay_completion() == {"run_id": "run-1", "ended_at": "2026-12-05T08:00:00+00:00"}
    finally:
        again.close()


def test_a_corrupt_identity_is_a_value_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    try:
        store.set_setting("session_identity", "{broken")
        with pytest.raises(ValueError, match="session identity: not JSON"):
            store.load_session_identity()
    finally:
        store.close()


def test_open_read_only_when_no_store_then_no_session_and_nothing_created(tmp_path: Path) -> None:
    with pytest.raises(NoSession, match="no session has ever run here"):
        Store.open_read_only(tmp_path / "missing" / "engine.db")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(NoSession):
        Store.open_read_only(tmp_path / "engine.db")
    assert list(tmp_path.iterdir()) == []


def test_open_read_only_reads_and_cannot_write(tmp_path: Path) -> None:
    writer = Store(tmp_path / "engine.db")
    writer.save_account(balance=Decimal("9000"))
    writer.close()
    reader = Store.open_read_only(tmp_path / "engine.db")
    try:
        assert reader.read_mode == "ro"
        assert reader.durable_status(Decimal("10000"))["balance"] == "9000"
        with pytest.raises(Exception, match="readonly"):
            reader.save_account(balance=Decimal("1"))
    finally:
        reader.close()


def test_open_read_only_when_the_shm_cannot_be_made_then_immutable(tmp_path: Path, monkeypatch) -> None:
    """A WAL database in a read-only folder without its -shm cannot be opened with mode=ro;
    the store then reads it as immutable."""
    writer = Store(tmp_path / "engine.db")
    writer.save_account(balance=Decimal("8000"))
    writer.close()
    with sqlite3.connect(tmp_path / "engine.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    real_init = Store.__init__

    def no_ro(self: Store, path: Path | str, *, read_only: bool = False, immutable: bool = False) -> None:
        if read_only and not immutable:  # what SQLite answers there: it cannot create the -shm
            import peewee
            raise peewee.OperationalError("unable to open database file")
        real_init(self, path, read_only=read_only, immutable=immutable)

    monkeypatch.setattr(Store, "__init__", no_ro)
    reader = Store.open_read_only(tmp_path / "engine.db")
    try:
        assert reader.read_mode == "immutable"
        assert reader.durable_status(Decimal("10000"))["balance"] == "8000"
    finally:
        reader.close()
