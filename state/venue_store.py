"""The paper venue's own book on disk: ``<data_dir>/venue.db``, apart from the engine's store.

What an exchange remembers about our account, whatever happens to the engine: every order it
accepted (or refused) with its status and filled quantity, every fill, and the positions those
fills made. The paper venue (``adapters/venues/paper.py``) writes here *before* it reports
anything, in one transaction per operation, so after a ``kill -9`` of the engine the venue still
knows every order, its resting state and its fills. SQLite in WAL mode with
``synchronous=NORMAL``: a commit survives ``kill -9`` (only a power loss could lose the last).

Tables (one writer: the venue, under its lock):
- ``orders``: one row per client order id (``working`` marks the resting ones, which the venue
  loads at start; the others are read back one at a time when asked for).
- ``fills``: one row per venue trade id.
- ``positions``: one row per coin and position side.
- ``meta``: ``owner``, the id of the engine store this book belongs to (``Store.outbox_id``):
  a venue book left beside another session's store is refused (``VenueStoreMismatch``), never
  silently mixed into it.

Rows hold the JSON of ``state/matching.py``'s durable dicts, so this module knows only peewee
and those converters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import peewee

from state.matching import (
    BookOrder,
    VenuePosition,
    book_order_from_dict,
    book_order_to_dict,
    fill_from_dict,
    fill_to_dict,
    position_from_dict,
    position_to_dict,
)
from state.order import Fill

_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": 10_000, "foreign_keys": 0}
OWNER_KEY = "owner"


class VenueStoreMismatch(ValueError):
    """``venue.db`` belongs to another engine store than the one it is opened with."""


class VenueStore:
    """The venue's ledger (``adapters.venues.paper.PaperLedger``) in SQLite."""

    def __init__(self, path: Path | str, *, owner: str | None = None) -> None:
        """``owner``: the id of the engine store this book goes with; recorded on first use and
        checked on every later one (``VenueStoreMismatch``)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = peewee.SqliteDatabase(str(self.path), pragmas=_PRAGMAS, check_same_thread=False)
        db = self.db

        class Base(peewee.Model):
            class Meta:
                database = db

        class OrderRow(Base):
            client_order_id = peewee.CharField(primary_key=True, max_length=36)
            coin = peewee.CharField()
            seq = peewee.IntegerField(index=True)
            working = peewee.BooleanField(index=True)
            data = peewee.TextField()

            class Meta:
                table_name = "orders"

        class FillRow(Base):
            trade_id = peewee.CharField(primary_key=True)
            client_order_id = peewee.CharField(index=True, max_length=36)
            data = peewee.TextField()

            class Meta:
                table_name = "fills"

        class PositionRow(Base):
            coin = peewee.CharField()
            side = peewee.CharField()
            data = peewee.TextField()

            class Meta:
                table_name = "positions"
                primary_key = peewee.CompositeKey("coin", "side")

        class MetaRow(Base):
            key = peewee.CharField(primary_key=True)
            value = peewee.TextField()

            class Meta:
                table_name = "meta"

        self._Order, self._Fill, self._Position, self._Meta = OrderRow, FillRow, PositionRow, MetaRow
        self.new_book = False  # True when this open created the book (no owner recorded before)
        with db.connection_context():
            db.create_tables([OrderRow, FillRow, PositionRow, MetaRow], safe=True)
            if owner is not None:
                row = MetaRow.get_or_none(MetaRow.key == OWNER_KEY)
                if row is None:
                    MetaRow.create(key=OWNER_KEY, value=owner)
                    self.new_book = True
                elif row.value != owner:
                    raise VenueStoreMismatch(
                        f"{self.path} is the venue book of another engine store (owner {row.value}, "
                        f"this one {owner}): it was left beside a store it does not belong to"
                    )

    def record(self, orders: Iterable[BookOrder], fills: Iterable[Fill], positions: Iterable[VenuePosition]) -> None:
        """Write what one venue operation changed, all or nothing."""
        with self.db.atomic():
            for order in orders:
                self._Order.replace(client_order_id=order.client_order_id, coin=order.order.coin, seq=order.seq,
                                    working=order.working, data=json.dumps(book_order_to_dict(order))).execute()
            for fill in fills:
                self._Fill.replace(trade_id=fill.trade_id, client_order_id=fill.client_order_id,
                                   data=json.dumps(fill_to_dict(fill))).execute()
            for position in positions:
                self._Position.replace(coin=position.coin, side=position.side.value,
                                       data=json.dumps(position_to_dict(position))).execute()

    def load_working(self) -> list[tuple[BookOrder, list[Fill]]]:
        """Every working (resting) order with its fills, in submission order."""
        rows = self._Order.select().where(self._Order.working == True).order_by(self._Order.seq)  # noqa: E712
        return [(order, self.fills_of(order.client_order_id))
                for order in (book_order_from_dict(json.loads(row.data)) for row in rows)]

    def load_order(self, client_order_id: str) -> tuple[BookOrder, list[Fill]] | None:
        row = self._Order.get_or_none(self._Order.client_order_id == client_order_id)
        if row is None:
            return None
        return book_order_from_dict(json.loads(row.data)), self.fills_of(client_order_id)

    def fills_of(self, client_order_id: str) -> list[Fill]:
        rows = self._Fill.select().where(self._Fill.client_order_id == client_order_id)
        fills = [fill_from_dict(json.loads(row.data)) for row in rows]
        return sorted(fills, key=lambda fill: int(fill.trade_id.rsplit("-", 1)[1]))

    def load_positions(self) -> list[VenuePosition]:
        return [position_from_dict(json.loads(row.data)) for row in self._Position.select()]

    def last_seq(self) -> int:
        value = self._Order.select(peewee.fn.MAX(self._Order.seq)).scalar()
        return int(value or 0)

    def order_ids(self) -> list[str]:
        """Every client order id the venue has seen, in submission order."""
        return [row.client_order_id for row in self._Order.select(self._Order.client_order_id).order_by(self._Order.seq)]

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
