"""The trade journal's own database: the second (and last) module that imports peewee.

``JournalStore(target)`` opens

- a path (``<data_dir>/journal.db``, what the engine passes by default): a SQLite file in WAL
  mode with ``synchronous=NORMAL`` and a busy timeout, like ``state/store.py``. It is a separate
  file off the hot path, so SQLite's automatic WAL checkpoint stays on. The log file stays
  small: ``journal_size_limit`` cuts a restarted log back, ``write`` truncates the log
  (``wal_checkpoint(TRUNCATE)``, waiting at most ``CHECKPOINT_BUSY_MS``) once it is larger than
  ``WAL_TRUNCATE_BYTES``, and ``close`` truncates it at shutdown;
- or a database URL, through ``playhouse.db_url``: ``sqlite:///relative/path.db``,
  ``sqlite:////absolute/path.db``, or ``postgresql://user:pass@host:5432/db`` (also
  ``postgres://``, ``postgresext://``). PostgreSQL needs the psycopg2 driver, imported only when
  such a URL is opened; without it the store raises ``JournalDriverMissing`` (an
  ``ImportError``) saying how to install it.

Tables (row models are built per instance: no global database binding), with one writer, the
Journal actor, which writes a whole ``JournalBatch`` in one transaction:

- ``trades``: one row per position (``report.TradeRow``), status OPEN / CLOSED / REJECTED.
- ``orders``: one row per client order id (``report.OrderRow``): the order as sent (type, time
  in force, limit/stop price, post-only, reduce-only, quantity) and where it is (REQUESTED,
  SUBMITTED, ACCEPTED, PARTIALLY_FILLED, then FILLED / CANCELED / EXPIRED / REJECTED / DENIED),
  with its filled quantity, average price, fees and slippage in basis points.
- ``order_events``: its state history (``report.OrderEventRow``), one row per change: requested,
  submitted, denied, accepted, each fill, cancel requested, canceled, expired, rejected.
- ``fills``: one row per venue trade id (``report.FillRow``): order, price, quantity, fee, fee
  currency, liquidity, time. A fill re-sent with a known trade id writes nothing. The
  report's fees and realized PnL are sums of these.
- ``daily_pnl``: one row per UTC day of engine time (``report.DailyRow``).
- ``equity``: the equity curve (``report.EquitySample``): every AccountMarked and the equity
  right after every closed trade, with the run that saw it; the session report's drawdown.
- ``events``: every message the Journal received: ``ts_ns``, ``kind``, ``correlation_id``,
  ``msg_id``, ``run_id`` and ``data`` (the message as JSON *without* its random ``msg_id``, so
  two replays of the same data give identical ``data``).
- ``journal_cursor``: per engine outbox (``source``: the outbox's id), the ``seq`` of the last
  outbox row whose rows are in the journal. It is written in the same transaction as those
  rows, so a message is journaled exactly once whatever moment the process dies at, on SQLite
  and PostgreSQL alike.

A journal made by an older version opens: the tables it lacks are created, the columns it
lacks added (empty in its old rows; ``added_columns`` lists them).

Money, prices and quantities are exact decimal TEXT, never floats. Every query returns plain
JSON-ready dicts: decimals as their exact text (``str``), datetimes as ISO-8601 text, ids and
timestamps as ``str``/``int``, ``events.data`` parsed back into JSON values.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import peewee

from state import report
from state.report import (
    DailyRow,
    EquitySample,
    FillRow,
    Mark,
    OrderEventRow,
    OrderRow,
    SampleKind,
    TradeRow,
    TradeStatus,
)
from state import store as engine_store
from state.secrets import mask_url
from state.store import (
    BUSY_TIMEOUT_MS,
    CHECKPOINT_BUSY_MS,
    WAL_SIZE_LIMIT,
    decode,
    file_size,
    jsonable,
    truncate_wal,
    wal_file,
)
from state.types import coin_symbol, parse_enum

T = TypeVar("T")

_SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": BUSY_TIMEOUT_MS,
    "foreign_keys": 0,
    "journal_size_limit": WAL_SIZE_LIMIT,
}
_POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "postgresext", "postgresqlext"})
POSTGRES_DRIVER_HINT = (
    "journal.url: postgresql needs the psycopg2 package: pip install -e '.[postgres]'"
)
_MAX_SQL_VARIABLES = 900  # under SQLite's oldest limit (999) for one multi-row INSERT


class JournalDriverMissing(ImportError):
    """The journal URL names a database whose Python driver is not installed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow:
    """One row of ``events``; ``data`` is the message as compact, key-sorted JSON text."""

    ts_ns: int
    kind: str
    correlation_id: str | None
    msg_id: str | None
    run_id: str
    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalBatch:
    """Everything buffered since the last write: written in ONE transaction, all or nothing.
    ``trades``, ``orders`` and ``days`` hold the latest version of each row (upserted);
    ``events``, ``equity`` and ``order_events`` are appended in order; ``fills`` are inserted
    unless their trade id is known (then nothing is written)."""

    events: tuple[EventRow, ...] = ()
    trades: tuple[TradeRow, ...] = ()
    orders: tuple[OrderRow, ...] = ()
    equity: tuple[EquitySample, ...] = ()
    days: tuple[DailyRow, ...] = ()
    order_events: tuple[OrderEventRow, ...] = ()
    fills: tuple[FillRow, ...] = ()
    cursor: tuple[str, int] | None = None  # (outbox id, last seq these rows come from), written with them

    def __len__(self) -> int:
        return (len(self.events) + len(self.trades) + len(self.orders) + len(self.equity) + len(self.days)
                + len(self.order_events) + len(self.fills))


def masked_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***`` (for logs and errors):
    ``state.secrets.mask_url``."""
    return mask_url(url)


def _is_url(target: str | Path) -> bool:
    return isinstance(target, str) and "://" in target


def _open_database(target: str | Path) -> tuple[peewee.Database, str]:
    """The (not yet connected) database for a path or URL, and its printable name."""
    if not _is_url(target):
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(str(path), pragmas=_SQLITE_PRAGMAS, check_same_thread=False), str(path)
    url = str(target)
    scheme = urlsplit(url).scheme.lower()
    name = masked_url(url)
    from playhouse import db_url  # peewee's own URL parser, shipped with peewee

    if scheme in ("sqlite", "sqlite+pool"):
        database = db_url.parse(url)["database"]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            raise ValueError(f"{name}: the journal needs a file (sqlite:///path/journal.db), not an in-memory database")
        return db_url.connect(url, pragmas=_SQLITE_PRAGMAS, check_same_thread=False), name
    if scheme.split("+")[0] in _POSTGRES_SCHEMES:
        try:  # lazily: only a PostgreSQL journal needs the driver (peewee loads it itself)
            importlib.import_module("psycopg2")
        except ImportError:
            raise JournalDriverMissing(POSTGRES_DRIVER_HINT) from None
        try:
            return db_url.connect(url), name
        except RuntimeError as error:  # playhouse did not register the scheme (driver extras)
            raise JournalDriverMissing(f"{POSTGRES_DRIVER_HINT} ({error})") from None
    raise ValueError(f"{name}: unsupported database URL; use sqlite:///path or postgresql://user@host/db")


class JournalStore:
    """The journal tables behind plain methods; see the module docstring.

    Thread notes: peewee keeps one connection per thread. The Journal actor writes from its
    own thread and calls ``release_thread`` when it stops; queries may come from any thread
    (tests, ``--status``-like tools) and see only committed batches.
    """

    def __init__(self, target: str | Path, *, wal_truncate_bytes: int | None = None) -> None:
        """``wal_truncate_bytes``: the log file size past which ``write`` truncates it (SQLite;
        default ``state.store.WAL_TRUNCATE_BYTES``)."""
        self.wal_truncate_bytes = engine_store.WAL_TRUNCATE_BYTES if wal_truncate_bytes is None else wal_truncate_bytes
        self.wal_truncations = 0  # logs truncated by write() (the writer's thread only)
        self.wal_error = ""  # the last failure to truncate the log (never raised by write)
        self.db, self.name = _open_database(target)
        db = self.db
        self.is_sqlite = isinstance(db, peewee.SqliteDatabase)

        class Base(peewee.Model):
            class Meta:
                database = db

        def money(null: bool = True) -> peewee.TextField:
            return peewee.TextField(null=null)

        class TradeModel(Base):
            position_id = peewee.CharField(primary_key=True, max_length=64)
            condition_id = peewee.CharField(index=True, max_length=64)
            strategy_id = peewee.CharField(max_length=64)
            coin = peewee.CharField(index=True, max_length=20)
            direction = peewee.CharField(max_length=8)
            status = peewee.CharField(index=True, max_length=16)
            entry_price = money()
            entry_time = peewee.CharField(null=True, max_length=40)
            exit_price = money()
            exit_time = peewee.CharField(null=True, max_length=40)
            quantity = money(null=False)
            size_usd = money(null=False)
            stop_loss_price = money()
            take_profit_price = money()
            exit_reason = peewee.TextField(null=True)
            pnl = money()
            pnl_pct = money()
            fees = money(null=False)
            unrealized_pnl = money(null=False)
            venue = peewee.CharField(null=True, max_length=64)
            entry_order_id = peewee.CharField(max_length=36)
            exit_order_id = peewee.CharField(null=True, max_length=36)
            reasoning = peewee.TextField()
            run_id = peewee.CharField(index=True, max_length=64)
            opened_ts_ns = peewee.BigIntegerField(null=True, index=True)
            closed_ts_ns = peewee.BigIntegerField(null=True, index=True)
            updated_ts_ns = peewee.BigIntegerField()

            class Meta:
                table_name = "trades"

        class OrderModel(Base):
            client_order_id = peewee.CharField(primary_key=True, max_length=36)
            position_id = peewee.CharField(index=True, max_length=64)
            coin = peewee.CharField(max_length=20)
            side = peewee.CharField(max_length=4)
            intent = peewee.CharField(max_length=8)
            quantity = money(null=False)
            reference_price = money(null=False)
            status = peewee.CharField(index=True, max_length=16)
            fill_price = money()
            fill_quantity = money()
            fee = money()
            venue = peewee.CharField(null=True, max_length=64)
            venue_order_id = peewee.CharField(null=True, max_length=128)
            trade_id = peewee.CharField(null=True, max_length=128)
            reason = peewee.TextField(null=True)
            slippage_bps = money()
            correlation_id = peewee.CharField(null=True, max_length=64)
            ts_ns = peewee.BigIntegerField(index=True)
            run_id = peewee.CharField(index=True, max_length=64)
            # Added with the order lifecycle: nullable, so a journal from before gets them empty.
            order_type = peewee.CharField(null=True, max_length=16)
            time_in_force = peewee.CharField(null=True, max_length=8)
            limit_price = money()
            stop_price = money()
            post_only = peewee.BooleanField(null=True)
            reduce_only = peewee.BooleanField(null=True)
            created_ts_ns = peewee.BigIntegerField(null=True)

            class Meta:
                table_name = "orders"

        class OrderEventModel(Base):
            id = peewee.AutoField()
            client_order_id = peewee.CharField(index=True, max_length=36)
            position_id = peewee.CharField(max_length=64)
            event = peewee.CharField(max_length=20)
            status = peewee.CharField(max_length=16)
            message = peewee.CharField(max_length=64)
            ts_ns = peewee.BigIntegerField()
            run_id = peewee.CharField(index=True, max_length=64)
            venue_order_id = peewee.CharField(null=True, max_length=128)
            trade_id = peewee.CharField(null=True, max_length=128)
            quantity = money()
            price = money()
            reason = peewee.TextField(null=True)

            class Meta:
                table_name = "order_events"

        class FillModel(Base):
            trade_id = peewee.CharField(primary_key=True, max_length=128)
            client_order_id = peewee.CharField(index=True, max_length=36)
            position_id = peewee.CharField(index=True, max_length=64)
            coin = peewee.CharField(max_length=20)
            side = peewee.CharField(max_length=4)
            intent = peewee.CharField(max_length=8)
            venue = peewee.CharField(max_length=64)
            venue_order_id = peewee.CharField(max_length=128)
            price = money(null=False)
            quantity = money(null=False)
            fee = money(null=False)
            fee_currency = peewee.CharField(max_length=16)
            liquidity = peewee.CharField(max_length=8)
            cumulative_quantity = money(null=False)
            mid_price = money()
            ts_event_ms = peewee.BigIntegerField()
            ts_ns = peewee.BigIntegerField()
            run_id = peewee.CharField(index=True, max_length=64)

            class Meta:
                table_name = "fills"

        class DailyModel(Base):
            date = peewee.CharField(primary_key=True, max_length=10)
            starting_equity = money()
            ending_equity = money()
            peak_equity = money()
            realized_pnl = money(null=False)
            unrealized_pnl = money(null=False)
            fees = money(null=False)
            trades = peewee.IntegerField()
            wins = peewee.IntegerField()
            losses = peewee.IntegerField()
            max_drawdown_pct = money(null=False)
            kill_switch = peewee.BooleanField()

            class Meta:
                table_name = "daily_pnl"

        class EquityModel(Base):
            id = peewee.AutoField()
            ts_ns = peewee.BigIntegerField()
            run_id = peewee.CharField(index=True, max_length=64)
            kind = peewee.CharField(max_length=8)
            position_id = peewee.CharField(null=True, max_length=64)
            balance = money(null=False)
            unrealized_pnl = money(null=False)
            equity = money(null=False)

            class Meta:
                table_name = "equity"

        class EventModel(Base):
            id = peewee.AutoField()
            ts_ns = peewee.BigIntegerField(index=True)
            kind = peewee.CharField(index=True, max_length=64)
            correlation_id = peewee.CharField(null=True, index=True, max_length=64)
            msg_id = peewee.CharField(null=True, max_length=36)
            run_id = peewee.CharField(index=True, max_length=64)
            data = peewee.TextField()

            class Meta:
                table_name = "events"

        class CursorModel(Base):
            source = peewee.CharField(primary_key=True, max_length=64)
            seq = peewee.BigIntegerField()

            class Meta:
                table_name = "journal_cursor"

        self._Trade = TradeModel
        self._Order = OrderModel
        self._Daily = DailyModel
        self._Equity = EquityModel
        self._Event = EventModel
        self._Cursor = CursorModel
        self._OrderEvent = OrderEventModel
        self._Fill = FillModel
        models = [TradeModel, OrderModel, DailyModel, EquityModel, EventModel, CursorModel, OrderEventModel, FillModel]
        try:
            with db.connection_context():
                with db.atomic():
                    self.added_columns = _add_missing_columns(db, models)
                    db.create_tables(models, safe=True)
        except peewee.OperationalError as error:
            raise ValueError(f"cannot open the journal {self.name}: {error}") from None

    def __repr__(self) -> str:
        return f"<JournalStore {self.name}>"

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Truncate a SQLite journal's write-ahead log (its content is copied into the database
        first) and close the calling thread's connection (the engine calls it at the very end,
        after the Journal has stopped)."""
        try:
            if self.is_sqlite and not truncate_wal(self.db, CHECKPOINT_BUSY_MS):
                self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            self.release_thread()

    def wal_size(self) -> int:
        """The size of a SQLite journal's write-ahead log file in bytes (0: none, or not SQLite)."""
        return file_size(wal_file(self.db.database)) if self.is_sqlite else 0

    def _limit_wal(self) -> None:
        """Truncate the log once it has grown past ``wal_truncate_bytes`` (SQLite's automatic
        checkpoint copies it back but the file keeps its largest size, and while the journal is
        read meanwhile the log is never restarted)."""
        if not self.is_sqlite or self.wal_size() <= self.wal_truncate_bytes:
            return
        try:
            if truncate_wal(self.db, CHECKPOINT_BUSY_MS):
                self.wal_truncations += 1
        except (peewee.DatabaseError, OSError) as error:  # housekeeping: the batch IS written
            self.wal_error = f"{type(error).__name__}: {error}"

    def release_thread(self) -> None:
        """Close the calling thread's connection, if it has one open."""
        if not self.db.is_closed():
            self.db.close()

    # --- writing: one batch, one transaction -------------------------------------------------------

    def write(self, batch: JournalBatch) -> None:
        """Write ``batch`` in one transaction: append events and equity samples, upsert trades,
        orders and days (the latest version of a row wins). On error nothing is written and
        the error propagates, so the caller keeps the batch."""
        if not len(batch) and batch.cursor is None:
            return
        with self.db.atomic():
            self._insert(self._Event, [_values(row) for row in batch.events])
            self._insert(self._Equity, [_values(row) for row in batch.equity])
            self._upsert(self._Trade, [_values(row) for row in batch.trades])
            self._upsert(self._Order, [_values(row) for row in batch.orders])
            self._upsert(self._Daily, [_values(row) for row in batch.days])
            self._insert(self._OrderEvent, [_values(row) for row in batch.order_events])
            for chunk in _chunks([_values(row) for row in batch.fills]):
                self._Fill.insert_many(chunk).on_conflict_ignore().execute()  # a known trade id: nothing
            if batch.cursor is not None:
                source, seq = batch.cursor
                self._upsert(self._Cursor, [{"source": source, "seq": seq}])
        self._limit_wal()

    def load_cursor(self, source: str) -> int:
        """The last outbox seq of ``source`` whose rows are written (0 when none)."""
        seq = self._Cursor.select(self._Cursor.seq).where(self._Cursor.source == source).scalar()
        return int(seq) if seq is not None else 0

    def has_event(self, ts_ns: int, kind: str, data: str) -> bool:
        """Whether an ``events`` row with exactly this time, kind and data is recorded."""
        model = self._Event
        query = model.select(model.id).where((model.ts_ns == ts_ns) & (model.kind == kind) & (model.data == data))
        return query.limit(1).scalar() is not None

    def events_after_last(self, kind: str, after: Sequence[str]) -> list[str]:
        """The ``data`` texts of the ``kind`` rows recorded after the latest row of any of the
        kinds ``after``, oldest first."""
        model = self._Event
        since = model.select(peewee.fn.MAX(model.id)).where(model.kind.in_(list(after))).scalar() or 0
        query = model.select(model.data).where((model.kind == kind) & (model.id > since)).order_by(model.id)
        return [row.data for row in query]

    def last_event_data(self, kind: str) -> str | None:
        """The ``data`` text of the latest ``events`` row of ``kind``."""
        model = self._Event
        return model.select(model.data).where(model.kind == kind).order_by(model.id.desc()).limit(1).scalar()

    def _insert(self, model: type[peewee.Model], rows: Sequence[dict[str, Any]]) -> None:
        for chunk in _chunks(rows):
            model.insert_many(chunk).execute()

    def _upsert(self, model: type[peewee.Model], rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        key = model._meta.primary_key
        others = [f for f in model._meta.sorted_fields if f is not key]
        for chunk in _chunks(rows):
            model.insert_many(chunk).on_conflict(conflict_target=[key], preserve=others).execute()

    # --- reading back the journal's own state (the Journal's rebuild and read-through) -------------

    def load_trade(self, position_id: str) -> TradeRow | None:
        row = self._Trade.select().where(self._Trade.position_id == position_id).dicts().first()
        return None if row is None else decode(TradeRow, row)

    def load_open_trades(self) -> list[TradeRow]:
        query = self._Trade.select().where(self._Trade.status == TradeStatus.OPEN.value).dicts()
        return [decode(TradeRow, row) for row in query]

    def load_order(self, client_order_id: str) -> OrderRow | None:
        row = self._Order.select().where(self._Order.client_order_id == client_order_id).dicts().first()
        return None if row is None else decode(OrderRow, row)

    def load_fill(self, trade_id: str) -> FillRow | None:
        row = self._Fill.select().where(self._Fill.trade_id == trade_id).dicts().first()
        return None if row is None else decode(FillRow, row)

    def load_fills(self, client_order_id: str) -> list[FillRow]:
        """The fills of one order, by engine time then trade id."""
        model = self._Fill
        query = model.select().where(model.client_order_id == client_order_id).order_by(model.ts_ns, model.trade_id)
        return [decode(FillRow, row) for row in query.dicts()]

    def load_day(self, day: str) -> DailyRow | None:
        row = self._Daily.select().where(self._Daily.date == day).dicts().first()
        return None if row is None else decode(DailyRow, row)

    def last_mark(self) -> Mark | None:
        """The latest AccountMarked sample (any run): what a new day starts from."""
        row = (
            self._Equity.select().where(self._Equity.kind == SampleKind.MARK.value)
            .order_by(self._Equity.id.desc()).dicts().first()
        )
        return None if row is None else Mark(report.money(row["equity"]), report.money(row["unrealized_pnl"]))

    def latest_ts_ns(self) -> int | None:
        """The latest engine time the journal has recorded (its newest event)."""
        return self._Event.select(peewee.fn.MAX(self._Event.ts_ns)).scalar()

    # --- queries (JSON-ready dicts) ----------------------------------------------------------------------

    def trades(self, coin: str | None = None, days: float | None = None, run_id: str | None = None,
               status: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``trades``, oldest first (by the time they opened, or closed when they never
        opened). ``days``: positions whose open or close lies within the last ``days`` days
        counted back from the latest engine time recorded (so it works on replayed days too).
        ``status``: OPEN, CLOSED or REJECTED. A bad filter raises ``ValueError``."""
        model = self._Trade
        query = model.select()
        if coin is not None:
            query = query.where(model.coin == coin_symbol(coin))
        if run_id is not None:
            query = query.where(model.run_id == run_id)
        if status is not None:
            query = query.where(model.status == parse_enum(TradeStatus, status, "status").value)
        if days is not None:
            report.positive_days(days)
            latest = self.latest_ts_ns()
            if latest is not None:
                since = report.days_window_start_ns(latest, days)
                query = query.where((model.opened_ts_ns >= since) | (model.closed_ts_ns >= since))
        started = peewee.fn.COALESCE(model.opened_ts_ns, model.closed_ts_ns)
        return list(query.order_by(started, model.position_id).dicts())

    def daily(self, days: float | None = None) -> list[dict[str, Any]]:
        """Rows of ``daily_pnl``, oldest first; ``days=N``: the last N UTC days up to the day of
        the latest engine time recorded (``days=1`` is that day alone)."""
        query = self._Daily.select()
        if days is not None:
            report.positive_days(days)
            latest = self.latest_ts_ns()
            if latest is not None:
                query = query.where(self._Daily.date >= report.first_day_of_window(latest, days))
        return list(query.order_by(self._Daily.date).dicts())

    def orders(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``orders`` in the order their status was last set (then by id)."""
        query = self._Order.select()
        if run_id is not None:
            query = query.where(self._Order.run_id == run_id)
        return list(query.order_by(self._Order.ts_ns, self._Order.client_order_id).dicts())

    def fills(self, run_id: str | None = None, client_order_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``fills`` (one per venue trade id), by engine time then trade id;
        ``run_id``, ``client_order_id``: of that run, of that order."""
        model = self._Fill
        query = model.select()
        if run_id is not None:
            query = query.where(model.run_id == run_id)
        if client_order_id is not None:
            query = query.where(model.client_order_id == client_order_id)
        return list(query.order_by(model.ts_ns, model.trade_id).dicts())

    def order_events(self, client_order_id: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``order_events`` in the order received (an order's state history);
        ``client_order_id``, ``run_id``: of that order, of that run."""
        model = self._OrderEvent
        query = model.select()
        if client_order_id is not None:
            query = query.where(model.client_order_id == client_order_id)
        if run_id is not None:
            query = query.where(model.run_id == run_id)
        return [_without_id(row) for row in query.order_by(model.id).dicts()]

    def equity(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The equity curve (``equity`` rows) in the order it was recorded."""
        query = self._Equity.select()
        if run_id is not None:
            query = query.where(self._Equity.run_id == run_id)
        return [_without_id(row) for row in query.order_by(self._Equity.id).dicts()]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``events`` in the order received: ``ts_ns``, ``kind``, ``correlation_id``,
        ``msg_id``, ``run_id`` and ``data`` (parsed JSON)."""
        query = self._Event.select().order_by(self._Event.id)
        if kind is not None:
            query = query.where(self._Event.kind == kind)
        rows = []
        for row in query.dicts():
            row = _without_id(row)
            row["data"] = json.loads(row["data"])
            rows.append(row)
        return rows

    def run_ids(self) -> list[str]:
        """Every run the journal has recorded (by its events), in the order each first appeared."""
        model = self._Event
        first = peewee.fn.MIN(model.id)
        query = model.select(model.run_id, first.alias("first")).group_by(model.run_id).order_by(first)
        return [row["run_id"] for row in query.dicts()]

    def totals(self, start_equity: Any, run_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """The session report's journal figures (``report.scope_totals``) over the CLOSED trades,
        the orders, the fills and the equity curve (after ``start_equity``) of the runs
        ``run_ids``, or of every run when ``None`` (a whole replay: its data folder and journal
        hold nothing else): fees are the fills' of those runs, realized PnL the closed trades'
        fills (of any run). Exactly the keys ``report.SCOPE_TOTAL_KEYS``: ints for counts, exact
        decimal text for money."""
        if run_ids is not None:
            run_ids = list(run_ids)
            bad = [r for r in run_ids if not isinstance(r, str) or not r]
            if bad or not run_ids:
                raise ValueError(f"run_ids: expected run ids, got {run_ids!r}")
        trades, orders, equity, fills = self._Trade, self._Order, self._Equity, self._Fill
        trade_query = trades.select().where(trades.status == TradeStatus.CLOSED.value)
        order_query = orders.select().order_by(orders.ts_ns, orders.client_order_id)
        equity_query = equity.select(equity.equity).order_by(equity.id)
        fill_query = fills.select().order_by(fills.ts_ns, fills.trade_id)
        if run_ids is not None:
            trade_query = trade_query.where(trades.run_id.in_(run_ids))
            order_query = order_query.where(orders.run_id.in_(run_ids))
            equity_query = equity_query.where(equity.run_id.in_(run_ids))
            fill_query = fill_query.where(fills.run_id.in_(run_ids))
        closed_positions = trade_query.select(trades.position_id)
        position_fills = fills.select().where(fills.position_id.in_(closed_positions)).order_by(fills.ts_ns,
                                                                                               fills.trade_id)
        filled_orders = (fills.select(fills.client_order_id).distinct()
                         .where(fills.client_order_id.in_(order_query.select(orders.client_order_id))))
        totals = report.scope_totals(
            list(trade_query.dicts()), list(order_query.dicts()), [row["equity"] for row in equity_query.dicts()],
            start_equity, fills=list(fill_query.dicts()), position_fills=list(position_fills.dicts()),
            filled_orders=[row["client_order_id"] for row in filled_orders.dicts()],
        )
        return jsonable(totals)

    def run_totals(self, run_id: str, start_equity: Any) -> dict[str, Any]:
        """The journal's numbers for ``run_id`` (``report.run_totals`` over this run's CLOSED
        trades, its orders and its equity curve after ``start_equity``): exactly the keys
        ``total_trades``, ``wins``, ``losses`` (ints), ``realized_pnl_usd``, ``fees_paid_usd``
        (every fee of the run's fills), ``slippage_avg_bps``, ``max_drawdown_pct`` (exact
        decimal text)."""
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id: expected a run id, got {run_id!r}")
        totals = self.totals(start_equity, [run_id])
        return {key: totals[key] for key in report.RUN_TOTAL_KEYS}


# --- helpers -------------------------------------------------------------------------------------------

def _add_missing_columns(db: peewee.Database, models: Sequence[type[peewee.Model]]) -> list[str]:
    """Bring the tables of a journal made by an older version up to ``models``: every column
    it lacks is added (they are all nullable: its old rows get them empty). Tables it lacks
    are ``create_tables``' job. Returns ``table.column`` of each column added."""
    from playhouse.migrate import SchemaMigrator, migrate  # peewee's own, shipped with it

    added: list[str] = []
    operations = []
    migrator: SchemaMigrator | None = None
    for model in models:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue
        present = {column.name for column in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name in present:
                continue
            if not field.null:
                raise ValueError(f"table {table}: column {field.column_name} is missing and cannot be added "
                                 "empty (a journal of another version?)")
            migrator = migrator or SchemaMigrator.from_database(db)
            operations.append(migrator.add_column(table, field.column_name, field))
            added.append(f"{table}.{field.column_name}")
    if operations:
        migrate(*operations)
    return added


def _values(row: Any) -> dict[str, Any]:
    """A row dataclass as column values: Decimal and datetime as text, the rest as is."""
    return {item.name: jsonable(getattr(row, item.name)) for item in fields(row)}


def _without_id(row: dict[str, Any]) -> dict[str, Any]:
    row.pop("id", None)
    return row


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    if not rows:
        return
    size = max(1, _MAX_SQL_VARIABLES // max(1, len(rows[0])))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
