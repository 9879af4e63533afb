"""Logging: loguru is the only sink; stdlib logging (pykka, ccxt, peewee, websocket) is
forwarded into it so no crash is silent (pykka logs actor crashes on the stdlib logger)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from loguru import logger

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
    logger.configure(extra={"actor": "engine"})
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
