"""Durable state: the only module that imports peewee.

One SQLite file (``<data_dir>/engine.db``) in WAL mode with ``synchronous=NORMAL``: a commit
survives ``kill -9`` of the process (only a power loss could lose the last commits). Each actor
thread gets its own connection (peewee's thread-local connections); writers serialize on
SQLite's lock with a busy timeout.

Row models are built per ``Store`` instance (no global database binding), and converted to and
from the frozen domain objects explicitly, so ``state/models.py`` knows nothing of peewee.

Tables and their single writer:
- ``conditions``, ``positions``, ``account``: the Sniper.
- ``orders`` and ``fills``: the Executor (others read them, e.g. the Sniper when it reconciles
  on start). An order row holds the record without its fills; ``fills`` holds every fill once,
  keyed by the venue's trade id (``save_fill`` of a known trade id writes nothing and says so).
- ``settings``: small key/value facts of other owners (the RiskGate's trading state; the
  session's identity and a replay's completion, written by ``run.py`` while it holds the
  folder's lock: ``state/session.py``).
- ``bars``: the Feed (closed bars, so strategies warm up again after a restart, and the point a
  crashed replay resumes from).
- ``outbox``: every message bound for the Journal, appended on the sender's thread (so inside
  the sender's transaction when it has one open: the decision and what it announces commit
  together), read and then deleted by the Journal (see "the outbox" below).

The journal (trades, daily PnL, events) has its own database: ``state/journal_store.py``; the
paper venue's book has its own too (``state/venue_store.py``). A store written by an older version
may still hold the table of the previous paper venue's ledger: nothing reads or writes it.

``Store(path, read_only=True)`` (``--status``) opens an existing file without writing anything,
also in a read-only folder: SQLite's ``mode=ro`` first; if that cannot open (a WAL database
whose ``-shm`` cannot be created there), ``immutable=1``, which reads the main file only (what
is still in the ``-wal`` is then not seen: ``read_mode`` says which one was used).

**The write-ahead log stays small.** There is no automatic checkpoint (``wal_autocheckpoint=0``:
it would run inside whichever commit fills the log, often the Sniper's on the order path); the
Journal runs ``checkpoint()`` on its flush timer instead (every 0.25 s, on its own thread). A
PASSIVE checkpoint alone never blocks anyone but, while writers commit without pause (a replay
at max speed), the log is never restarted and the ``-wal`` file only grows (1 GB over a month of
bars). So ``checkpoint()`` also truncates the log (``wal_checkpoint(TRUNCATE)``) once the file is
larger than ``WAL_TRUNCATE_BYTES``, waiting at most ``CHECKPOINT_BUSY_MS`` for the writer lock
and for readers (a busy log is left to the next timer tick; writers wait only while the few
frames the PASSIVE pass left are copied). ``journal_size_limit`` truncates a log that SQLite
restarts by itself, and ``close()`` truncates it at shutdown.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import sqlite3
import threading
import time
import typing
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar

import peewee

from state.bars import Bar
from state.models import Position, TradeCondition
from state.order import Fill, OrderRecord
from state.session import DataDirUnusable, NoSession, SessionIdentity, from_json, to_json
from state.types import Liquidity, OrderStatus, PositionStatus, TradingState

T = TypeVar("T")
TRADING_STATE_KEY = "trading_state"  # settings keys of the RiskGate's trading state ...
TRADING_REASON_KEY = "trading_state_reason"  # ... and of why it was set
SESSION_IDENTITY_KEY = "session_identity"  # what produced this store (state/session.py)
REPLAY_COMPLETE_KEY = "replay_complete"  # a replay that reached its end: run id and time
LEGACY_FEE_CURRENCY = "USDT"  # the fee currency of a fill stored by the previous version (quote currency)

WAL_SIZE_LIMIT = 4 * 1024 * 1024  # journal_size_limit: a restarted log is cut back to this
WAL_TRUNCATE_BYTES = 16 * 1024 * 1024  # checkpoint() truncates a log file larger than this
CHECKPOINT_BUSY_MS = 50  # how long a truncating checkpoint may wait for the writer lock and readers
BUSY_TIMEOUT_MS = 10_000

_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": BUSY_TIMEOUT_MS,
    "foreign_keys": 0,
    # No automatic checkpoint inside whichever commit fills the log (often the Sniper's, on the
    # order path): the Journal runs ``checkpoint()`` on its timer instead.
    "wal_autocheckpoint": 0,
    "journal_size_limit": WAL_SIZE_LIMIT,
}


# SQLite's words (both stores are SQLite by default) and the OS errors for a store that can no
# longer be written: a full disk or quota, a file or folder made read-only, a failing device.
_UNWRITABLE_MESSAGES = (
    "database or disk is full",  # SQLITE_FULL
    "attempt to write a readonly database",  # SQLITE_READONLY
    "disk i/o error",  # SQLITE_IOERR
    "unable to open database file",  # SQLITE_CANTOPEN (the folder lost its permissions)
    "no space left on device",
    "disk quota exceeded",
    "read-only file system",
    "file too large",
)
_UNWRITABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.EIO})


def is_store_unwritable(error: BaseException | str | None) -> bool:
    """True when ``error`` (or its text) says a store can no longer be written: SQLite's
    ``database or disk is full``, ``attempt to write a readonly database``, ``disk I/O error``,
    ``unable to open database file``, or an ``OSError`` for a full disk, a file-size limit, a
    lost permission or a read-only file system (whatever library wrapped it: peewee re-raises
    SQLite's errors as its own classes with the same text), also when it is the cause or context
    of the error raised. Retrying such a write cannot help until an operator acts."""
    return unwritable_cause(error) is not None


def unwritable_cause(error: BaseException | str | None) -> BaseException | str | None:
    """The error in ``error``'s chain (itself, its cause, its context, ...) that says a store
    cannot be written, or ``None``. The error that surfaces can hide it: after SQLite rolled a
    failed write back by itself, the wrapper's own rollback fails with "cannot rollback - no
    transaction is active", raised while handling the disk error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _UNWRITABLE_ERRNOS:
            return error
        text = str(error).lower()
        if any(message in text for message in _UNWRITABLE_MESSAGES):
            return error
        if isinstance(error, str):
            return None
        error = error.__cause__ or error.__context__
    return None


def hold_open(db: peewee.Database) -> sqlite3.Connection | None:
    """A plain connection to ``db``'s SQLite file (``None`` for another database), which the
    engine holds, idle, for its whole session so that the stores stay readable for the report
    when they can no longer be written. While any connection of the process is open, SQLite's
    shared-memory index of the write-ahead log stays mapped and a new reader needs no write;
    once the last one closed (the actors' connections die with them), a first reader must
    rebuild that index, which is a write, and fails on a full disk ("disk I/O error"). It runs
    no transaction (a read steps to the end), so it never holds checkpoints back; closed last,
    it checkpoints and removes the log as the last connection does."""
    if not isinstance(db, peewee.SqliteDatabase):
        return None
    connection = sqlite3.connect(db.database, check_same_thread=False)
    connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
    return connection


def wal_file(path: Path | str) -> Path:
    """The write-ahead log file of the SQLite database at ``path``."""
    return Path(f"{path}-wal")


def file_size(path: Path) -> int:
    """The size of ``path`` in bytes (0 when it does not exist)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def truncate_wal(db: peewee.SqliteDatabase, busy_ms: int, restore_busy_ms: int = BUSY_TIMEOUT_MS) -> bool:
    """Checkpoint the whole log of ``db`` into the database and truncate the log file to zero
    bytes (``wal_checkpoint(TRUNCATE)``) on the calling thread's connection, waiting at most
    ``busy_ms`` for the writer lock and for readers. True when the log was emptied; False when
    a writer or a reader was busy beyond that (what could be copied was, as a PASSIVE
    checkpoint would; the next call tries again)."""
    db.execute_sql(f"PRAGMA busy_timeout = {int(busy_ms)}")
    try:
        busy, _, _ = db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except peewee.OperationalError as error:  # "database is locked": busy, as the row would say
        if "locked" not in str(error) and "busy" not in str(error):
            raise
        return False
    finally:
        db.execute_sql(f"PRAGMA busy_timeout = {int(restore_busy_ms)}")
    return busy == 0


# --- codec: frozen dataclass <-> JSON-safe dict ----------------------------------------------

def encode(obj: Any) -> dict[str, Any]:
    """A JSON-safe dict of a frozen domain dataclass (Decimal as text, datetime as ISO-8601,
    enums by value, nested dataclasses as dicts and tuples as lists, as a position's lots),
    so that ``decode`` gives back an equal object. A field missing from the dict (stored by an
    older version) takes its default."""
    return {item.name: jsonable(getattr(obj, item.name)) for item in fields(obj)}


def jsonable(value: Any) -> Any:
    """Any message or domain object as plain JSON values (recursively)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: jsonable(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return repr(value)


def _base_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def decode(cls: type[T], data: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name not in data:
            continue
        kwargs[item.name] = _decode_value(_base_type(hints[item.name]), data[item.name])
    return cls(**kwargs)


def _decode_value(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if kind is Decimal:
        return Decimal(value)
    if kind is datetime:
        return datetime.fromisoformat(value)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    if isinstance(kind, type) and is_dataclass(kind):
        return decode(kind, value)
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        return tuple(_decode_value(args[0] if args else Any, item) for item in value)
    return value


def position_order(position: Position) -> tuple[bool, float, str]:
    """Chronological by entry (naive or aware alike), pending entries last, then by id."""
    entry = position.entry_time
    return (entry is None, entry.timestamp() if entry is not None else 0.0, position.id)


def _dumps(obj: Any) -> str:
    return json.dumps(encode(obj), separators=(",", ":"), sort_keys=True)


def _order_json(record: OrderRecord) -> str:
    """An order row's data: the record without its fills (they have their own table)."""
    data = encode(record)
    del data["fills"]
    data["refused_trade_ids"] = list(record.refused_trade_ids)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _order_from_row(data: dict[str, Any], fills: list[Fill]) -> OrderRecord:
    """An order record from its row's data and its stored fills. A row of the previous version
    (one whole fill inside the row: ``trade_id``, ``fill_price``, ``fill_quantity``, ``fee``,
    ``ts_event_ms``) is read as an order with that one fill."""
    record = decode(OrderRecord, data)
    if "filled_quantity" in data:
        if not fills:
            return record
        return replace(record, fills=tuple(fills))
    legacy = _legacy_fill(data)
    if legacy is None and not fills:
        return record
    fills = fills or [legacy]  # type: ignore[list-item]
    filled = sum((f.quantity for f in fills), Decimal(0))
    average = fills[0].price if len(fills) == 1 else sum((f.price * f.quantity for f in fills), Decimal(0)) / filled
    return replace(record, fills=tuple(fills), filled_quantity=filled, average_fill_price=average,
                   fees_total=sum((f.fee for f in fills), Decimal(0)), fee_currency=fills[0].fee_currency)


def _legacy_fill(data: dict[str, Any]) -> Fill | None:
    """The one fill a previous version's order row holds, if it holds one."""
    if data.get("fill_price") is None or data.get("fill_quantity") is None:
        return None
    client_order_id = data["client_order_id"]
    return Fill(
        trade_id=data.get("trade_id") or f"{client_order_id}-fill",
        client_order_id=client_order_id,
        venue_order_id=data.get("venue_order_id") or "",
        quantity=Decimal(data["fill_quantity"]),
        price=Decimal(data["fill_price"]),
        fee=Decimal(data["fee"]) if data.get("fee") is not None else Decimal(0),
        fee_currency=LEGACY_FEE_CURRENCY,
        liquidity=Liquidity.TAKER,  # the previous version's venue filled market orders only
        ts_ms=int(data.get("ts_event_ms") or 0),
    )



# --- the outbox: messages bound for the Journal ---------------------------------------------------
#
# Why here and not in the journal database: a message must become durable with the decision
# that caused it. The sender appends it on its own thread through its own connection, so a
# sender inside ``transaction()`` writes it in the same commit as its decision (a rollback
# drops both); a sender outside a transaction commits it at once. SQLite's one writer lock
# orders the rows: a message caused by another is appended after that one was committed, so
# ``seq`` order is causal. ``seq`` is AUTOINCREMENT: never reused, also after the consumed rows
# are deleted, so a consumer's cursor (the last seq it consumed) stays valid forever.
#
# Codec: pickle (protocol 5) of the frozen message. The outbox is an internal queue between
# two parts of one program version (its rows live for a fraction of a second), pickle is exact
# for every field type the messages carry (Decimal, enums, datetimes, nested frozen models,
# UUIDs) and costs a few microseconds. A row that cannot be decoded (written by another
# version) raises ``OutboxDecodeError`` naming its seq; the Journal reports it, never drops it.

OUTBOX_ID_KEY = "outbox_id"  # settings key: this store's outbox identity (a consumer's cursor is per outbox)


class OutboxDecodeError(ValueError):
    """An outbox row whose message cannot be decoded (for example written by another version)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    """One appended message: ``seq`` (causal order), the ``run_id`` of the process that sent it,
    its ``ts_ns`` (the message's ``ts_init_ns``), ``kind`` (its type name) and the encoded
    message."""

    seq: int
    run_id: str
    ts_ns: int
    kind: str
    data: bytes

    def message(self) -> Any:
        """The message, decoded; ``OutboxDecodeError`` when that is impossible."""
        try:
            message = pickle.loads(self.data)  # noqa: S301 - the engine's own store, written by this program
        except Exception as error:  # noqa: BLE001 - any decoding failure is reported the same way
            raise OutboxDecodeError(f"outbox row {self.seq} ({self.kind}): cannot decode: {error!r}") from None
        if type(message).__name__ != self.kind:
            raise OutboxDecodeError(
                f"outbox row {self.seq}: holds a {type(message).__name__}, its kind says {self.kind}"
            )
        return message


def encode_message(message: Any) -> bytes:
    """The outbox encoding of a message (see the codec note above)."""
    return pickle.dumps(message, protocol=5)


class _ThreadDeferral(threading.local):
    deferring = False  # inside ``deferring()``: transactions commit with what they announce
    txn: Any = None  # the open deferred transaction (peewee's), if any
    depth = 0  # ``transaction()`` blocks open on this thread


class OutboxMixin:
    """The ``outbox`` table (mixed into ``Store``, whose ``db`` it uses), and deferred commits.

    **Deferred commits** close the gap between a decision and what announces it. Actors write a
    decision in ``transaction()`` and send its messages after the block; with a commit at the
    end of the block, a ``kill -9`` between that commit and the outbox append would keep the
    decision and lose what it announced. While an actor handles a message its thread is
    ``deferring`` (``actors/bus.py`` enters it): the first ``transaction()`` opens one database
    transaction that stays open after the block (each block is a savepoint in it, so a block
    that fails still undoes only itself); the Journal's copies of what the handler sends next
    are appended in it, and the bus holds the other deliveries; at the end of the handling the
    transaction commits (all of it, or, if the handler raised, none of it) and only then does
    the bus deliver. So a decision and every message it causes are durable together, no actor
    sees a message whose cause is not committed (``seq`` stays causal), and no actor waits for
    another's write lock. Writes outside ``transaction()`` commit at once as always (the
    Executor's write-ahead order record must be durable before the venue sees the order).
    """

    db: peewee.SqliteDatabase
    outbox_id: str  # this outbox's identity: a consumer keeps one cursor per outbox
    _deferral: _ThreadDeferral

    @contextmanager
    def _transaction_scope(self) -> Iterator[None]:
        state = self._deferral
        if state.deferring and state.txn is None and self.db.transaction_depth() == 0:
            state.txn = self.db.transaction()
            state.txn.__enter__()  # BEGIN; committed (or rolled back) at the end of deferring()
        state.depth += 1
        try:
            with self.db.atomic():  # a savepoint inside the deferred transaction, else a transaction
                yield
        finally:
            state.depth -= 1

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """On the calling thread, defer the commit of ``transaction()`` blocks to the end of this
        block (rolled back if it raises). Re-entrant."""
        if self._deferral.deferring:
            yield
            return
        self.begin_deferring()
        try:
            yield
        except BaseException as error:
            self.end_deferring(error)
            raise
        self.end_deferring(None)

    def begin_deferring(self) -> None:
        """``deferring()`` in two calls (the bus wraps every handled message with them)."""
        self._deferral.deferring = True

    def end_deferring(self, error: BaseException | None) -> None:
        """Commit the calling thread's deferred transaction (roll it back if ``error``)."""
        state = self._deferral
        state.deferring = False
        txn, state.txn = state.txn, None
        if txn is not None:
            txn.__exit__(type(error) if error is not None else None, error, None)

    def deferred_open(self) -> bool:
        """Whether the calling thread has a deferred transaction open."""
        return self._deferral.txn is not None

    def _create_outbox(self) -> None:
        self.db.execute_sql(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
            "ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, data BLOB NOT NULL)"
        )
        self.db.execute_sql("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)",
                            (OUTBOX_ID_KEY, uuid.uuid4().hex))
        row = self.db.execute_sql("SELECT value FROM settings WHERE key = ?", (OUTBOX_ID_KEY,)).fetchone()
        self.outbox_id = row[0]

    def append_outbox(self, run_id: str, message: Any) -> int:
        """Append ``message`` (sent by run ``run_id``) on the calling thread's connection: inside
        its open transaction if it has one, else committed at once. Returns its seq."""
        ts_ns = getattr(message, "ts_init_ns", None)
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            ts_ns = 0
        cursor = self.db.execute_sql(
            "INSERT INTO outbox (run_id, ts_ns, kind, data) VALUES (?, ?, ?, ?)",
            (run_id, ts_ns, type(message).__name__, encode_message(message)),
        )
        return int(cursor.lastrowid)

    def read_outbox(self, after_seq: int, limit: int = 1000) -> list[OutboxRow]:
        """Up to ``limit`` committed rows with seq > ``after_seq``, in seq order."""
        rows = self.db.execute_sql(
            "SELECT seq, run_id, ts_ns, kind, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [OutboxRow(seq=seq, run_id=run_id, ts_ns=ts_ns, kind=kind, data=bytes(data))
                for seq, run_id, ts_ns, kind, data in rows]

    def delete_outbox(self, through_seq: int) -> int:
        """Delete the rows with seq <= ``through_seq`` (consumed); returns how many."""
        cursor = self.db.execute_sql("DELETE FROM outbox WHERE seq <= ?", (through_seq,))
        return int(cursor.rowcount)

    def outbox_latest_ts_ns(self, after_seq: int, *, other_than_run: str) -> int | None:
        """The latest engine time of the rows after ``after_seq`` that other runs than
        ``other_than_run`` left (what a killed process sent and the journal has not consumed)."""
        row = self.db.execute_sql("SELECT MAX(ts_ns) FROM outbox WHERE seq > ? AND run_id != ?",
                                  (after_seq, other_than_run)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def outbox_size(self) -> int:
        """How many rows the outbox holds (consumed rows are deleted)."""
        return int(self.db.execute_sql("SELECT COUNT(*) FROM outbox").fetchone()[0])


class StoreOutbox:
    """The bus's outbox port on a ``Store``: ``append`` a Journal-bound message as run
    ``run_id``'s; ``begin_deferring`` / ``end_deferring`` around an actor's handling of a
    message and ``holding`` (its decision is open) are the store's own (bound here once: they
    run around every tick)."""

    def __init__(self, store: OutboxMixin, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self.begin_deferring = store.begin_deferring
        self.end_deferring = store.end_deferring
        deferral = store._deferral  # noqa: SLF001 - this module's own class
        self.holding = lambda: deferral.txn is not None

    def append(self, message: Any) -> None:
        self._store.append_outbox(self._run_id, message)


# --- the store ------------------------------------------------------------------------------------

class Store(OutboxMixin):
    """All durable engine state behind plain methods that take and return domain objects."""

    def __init__(self, path: Path | str, *, read_only: bool = False, immutable: bool = False,
                 wal_truncate_bytes: int | None = None) -> None:
        """``read_only`` / ``immutable``: open an existing file without writing (see the module
        docstring). ``wal_truncate_bytes``: the log file size past which ``checkpoint()``
        truncates it (default ``WAL_TRUNCATE_BYTES``)."""
        self.path = Path(path)
        self.read_only = read_only or immutable
        self.read_mode = "immutable" if immutable else "ro" if read_only else "rw"
        self.wal_truncate_bytes = WAL_TRUNCATE_BYTES if wal_truncate_bytes is None else wal_truncate_bytes
        self.wal_truncations = 0  # logs truncated by checkpoint() (the Journal's thread only)
        self.wal_truncate_max_s = 0.0  # the longest truncating checkpoint (writers wait meanwhile)
        if self.read_only:
            if not self.path.is_file():
                raise FileNotFoundError(f"no store at {self.path}")
            uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?{'immutable=1' if immutable else 'mode=ro'}"
            self.db = peewee.SqliteDatabase(uri, pragmas={"busy_timeout": 10_000}, check_same_thread=False, uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = peewee.SqliteDatabase(str(self.path), pragmas=_PRAGMAS, check_same_thread=False)
        self._deferral = _ThreadDeferral()
        db = self.db

        class Base(peewee.Model):
            class Meta:
                database = db

        class ConditionRow(Base):
            id = peewee.CharField(primary_key=True)
            coin = peewee.CharField(index=True)
            seq = peewee.IntegerField(index=True)
            live = peewee.BooleanField(default=False)  # require_cross: reset side seen
            data = peewee.TextField()

            class Meta:
                table_name = "conditions"

        class PositionRow(Base):
            id = peewee.CharField(primary_key=True)
            coin = peewee.CharField(index=True)
            status = peewee.CharField(index=True)
            condition_id = peewee.CharField(unique=True)
            data = peewee.TextField()

            class Meta:
                table_name = "positions"

        class AccountRow(Base):
            key = peewee.CharField(primary_key=True)
            value = peewee.TextField()

            class Meta:
                table_name = "account"

        class SettingRow(Base):
            key = peewee.CharField(primary_key=True)
            value = peewee.TextField()

            class Meta:
                table_name = "settings"

        class OrderRow(Base):
            client_order_id = peewee.CharField(primary_key=True, max_length=36)
            position_id = peewee.CharField(index=True)
            status = peewee.CharField(index=True)
            data = peewee.TextField()

            class Meta:
                table_name = "orders"

        class FillRow(Base):
            trade_id = peewee.CharField(primary_key=True)
            client_order_id = peewee.CharField(index=True, max_length=36)
            data = peewee.TextField()

            class Meta:
                table_name = "fills"

        class BarRow(Base):
            coin = peewee.CharField()
            end_ms = peewee.BigIntegerField()
            data = peewee.TextField()

            class Meta:
                table_name = "bars"
                primary_key = peewee.CompositeKey("coin", "end_ms")

        self._Condition = ConditionRow
        self._Position = PositionRow
        self._Account = AccountRow
        self._Setting = SettingRow
        self._Order = OrderRow
        self._Bar = BarRow
        self._Fill = FillRow
        if self.read_only:
            db.connect()  # now, so a file SQLite cannot open fails here and not at the first query
            db.execute_sql("SELECT count(*) FROM sqlite_master").fetchone()
            return
        with db.connection_context():
            db.create_tables(
                [ConditionRow, PositionRow, AccountRow, SettingRow, OrderRow, FillRow, BarRow],
                safe=True,
            )
            self._create_outbox()

    @classmethod
    def open_read_only(cls, path: Path | str) -> Store:
        """An existing store opened for reading only (``mode=ro``, else ``immutable=1``);
        ``NoSession`` when there is none (nothing is created), ``DataDirUnusable`` when it cannot
        be read."""
        path = Path(path)
        if not path.is_file():
            raise NoSession(f"data_dir {path.parent}: no session has ever run here (no {path.name}); "
                            "nothing was created")
        try:
            return cls(path, read_only=True)
        except peewee.DatabaseError:
            try:
                return cls(path, immutable=True)
            except peewee.DatabaseError as error:
                raise DataDirUnusable(f"{path}: cannot be read: {error}") from None

    def close(self) -> None:
        """Truncate the write-ahead log (everything in it is copied into ``engine.db`` first)
        and close the calling thread's connection. The engine calls it once every actor has
        stopped. It waits no longer than a timed checkpoint (``CHECKPOINT_BUSY_MS``), since a
        reader such as ``run.py --status`` closes its store while a session may be writing: a
        busy log is left to that session's checkpoints. A read-only store only closes."""
        if self.read_only:
            if not self.db.is_closed():
                self.db.close()
            return
        try:
            if not truncate_wal(self.db, CHECKPOINT_BUSY_MS):
                self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            if not self.db.is_closed():
                self.db.close()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file without blocking writers (PASSIVE)
        and, once the log file is larger than ``wal_truncate_bytes``, truncate it (see the
        module docstring: waits at most ``CHECKPOINT_BUSY_MS``)."""
        self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        if self.wal_size() > self.wal_truncate_bytes:
            started = time.perf_counter()
            if truncate_wal(self.db, CHECKPOINT_BUSY_MS):
                self.wal_truncations += 1
            self.wal_truncate_max_s = max(self.wal_truncate_max_s, time.perf_counter() - started)

    def wal_size(self) -> int:
        """The size of the write-ahead log file in bytes (0 when there is none)."""
        return file_size(wal_file(self.path))

    @contextmanager
    def connection(self) -> Iterator[None]:
        """This thread's connection for a few calls, closed after them (a thread that is not
        an actor's, such as the one that builds the engine, keeps none open)."""
        with self.db.connection_context():
            yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one commit (all or nothing, also under ``kill -9``).

        When a write fails because the store cannot be written, SQLite rolls the transaction
        back by itself and peewee's own rollback then fails with "cannot rollback - no
        transaction is active"; the error raised here is the first one ("database or disk is
        full", "disk I/O error", ...), so a crash says what happened. On a thread that is
        ``deferring`` the commit waits for what the decision announces (see ``OutboxMixin``)."""
        try:
            with self._transaction_scope():
                yield
        except peewee.OperationalError as error:
            cause = unwritable_cause(error)
            if isinstance(cause, BaseException) and cause is not error:
                raise cause from None
            raise

    # --- conditions ------------------------------------------------------------------------

    def save_condition(self, condition: TradeCondition, seq: int, *, live: bool = False) -> None:
        self._Condition.replace(
            id=condition.id, coin=condition.coin, seq=seq, live=live, data=_dumps(condition)
        ).execute()

    def set_condition_live(self, condition_id: str) -> None:
        self._Condition.update(live=True).where(self._Condition.id == condition_id).execute()

    def delete_condition(self, condition_id: str) -> None:
        self._Condition.delete().where(self._Condition.id == condition_id).execute()

    def load_conditions(self) -> list[tuple[int, TradeCondition, bool]]:
        """``(arming sequence, condition, live)`` in arming order."""
        rows = self._Condition.select().order_by(self._Condition.seq)
        return [(row.seq, decode(TradeCondition, json.loads(row.data)), row.live) for row in rows]

    # --- positions -------------------------------------------------------------------------

    def save_position(self, position: Position) -> None:
        self._Position.replace(
            id=position.id,
            coin=position.coin,
            status=position.status.value,
            condition_id=position.condition_id,
            data=_dumps(position),
        ).execute()

    def save_marks(self, marks: Iterable[tuple[str, Decimal, Decimal]]) -> None:
        """Write ``(position id, current price, unrealized PnL)`` of OPEN positions in one
        transaction, touching only those two fields, so a late mark can never overwrite a
        decision (status, exit levels, quantity) written meanwhile."""
        sql = (
            "UPDATE positions SET data = json_set(data, '$.current_price', ?, "
            "'$.unrealized_pnl', ?) WHERE id = ? AND status = ?"
        )
        with self.transaction():
            for position_id, price, unrealized in marks:
                self.db.execute_sql(
                    sql, (str(price), str(unrealized), position_id, PositionStatus.OPEN.value)
                )

    def delete_position(self, position_id: str) -> None:
        self._Position.delete().where(self._Position.id == position_id).execute()

    def load_positions(self, *, active_only: bool = True) -> list[Position]:
        query = self._Position.select()
        if active_only:
            query = query.where(self._Position.status != PositionStatus.CLOSED.value)
        positions = [decode(Position, json.loads(row.data)) for row in query]
        return sorted(positions, key=position_order)

    def get_position(self, position_id: str) -> Position | None:
        row = self._Position.get_or_none(self._Position.id == position_id)
        return None if row is None else decode(Position, json.loads(row.data))

    def used_condition_ids(self, condition_ids: Iterable[str]) -> set[str]:
        """Those of ``condition_ids`` that ever opened a position (ids are never reused, so
        a client order id can never repeat)."""
        wanted = list(condition_ids)
        used: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = self._Position.select(self._Position.condition_id).where(
                self._Position.condition_id.in_(chunk)
            )
            used.update(row.condition_id for row in query)
        return used

    def count_closed_positions(self) -> int:
        return (
            self._Position.select()
            .where(self._Position.status == PositionStatus.CLOSED.value)
            .count()
        )

    # --- account and settings ---------------------------------------------------------------

    def save_account(self, **values: Decimal | int | str) -> None:
        rows = [{"key": key, "value": str(value)} for key, value in values.items()]
        self._Account.replace_many(rows).execute()

    def load_account(self) -> dict[str, str]:
        return {row.key: row.value for row in self._Account.select()}

    def set_setting(self, key: str, value: str) -> None:
        self._Setting.replace(key=key, value=value).execute()

    def get_setting(self, key: str) -> str | None:
        row = self._Setting.get_or_none(self._Setting.key == key)
        return None if row is None else row.value

    def load_trading_state(self) -> TradingState:
        """The RiskGate's trading state as last saved (ACTIVE when never saved)."""
        return TradingState(self.get_setting(TRADING_STATE_KEY) or TradingState.ACTIVE.value)

    def load_trading_reason(self) -> str:
        """Why the trading state was last set ("" when never saved)."""
        return self.get_setting(TRADING_REASON_KEY) or ""

    def save_trading_state(self, state: TradingState, reason: str) -> None:
        """The trading state and its reason, together (one transaction)."""
        with self.transaction():
            self.set_setting(TRADING_STATE_KEY, state.value)
            self.set_setting(TRADING_REASON_KEY, reason)

    # --- the session this store belongs to (written by run.py, under the folder's lock) ----------

    def load_session_identity(self) -> SessionIdentity | None:
        """The identity recorded when the store was made; None for a store made by an older
        version. ``ValueError`` when what is recorded cannot be read."""
        text = self.get_setting(SESSION_IDENTITY_KEY)
        return None if text is None else from_json(text)

    def save_session_identity(self, identity: SessionIdentity) -> None:
        self.set_setting(SESSION_IDENTITY_KEY, to_json(identity))

    def load_replay_completion(self) -> dict[str, Any] | None:
        """``{"run_id", "ended_at"}`` of the run that reached the end of this store's replay."""
        text = self.get_setting(REPLAY_COMPLETE_KEY)
        if text is None:
            return None
        value = json.loads(text)
        return value if isinstance(value, dict) else {"run_id": str(value)}

    def save_replay_completion(self, run_id: str, ended_at: str) -> None:
        self.set_setting(REPLAY_COMPLETE_KEY, json.dumps({"run_id": run_id, "ended_at": ended_at}, sort_keys=True))

    def durable_status(self, initial_balance: Decimal) -> dict[str, Any]:
        """The durable engine state as JSON-ready data (``run.py --status``): armed
        ``conditions``, active ``positions``, ``balance``, ``realized_pnl``, ``fees_paid`` and
        ``trading_state``. Read-only, so it is safe while a session runs (SQLite WAL readers
        never block the writer). ``DataDirUnusable`` when the database cannot be read."""
        try:
            account = self.load_account()
            return {
                "conditions": [jsonable(condition) for _, condition, _ in self.load_conditions()],
                "positions": [jsonable(position) for position in self.load_positions()],
                "balance": account.get("balance", str(initial_balance)),
                "realized_pnl": account.get("realized_pnl", "0"),
                "fees_paid": account.get("fees_paid", "0"),
                "trading_state": self.load_trading_state().value,
            }
        except peewee.DatabaseError as error:
            raise DataDirUnusable(f"{self.path}: cannot be read: {error}") from None

    # --- orders and fills (written by the Executor) ----------------------------------------------

    def save_order(self, record: OrderRecord) -> None:
        """Write ``record`` (one row, replaced) and every fill it holds (``save_fill``: a fill
        stored before is left as it is). A record without fills is one statement, so outside a
        transaction it commits at once (the write-ahead record); with fills, the row and its
        fills commit together (inside the caller's transaction when one is open)."""
        row = dict(client_order_id=record.client_order_id, position_id=record.position_id,
                   status=record.status.value, data=_order_json(record))
        if not record.fills:
            self._Order.replace(**row).execute()
            return
        with self.db.atomic():
            self._Order.replace(**row).execute()
            for fill in record.fills:
                self.save_fill(fill)

    def save_fill(self, fill: Fill) -> bool:
        """Store ``fill`` under its trade id: True when it is new, False when that trade id is
        stored already (then nothing is written: a fill is recorded once, whoever reports it)."""
        cursor = self.db.execute_sql(
            "INSERT OR IGNORE INTO fills (trade_id, client_order_id, data) VALUES (?, ?, ?)",
            (fill.trade_id, fill.client_order_id, _dumps(fill)),
        )
        return cursor.rowcount == 1

    def load_fills(self, client_order_id: str) -> list[Fill]:
        """The stored fills of one order, in the order they were stored."""
        return self._fills_of([client_order_id]).get(client_order_id, [])

    def latest_fill_ms(self) -> int | None:
        """The venue time of the latest fill stored (``None`` when none is): where a
        reconciliation with the venue starts asking for the account's fills."""
        try:
            (latest,) = self.db.execute_sql("SELECT max(json_extract(data, '$.ts_ms')) FROM fills").fetchone()
            return None if latest is None else int(latest)
        except peewee.OperationalError:  # an SQLite without JSON functions: read them all
            stamps = [json.loads(data).get("ts_ms") for (data,) in self.db.execute_sql("SELECT data FROM fills")]
            return max((ts for ts in stamps if isinstance(ts, int)), default=None)

    def _fills_of(self, client_order_ids: list[str]) -> dict[str, list[Fill]]:
        found: dict[str, list[Fill]] = {}
        for start in range(0, len(client_order_ids), 500):
            chunk = client_order_ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.execute_sql(
                f"SELECT client_order_id, data FROM fills WHERE client_order_id IN ({marks}) ORDER BY rowid", chunk
            ).fetchall()
            for client_order_id, data in rows:
                found.setdefault(client_order_id, []).append(decode(Fill, json.loads(data)))
        return found

    def get_order(self, client_order_id: str) -> OrderRecord | None:
        """The record of ``client_order_id`` with its fills (``None`` when never recorded)."""
        row = self._Order.get_or_none(self._Order.client_order_id == client_order_id)
        if row is None:
            return None
        return _order_from_row(json.loads(row.data), self.load_fills(client_order_id))

    def order_ids(self) -> set[str]:
        return {row.client_order_id for row in self._Order.select(self._Order.client_order_id)}

    def load_orders(self, statuses: Iterable[OrderStatus] | None = None, *,
                    latest: int | None = None) -> list[OrderRecord]:
        """Order records (of ``statuses``) with their fills, by creation; ``latest=N``: only the
        N written last."""
        query = self._Order.select().order_by(self._Order.client_order_id)
        if statuses is not None:
            query = query.where(self._Order.status.in_([s.value for s in statuses]))
        if latest is not None:  # every save is a REPLACE: the highest rowids were written last
            query = query.order_by(peewee.SQL("rowid").desc()).limit(latest)
        rows = [(row.client_order_id, json.loads(row.data)) for row in query]
        fills = self._fills_of([client_order_id for client_order_id, _ in rows])
        records = [_order_from_row(data, fills.get(client_order_id, [])) for client_order_id, data in rows]
        return sorted(records, key=lambda r: (r.created_ns, r.client_order_id))

    # --- bars (written by the Feed) ------------------------------------------------------------

    def save_bar(self, bar: Bar, *, settings: dict[str, str] | None = None) -> None:
        """Store a closed bar, with ``settings`` (the replay resume point) in the same commit."""
        with self.transaction():
            self._Bar.replace(coin=bar.coin, end_ms=bar.end_ms, data=_dumps(bar)).execute()
            for key, value in (settings or {}).items():
                self._Setting.replace(key=key, value=value).execute()

    def load_bars(self, *, since_end_ms: int = 0, per_coin: int = 500) -> list[Bar]:
        """The latest ``per_coin`` bars of each coin ending after ``since_end_ms``, by time."""
        rows = (
            self._Bar.select()
            .where(self._Bar.end_ms > since_end_ms)
            .order_by(self._Bar.end_ms.desc(), self._Bar.coin)
        )
        kept: dict[str, int] = {}
        bars = []
        for row in rows:
            if kept.get(row.coin, 0) >= per_coin:
                continue
            kept[row.coin] = kept.get(row.coin, 0) + 1
            bars.append(decode(Bar, json.loads(row.data)))
        return sorted(bars, key=lambda b: (b.end_ms, b.coin))

    def last_bar_ends(self) -> dict[str, int]:
        query = self._Bar.select(self._Bar.coin, peewee.fn.MAX(self._Bar.end_ms).alias("end")).group_by(self._Bar.coin)
        return {row.coin: row.end for row in query}

    def prune_bars(self, coin: str, keep: int) -> None:
        cutoff = (
            self._Bar.select(self._Bar.end_ms).where(self._Bar.coin == coin)
            .order_by(self._Bar.end_ms.desc()).offset(keep).limit(1).scalar()
        )
        if cutoff is not None:
            self._Bar.delete().where((self._Bar.coin == coin) & (self._Bar.end_ms <= cutoff)).execute()
