"""adapters/data_folder.py: the folder's lock, its archive and replay file fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from adapters.data_folder import (
    FolderLock,
    FolderLocked,
    archive_contents,
    fingerprint_file,
    lock_holder,
)
from state.session import DataDirUnusable


def test_acquire_creates_the_folder_and_writes_pid_and_start_time(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    lock = FolderLock.acquire(folder)
    try:
        stamp = json.loads((folder / "engine.lock").read_text())
        assert stamp["pid"] == os.getpid()
        assert datetime.fromisoformat(stamp["started_at"]).tzinfo is not None
        holder = lock_holder(folder)
        assert holder is not None and holder.running and holder.pid == os.getpid()
    finally:
        lock.release()


def test_a_second_lock_on_the_same_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    lock = FolderLock.acquire(tmp_path)
    try:
        with pytest.raises(FolderLocked, match=rf"in use by another engine \(pid {os.getpid()}, started "):
            FolderLock.acquire(tmp_path)
    finally:
        lock.release()


def test_release_frees_the_folder_and_empties_the_file(tmp_path: Path) -> None:
    FolderLock.acquire(tmp_path).release()
    assert (tmp_path / "engine.lock").read_text() == ""
    assert lock_holder(tmp_path) is None, "a clean stop leaves no holder"
    again = FolderLock.acquire(tmp_path)
    again.release()
    again.release()  # idempotent
    assert not again.held


def test_a_lock_dropped_without_release_frees_the_folder(tmp_path: Path) -> None:
    FolderLock.acquire(tmp_path)  # not kept: collected at once
    FolderLock.acquire(tmp_path).release()


def test_lock_holder_when_the_file_names_a_process_that_holds_nothing_then_not_running(tmp_path: Path) -> None:
    (tmp_path / "engine.lock").write_text(json.dumps({"pid": os.getpid(), "started_at": "2026-01-01T00:00:00+00:00"}))
    holder = lock_holder(tmp_path)
    assert holder is not None and holder.pid == os.getpid() and not holder.running


def test_lock_holder_when_no_lock_file_then_none_and_nothing_created(tmp_path: Path) -> None:
    assert lock_holder(tmp_path / "nowhere") is None
    assert not (tmp_path / "nowhere").exists()


def test_acquire_when_a_file_is_in_the_way_then_unusable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataDirUnusable, match="cannot create the folder"):
        FolderLock.acquire(tmp_path / "file" / "data")
    with pytest.raises(DataDirUnusable, match="not a folder|cannot create the folder"):
        FolderLock.acquire(tmp_path / "file")


def test_archive_moves_everything_but_the_archive_and_the_lock(tmp_path: Path) -> None:
    lock = FolderLock.acquire(tmp_path)
    try:
        for name in ("engine.db", "engine.db-wal", "journal.db"):
            (tmp_path / name).write_text(name)
        (tmp_path / "runs" / "r1").mkdir(parents=True)
        (tmp_path / "runs" / "r1" / "summary.json").write_text("{}")
        (tmp_path / "archive" / "older").mkdir(parents=True)
        now = datetime(2026, 12, 5, 8, 30, 0, tzinfo=timezone.utc)
        target = archive_contents(tmp_path, now)
        assert target == tmp_path / "archive" / "20261205T083000Z"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["archive", "engine.lock"]
        assert (target / "engine.db").read_text() == "engine.db"
        assert (target / "runs" / "r1" / "summary.json").exists()
        assert (tmp_path / "archive" / "older").is_dir(), "earlier archives stay where they are"

        (tmp_path / "engine.db").write_text("second")
        assert archive_contents(tmp_path, now) == tmp_path / "archive" / "20261205T083000Z-2"
        assert archive_contents(tmp_path, now) is None, "nothing to move: no empty archive folder"
    finally:
        lock.release()


def test_fingerprint_is_the_size_and_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    data = b"ts_ms,price,qty\n" + b"1,2,3\n" * 300_000  # several read blocks
    path.write_bytes(data)
    fingerprint = fingerprint_file("BTC", path)
    assert fingerprint.size == len(data) and fingerprint.sha256 == hashlib.sha256(data).hexdigest()
    assert fingerprint.path == str(path) and fingerprint.coin == "BTC"
    with pytest.raises(OSError):
        fingerprint_file("BTC", tmp_path / "missing.csv")
