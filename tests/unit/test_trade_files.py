"""adapters/feeds/trade_files.py: format detection, row parsing, bad rows, gzip damage, the time merge.

Pure: no threads. Small files are written to tmp_path; the real-data tests read
../shared/data through the ``shared_data`` fixture and skip when it is absent.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.feeds.trade_files import (
    ACCEPTED_FORMATS,
    BadRow,
    FileFormat,
    TradeFileReader,
    TradeRow,
    detect_format,
    merge_trades,
    parse_decimal,
)

D = Decimal
TRADES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"
AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"


def write(path: Path, lines: Iterable[str], *, gz: bool = False, newline_at_end: bool = True) -> Path:
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if gz else text.encode())
    return path


def read(path: Path) -> tuple[FileFormat, list[TradeRow], list[BadRow]]:
    fmt = detect_format(path)
    bad: list[BadRow] = []
    rows = list(TradeFileReader(path, fmt, bad.append))
    return fmt, rows, bad


def simple_rows(count: int, start_ms: int = 1_600_000_000_000) -> list[str]:
    return [f"{start_ms + i},{100 + i % 50}.{i % 7},{i % 11}.5" for i in range(count)]


# --- formats ---------------------------------------------------------------------------------------

FORMATS = [
    # (id, lines, layout name, has header, expected (ts, price, qty) of the two rows)
    ("trades-header", [TRADES_HEADER, "42377944,9682,0.132,1278.024,1582329602111,false",
                       "42377945,9682.5,0.412,3988.984,1582329602116,true"],
     "Binance trades", True),
    ("trades-no-header", ["42377944,9682,0.132,1278.024,1582329602111,false",
                          "42377945,9682.5,0.412,3988.984,1582329602116,true"],
     "Binance trades", False),
    ("trades-5-header", ["id,price,qty,time,is_buyer_maker", "553287559,9682,0.132,1582329602111,true",
                         "553287560,9682.5,0.412,1582329602116,false"],
     "Binance trades", True),
    ("trades-5-no-header", ["553287559,9682,0.132,1582329602111,true", "553287560,9682.5,0.412,1582329602116,false"],
     "Binance trades", False),
    ("spot-trades-7-no-header", ["1,9682,0.132,1278.024,1582329602111,true,true",
                                 "2,9682.5,0.412,3988.984,1582329602116,false,true"],
     "Binance trades", False),
    ("agg-header", [AGG_HEADER, "13519807,9682,0.132,15373518,15373518,1582329602111,true,true",
                    "13519808,9682.5,0.412,15373519,15373520,1582329602116,false,true"],
     "Binance aggTrades", True),
    ("agg-8-no-header", ["13519807,9682,0.132,15373518,15373518,1582329602111,true,true",
                         "13519808,9682.5,0.412,15373519,15373520,1582329602116,false,true"],
     "Binance aggTrades", False),
    ("agg-7-header", [AGG_HEADER.removesuffix(",is_best_match"),
                      "13519807,9682,0.132,15373518,15373518,1582329602111,true",
                      "13519808,9682.5,0.412,15373519,15373520,1582329602116,false"],
     "Binance aggTrades", True),
    ("agg-7-no-header", ["13519807,9682,0.132,15373518,15373518,1582329602111,true",
                         "13519808,9682.5,0.412,15373519,15373520,1582329602116,false"],
     "Binance aggTrades", False),
    ("simple-header", ["ts_ms,price,qty", "1582329602111,9682,0.132", "1582329602116,9682.5,0.412"],
     "simple", True),
    ("simple-no-header", ["1582329602111,9682,0.132", "1582329602116,9682.5,0.412"], "simple", False),
]


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "gz"])
@pytest.mark.parametrize(("lines", "layout", "header"), [f[1:] for f in FORMATS], ids=[f[0] for f in FORMATS])
def test_every_format_is_recognised_and_parsed(tmp_path: Path, lines: list[str], layout: str, header: bool,
                                               gz: bool) -> None:
    path = write(tmp_path / ("t.csv.gz" if gz else "t.csv"), lines, gz=gz)
    fmt, rows, bad = read(path)
    assert (fmt.layout.name, fmt.has_header, fmt.compressed, fmt.time_unit) == (layout, header, gz, "ms")
    assert bad == []
    first = 2 if header else 1
    assert rows == [TradeRow(1582329602111, D("9682"), D("0.132"), first),
                    TradeRow(1582329602116, D("9682.5"), D("0.412"), first + 1)]


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.csv.gz", ["1,2,3"])
    packed = write(tmp_path / "packed.csv", ["1,2,3"], gz=True)
    assert not detect_format(plain).compressed
    assert detect_format(packed).compressed
    assert [r.ts_ms for r in read(plain)[1]] == [r.ts_ms for r in read(packed)[1]] == [1]


def test_header_is_matched_case_and_space_insensitively_and_a_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffTS_MS, Price ,qty\r\n5,1.5,2\r\n".encode())
    fmt, rows, bad = read(path)
    assert (fmt.layout.name, fmt.has_header, bad) == ("simple", True, [])
    assert rows == [TradeRow(5, D("1.5"), D("2"), 2)]


def test_quoted_fields_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b'"ts_ms","price","qty"\r\n"10","1.25","3"\r\n\r\n20,1.5,4\r\n')
    _, rows, bad = read(path)
    assert bad == []
    assert rows == [TradeRow(10, D("1.25"), D("3"), 2), TradeRow(20, D("1.5"), D("4"), 4)]


def test_prices_and_quantities_are_exact_decimals(tmp_path: Path) -> None:
    texts = [("0.1", "0.2"), ("0.30000000000000004", "0.014596000000000001"), ("1E-8", "0"),
             ("64000.12345678", "123456789.000000001")]
    path = write(tmp_path / "d.csv", [f"{1000 + i},{p},{q}" for i, (p, q) in enumerate(texts)])
    _, rows, bad = read(path)
    assert bad == []
    for row, (price, qty) in zip(rows, texts, strict=True):
        assert type(row.price) is Decimal and type(row.qty) is Decimal
        assert (str(row.price), str(row.qty)) == (str(Decimal(price)), str(Decimal(qty)))
    assert rows[0].price + rows[0].price + rows[0].price == D("0.3")  # not 0.30000000000000004


def test_parse_decimal_rejects_non_finite_and_odd_spellings() -> None:
    for text in ("NaN", "nan", "Infinity", "-inf", "1_000", "", "abc", "1,5", "0x10"):
        assert parse_decimal(text) is None, text
    assert parse_decimal(" 1.50 ") == D("1.50")


def test_microsecond_times_are_converted_to_milliseconds(tmp_path: Path) -> None:
    path = write(tmp_path / "us.csv", ["1,9682,0.1,968.2,1735689600123456,true,true",
                                       "2,9683,0.2,1936.6,1735689600124999,false,true"])
    fmt, rows, bad = read(path)
    assert (fmt.layout.name, fmt.time_unit, bad) == ("Binance trades", "us", [])
    assert [r.ts_ms for r in rows] == [1735689600123, 1735689600124]
    assert "converted" in fmt.describe()


def test_one_huge_time_does_not_rescale_a_millisecond_file(tmp_path: Path) -> None:
    path = write(tmp_path / "typo.csv", ["1582329602111000,10,1", "1582329602112,10,1", "1582329602113,10,1"])
    fmt, rows, bad = read(path)
    assert fmt.time_unit == "ms"
    assert [r.ts_ms for r in rows] == [1582329602112, 1582329602113]
    assert [(b.line, "out of range" in b.problem) for b in bad] == [(1, True)]


# --- malformed rows ------------------------------------------------------------------------------------

def test_each_kind_of_malformed_row_is_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    lines = [
        "ts_ms,price,qty",  # 1
        "1000,10,1",  # 2 good
        "1001,10",  # 3 too few columns
        "1002,10,1,9",  # 4 too many columns
        "1003,abc,1",  # 5 price not a number
        "1004,10,xyz",  # 6 qty not a number
        "1005,0,1",  # 7 price zero
        "1006,-5,1",  # 8 price negative
        "1007,10,-1",  # 9 qty negative
        "10.5,10,1",  # 10 time not whole
        "0,10,1",  # 11 time zero
        "-7,10,1",  # 12 time negative
        "abc,10,1",  # 13 time not a number
        "1008,NaN,1",  # 14 price NaN
        "1009,Infinity,1",  # 15 price infinite
        "999999999999999,10,1",  # 16 time out of range for milliseconds
        "1010,10,0",  # 17 good: qty 0 is allowed
        "900,11,1",  # 18 good: older than the previous row, passed on
        "1011,12,2",  # 19 good
    ]
    path = write(tmp_path / "bad.csv", lines)
    _, rows, bad = read(path)
    assert [(r.line, r.ts_ms) for r in rows] == [(2, 1000), (17, 1010), (18, 900), (19, 1011)]
    assert [b.line for b in bad] == list(range(3, 17))
    assert all(b.path == path for b in bad)
    problems = {b.line: b.problem for b in bad}
    assert "expected 3 columns" in problems[3] and "got 2" in problems[3]
    assert "got 4" in problems[4]
    assert "price 'abc' is not a number" in problems[5]
    assert "qty 'xyz' is not a number" in problems[6]
    assert "price must be > 0" in problems[7] and "price must be > 0" in problems[8]
    assert "qty must be >= 0" in problems[9]
    assert "time '10.5'" in problems[10]
    assert "time must be positive" in problems[11] and "time must be positive" in problems[12]
    assert "time 'abc'" in problems[13]
    assert "price 'NaN'" in problems[14] and "price 'Infinity'" in problems[15]
    assert "out of range" in problems[16]
    assert str(bad[0]) == f"{path}:3: {bad[0].problem}"


def test_undecodable_line_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"ts_ms,price,qty\n1,2,3\n2,\xff\xfe,3\n3,2,3\n")
    _, rows, bad = read(path)
    assert [r.line for r in rows] == [2, 4]
    assert [(b.line, b.problem) for b in bad] == [(3, "not UTF-8 text")]


def test_truncated_last_line_is_a_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.csv.gz", ["ts_ms,price,qty", "1,10,1", "2,10,1", "3,10"], gz=True,
                 newline_at_end=False)
    _, rows, bad = read(path)
    assert [r.line for r in rows] == [2, 3]
    assert len(bad) == 1 and bad[0].line == 4
    assert "got 2" in bad[0].problem and "truncated" in bad[0].problem


def test_truncated_gzip_stream_is_one_bad_row_and_ends_the_file(tmp_path: Path) -> None:
    lines = ["ts_ms,price,qty", *simple_rows(5000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    path = tmp_path / "short.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    _, rows, bad = read(path)
    assert 0 < len(rows) < 5000
    assert [r.line for r in rows] == list(range(2, 2 + len(rows)))
    assert len(bad) == 1
    assert bad[0].line == rows[-1].line + 1  # the line that was cut
    assert "truncated" in bad[0].problem and "rest of the file skipped" in bad[0].problem


def test_a_small_gzip_cut_short_is_still_accepted_and_the_cut_reported(tmp_path: Path) -> None:
    data = gzip.compress(b"ts_ms,price,qty\n1,10,1\n2,10,1\n3,10,1\n", mtime=0)
    path = tmp_path / "tiny.csv.gz"
    path.write_bytes(data[:-10])  # the trailer and the end of the deflate stream are missing
    fmt, rows, bad = read(path)
    assert fmt.layout.name == "simple"
    assert len(bad) == 1 and "truncated" in bad[0].problem
    assert bad[0].line == (rows[-1].line if rows else 1) + 1


def _corrupt_second_stored_block(data: bytes) -> bytes:
    """Break the length check of the second deflate block of an uncompressed (level 0) gzip."""
    first_len = int.from_bytes(data[11:13], "little")  # gzip header is 10 bytes, then 1 + LEN + NLEN
    second = 10 + 5 + first_len
    damaged = bytearray(data)
    damaged[second + 3] ^= 0xFF  # NLEN no longer the complement of LEN
    return bytes(damaged)


def test_corrupt_gzip_stream_in_the_middle_is_one_bad_row_and_other_files_go_on(tmp_path: Path) -> None:
    lines = ["ts_ms,price,qty", *simple_rows(20_000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=0, mtime=0)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(_corrupt_second_stored_block(data))
    other = write(tmp_path / "other.csv", simple_rows(3, start_ms=1_600_000_000_000 + 30_000))
    bad: list[BadRow] = []
    readers = [("BTC", TradeFileReader(broken, detect_format(broken), bad.append)),
               ("ETH", TradeFileReader(other, detect_format(other), bad.append))]
    merged = list(merge_trades(readers))
    btc = [t for t in merged if t.coin == "BTC"]
    assert 0 < len(btc) < 20_000
    assert [t.coin for t in merged[-3:]] == ["ETH"] * 3
    assert len(bad) == 1 and bad[0].path == broken
    assert bad[0].line == btc[-1].line + 1
    assert "corrupt" in bad[0].problem


def test_header_less_file_is_recognised_from_its_first_well_formed_row(tmp_path: Path) -> None:
    path = write(tmp_path / "agg.csv", ["13519807,oops,0.1,1,1,1582329602111,true",  # malformed first row
                                        "13519808,9682,0.132,2,2,1582329602112,true"])
    fmt, rows, bad = read(path)
    assert (fmt.layout.name, fmt.has_header) == ("Binance aggTrades", False)
    assert [r.line for r in rows] == [2]
    assert [(b.line, "price 'oops' is not a number" in b.problem) for b in bad] == [(1, True)]


# --- files that cannot be replayed ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "problem"), [
    ("missing.csv", None, "cannot read"),
    ("empty.csv", b"", "empty"),
    ("blank.csv", b"\n\n", "empty"),
    ("header.csv", b"exchange,symbol,timestamp,price\nbinance,BTC,1,2\n", "unrecognised header"),
    ("shape.csv", b"1,2\n3,4\n", "no row in the first"),
    ("binary.bin", bytes(range(256)) * 4, "not a CSV text file"),
    ("bad.gz", b"\x1f\x8b\x08\x00garbage-not-deflate", "cannot read"),
])
def test_unusable_files_raise_value_error_naming_the_file(tmp_path: Path, name: str, content: bytes | None,
                                                          problem: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        detect_format(path)
    message = str(caught.value)
    assert str(path) in message and problem in message
    if problem in ("empty", "unrecognised header", "no row in the first"):
        assert ACCEPTED_FORMATS in message


def test_a_directory_is_not_a_trade_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        detect_format(tmp_path)


def test_header_only_file_is_valid_and_has_no_rows(tmp_path: Path) -> None:
    fmt, rows, bad = read(write(tmp_path / "h.csv", [TRADES_HEADER]))
    assert (fmt.layout.name, rows, bad) == ("Binance trades", [], [])


# --- merging ---------------------------------------------------------------------------------------------

def _rows(*pairs: tuple[int, str]) -> list[TradeRow]:
    return [TradeRow(ts, D(price), D("1"), line) for line, (ts, price) in enumerate(pairs, start=2)]


def test_merge_orders_by_time_then_file_then_line() -> None:
    btc = _rows((10, "1"), (20, "2"), (20, "3"), (40, "4"))
    eth = _rows((5, "5"), (20, "6"), (30, "7"))
    sol = _rows((20, "8"), (50, "9"))
    merged = list(merge_trades([("BTC", btc), ("ETH", eth), ("SOL", sol)]))
    assert [(t.ts_ms, t.coin, t.line) for t in merged] == [
        (5, "ETH", 2), (10, "BTC", 2),
        (20, "BTC", 3), (20, "BTC", 4), (20, "ETH", 3), (20, "SOL", 2),  # a tie: file order, then line
        (30, "ETH", 4), (40, "BTC", 5), (50, "SOL", 3),
    ]
    assert [t.file_index for t in merged[2:6]] == [0, 0, 1, 2]
    assert merged == list(merge_trades([("BTC", btc), ("ETH", eth), ("SOL", sol)]))  # deterministic


def test_merge_passes_an_older_row_on_and_a_single_file_keeps_its_order() -> None:
    rows = _rows((10, "1"), (5, "2"), (20, "3"))
    assert [t.ts_ms for t in merge_trades([("BTC", rows)])] == [10, 5, 20]
    merged = list(merge_trades([("BTC", rows), ("ETH", _rows((7, "9")))]))
    assert sorted((t.coin, t.line) for t in merged) == [("BTC", 2), ("BTC", 3), ("BTC", 4), ("ETH", 2)]


def test_closing_the_merge_closes_every_source() -> None:
    closed: list[str] = []

    def source(coin: str) -> Iterable[TradeRow]:
        try:
            yield from _rows((10, "1"), (20, "2"))
        finally:
            closed.append(coin)

    merged = merge_trades([("BTC", source("BTC")), ("ETH", source("ETH"))])
    assert next(merged).coin == "BTC"
    merged.close()
    assert sorted(closed) == ["BTC", "ETH"]


def test_reader_reports_its_byte_position_and_reads_again_from_the_start(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv.gz", ["ts_ms,price,qty", *simple_rows(3000)], gz=True)
    reader = TradeFileReader(path, detect_format(path), lambda bad: None)
    positions = []
    for row in reader:
        if row.line % 500 == 0:
            positions.append(reader.bytes_read)
    assert positions == sorted(positions) and positions[-1] > 0
    assert reader.bytes_read == reader.bytes_total == path.stat().st_size
    assert len(list(reader)) == 3000


# --- real data ------------------------------------------------------------------------------------------

def test_full_day_of_binance_futures_trades(shared_data: Path) -> None:
    path = shared_data / "trades" / "binance-futures_BTCUSDT_trades_2020-02-22.csv.gz"
    fmt, rows, bad = read(path)
    assert (fmt.layout.name, fmt.has_header, fmt.compressed) == ("Binance trades", True, True)
    assert bad == []
    assert len(rows) == 137_988
    assert (rows[0].ts_ms, rows[-1].ts_ms) == (1582329602111, 1582415993624)
    assert (rows[0].price, rows[0].qty, rows[0].line) == (D("9682"), D("0.132"), 2)
    assert rows[-1].line == 137_989
    assert all(a.ts_ms <= b.ts_ms for a, b in zip(rows, rows[1:], strict=False))


def test_real_agg_trades_with_header(shared_data: Path) -> None:
    path = shared_data / "trades" / "binance-spot_XRPETH_aggTrades_2019-10-11_2019-10-13.csv.gz"
    fmt, rows, bad = read(path)
    assert (fmt.layout.name, fmt.has_header, bad) == ("Binance aggTrades", True, [])
    assert len(rows) == 12_477
    assert (rows[0].ts_ms, rows[-1].ts_ms) == (1570752011620, 1570965568844)
    assert str(rows[0].price) == "0.00141342" and str(rows[0].qty) == "23.00000000"


@pytest.mark.parametrize("text", ["1e400", "1E+19", "-1e1000"])
def test_a_number_too_large_to_compute_with_is_not_a_number(text):
    assert parse_decimal(text) is None
