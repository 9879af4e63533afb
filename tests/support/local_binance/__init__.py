"""A local Binance USD-M futures exchange for tests and benchmarks: REST (``/fapi``) with
Binance's signed-request checks, the user-data websocket, the public trade stream, a small
matching engine fed by a replayed trade stream, and fault injection. The servers are the
standard library and ``tests/support/ws_server.py``; ``ccxt_config``/``api_urls`` use the
project's ``rebase_api_urls`` and ``replay`` its ``trade_files`` reader. Everything listens on
127.0.0.1, on random ports; nothing here reaches the network.

Use::

    from tests.support.local_binance import LocalBinance

    with LocalBinance("key", "secret", balances={"USDT": Decimal("10000")}) as local:
        exchange = ccxt.binanceusdm(local.ccxt_config())       # apiKey/secret + urls["api"] rebased here
        # or by hand: ccxt.binanceusdm({"apiKey": ..., "secret": ...,
        #                               "urls": {"api": rebase_api_urls("binanceusdm", local.rest_url)}})
        local.feed_trade("BTCUSDT", "30000", "0.5")             # a trade on the tape: last price 30000
        exchange.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None, {"newClientOrderId": "p1-E"})
        local.wait_for_request("/fapi/v1/order", count=1, timeout=5)
        local.position("BTCUSDT")                               # (Decimal("0.01"), Decimal("30000"))

**Construction.** ``LocalBinance(api_key="local-api-key", api_secret="local-api-secret", *,
balances={"USDT": 10000}, maker_fee=0.0002, taker_fee=0.0004, exchange_info=None,
recv_window_ms=5000, dual_side_position=False, fill_model="full" | "traded_volume",
event_clock="wall" | "trades", listen_key_validity_s=3600)``.
``exchange_info=None`` uses a small built-in document (BTCUSDT, ETHUSDT, SOLUSDT in the real
shape with July-2021 filters: see ``exchange_info.py``), so nothing depends on the shared data
folder; pass a mapping or a path (``.json``/``.json.gz``) for another, e.g. the real 122-symbol
answer ``shared_data / exchange_info.SHARED_EXCHANGE_INFO`` (tests doing so take the
``shared_data`` fixture, which skips when it is absent). ``event_clock="trades"`` stamps events
(``E``/``T``, fill times) with the replayed trades' times instead of the server clock.

**Endpoints** (``rest.py``; each as ccxt 4.5.90 ``binanceusdm`` calls it, observed):

==================================  ====================================================
ccxt call                           requests
==================================  ====================================================
``load_markets`` (keys set)         ``GET /sapi/v1/capital/config/getall``,
                                    ``GET /sapi/v1/margin/allPairs`` (ccxt's
                                    ``fetchCurrencies``; off with ``options=
                                    {"fetchCurrencies": False}``), ``GET
                                    /fapi/v1/exchangeInfo``
``fetch_time`` / time adjustment    ``GET /fapi/v1/time``
``create_order``                    ``POST /fapi/v1/order`` (form body: ``newClientOrderId``
                                    from ``params``, ``newOrderRespType=RESULT``)
stop orders (``stopPrice``,         ``POST /fapi/v1/algoOrder`` (``algoType=CONDITIONAL``,
``triggerPrice``)                   ``clientAlgoId`` from ``clientOrderId``, ``triggerPrice``);
                                    with ``params={"trigger": True}``: ``fetch_order`` ``GET
                                    /fapi/v1/algoOrder``, ``fetch_open_orders`` ``GET
                                    /fapi/v1/openAlgoOrders``, ``cancel_order`` ``DELETE
                                    /fapi/v1/algoOrder`` (answer ``{"code": "200"}``: ccxt's
                                    status ``None``). A ``STOP*`` type sent to
                                    ``/fapi/v1/order`` answers -4120, as Binance does now
``cancel_order``                    ``DELETE /fapi/v1/order`` (``origClientOrderId`` from
                                    ``params={"origClientOrderId"|"clientOrderId": ...}``)
``fetch_order``                     ``GET /fapi/v1/order`` (same parameters)
``fetch_open_orders(symbol)``       ``GET /fapi/v1/openOrders``
``fetch_orders``/``closed``         ``GET /fapi/v1/allOrders``
``fetch_my_trades``                 ``GET /fapi/v1/userTrades`` (``since`` -> ``startTime``
                                    and ``endTime = since + 7 days``; ``fromId``,
                                    ``orderId`` through ``params``)
``fetch_balance``                   ``GET /fapi/v3/account``
``fetch_positions``                 ``GET /fapi/v1/leverageBracket`` once, then
                                    ``GET /fapi/v3/positionRisk`` (open positions only)
``fetch_position_mode``             ``GET /fapi/v1/positionSide/dual``
``set_leverage``                    ``POST /fapi/v1/leverage``
``set_margin_mode``                 ``POST /fapi/v1/marginType`` (``-4046 No need to change
                                    margin type.`` -> ccxt ``MarginModeAlreadySet``)
listen key                          ``POST``/``PUT``/``DELETE /fapi/v1/listenKey`` (API key
                                    header only, no signature)
==================================  ====================================================

Also served: ``/fapi/v1/ping``, ``ticker/24hr``, ``ticker/price``, ``ticker/bookTicker`` (from
the last fed trade), ``/fapi/v2/account``, ``/fapi/v2|v3/balance``, ``/fapi/v2/positionRisk``,
``POST /fapi/v1/positionSide/dual``, ``DELETE /fapi/v1/allOpenOrders``, ``GET
/fapi/v1/openOrder``, ``/fapi/v1/symbolConfig``, ``/fapi/v1/commissionRate``,
``/fapi/v1/multiAssetsMargin``, ``/fapi/v1/allAlgoOrders``. ``newOrderRespType=RESULT`` answers the order after matching
(a market order ``FILLED``); ``ACK`` (Binance's default) as accepted (``NEW``, nothing
executed). Numbers are strings as Binance sends them; ids are integers (``orderId`` from
8389765000000000001, trade ids from 5000000001).

**Security** (``rest.py``): ``X-MBX-APIKEY`` must be the configured key (HTTP 401 -2015; absent
-2014); signed endpoints need ``timestamp`` within ``recvWindow`` (the request's, else
``recv_window_ms``) behind the server clock and less than 1 s ahead of it (HTTP 400 -1021), and
``signature`` = HMAC-SHA256 hex of the exact query string + form body (HTTP 400 -1022).
``set_clock_offset(ms)`` moves the server clock (``/fapi/v1/time`` included) away from the
wall clock: a ccxt client with ``options={"adjustForTimeDifference": True}`` (it calls
``load_time_difference`` in ``load_markets``) passes, one without is refused -1021. Every
answer carries ``X-MBX-USED-WEIGHT-1M``; order requests ``X-MBX-ORDER-COUNT-10S``/``-1M``.

**How ccxt 4.5.90 classifies these answers** (observed; ``test_local_binance.py`` checks each).
ccxt chooses its USD-M error table by the request URL's host (``https://fapi.binance.com/``);
at any other URL, this server's included, only its generic table applies, so a few codes come
out less specific here than in production. Map by the ``code`` in the body (the exception text
carries the body) rather than by class where they differ:

=========================================  ==========================  =======================
answer                                     at this server              at fapi.binance.com
=========================================  ==========================  =======================
-2019 Margin is insufficient.              ``ExchangeError``           ``InsufficientFunds``
-4164 min notional                         ``ExchangeError``           ``InvalidOrder``
-2022 ReduceOnly Order is rejected.        ``ExchangeError``           ``InvalidOrder``
-4116 ClientOrderId is duplicated.         ``ExchangeError``           ``InvalidOrder``
-5021 FOK / -5022 post-only refused        ``InvalidOrder``            ``OrderNotFillable``
-4014 tick, -1111 precision, -4003 qty     ``BadRequest``              ``BadRequest``
-2013 (query) / -2011 (cancel)             ``OrderNotFound``           ``OrderNotFound``
-2015 key, -1022 signature                 ``AuthenticationError``     same (also after
                                                                       earlier successes:
                                                                       ccxt's -2015-as-ban
                                                                       workaround is spot-only)
-1125 listen key does not exist (PUT)      ``AuthenticationError`` (!) same: renew the key,
                                                                       do not halt
-1021 timestamp / recvWindow               ``InvalidNonce`` (a         same
                                           ``NetworkError``, but the
                                           request was refused)
-4061 position side (hedge mode)           ``OperationRejected``       same
-4046 No need to change margin type.       ``MarginModeAlreadySet``    same
HTTP 429 / 418 (+ ``Retry-After``)         ``DDoSProtection``          same
HTTP 5xx, Binance -1001 JSON body          ``OperationFailed`` (not    same
                                           a ``NetworkError``)
HTTP 5xx, HTML body (``body="html"``)      ``ExchangeNotAvailable``    same
answer held past ccxt's ``timeout``        ``RequestTimeout``          same
connection cut without an answer           ``NetworkError``            same
=========================================  ==========================  =======================

Also observed: with keys set, ``load_markets`` signs ``/sapi/v1/capital/config/getall`` *before*
``fetch_markets`` runs ``load_time_difference``, so with a skewed clock ``load_markets`` itself
fails -1021 unless ``load_time_difference()`` is called first or ``fetchCurrencies`` is off;
ccxt sends ``recvWindow=10000`` on every signed request (``options["recvWindow"]``). And
``create_order`` (ccxt's ``decimal_to_precision``) leaves ``ROUND_HALF_UP`` and an Underflow trap
in the *calling thread's* decimal context: call ccxt inside ``decimal.localcontext()``.

**Conditional orders** (``matching.py`` ``AlgoOrder``): STOP_MARKET/STOP trigger when a fed
trade reaches the trigger price (buy: >=, sell: <=; TAKE_PROFIT* the other way; one that would
trigger at once is refused -2021); the events follow the live lifecycle in
``payloads/binance-lean-brokerage/WebSocketFutureStopMarket*.json``: ``ALGO_UPDATE`` NEW, at the
trigger TRIGGERING, then the MARKET (or LIMIT) order it places with the ``clientAlgoId`` as
client id (``ORDER_TRADE_UPDATE`` with ``si`` = algo id, ``st`` = ``ALGO_CONDITION``), its fills,
``ALGO_UPDATE`` TRIGGERED and, once filled, FINISHED (REJECTED with ``rm`` if the placed order
is refused).

**Matching and account** (``matching.py``, whose docstring has the rules): market orders fill
at the last fed trade as taker; limits rest and fill as maker when a fed trade reaches them
(``fill_model``); GTX/FOK/IOC/reduce-only as Binance; one-way positions (``BOTH``) or hedge
(``LONG``/``SHORT``); wallet with fees and realized PnL; the real refusal codes (-2019, -4164,
-4014, -1111, -4003..-4005, -4023, -2013 query, -2011 cancel, -4116, -2022, -5021, -5022).

**Market data** (``market_stream.py``): ``feed_trade(symbol, price, qty, ts_ms=None, *,
trade_id=None, buyer_maker=False)`` matches first, then sends ``trade``/``aggTrade`` frames to
the subscribers of ``market_ws_url`` (the engine's ``[feed] url``: it connects to
``/stream?streams=btcusdt@trade/btcusdt@bookTicker``); ``feed_quote(...)`` sends a
``bookTicker``; ``replay(path, symbol, limit=None, before_each=None)`` feeds a recorded trades
file (any layout of ``adapters/feeds/trade_files.py``). For a tick-to-order latency,
``market_stream.trade_sent_ns(symbol, trade_id)`` (just before the frame went out) against the
order request's ``RequestRecord.received_ns`` (when its request line had been read).

**User data** (``user_stream.py``): ``<user_ws_url>/ws/<listenKey>`` for an active key (others
are refused at the handshake). Events, in Binance's shapes: ``ORDER_TRADE_UPDATE`` (``x`` NEW,
TRADE (``X`` PARTIALLY_FILLED/FILLED, with ``t``, ``l``, ``z``, ``L``, ``ap``, ``n``, ``N``,
``m``, ``R``, ``rp``), CANCELED, EXPIRED), then ``ACCOUNT_UPDATE`` (``m: ORDER``) after each
fill, and ``listenKeyExpired``. ``POST /listenKey`` returns the active key (extended) or a new
one; ``PUT`` extends (-1125 for an unknown or expired key); events of a moment with no
connected client are lost, as on Binance. A key that reaches ``listen_key_validity_s`` without
a ``PUT`` stops receiving events silently (``expire_listen_key`` sends the
``listenKeyExpired`` event and closes).

**Faults** (each one call; see ``faults.py``):

- ``accept_then_timeout(path="/fapi/v1/order", delay_s=None | s, cut=False, times=1)``: the
  order is placed and its events go out, the answer is held (until ``faults.release_delayed()``,
  ``delay_s`` or ``stop``) or, with ``cut=True``, the connection is closed unanswered.
- ``fail(path, status=503, times=1, method=None, body=None)``: HTTP 5xx (or any 4xx) instead of
  handling; ``rate_limit(retry_after_s, times=1, path=None)``: 429 + ``Retry-After``;
  ``ban(seconds)``: 418 + ``Retry-After`` on every request until ``banned_until_ms``
  (``lift_ban()``).
- ``drop_user_stream(refuse_s=0.0)`` (reconnects refused for ``refuse_s``;
  ``allow_user_stream()``), ``user_stream.close_clients()`` (a polite close frame, as Binance's
  24-hour disconnect), ``user_stream.pause()``/``resume()`` (open but mute: only a silence
  watchdog notices), ``expire_listen_key(key=None)``, ``duplicate_events(n)``,
  ``hold_events()`` + ``release_events(None | "reverse" | [1, 0, ...])`` (reordering, e.g. TRADE
  before NEW), ``partial_fills(parts)`` (market orders fill in ``parts`` trades),
  ``reject_next("balance" | "min_notional" | "price_filter" | "reduce_only" | (code, msg))``,
  ``place_order(symbol, side, type, qty, price=None, **params)`` (an order placed by hand: a
  position the engine did not open), ``set_dual_side_position(True)`` (hedge mode),
  ``set_balance(asset, amount)``, ``revoke_api_key()`` (-2015 from now on, mid-session),
  ``set_clock_offset(ms)``.

**Introspection** (all thread-safe): ``requests(path=None, method=None)`` (the log:
``RequestRecord(received_ns, method, path, params without signature, api_key, status, code)``),
``unrouted``, ``order(client_id)``, ``orders(symbol=None)``, ``submissions(client_id)`` (how many
requests carried that ``newClientOrderId``), ``trades(symbol=None)``, ``position(symbol,
side="BOTH")`` -> ``(amount, entry)``, ``balance(asset)``, ``user_events``, ``listen_keys``,
``active_listen_key``; bounded waits ``wait_for_request(path, count=1, timeout=5.0, method=None,
answered=False)``, ``wait_for_user_clients(count, timeout)``, ``wait_until(predicate, timeout)``
(all return ``False`` on timeout, never sleep to synchronize).
"""

from tests.support.local_binance.errors import BinanceError
from tests.support.local_binance.exchange_info import SHARED_EXCHANGE_INFO, builtin_exchange_info, load_exchange_info
from tests.support.local_binance.local import LocalBinance
from tests.support.local_binance.rest import RequestRecord

__all__ = ["SHARED_EXCHANGE_INFO", "BinanceError", "LocalBinance", "RequestRecord", "builtin_exchange_info",
           "load_exchange_info"]
