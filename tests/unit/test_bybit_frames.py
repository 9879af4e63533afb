"""adapters/feeds/bybit_frames.py: the Bybit v5 websocket payloads of ../shared/data, ticker deltas
against the kept top of book, hand-made bad frames, and the subscription side.

Pure: no threads, no network. The payload tests read ../shared/data through the
``shared_data`` fixture and skip when it is absent. Those payloads are hand-made upstream
(NautilusTrader fixtures): ``ws_public_trade.json`` names its topic ``trade.linear.BTCUSDT``
where v5 says ``publicTrade.BTCUSDT``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.feeds.bybit_frames import (
    LINEAR_WS_URL,
    SPOT_WS_URL,
    BybitFrameParser,
    default_symbols,
    ping_message,
    subscribe_message,
)
from adapters.feeds.stream_events import ParsedFrame, QuoteEvent, TradeEvent

D = Decimal
TS = 1709891679005


@pytest.fixture
def parser() -> BybitFrameParser:
    return BybitFrameParser({"BTC": "BTCUSDT", "ETH": "ETHUSDT"})


def payload(shared_data: Path, name: str) -> str:
    return (shared_data / "payloads/bybit" / name).read_text()


def kind_of(parsed: ParsedFrame) -> str:
    assert parsed.problem is not None, parsed
    assert parsed.events == () and parsed.control is None
    return parsed.problem.kind


def trades_frame(*trades: dict[str, Any], symbol: str = "BTCUSDT") -> str:
    return json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": TS, "data": list(trades)})


def trade(**changes: Any) -> dict[str, Any]:
    element = {"T": 1709891679000, "s": "BTCUSDT", "S": "Buy", "v": "0.010", "p": "27451.00",
               "L": "PlusTick", "i": "9dc75fca-4bdd-4773-9f78-6f5d7ab2a110", "BT": False}
    element.update(changes)
    return {key: value for key, value in element.items() if value is not None}


def ticker(kind: str = "delta", symbol: str = "BTCUSDT", ts: Any = TS, cs: Any = 1, **fields: Any) -> str:
    return json.dumps({"topic": f"tickers.{symbol}", "type": kind, "data": {"symbol": symbol, **fields},
                       "cs": cs, "ts": ts})


def quote(parsed: ParsedFrame) -> QuoteEvent:
    assert parsed.problem is None and parsed.control is None, parsed
    (event,) = parsed.events
    assert isinstance(event, QuoteEvent)
    return event


# --- the payloads ---------------------------------------------------------------------------------


def test_parse_when_public_trade_payload_then_trade_event(shared_data: Path, parser: BybitFrameParser) -> None:
    text = payload(shared_data, "ws_public_trade.json").replace("trade.linear.BTCUSDT", "publicTrade.BTCUSDT")
    parsed = parser.parse(text)
    assert parsed == ParsedFrame(events=(TradeEvent(
        coin="BTC", price=D("27451.00"), qty=D("0.010"), ts_ms=1709891679000,
        trade_id="9dc75fca-4bdd-4773-9f78-6f5d7ab2a110"),))
    assert str(parsed.events[0].price) == "27451.00"


def test_parse_when_public_trade_payload_with_its_hand_made_topic_then_unexpected(
        shared_data: Path, parser: BybitFrameParser) -> None:
    parsed = parser.parse(payload(shared_data, "ws_public_trade.json"))
    assert kind_of(parsed) == "unexpected" and "trade.linear.BTCUSDT" in parsed.problem.detail  # type: ignore[union-attr]


def test_parse_when_linear_ticker_snapshot_then_quote_with_envelope_time(
        shared_data: Path, parser: BybitFrameParser) -> None:
    assert quote(parser.parse(payload(shared_data, "ws_ticker_linear.json"))) == QuoteEvent(
        coin="BTC", bid=D("17215.50"), bid_qty=D("84.489"), ask=D("17216.00"), ask_qty=D("83.020"),
        ts_ms=1673272861686, seq=24987956059)


def test_parse_when_subscription_ack_or_failure_payload(shared_data: Path, parser: BybitFrameParser) -> None:
    assert parser.parse(payload(shared_data, "ws_subscription_ack.json")) == ParsedFrame(control="ack")
    failed = parser.parse(payload(shared_data, "ws_subscription_failure.json"))
    assert kind_of(failed) == "unexpected"
    assert "Invalid topic: invalid.topic.BTCUSDT" in failed.problem.detail  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "control"), [
    ("ws_orderbook_snapshot.json", "ignored:orderbook"),
    ("ws_orderbook_delta.json", "ignored:orderbook"),
    ("ws_kline.json", "ignored:kline"),
    ("ws_auth_success.json", "ack"),
])
def test_parse_when_unused_topic_payload_then_ignored(shared_data: Path, parser: BybitFrameParser,
                                                      name: str, control: str) -> None:
    assert parser.parse(payload(shared_data, name)) == ParsedFrame(control=control)


def test_parse_when_ticker_of_unmapped_symbol_payload_then_unknown_stream(
        shared_data: Path, parser: BybitFrameParser) -> None:
    assert kind_of(parser.parse(payload(shared_data, "ws_ticker_option.json"))) == "unknown_stream"


def test_parse_when_auth_failure_payload_then_unexpected(shared_data: Path, parser: BybitFrameParser) -> None:
    parsed = parser.parse(payload(shared_data, "ws_auth_failure.json"))
    assert kind_of(parsed) == "unexpected"
    assert parsed.problem.detail == "auth failed: Invalid apikey"  # type: ignore[union-attr]


# --- trades ---------------------------------------------------------------------------------------


def test_parse_when_several_trades_then_one_event_each_in_order(parser: BybitFrameParser) -> None:
    parsed = parser.parse(trades_frame(trade(i="1", p="27451.00"), trade(i="2", p="27451.50", v="0.5")))
    assert [(e.trade_id, e.price, e.qty) for e in parsed.events] == [  # type: ignore[union-attr]
        ("1", D("27451.00"), D("0.010")), ("2", D("27451.50"), D("0.5"))]


def test_parse_when_block_trade_then_left_out_unless_asked(parser: BybitFrameParser) -> None:
    text = trades_frame(trade(i="1"), trade(i="2", BT=True))
    assert [e.trade_id for e in parser.parse(text).events] == ["1"]  # type: ignore[union-attr]
    assert parser.parse(trades_frame(trade(BT=True))) == ParsedFrame(control="ignored:publicTrade:block")
    with_blocks = BybitFrameParser({"BTC": "BTCUSDT"}, block_trades=True)
    assert [e.trade_id for e in with_blocks.parse(text).events] == ["1", "2"]  # type: ignore[union-attr]


def test_parse_when_spot_trade_id_is_numeric_text_then_kept(parser: BybitFrameParser) -> None:
    spot = BybitFrameParser({"BTC": "BTCUSDT"}, category="spot")
    (event,) = spot.parse(trades_frame(trade(i="2290000000007764263", L=None))).events
    assert event.trade_id == "2290000000007764263"  # type: ignore[union-attr]


def test_parse_when_one_trade_element_bad_then_whole_frame_is_a_problem(parser: BybitFrameParser) -> None:
    parsed = parser.parse(trades_frame(trade(i="1"), trade(i="2", p="-1")))
    assert kind_of(parsed) == "bad_value" and parsed.problem.detail.startswith("p:")  # type: ignore[union-attr]


# --- tickers: the kept top of book ------------------------------------------------------------------


def test_parse_when_ticker_delta_changes_one_side_then_quote_keeps_the_other(parser: BybitFrameParser) -> None:
    quote(parser.parse(ticker("snapshot", bid1Price="100.0", bid1Size="1", ask1Price="100.5", ask1Size="2")))
    assert quote(parser.parse(ticker(bid1Price="100.1", ts=TS + 5))) == QuoteEvent(
        coin="BTC", bid=D("100.1"), bid_qty=D("1"), ask=D("100.5"), ask_qty=D("2"), ts_ms=TS + 5, seq=1)
    assert quote(parser.parse(ticker(ask1Size="3.5"))).ask_qty == D("3.5")


def test_parse_when_ticker_delta_changes_no_book_field_then_ignored(parser: BybitFrameParser) -> None:
    quote(parser.parse(ticker("snapshot", bid1Price="100.0", bid1Size="1", ask1Price="100.5", ask1Size="2")))
    assert parser.parse(ticker(markPrice="100.2", fundingRate="0.0001")) == ParsedFrame(control="ignored:tickers")


def test_parse_when_book_not_fully_known_yet_then_incomplete_until_it_is(parser: BybitFrameParser) -> None:
    assert parser.parse(ticker(bid1Price="100.0", bid1Size="1")) == ParsedFrame(control="ignored:tickers:incomplete")
    assert parser.parse(ticker(ask1Price="100.5")) == ParsedFrame(control="ignored:tickers:incomplete")
    assert quote(parser.parse(ticker(ask1Size="2"))) == QuoteEvent(
        coin="BTC", bid=D("100.0"), bid_qty=D("1"), ask=D("100.5"), ask_qty=D("2"), ts_ms=TS, seq=1)


def test_parse_when_book_kept_per_symbol_and_reset_forgets_it(parser: BybitFrameParser) -> None:
    quote(parser.parse(ticker("snapshot", bid1Price="100.0", bid1Size="1", ask1Price="100.5", ask1Size="2")))
    assert parser.parse(ticker(symbol="ETHUSDT", bid1Price="2000")).control == "ignored:tickers:incomplete"
    assert quote(parser.parse(ticker(bid1Price="100.2"))).coin == "BTC"
    parser.reset()
    assert parser.parse(ticker(bid1Price="100.3")).control == "ignored:tickers:incomplete"


def test_parse_when_ticker_snapshot_then_it_replaces_the_book(parser: BybitFrameParser) -> None:
    quote(parser.parse(ticker("snapshot", bid1Price="100.0", bid1Size="1", ask1Price="100.5", ask1Size="2")))
    assert parser.parse(ticker("snapshot", bid1Price="99")).control == "ignored:tickers:incomplete"


def test_parse_when_ticker_value_bad_then_book_unchanged(parser: BybitFrameParser) -> None:
    quote(parser.parse(ticker("snapshot", bid1Price="100.0", bid1Size="1", ask1Price="100.5", ask1Size="2")))
    bad = parser.parse(ticker(bid1Price="100.1", ask1Price="abc"))
    assert kind_of(bad) == "bad_value" and bad.problem.detail.startswith("ask1Price:")  # type: ignore[union-attr]
    assert quote(parser.parse(ticker(bid1Size="5"))).bid == D("100.0")


def test_parse_when_ticker_then_sequence_from_the_cross_sequence(parser: BybitFrameParser) -> None:
    book = {"bid1Price": "100.0", "bid1Size": "1", "ask1Price": "100.5", "ask1Size": "2"}
    assert quote(parser.parse(ticker("snapshot", cs=24987956059, **book))).seq == 24987956059
    assert quote(parser.parse(ticker("snapshot", cs=None, **book))).seq is None


@pytest.mark.parametrize("value", ["24987956059", 2.5, False, -3])
def test_parse_when_cross_sequence_not_an_integer_then_bad_value(parser: BybitFrameParser, value: Any) -> None:
    parsed = parser.parse(ticker("snapshot", cs=value, bid1Price="100.0"))
    assert kind_of(parsed) == "bad_value" and parsed.problem.detail.startswith("cs:")  # type: ignore[union-attr]


def test_parse_when_ticker_older_than_the_book_then_stale_and_book_unchanged(parser: BybitFrameParser) -> None:
    quote(parser.parse(ticker("snapshot", cs=10, bid1Price="100.0", bid1Size="1", ask1Price="100.5", ask1Size="2")))
    assert quote(parser.parse(ticker(cs=12, bid1Price="100.2"))).bid == D("100.2")
    # a second connection repeats older frames: they must not take the book back
    assert parser.parse(ticker(cs=11, bid1Price="100.1")) == ParsedFrame(control="ignored:tickers:stale")
    assert parser.parse(ticker("snapshot", cs=9, bid1Price="99", bid1Size="9", ask1Price="99.5",
                               ask1Size="9")) == ParsedFrame(control="ignored:tickers:stale")
    assert parser.parse(ticker("snapshot", cs=11, markPrice="100")) == ParsedFrame(control="ignored:tickers:stale")
    # the same cs again sets the values of that moment, which the book has already
    assert quote(parser.parse(ticker(cs=12, bid1Price="100.2"))) == QuoteEvent(
        coin="BTC", bid=D("100.2"), bid_qty=D("1"), ask=D("100.5"), ask_qty=D("2"), ts_ms=TS, seq=12)
    assert quote(parser.parse(ticker(cs=13, ask1Size="3"))) == QuoteEvent(
        coin="BTC", bid=D("100.2"), bid_qty=D("1"), ask=D("100.5"), ask_qty=D("3"), ts_ms=TS, seq=13)


def test_parse_when_two_connections_interleave_around_a_reset_then_the_book_stays_right(
        parser: BybitFrameParser) -> None:
    """A handover as the parser sees it: the new connection's subscribe resets the parser while
    the old one still delivers; then the new one's snapshot (older than the old one's latest
    delta) and its deltas, each relative to its own previous frame, arrive between the old one's."""
    quote(parser.parse(ticker("snapshot", cs=100, bid1Price="100.0", bid1Size="1", ask1Price="100.5", ask1Size="2")))
    parser.reset()
    assert parser.parse(ticker(cs=104, bid1Price="100.1")).control == "ignored:tickers:incomplete"  # old
    # new: a snapshot taken at 103, after the reset: it fills what the book does not know
    assert quote(parser.parse(ticker("snapshot", cs=103, bid1Price="100.05", bid1Size="1", ask1Price="100.5",
                                     ask1Size="2"))) == QuoteEvent(
        coin="BTC", bid=D("100.1"), bid_qty=D("1"), ask=D("100.5"), ask_qty=D("2"), ts_ms=TS, seq=104)
    assert quote(parser.parse(ticker(cs=106, ask1Price="100.6"))).ask == D("100.6")  # old
    assert parser.parse(ticker(cs=104, bid1Price="100.1")).control == "ignored:tickers:stale"  # new, since 103
    assert quote(parser.parse(ticker(cs=107, bid1Size="5", ask1Price="100.6"))) == QuoteEvent(  # new, since 104
        coin="BTC", bid=D("100.1"), bid_qty=D("5"), ask=D("100.6"), ask_qty=D("2"), ts_ms=TS, seq=107)
    assert quote(parser.parse(ticker(cs=107, bid1Size="5"))).bid_qty == D("5")  # old, since 106


def test_parse_when_spot_ticker_without_book_fields_then_ignored() -> None:
    spot = BybitFrameParser({"BTC": "BTCUSDT"}, category="spot")
    text = ticker("snapshot", lastPrice="21109.77", highPrice24h="21426.99", usdIndexPrice="21122.4")
    assert spot.parse(text) == ParsedFrame(control="ignored:tickers")


def test_parse_when_ticker_time_missing_then_quote_without_time(parser: BybitFrameParser) -> None:
    text = json.dumps({"topic": "tickers.BTCUSDT", "type": "snapshot",
                       "data": {"bid1Price": "1", "bid1Size": "1", "ask1Price": "2", "ask1Size": "1"}})
    assert quote(parser.parse(text)).ts_ms is None


# --- control ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "control"), [
    ('{"req_id":"p1","op":"pong","args":["1675418560633"],"conn_id":"cfcb4ocsvfriu23r3er0-1b"}', "pong"),
    ('{"success":true,"ret_msg":"pong","conn_id":"0970e817","req_id":"","op":"ping"}', "pong"),
    ('{"op":"pong"}', "pong"),
    ('{"success":true,"ret_msg":"","conn_id":"x","req_id":"sub-1","op":"subscribe"}', "ack"),
    ('{"success":true,"ret_msg":"","conn_id":"x","op":"unsubscribe"}', "ack"),
    ('{"topic":"liquidation.BTCUSDT","type":"snapshot","ts":1,"data":{}}', "ignored:liquidation"),
    ('{"topic":"insurance.USDT","type":"snapshot","ts":1,"data":[]}', "ignored:insurance"),
])
def test_parse_when_control_message_then_control(parser: BybitFrameParser, text: str, control: str) -> None:
    assert parser.parse(text) == ParsedFrame(control=control)


# --- bad frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "{'op': 'pong'}", "", '{"op":"pong"} x'])
def test_parse_when_malformed_then_malformed_json(parser: BybitFrameParser, text: str) -> None:
    assert kind_of(parser.parse(text)) == "malformed_json"


def test_parse_when_real_frame_cut_in_half_then_truncated(shared_data: Path, parser: BybitFrameParser) -> None:
    for name in ("ws_ticker_linear.json", "ws_public_trade.json", "ws_orderbook_snapshot.json"):
        text = payload(shared_data, name)
        parsed = parser.parse(text[: len(text) // 2])
        assert kind_of(parsed) == "truncated", name
        assert parsed.problem.sample == text[: len(text) // 2][:200]  # type: ignore[union-attr]
    compact = trades_frame(trade())
    assert kind_of(parser.parse(compact[:-2])) == "truncated"


@pytest.mark.parametrize("text", [
    trades_frame(trade(s="SOLUSDT"), symbol="SOLUSDT"),
    ticker(symbol="SOLUSDT", bid1Price="1"),
    '{"topic":"orderbook.50.SOLUSDT","type":"snapshot","ts":1,"data":{}}',
    '{"topic":"kline.1.SOLUSDT","type":"snapshot","ts":1,"data":[]}',
])
def test_parse_when_symbol_not_subscribed_then_unknown_stream(parser: BybitFrameParser, text: str) -> None:
    parsed = parser.parse(text)
    assert kind_of(parsed) == "unknown_stream" and "SOLUSDT" in parsed.problem.detail  # type: ignore[union-attr]


@pytest.mark.parametrize("field", ["p", "v", "T", "i"])
def test_parse_when_trade_field_missing_then_missing_field_named(parser: BybitFrameParser, field: str) -> None:
    parsed = parser.parse(trades_frame(trade(**{field: None})))
    assert kind_of(parsed) == "missing_field" and repr(field) in parsed.problem.detail  # type: ignore[union-attr]


def test_parse_when_data_missing_then_missing_field(parser: BybitFrameParser) -> None:
    for text in ('{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1}', '{"topic":"tickers.BTCUSDT","ts":1}'):
        parsed = parser.parse(text)
        assert kind_of(parsed) == "missing_field" and "'data'" in parsed.problem.detail  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "value"), [
    ("p", "0"), ("p", "-27451"), ("p", "abc"), ("p", "NaN"), ("p", ""), ("v", "-0.5"), ("v", "Infinity"),
    ("T", "1709891679000"), ("T", 1709891679), ("T", 0), ("i", ""), ("i", [1]),
])
def test_parse_when_trade_value_bad_then_bad_value_named(parser: BybitFrameParser, field: str, value: Any) -> None:
    parsed = parser.parse(trades_frame(trade(**{field: value})))
    assert kind_of(parsed) == "bad_value" and parsed.problem.detail.startswith(f"{field}:")  # type: ignore[union-attr]


def test_parse_when_ticker_time_bad_then_bad_value(parser: BybitFrameParser) -> None:
    parsed = parser.parse(ticker("snapshot", ts="soon", bid1Price="1", bid1Size="1", ask1Price="2", ask1Size="1"))
    assert kind_of(parsed) == "bad_value" and parsed.problem.detail.startswith("ts:")  # type: ignore[union-attr]


@pytest.mark.parametrize("text", [
    "[]", "1", '{"hello":"world"}', '{"topic":"unknownTopic.BTCUSDT","data":[]}',
    '{"topic":"publicTrade.BTCUSDT","data":{"p":"1"}}', '{"topic":"publicTrade.BTCUSDT","data":["x"]}',
    '{"topic":5,"data":[]}',
])
def test_parse_when_unrecognized_then_a_problem_not_an_exception(parser: BybitFrameParser, text: str) -> None:
    assert kind_of(parser.parse(text)) in ("unexpected", "bad_value")


# --- subscription -----------------------------------------------------------------------------------


def test_topics_per_category(parser: BybitFrameParser) -> None:
    assert parser.topics() == ["publicTrade.BTCUSDT", "tickers.BTCUSDT", "publicTrade.ETHUSDT", "tickers.ETHUSDT"]
    assert parser.topics(["ETH"], quotes=False) == ["publicTrade.ETHUSDT"]
    spot = BybitFrameParser(default_symbols(["BTC"]), category="spot")
    assert spot.topics() == ["publicTrade.BTCUSDT"]  # spot tickers carry no bid/ask
    with pytest.raises(ValueError, match="SOL"):
        parser.topics(["SOL"])


def test_subscribe_and_ping_messages() -> None:
    text = subscribe_message(["publicTrade.BTCUSDT", "tickers.BTCUSDT"], 1)
    assert json.loads(text) == {"op": "subscribe", "args": ["publicTrade.BTCUSDT", "tickers.BTCUSDT"], "req_id": "1"}
    assert json.loads(ping_message()) == {"op": "ping"}
    assert json.loads(ping_message("p1")) == {"op": "ping", "req_id": "p1"}
    with pytest.raises(ValueError):
        subscribe_message([], "x")


def test_subscribe_messages_at_most_ten_topics_each() -> None:
    parser = BybitFrameParser(default_symbols([f"C{n}" for n in range(6)]))
    messages = [json.loads(m) for m in parser.subscribe_messages(req_id="s")]
    assert [len(m["args"]) for m in messages] == [10, 2]
    assert [m["req_id"] for m in messages] == ["s-1", "s-2"]
    assert sum((m["args"] for m in messages), []) == parser.topics()


def test_parser_construction_and_defaults() -> None:
    assert BybitFrameParser({"BTC": "BTCUSDT"}).default_url == LINEAR_WS_URL
    assert BybitFrameParser({"BTC": "BTCUSDT"}, category="spot").default_url == SPOT_WS_URL
    with pytest.raises(ValueError, match="category"):
        BybitFrameParser({"BTC": "BTCUSDT"}, category="inverse")
    with pytest.raises(ValueError):
        BybitFrameParser({"BTC": ""})
