"""Recorded trade files: format detection, row parsing, per-file reading and the time merge.

Pure parsing for the ``replay`` market-data source; no threads and no logging here (problems
are handed to a callback as ``BadRow`` values, the caller reports them).

Accepted layouts, each CSV or gzip-compressed CSV (recognised by its magic bytes, not its
name), with or without a header line:

- Binance trades: ``id,price,qty,quote_qty,time,is_buyer_maker`` (also without ``quote_qty``,
  and the spot variant with a trailing ``is_best_match``);
- Binance aggTrades: ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,
  transact_time,is_buyer_maker[,is_best_match]`` (data.binance.vision files have no header);
- simple: ``ts_ms,price,qty``.

A file with a header is recognised by its header; a header-less file by the shape of its first
well-formed row (column count and which columns are integers, decimals or booleans). Times are
epoch milliseconds; a file whose first rows' times are all clearly in microseconds or
nanoseconds (recent data.binance.vision spot files use microseconds) is converted to
milliseconds.
Prices and quantities are ``Decimal`` parsed straight from the text, never through float.

A malformed row (wrong column count, not a number, price <= 0, qty < 0, a bad time, not UTF-8)
is reported and skipped; a corrupt or truncated gzip stream is reported as one bad row at the
line it broke and ends that file. A row older than the previous one is not malformed: it is
passed on (the Feed drops out-of-order ticks).
"""

from __future__ import annotations

import gzip
import heapq
import io
import os
import re
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from state.types import MAX_MAGNITUDE

GZIP_MAGIC = b"\x1f\x8b"
DETECT_LINES = 1_000  # lines read at most to recognise a header-less file
UNIT_SAMPLE = 10  # good rows whose times decide a file's time unit
POSITION_EVERY = 256  # lines between two updates of a reader's byte position
MAX_TS_MS = 10**14  # year 5138: anything larger is not epoch milliseconds
TIME_UNITS = (("ms", 1, 10**14), ("us", 1_000, 10**17), ("ns", 1_000_000, 10**20))

_INT = re.compile(r"[+-]?[0-9]+")
_BOOLS = frozenset({"true", "false"})

# Column kinds: what a header-less row must look like, and where time, price and qty are.
ID, TIME, PRICE, QTY, NUMBER, BOOL = "id", "time", "price", "qty", "number", "bool"


@dataclass(frozen=True, slots=True)
class TradeLayout:
    """One known CSV layout: its column names (when there is a header) and column kinds."""

    name: str
    headers: tuple[str, ...]
    kinds: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.kinds)

    @property
    def time_col(self) -> int:
        return self.kinds.index(TIME)

    @property
    def price_col(self) -> int:
        return self.kinds.index(PRICE)

    @property
    def qty_col(self) -> int:
        return self.kinds.index(QTY)


_AGG = ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker")
LAYOUTS: tuple[TradeLayout, ...] = (
    TradeLayout("Binance trades", ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker"),
                (ID, PRICE, QTY, NUMBER, TIME, BOOL)),
    TradeLayout("Binance trades", ("id", "price", "qty", "time", "is_buyer_maker"),
                (ID, PRICE, QTY, TIME, BOOL)),
    TradeLayout("Binance trades", ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"),
                (ID, PRICE, QTY, NUMBER, TIME, BOOL, BOOL)),
    TradeLayout("Binance aggTrades", _AGG, (ID, PRICE, QTY, ID, ID, TIME, BOOL)),
    TradeLayout("Binance aggTrades", (*_AGG, "is_best_match"), (ID, PRICE, QTY, ID, ID, TIME, BOOL, BOOL)),
    TradeLayout("simple", ("ts_ms", "price", "qty"), (TIME, PRICE, QTY)),
)

ACCEPTED_FORMATS = (
    "accepted formats (CSV or CSV.gz, header line optional): "
    "Binance trades id,price,qty[,quote_qty],time,is_buyer_maker[,is_best_match]; "
    "Binance aggTrades agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
    "is_buyer_maker[,is_best_match]; simple ts_ms,price,qty; times in epoch milliseconds"
)


@dataclass(frozen=True, slots=True)
class FileFormat:
    """What ``detect_format`` found out about one file."""

    layout: TradeLayout
    has_header: bool
    compressed: bool
    time_unit: str = "ms"  # "ms", "us" or "ns": times are divided down to milliseconds

    @property
    def ms_divisor(self) -> int:
        return next(divisor for unit, divisor, _ in TIME_UNITS if unit == self.time_unit)

    def describe(self) -> str:
        """``Binance trades, header, gzip`` and so on, for logs."""
        parts = [self.layout.name, "header" if self.has_header else "no header"]
        if self.compressed:
            parts.append("gzip")
        if self.time_unit != "ms":
            parts.append(f"times in {self.time_unit} converted to ms")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One good row of one file: time (epoch ms), price, quantity and its 1-based line."""

    ts_ms: int
    price: Decimal
    qty: Decimal
    line: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One row of the merged stream: a ``TradeRow`` tagged with its file and coin."""

    ts_ms: int
    file_index: int
    line: int
    coin: str
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that was skipped, and why."""

    path: Path
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


class RowError(ValueError):
    """A row does not fit its file's layout; the message is the problem."""


# --- fields ------------------------------------------------------------------------------------


def split_fields(text: str) -> list[str]:
    """The comma-separated fields of one line (without its line break), quotes removed."""
    fields = text.split(",")
    if '"' in text:
        fields = [field.strip().strip('"') for field in fields]
    return fields


def parse_decimal(text: str) -> Decimal | None:
    """A finite ``Decimal`` exactly as written, or ``None`` if the text is not a number (or one
    too large to compute with, beyond ``state.types.MAX_MAGNITUDE``)."""
    if "_" in text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and abs(value) <= MAX_MAGNITUDE else None


def parse_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if _INT.fullmatch(text) else None


def _fits(kind: str, text: str) -> bool:
    """Whether ``text`` looks like a value of column kind ``kind`` (header-less detection)."""
    if kind == BOOL:
        return text.strip().lower() in _BOOLS
    if kind in (ID, TIME):
        value = parse_int(text)
        return value is not None and (value > 0 if kind == TIME else value >= 0)
    number = parse_decimal(text)
    if number is None:
        return False
    if kind == PRICE:
        return number > 0
    if kind == QTY:
        return number >= 0
    return True


def layout_of_row(fields: Sequence[str]) -> TradeLayout | None:
    """The layout a header-less row has the shape of, if any."""
    for layout in LAYOUTS:
        if len(fields) == layout.width and all(map(_fits, layout.kinds, fields)):
            return layout
    return None


def parse_row(fields: Sequence[str], fmt: FileFormat) -> tuple[int, Decimal, Decimal]:
    """``(ts_ms, price, qty)`` of one row of a file of format ``fmt``; raises ``RowError``."""
    layout = fmt.layout
    if len(fields) != layout.width:
        raise RowError(f"expected {layout.width} columns ({layout.name}), got {len(fields)}")
    time_text = fields[layout.time_col]
    ts = parse_int(time_text)
    if ts is None:
        raise RowError(f"time {time_text.strip()!r} is not a whole number of milliseconds")
    if ts <= 0:
        raise RowError(f"time must be positive epoch milliseconds, got {ts}")
    ts_ms = ts // fmt.ms_divisor if fmt.ms_divisor != 1 else ts
    if ts_ms <= 0 or ts_ms >= MAX_TS_MS:
        raise RowError(f"time {ts} is out of range for epoch {fmt.time_unit}")
    price_text = fields[layout.price_col]
    price = parse_decimal(price_text)
    if price is None:
        raise RowError(f"price {price_text.strip()!r} is not a number")
    if price <= 0:
        raise RowError(f"price must be > 0, got {price_text.strip()}")
    qty_text = fields[layout.qty_col]
    qty = parse_decimal(qty_text)
    if qty is None:
        raise RowError(f"qty {qty_text.strip()!r} is not a number")
    if qty < 0:
        raise RowError(f"qty must be >= 0, got {qty_text.strip()}")
    return ts_ms, price, qty


# --- opening and detection ------------------------------------------------------------------------


def _open(path: Path) -> tuple[io.BufferedReader, io.BufferedIOBase, bool]:
    """``(raw file, line iterable, compressed)``; the raw file's position is the bytes read."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
    except BaseException:
        raw.close()
        raise
    return raw, (gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw), compressed


def _time_unit(ts: int) -> str:
    return next((unit for unit, _, limit in TIME_UNITS if ts < limit), "ns")


def detect_format(path: Path | str) -> FileFormat:
    """Recognise ``path``'s layout, header and time unit; raises ``ValueError`` naming the file
    and the problem (missing, unreadable, empty, not a recognised format)."""
    path = Path(path)
    try:
        raw, lines, compressed = _open(path)
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return _detect(path, lines, compressed)
    finally:
        if lines is not raw:
            lines.close()
        raw.close()


def _until_broken(lines: io.BufferedIOBase, broken: list[BaseException]) -> Iterator[bytes]:
    """The lines until the end or the first read error, which is appended to ``broken``."""
    iterator = iter(lines)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except (OSError, EOFError, zlib.error) as error:
            broken.append(error)
            return


def _detect(path: Path, lines: io.BufferedIOBase, compressed: bool) -> FileFormat:
    layout: TradeLayout | None = None
    has_header = False
    seen = 0
    times: list[int] = []
    broken: list[BaseException] = []
    for number, data in enumerate(_until_broken(lines, broken), start=1):
        if number > DETECT_LINES:
            break
        try:
            text = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            if number == 1:
                raise ValueError(f"{path}: not a CSV text file (line 1 is not UTF-8); {ACCEPTED_FORMATS}") from None
            continue
        if number == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        seen += 1
        if seen == 1 and any(ord(char) < 32 and char != "\t" for char in text):
            raise ValueError(f"{path}: not a CSV text file (control characters on line {number}); "
                             f"{ACCEPTED_FORMATS}")
        fields = split_fields(text)
        if seen == 1 and parse_decimal(fields[0]) is None:  # a header line
            names = tuple(field.strip().strip('"').lower() for field in fields)
            layout = next((candidate for candidate in LAYOUTS if candidate.headers == names), None)
            if layout is None:
                raise ValueError(f"{path}: unrecognised header {text.strip()[:200]!r}; {ACCEPTED_FORMATS}")
            has_header = True
            continue
        if layout is None:
            layout = layout_of_row(fields)
            if layout is None:
                continue
        ts = parse_int(fields[layout.time_col]) if len(fields) == layout.width else None
        if ts is not None and ts > 0:
            times.append(ts)
            if len(times) == UNIT_SAMPLE:
                break
    if layout is not None:  # the unit of the smallest sampled time: one typo cannot rescale a file
        return FileFormat(layout, has_header, compressed, _time_unit(min(times)) if times else "ms")
    if broken:  # damage after a recognised start is left to the reader, which reports the line
        raise ValueError(f"{path}: cannot read: {_stream_problem(broken[0])}")
    if seen == 0:
        raise ValueError(f"{path}: the file is empty; {ACCEPTED_FORMATS}")
    raise ValueError(f"{path}: no row in the first {DETECT_LINES} lines matches a known format; {ACCEPTED_FORMATS}")


# --- reading ----------------------------------------------------------------------------------------


def file_size(path: Path | str) -> int:
    """The size of the file on disk in bytes (0 if it cannot be read)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class TradeFileReader:
    """Iterates the good rows of one file, in file order, reporting bad ones to ``on_bad``.

    ``bytes_read`` follows the position in the file on disk (the compressed bytes of a .gz),
    updated every few hundred lines and at the end; ``bytes_total`` is the file's size.
    Iterating again reads the file again from its start.
    """

    def __init__(self, path: Path | str, fmt: FileFormat, on_bad: Callable[[BadRow], None]) -> None:
        self.path = Path(path)
        self.fmt = fmt
        self._on_bad = on_bad
        self.bytes_total = file_size(self.path)
        self.bytes_read = 0

    def __iter__(self) -> Iterator[TradeRow]:
        self.bytes_read = 0
        try:
            raw, lines, _ = _open(self.path)
        except OSError as error:
            self._on_bad(BadRow(self.path, 1, f"cannot open the file: {error.strerror or error}; file skipped"))
            self.bytes_read = self.bytes_total
            return
        try:
            yield from self._rows(raw, lines)
        finally:
            if lines is not raw:
                lines.close()
            raw.close()
        self.bytes_read = self.bytes_total

    def _rows(self, raw: io.BufferedReader, lines: io.BufferedIOBase) -> Iterator[TradeRow]:
        fmt, path, report = self.fmt, self.path, self._on_bad
        header_pending = fmt.has_header
        number = 0
        iterator = iter(lines)
        while True:
            try:
                data = next(iterator)
            except StopIteration:
                return
            except (OSError, EOFError, zlib.error) as error:
                report(BadRow(path, number + 1, f"{_stream_problem(error)}; rest of the file skipped"))
                return
            number += 1
            if number % POSITION_EVERY == 0:
                self.bytes_read = raw.tell()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                report(BadRow(path, number, "not UTF-8 text"))
                continue
            text = text.rstrip("\r\n")
            if number == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                continue
            if header_pending:
                header_pending = False
                continue
            try:
                ts_ms, price, qty = parse_row(split_fields(text), fmt)
            except RowError as error:
                problem = str(error)
                if not data.endswith(b"\n"):
                    problem += " (the last line has no line break: truncated?)"
                report(BadRow(path, number, problem))
                continue
            yield TradeRow(ts_ms, price, qty, number)


def _stream_problem(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return f"the gzip stream ends early (truncated file): {error}"
    if isinstance(error, (zlib.error, gzip.BadGzipFile)):
        return f"the gzip stream is corrupt: {error}"
    return f"read error: {error}"


# --- merging -----------------------------------------------------------------------------------------


def _tagged(index: int, coin: str, rows: Iterable[TradeRow]) -> Generator[Trade, None, None]:
    iterator = iter(rows)
    try:
        for row in iterator:
            yield Trade(row.ts_ms, index, row.line, coin, row.price, row.qty)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # a reader's file is closed at once, not when garbage-collected


def _merge_key(trade: Trade) -> tuple[int, int, int]:
    return trade.ts_ms, trade.file_index, trade.line


def merge_trades(sources: Sequence[tuple[str, Iterable[TradeRow]]]) -> Generator[Trade, None, None]:
    """The rows of every ``(coin, rows)`` source merged by time (``heapq.merge``); equal times
    go in source order, then line order, so the merged order is deterministic. Each source is
    expected in time order; a row older than its predecessor is passed on where it stands.
    Closing the merged iterator closes every source."""
    streams = [_tagged(index, coin, rows) for index, (coin, rows) in enumerate(sources)]
    merged: Iterator[Trade] = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_merge_key)
    try:
        yield from merged
    finally:
        for stream in streams:
            stream.close()
