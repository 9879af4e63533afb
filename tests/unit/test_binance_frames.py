"""adapters/feeds/binance_frames.py: real captured Binance streams, hand-made bad frames, and the
subscription side (stream names, combined URL, SUBSCRIBE message).

Pure: no threads, no network. The real-data tests read ../shared/data through the
``shared_data`` fixture and skip when it is absent.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.feeds.binance_frames import (
    SPOT_WS_URL,
    USDM_WS_URL,
    BinanceFrameParser,
    combined_url,
    default_symbols,
    subscribe_message,
)
from adapters.feeds.stream_events import ParsedFrame, QuoteEvent, TradeEvent

D = Decimal
LINES = 20_000  # how many lines of each hftbacktest capture the tests parse

TRADE = ('{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256322,'
         '"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}')
BOOK = ('{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT",'
        '"b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256314}}')


@pytest.fixture
def parser() -> BinanceFrameParser:
    return BinanceFrameParser({"BTC": "BTCUSDT", "ETH": "ETHUSDT"})


def hftbacktest_messages(path: Path, limit: int = LINES) -> Iterator[str]:
    """The messages of a hftbacktest capture: ``<local_ts_ns> <message>`` per line."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number >= limit:
                return
            _, _, message = line.rstrip("\n").partition(" ")
            yield message


def cryptofeed_messages(path: Path) -> Iterator[str]:
    """The messages of a cryptofeed capture: ``<unix_seconds>: <message>`` per line; the header
    lines (``<url> <-> <ts>``, one per (re)connection) are skipped."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            stamp, sep, message = line.rstrip("\n").partition(": ")
            if sep and stamp.replace(".", "", 1).isdigit():
                yield message


def only(parsed: ParsedFrame) -> TradeEvent | QuoteEvent:
    assert parsed.problem is None, parsed.problem
    assert parsed.control is None
    assert len(parsed.events) == 1
    return parsed.events[0]


def kind_of(parsed: ParsedFrame) -> str:
    assert parsed.problem is not None, parsed
    assert parsed.events == () and parsed.control is None
    return parsed.problem.kind


def frame(data: dict[str, Any], stream: str = "btcusdt@trade") -> str:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":"))


def trade_data(**changes: Any) -> dict[str, Any]:
    data = json.loads(TRADE)["data"]
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


# --- real captures ------------------------------------------------------------------------------


def check_capture(parser: BinanceFrameParser, messages: Iterator[str]) -> Counter[str]:
    """Every trade and bookTicker frame gives exactly its wire values; depth is control; the
    REST depth snapshot among the lines is not a stream frame and is skipped."""
    seen: Counter[str] = Counter()
    for message in messages:
        wire = json.loads(message)
        if "lastUpdateId" in wire:  # the collector's REST snapshot (/depth body)
            seen["rest_snapshot"] += 1
            continue
        parsed = parser.parse(message)
        assert parsed.problem is None, (parsed.problem, message[:200])
        data = wire["data"]
        stream_type = wire["stream"].split("@")[1]
        if stream_type == "trade":
            event = only(parsed)
            assert event == TradeEvent(coin="BTC", price=D(data["p"]), qty=D(data["q"]), ts_ms=data["T"],
                                       trade_id=str(data["t"]))
            assert (str(event.price), str(event.qty)) == (data["p"], data["q"])  # digits as sent
        elif stream_type == "bookTicker":
            event = only(parsed)
            assert event == QuoteEvent(coin="BTC", bid=D(data["b"]), bid_qty=D(data["B"]), ask=D(data["a"]),
                                       ask_qty=D(data["A"]), ts_ms=data.get("T", data.get("E")), seq=data["u"])
            assert str(event.bid) == data["b"] and str(event.ask_qty) == data["A"]
        else:
            assert stream_type == "depth"
            assert parsed == ParsedFrame(control="ignored:depth")
        seen[stream_type] += 1
    return seen


def test_parse_when_usdm_capture_then_every_trade_and_quote_exact_and_no_problem(shared_data: Path) -> None:
    parser = BinanceFrameParser({"BTC": "BTCUSDT"}, market="usdm")
    seen = check_capture(parser, hftbacktest_messages(shared_data / "streams/binance-hftbacktest/usdm/btcusdt_20240808.gz"))
    assert sum(seen.values()) == LINES
    assert seen["trade"] > 1000 and seen["bookTicker"] > 5000 and seen["depth"] > 500
    assert seen["rest_snapshot"] == 1


def test_parse_when_spot_capture_then_every_trade_and_quote_exact_and_no_problem(shared_data: Path) -> None:
    parser = BinanceFrameParser({"BTC": "BTCUSDT"}, market="spot")
    seen = check_capture(parser, hftbacktest_messages(shared_data / "streams/binance-hftbacktest/spot/btcusdt_20240808.gz"))
    assert seen["trade"] > 1000 and seen["bookTicker"] > 5000 and seen["depth"] > 500
    assert seen["rest_snapshot"] == 1


def test_parse_when_spot_book_ticker_has_no_event_type_then_quote_without_time(shared_data: Path) -> None:
    parser = BinanceFrameParser({"BTC": "BTCUSDT"}, market="spot")
    for message in hftbacktest_messages(shared_data / "streams/binance-hftbacktest/spot/btcusdt_20240808.gz", 50):
        if "@bookTicker" in message:
            assert '"e"' not in message
            quote = only(parser.parse(message))
            assert isinstance(quote, QuoteEvent) and quote.ts_ms is None
            return
    pytest.fail("no bookTicker in the first lines")


def test_parse_when_rest_depth_snapshot_line_then_ignored_as_depth(shared_data: Path) -> None:
    for market in ("usdm", "spot"):
        parser = BinanceFrameParser({"BTC": "BTCUSDT"}, market=market)
        path = shared_data / f"streams/binance-hftbacktest/{market}/btcusdt_20240808.gz"
        snapshot = next(m for m in hftbacktest_messages(path, 100) if m.startswith('{"lastUpdateId"'))
        assert parser.parse(snapshot) == ParsedFrame(control="ignored:depth")


def test_parse_when_usdm_cryptofeed_capture_then_agg_trades_and_klines(shared_data: Path) -> None:
    coins = ("SUSHI", "AKRO", "KEEP", "CTK")
    parser = BinanceFrameParser(default_symbols(coins), market="usdm")
    seen: Counter[str] = Counter()
    for message in cryptofeed_messages(shared_data / "streams/binance-cryptofeed/BINANCE_FUTURES.ws.1.0.gz"):
        parsed = parser.parse(message)
        assert parsed.problem is None, (parsed.problem, message[:200])
        wire = json.loads(message)
        data, stream_type = wire["data"], wire["stream"].split("@")[1]
        if stream_type == "aggTrade":
            event = only(parsed)
            assert event == TradeEvent(coin=data["s"].removesuffix("USDT"), price=D(data["p"]), qty=D(data["q"]),
                                       ts_ms=data["T"], trade_id=f"a{data['a']}")
        elif stream_type == "bookTicker":
            assert isinstance(only(parsed), QuoteEvent)
        elif stream_type == "kline_1m":
            assert parsed.control == "ignored:kline" and parsed.events == ()
        else:
            assert parsed.control == "ignored:depth"
        seen[stream_type] += 1
    assert seen == {"aggTrade": 91, "bookTicker": 613, "depth": 764, "kline_1m": 67}


def test_parse_when_spot_cryptofeed_capture_with_custom_symbols_then_no_problem(shared_data: Path) -> None:
    parser = BinanceFrameParser({"NKN": "NKNUSDT", "BLZ": "BLZETH", "LRC": "LRCBTC", "RUNE": "RUNEEUR"}, market="spot")
    results = [parser.parse(m) for m in cryptofeed_messages(shared_data / "streams/binance-cryptofeed/BINANCE.ws.1.0.gz")]
    assert [r.problem for r in results if r.problem] == []
    trades = [e for r in results for e in r.events if isinstance(e, TradeEvent)]
    assert len(trades) == 2 and {t.coin for t in trades} <= {"NKN", "BLZ", "LRC", "RUNE"}
    assert all(t.trade_id.startswith("a") for t in trades)  # type: ignore[union-attr]


def test_parse_when_nautilus_raw_market_data_payloads_then_ignored_types_are_control(shared_data: Path) -> None:
    """Raw (unwrapped) USD-M events. Their values are from the API docs: the trade examples'
    ``T`` of 123456785 is not a timestamp in ms, and is reported as such."""
    folder = shared_data / "payloads/binance/futures/market_data_json"
    parser = BinanceFrameParser({"BTC": "BTCUSDT", "BNB": "BNBUSDT"})
    expected = {
        "depth_update_stream.json": "ignored:depth",
        "kline_stream_closed.json": "ignored:kline",
        "kline_stream_open.json": "ignored:kline",
        "liquidation_stream.json": "ignored:forceOrder",
        "mark_price_stream.json": "ignored:markPrice",
        "ticker_stream.json": "ignored:ticker",
    }
    for name, control in expected.items():
        assert parser.parse((folder / name).read_text()) == ParsedFrame(control=control), name
    quote = only(parser.parse((folder / "book_ticker_stream.json").read_text()))
    assert quote == QuoteEvent(coin="BNB", bid=D("25.35190000"), bid_qty=D("31.21000000"), ask=D("25.36520000"),
                               ask_qty=D("40.66000000"), ts_ms=1568014460891, seq=400900217)
    for name in ("trade_stream.json", "agg_trade_stream.json"):
        parsed = parser.parse((folder / name).read_text())
        assert kind_of(parsed) == "bad_value" and parsed.problem.detail.startswith("T:")  # type: ignore[union-attr]


# --- frames, one by one -------------------------------------------------------------------------


def test_parse_when_trade_then_decimal_from_the_string(parser: BinanceFrameParser) -> None:
    trade = only(parser.parse(TRADE))
    assert trade == TradeEvent(coin="BTC", price=D("61800.30"), qty=D("0.006"), ts_ms=1723161256322,
                               trade_id="5266583935")
    assert str(trade.price) == "61800.30"


def test_parse_when_book_ticker_then_time_from_t_before_e(parser: BinanceFrameParser) -> None:
    assert only(parser.parse(BOOK)).ts_ms == 1723161256313  # type: ignore[union-attr]
    data = json.loads(BOOK)["data"]
    del data["T"]
    assert only(parser.parse(frame(data, "btcusdt@bookTicker"))).ts_ms == 1723161256314  # type: ignore[union-attr]
    del data["E"]
    assert only(parser.parse(frame(data, "btcusdt@bookTicker"))).ts_ms is None  # type: ignore[union-attr]


def test_parse_when_book_ticker_then_sequence_from_the_update_id(parser: BinanceFrameParser) -> None:
    assert only(parser.parse(BOOK)).seq == 5123107839020  # type: ignore[union-attr]
    data = json.loads(BOOK)["data"]
    del data["u"]
    assert only(parser.parse(frame(data, "btcusdt@bookTicker"))).seq is None  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["5123107839020", 1.5, True, [1], -1])
def test_parse_when_book_ticker_update_id_not_an_integer_then_bad_value(parser: BinanceFrameParser,
                                                                        value: Any) -> None:
    data = json.loads(BOOK)["data"]
    data["u"] = value
    parsed = parser.parse(frame(data, "btcusdt@bookTicker"))
    assert kind_of(parsed) == "bad_value" and parsed.problem.detail.startswith("u:")  # type: ignore[union-attr]


def test_quote_event_init_sets_every_declared_field_and_stays_frozen() -> None:
    """QuoteEvent's __init__ is written by hand (for speed): it must keep up with the fields."""
    values = {field.name: f"value of {field.name}" for field in dataclasses.fields(QuoteEvent)}
    quote = QuoteEvent(**values)  # type: ignore[arg-type]
    assert {name: getattr(quote, name) for name in values} == values
    assert QuoteEvent(coin="BTC", bid=D(1), bid_qty=D(1), ask=D(2), ask_qty=D(1)).seq is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        quote.seq = 1  # type: ignore[misc]


def test_parse_when_raw_unwrapped_events_then_same_meaning(parser: BinanceFrameParser) -> None:
    assert parser.parse(json.dumps(json.loads(TRADE)["data"])) == parser.parse(TRADE)
    spot_book = {"u": 50093239212, "s": "ETHUSDT", "b": "2500.1", "B": "3", "a": "2500.2", "A": "1.5"}
    assert only(parser.parse(json.dumps(spot_book))) == QuoteEvent(
        coin="ETH", bid=D("2500.1"), bid_qty=D("3"), ask=D("2500.2"), ask_qty=D("1.5"), seq=50093239212)


def test_parse_when_bytes_frame_then_parsed_like_text(parser: BinanceFrameParser) -> None:
    assert parser.parse(TRADE.encode()) == parser.parse(TRADE)


def test_parse_when_price_is_a_json_number_then_exact_decimal_not_float(parser: BinanceFrameParser) -> None:
    text = TRADE.replace('"p":"61800.30"', '"p":61800.30')
    assert only(parser.parse(text)).price == D("61800.30")  # type: ignore[union-attr]
    assert str(only(parser.parse(text)).price) == "61800.30"  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["INSURANCE_FUND", "ADL", "NA"])
def test_parse_when_usdm_trade_is_not_market_then_ignored(parser: BinanceFrameParser, status: str) -> None:
    assert parser.parse(frame(trade_data(X=status))) == ParsedFrame(control=f"ignored:trade:{status}")


def test_parse_when_agg_trade_then_id_prefixed(parser: BinanceFrameParser) -> None:
    data = {"e": "aggTrade", "E": 1626992741575, "a": 16599292, "s": "ETHUSDT", "p": "2500.5", "q": "10",
            "f": 1, "l": 2, "T": 1626992741421, "m": False}
    assert only(parser.parse(frame(data, "ethusdt@aggTrade"))) == TradeEvent(
        coin="ETH", price=D("2500.5"), qty=D("10"), ts_ms=1626992741421, trade_id="a16599292")


@pytest.mark.parametrize(("text", "control"), [
    ('{"result":null,"id":1}', "ack"),
    ('{"result":["btcusdt@trade"],"id":3}', "result"),
    ('{"e":"serverShutdown","E":1723161256322}', "server_shutdown"),
    ('{"stream":"btcusdt@depth5@100ms","data":{"lastUpdateId":1,"bids":[],"asks":[]}}', "ignored:depth"),
    ('{"stream":"!miniTicker@arr","data":[]}', "ignored:miniTicker"),
    ('{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{}}}', "ignored:kline"),
])
def test_parse_when_control_message_then_control(parser: BinanceFrameParser, text: str, control: str) -> None:
    assert parser.parse(text) == ParsedFrame(control=control)


@pytest.mark.parametrize("text", [
    '{"code":2,"msg":"Invalid request: unknown variant SUBSCRIBEX"}',
    '{"error":{"code":2,"msg":"Invalid request: unknown variant SUBSCRIBEX"},"id":1}',
])
def test_parse_when_error_response_then_unexpected_with_message(parser: BinanceFrameParser, text: str) -> None:
    parsed = parser.parse(text)
    assert kind_of(parsed) == "unexpected"
    assert "unknown variant SUBSCRIBEX" in parsed.problem.detail  # type: ignore[union-attr]


# --- bad frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "{bad}", "", "   ", '{"a":1}}', "\x00"])
def test_parse_when_malformed_then_malformed_json(parser: BinanceFrameParser, text: str) -> None:
    assert kind_of(parser.parse(text)) == "malformed_json"


@pytest.mark.parametrize("cut", [0.5, 0.25, 0.9])
def test_parse_when_real_frame_cut_then_truncated(parser: BinanceFrameParser, cut: float) -> None:
    assert kind_of(parser.parse(TRADE[: int(len(TRADE) * cut)])) == "truncated"


def test_parse_when_frame_cut_after_a_brace_then_truncated(parser: BinanceFrameParser) -> None:
    assert kind_of(parser.parse(TRADE[:-1])) == "truncated"


def test_problem_sample_is_the_frame_cut_to_200_chars(parser: BinanceFrameParser, shared_data: Path) -> None:
    depth = next(hftbacktest_messages(shared_data / "streams/binance-hftbacktest/usdm/btcusdt_20240808.gz", 1))
    half = depth[: len(depth) // 2]
    parsed = parser.parse(half)
    assert kind_of(parsed) == "truncated"
    assert parsed.problem.sample == half[:200] and len(parsed.problem.sample) == 200  # type: ignore[union-attr]


@pytest.mark.parametrize("text", [
    frame(trade_data(s="SOLUSDT"), "solusdt@trade"),
    BOOK.replace("BTCUSDT", "XRPUSDT"),
    '{"stream":"solusdt@depth@0ms","data":{"e":"depthUpdate","E":1,"s":"SOLUSDT","b":[],"a":[]}}',
])
def test_parse_when_symbol_not_subscribed_then_unknown_stream(parser: BinanceFrameParser, text: str) -> None:
    parsed = parser.parse(text)
    assert kind_of(parsed) == "unknown_stream"
    assert "USDT" in parsed.problem.detail  # type: ignore[union-attr]


@pytest.mark.parametrize("field", ["s", "p", "q", "T", "t"])
def test_parse_when_trade_field_missing_then_missing_field_named(parser: BinanceFrameParser, field: str) -> None:
    parsed = parser.parse(frame(trade_data(**{field: None})))
    assert kind_of(parsed) == "missing_field"
    assert repr(field) in parsed.problem.detail  # type: ignore[union-attr]


@pytest.mark.parametrize("field", ["b", "B", "a", "A"])
def test_parse_when_quote_field_missing_then_missing_field_named(parser: BinanceFrameParser, field: str) -> None:
    data = json.loads(BOOK)["data"]
    del data[field]
    parsed = parser.parse(frame(data, "btcusdt@bookTicker"))
    assert kind_of(parsed) == "missing_field" and repr(field) in parsed.problem.detail  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "value"), [
    ("p", "abc"), ("p", "0"), ("p", "-1.5"), ("p", "NaN"), ("p", "Infinity"), ("p", ""), ("p", 0),
    ("p", True), ("q", "-0.001"), ("q", "sNaN"), ("q", []),
    ("T", "1723161256322"), ("T", 1723161256), ("T", -1), ("T", 1.5), ("t", "5266583935"),
])
def test_parse_when_trade_value_bad_then_bad_value_named(parser: BinanceFrameParser, field: str, value: Any) -> None:
    text = frame(trade_data(**{field: value}))
    parsed = parser.parse(text)
    assert kind_of(parsed) == "bad_value", text
    assert parsed.problem.detail.startswith(f"{field}:")  # type: ignore[union-attr]


def test_parse_when_quote_price_not_positive_then_bad_value(parser: BinanceFrameParser) -> None:
    parsed = parser.parse(BOOK.replace('"b":"61800.20"', '"b":"0.00"'))
    assert kind_of(parsed) == "bad_value" and parsed.problem.detail.startswith("b:")  # type: ignore[union-attr]


@pytest.mark.parametrize("text", [
    "[1, 2]", "42", '"text"', "null",
    '{"stream":"btcusdt@foo","data":{"e":"fooEvent","s":"BTCUSDT"}}',
    '{"stream":"btcusdt@foo","data":{"s":"BTCUSDT"}}',
    '{"stream":"btcusdt@trade","data":"x"}',
    '{"hello":"world"}',
    '{"stream":"btcusdt@trade","data":{"e":["trade"]}}',
])
def test_parse_when_unrecognized_then_unexpected(parser: BinanceFrameParser, text: str) -> None:
    assert kind_of(parser.parse(text)) == "unexpected"


def test_parse_when_not_text_then_unexpected_not_raised(parser: BinanceFrameParser) -> None:
    assert kind_of(parser.parse(12345)) == "unexpected"  # type: ignore[arg-type]
    assert kind_of(parser.parse(b"\xff\xfe{")) == "malformed_json"


# --- subscription ---------------------------------------------------------------------------------


def test_stream_names_when_trade_or_agg_trade_then_lowercase_pairs(parser: BinanceFrameParser) -> None:
    assert parser.stream_names() == ["btcusdt@trade", "btcusdt@bookTicker", "ethusdt@trade", "ethusdt@bookTicker"]
    assert parser.stream_names(["ETH"], trades="aggTrade") == ["ethusdt@aggTrade", "ethusdt@bookTicker"]
    assert parser.stream_names(["BTC"], quotes=False) == ["btcusdt@trade"]
    with pytest.raises(ValueError, match="trades"):
        parser.stream_names(trades="trades")
    with pytest.raises(ValueError, match="SOL"):
        parser.stream_names(["SOL"])


def test_combined_url_joins_streams_with_slashes() -> None:
    url = combined_url(USDM_WS_URL + "/", ["btcusdt@trade", "btcusdt@bookTicker"])
    assert url == "wss://fstream.binance.com/stream?streams=btcusdt@trade/btcusdt@bookTicker"
    assert combined_url(SPOT_WS_URL, ["x@trade"]) == "wss://stream.binance.com:9443/stream?streams=x@trade"
    with pytest.raises(ValueError):
        combined_url(SPOT_WS_URL, [])


def test_subscribe_message_is_binance_json_and_its_answer_is_an_ack(parser: BinanceFrameParser) -> None:
    text = subscribe_message(["btcusdt@trade", "btcusdt@bookTicker"], 7)
    assert json.loads(text) == {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@bookTicker"], "id": 7}
    assert parser.parse('{"result": null, "id": 7}').control == "ack"
    with pytest.raises(ValueError):
        subscribe_message(["btcusdt@trade"], -1)


def test_parser_construction_and_defaults() -> None:
    assert default_symbols(["BTC", "ETH"]) == {"BTC": "BTCUSDT", "ETH": "ETHUSDT"}
    assert BinanceFrameParser({"BTC": "BTCUSDT"}, market="spot").default_url == SPOT_WS_URL
    assert BinanceFrameParser({"BTC": "btcusdt"}).default_url == USDM_WS_URL
    assert only(BinanceFrameParser({"BTC": "btcusdt"}).parse(TRADE)).coin == "BTC"
    with pytest.raises(ValueError, match="market"):
        BinanceFrameParser({"BTC": "BTCUSDT"}, market="coinm")
    with pytest.raises(ValueError, match="BTCUSDT"):
        BinanceFrameParser({"BTC": "BTCUSDT", "XBT": "BTCUSDT"})
