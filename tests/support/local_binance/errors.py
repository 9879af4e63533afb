"""Binance's error answers: ``BinanceError(http_status, code, msg)`` and the texts the local
exchange sends, word for word as Binance USD-M sends them."""

from __future__ import annotations

from typing import Any


class BinanceError(Exception):
    """A refusal answered as ``HTTP <status>`` with body ``{"code": code, "msg": msg}``."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})

    @property
    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def bad(code: int, msg: str) -> BinanceError:
    """An HTTP 400 refusal (nearly every order and parameter error)."""
    return BinanceError(400, code, msg)


INVALID_API_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = (-1022, "Signature for this request is not valid.")
BAD_TIMESTAMP = (-1021, "Timestamp for this request is outside of the recvWindow.")
AHEAD_TIMESTAMP = (-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
MARGIN_INSUFFICIENT = (-2019, "Margin is insufficient.")
REDUCE_ONLY_REJECTED = (-2022, "ReduceOnly Order is rejected.")
PRICE_TICK = (-4014, "Price not increased by tick size.")
PRECISION = (-1111, "Precision is over the maximum defined for this asset.")
QTY_NOT_POSITIVE = (-4003, "Quantity less than or equal to zero.")
QTY_BELOW_MIN = (-4004, "Quantity less than min quantity.")
QTY_ABOVE_MAX = (-4005, "Quantity greater than max quantity.")
QTY_STEP = (-4023, "Quantity not increased by step size.")
PRICE_BELOW_MIN = (-4013, "Price less than min price.")
PRICE_ABOVE_MAX = (-4016, "Price is higher than mark price multiplier cap.")
ORDER_NOT_EXIST = (-2013, "Order does not exist.")
UNKNOWN_ORDER = (-2011, "Unknown order sent.")
DUPLICATE_CLIENT_ID = (-4116, "ClientOrderId is duplicated.")
INVALID_SYMBOL = (-1121, "Invalid symbol.")
FOK_REJECTED = (-5021, "Due to the order could not be filled immediately, the FOK order has been rejected.")
GTX_REJECTED = (-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected.")
NO_LIQUIDITY = (-4131, "The counterparty's best price does not meet the PERCENT_PRICE filter limit.")
POSITION_SIDE_MISMATCH = (-4061, "Order's position side does not match user's setting.")
REDUCE_ONLY_NOT_REQUIRED = (-1106, "Parameter 'reduceOnly' sent when not required.")
ALGO_REQUIRED = (-4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints "
                        "instead.")
NO_NEED_MARGIN_TYPE = (-4046, "No need to change margin type.")
MARGIN_TYPE_WITH_POSITION = (-4048, "Margin type cannot be changed if there exists position.")
NO_NEED_POSITION_SIDE = (-4059, "No need to change position side.")
POSITION_SIDE_WITH_POSITION = (-4068, "Position side cannot be changed if there exists position.")
LISTEN_KEY_MISSING = (-1125, "This listenKey does not exist.")
ILLEGAL_CLIENT_ID = (-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                            "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
WOULD_TRIGGER = (-2021, "Order would immediately trigger.")


def mandatory(name: str) -> BinanceError:
    return bad(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def invalid_value(name: str) -> BinanceError:
    return bad(-1130, f"Data sent for parameter '{name}' is not valid.")


def min_notional(notional: str) -> BinanceError:
    return bad(-4164, f"Order's notional must be no smaller than {notional} (unless you choose reduce only).")


def leverage_invalid(value: str) -> BinanceError:
    return bad(-4028, f"Leverage {value} is not valid")
