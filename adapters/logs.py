"""Logging: loguru is the only sink; stdlib logging (pykka, ccxt, peewee, websocket) is
forwarded into it so no crash is silent (pykka logs actor crashes on the stdlib logger).

Credentials never reach a sink: ``configure_logging`` installs a patcher (``mask_record``) that
masks every URL credential (``state.secrets.mask_url``) in each record's message and in the
text of its exception and the exceptions chained to it. The modules that print or log a
configured URL mask it themselves too; this is the guard for what they cannot foresee (a
library's error text, a traceback)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from loguru import logger

from state.secrets import mask_url

CONSOLE_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[actor]: <12}</cyan> {message}"
)


class InterceptHandler(logging.Handler):
    """loguru's documented recipe for taking over the standard library's logging."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame = frame.f_back
            depth += 1
        logger.bind(actor=record.name).opt(depth=depth, exception=record.exc_info).log(
            level, record.getMessage()
        )


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break logging
        return ""


def mask_exception(error: BaseException | None, depth: int = 0) -> BaseException | None:
    """``error`` itself when no credential is in its text or its chain's; else a stand-in of
    the same class name and module, with the masked text, the same traceback and a masked
    chain (``__cause__``, ``__context__``), for the traceback a sink prints."""
    if error is None or depth > 8:
        return error
    text = _text(error)
    masked = mask_url(text)
    cause = mask_exception(error.__cause__, depth + 1)
    context = mask_exception(error.__context__, depth + 1)
    if masked == text and cause is error.__cause__ and context is error.__context__:
        return error
    kind = type(error)
    stand_in_class = type(kind.__name__, (Exception,), {"__module__": kind.__module__,
                                                        "__qualname__": kind.__qualname__})
    stand_in = stand_in_class(masked)
    stand_in.__cause__, stand_in.__context__ = cause, context
    stand_in.__suppress_context__ = error.__suppress_context__
    return stand_in.with_traceback(error.__traceback__)


def mask_record(record: Any) -> None:
    """loguru patcher: credentials masked in the message and the exception (see above)."""
    record["message"] = mask_url(record["message"])
    exception = record["exception"]
    if exception is not None and exception.value is not None:
        masked = mask_exception(exception.value)
        if masked is not exception.value:
            record["exception"] = exception._replace(type=type(masked), value=masked)


def intercept_stdlib_logging() -> None:
    logging.basicConfig(handlers=[InterceptHandler()], level=logging.INFO, force=True)
    for name in ("pykka", "ccxt", "peewee", "websocket", "urllib3"):
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
    logging.getLogger("peewee").setLevel(logging.INFO)


def configure_logging(level: str = "INFO", log_dir: Path | None = None, *, console: bool = True) -> None:
    """Console sink (readable) and, with ``log_dir``, a JSON-lines file with rotation."""
    logger.remove()
    logger.configure(extra={"actor": "engine"}, patcher=mask_record)
    if console:
        logger.add(sys.stderr, level=level, format=CONSOLE_FORMAT, backtrace=False, diagnose=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(
            log_dir / "engine.jsonl",
            level="DEBUG",
            serialize=True,
            rotation="20 MB",
            retention=5,
            enqueue=True,
            backtrace=False,
            diagnose=False,
        )
    intercept_stdlib_logging()
