"""The data folder on disk: its lock, its archive, and the fingerprints of replay files.

**One engine per folder.** ``FolderLock.acquire`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
``<data_dir>/engine.lock`` and writes the holder's pid and start time into it; the engine holds
it for its whole life and ``release`` empties the file and unlocks it. A second engine on the
same folder (another process, or the same one) gets ``FolderLocked`` naming the holder. The
kernel drops a flock when its holder dies, also by ``kill -9``, so a dead engine never blocks a
restart; the file then still names it (``LockHolder.running`` False: it did not stop cleanly).

**Asking without locking.** ``lock_holder`` (for ``--status``) takes no lock, so it can never
make a starting engine fail: it reads the file and looks the lock up in ``/proc/locks`` (Linux),
or, where that file does not exist, asks whether the named pid is alive.

**Starting afresh.** ``archive_contents`` moves everything in the folder except ``archive/`` and
``engine.lock`` into ``archive/<UTC timestamp>/``; nothing is deleted. The store (``engine.db``
and its ``-wal``/``-shm``) moves last, so an archive interrupted half-way leaves a folder that
still names its session (``--fresh`` again finishes it). The paper venue's book
(``venue.db``, ``VENUE_STORE_NAME``) moves before it; it names the store it belongs to, so a
book left beside another store is refused (``state/venue_store.VenueStoreMismatch``).

**Session reports** (``write_report``) go to ``runs/<run_id>/summary.json``, written whole
(to a temporary file, then renamed over it): never a half-written report.

**Replay files** are fingerprinted by the sha256 of their bytes, read in 1 MiB blocks (about
0.5 GB/s; the day of BTCUSDT trades, 1.7 MB, takes a few milliseconds), every time: no cache
that a rewrite within the same second could fool.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from state.session import DataDirError, DataDirUnusable, FileFingerprint

LOCK_NAME = "engine.lock"
ARCHIVE_NAME = "archive"
STORE_NAME = "engine.db"
VENUE_STORE_NAME = "venue.db"  # the paper venue's own book (state/venue_store.py)
_PROC_LOCKS = Path("/proc/locks")
_FLOCK_LINE = re.compile(r"\bFLOCK\s+\S+\s+WRITE\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s")


class FolderLocked(DataDirError):
    """Another engine holds the folder's lock."""

    def __init__(self, data_dir: Path, holder: LockHolder | None) -> None:
        self.data_dir = data_dir
        self.holder = holder
        who = (f"pid {holder.pid}, started {holder.started_at}" if holder is not None and holder.pid
               else "a process that has not written its pid yet")
        super().__init__(
            f"data_dir {data_dir} is in use by another engine ({who}; {data_dir / LOCK_NAME}). "
            "Nothing was started. Stop that engine first, or use another folder (--data-dir DIR)."
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LockHolder:
    """What ``engine.lock`` says: who took it, when, and whether it is still held."""

    pid: int | None
    started_at: str
    running: bool


class FolderLock:
    """The flock of one engine on its data folder; ``release`` is idempotent."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd
        self._guard = threading.Lock()  # release may come from a halt thread and the caller at once

    @classmethod
    def acquire(cls, data_dir: Path) -> FolderLock:
        """Create the folder if needed and lock it. ``DataDirUnusable`` when the folder cannot
        be created or written (a file in the way, read-only), ``FolderLocked`` when another
        engine holds it."""
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataDirUnusable(f"data_dir {data_dir}: cannot create the folder: {_reason(error)}") from None
        if not data_dir.is_dir():
            raise DataDirUnusable(f"data_dir {data_dir}: not a folder")
        path = data_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise DataDirUnusable(f"data_dir {data_dir}: cannot write in it ({path}: {_reason(error)}); "
                                  "a session needs a writable folder (--status can read a read-only one)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderLocked(data_dir, _read_holder(path, running=True)) from None
            raise DataDirUnusable(f"data_dir {data_dir}: cannot lock {path}: {_reason(error)}") from None
        try:
            stamp = {"pid": os.getpid(), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(stamp) + "\n").encode(), 0)
        except OSError as error:
            os.close(fd)  # closing drops the flock
            raise DataDirUnusable(f"data_dir {data_dir}: cannot write {path}: {_reason(error)}") from None
        return cls(data_dir, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:  # an engine built and dropped without stop() frees its folder
        self.release()

    def release(self) -> None:
        with self._guard:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # an empty file: the last engine stopped cleanly
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the flock


def lock_holder(data_dir: Path) -> LockHolder | None:
    """Who holds (or last held) the folder's lock, taking no lock; None when no engine of this
    version ever ran there or the last one stopped cleanly."""
    path = Path(data_dir) / LOCK_NAME
    try:
        text = path.read_text()
    except OSError:
        return None
    if not text.strip():
        return None
    holder = _parse_holder(text, running=False)
    return LockHolder(pid=holder.pid, started_at=holder.started_at, running=_is_held(path, holder.pid))


def _read_holder(path: Path, *, running: bool) -> LockHolder | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    return _parse_holder(text, running=running) if text.strip() else None


def _parse_holder(text: str, *, running: bool) -> LockHolder:
    try:
        data = json.loads(text)
        pid = int(data["pid"])
        started = str(data.get("started_at", "?"))
    except (ValueError, KeyError, TypeError):
        return LockHolder(pid=None, started_at="?", running=running)
    return LockHolder(pid=pid, started_at=started, running=running)


def _is_held(path: Path, pid: int | None) -> bool:
    """Whether some process holds a flock on ``path``: from ``/proc/locks`` when it exists
    (matched by device and inode), else whether ``pid`` is alive."""
    try:
        stat = path.stat()
        table = _PROC_LOCKS.read_text()
    except OSError:
        return _pid_alive(pid)
    for match in _FLOCK_LINE.finditer(table):
        major, minor, inode = int(match.group(2), 16), int(match.group(3), 16), int(match.group(4))
        if inode == stat.st_ino and (major, minor) == (os.major(stat.st_dev), os.minor(stat.st_dev)):
            return True
    return False


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def archive_contents(data_dir: Path, now: datetime | None = None) -> Path | None:
    """Move the folder's contents (all but ``archive/`` and ``engine.lock``) into
    ``archive/<UTC timestamp>/`` and return that folder; None when there was nothing to move.
    The caller holds the lock. ``DataDirUnusable`` when a move fails."""
    data_dir = Path(data_dir)
    entries = [entry for entry in data_dir.iterdir() if entry.name not in (ARCHIVE_NAME, LOCK_NAME)]
    if not entries:
        return None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    target = data_dir / ARCHIVE_NAME / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = data_dir / ARCHIVE_NAME / f"{stamp}-{suffix}"
    entries.sort(key=lambda entry: (entry.name.startswith(STORE_NAME), entry.name))  # the store last
    try:
        target.mkdir(parents=True)
        for entry in entries:
            entry.rename(target / entry.name)
    except OSError as error:
        raise DataDirUnusable(f"data_dir {data_dir}: --fresh could not move its contents to {target}: "
                              f"{_reason(error)}") from None
    return target


def write_report(data_dir: Path, run_id: str, report: dict[str, Any]) -> Path:
    """Write the session ``report`` to ``<data_dir>/runs/<run_id>/summary.json`` (sorted keys,
    indented) and return its path; the file is replaced whole or not at all."""
    folder = data_dir / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
    return path


def fingerprint_file(coin: str, path: Path) -> FileFingerprint:
    """The size and sha256 of ``path``'s bytes; ``OSError`` when it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return FileFingerprint(coin=coin, path=str(path), size=size, sha256=digest.hexdigest())


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
