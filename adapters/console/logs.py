"""Logging: loguru is the only sink; stdlib logging (pykka, ccxt, peewee, websocket) is
forwarded into it so no crash is silent (pykka logs actor crashes on the stdlib logger).

A sink that fails must not take the others down or drown them: loguru catches a sink's error
(``catch=True``) and prints it on stderr, once per record. The JSON-lines file is therefore
``LogFile``, which never raises: when the file cannot be written (a full disk, a lost
permission) it says so once on the console (``LOG_FILE_UNWRITABLE``), drops lines while it
fails, and says how many when writing works again (``LOG_FILE_RECOVERED``), so the console log,
where the reason of a halt appears, stays readable.

Credentials never reach a sink: ``configure_logging`` installs a patcher (``mask_record``) that
masks every URL credential (``state.secrets.mask_url``) and every literal secret it was given
(``secrets``: a live session's API key and secret, ``state.secrets.redact_values``) in each
record's message and in the text of its exception and the exceptions chained to it. The modules that print or log a
configured URL mask it themselves too; this is the guard for what they cannot foresee (a
library's error text, a traceback)."""

from __future__ import annotations

import logging
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loguru import logger

from collections.abc import Callable, Iterable

from state.secrets import mask_url, redact_values

LOG_FILE_MAX_BYTES = 20 * 1024 * 1024
LOG_FILES_KEPT = 5  # rotated files kept beside the current one
CONSOLE_ONLY = "console_only"  # a record bound with this extra never goes to the log file

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


def masker(secrets: Iterable[str] = ()) -> Callable[[str], str]:
    """The text mask of every record: URL credentials, then each literal secret."""
    values = tuple(value for value in secrets if value)
    if not values:
        return mask_url
    return lambda text: redact_values(mask_url(text), values)


def mask_exception(error: BaseException | None, depth: int = 0,
                   mask: Callable[[str], str] = mask_url) -> BaseException | None:
    """``error`` itself when no credential is in its text or its chain's; else a stand-in of
    the same class name and module, with the masked text, the same traceback and a masked
    chain (``__cause__``, ``__context__``), for the traceback a sink prints."""
    if error is None or depth > 8:
        return error
    text = _text(error)
    masked = mask(text)
    cause = mask_exception(error.__cause__, depth + 1, mask)
    context = mask_exception(error.__context__, depth + 1, mask)
    if masked == text and cause is error.__cause__ and context is error.__context__:
        return error
    kind = type(error)
    stand_in_class = type(kind.__name__, (Exception,), {"__module__": kind.__module__,
                                                        "__qualname__": kind.__qualname__})
    stand_in = stand_in_class(masked)
    stand_in.__cause__, stand_in.__context__ = cause, context
    stand_in.__suppress_context__ = error.__suppress_context__
    return stand_in.with_traceback(error.__traceback__)


def mask_record(record: Any, mask: Callable[[str], str] = mask_url) -> None:
    """loguru patcher: credentials masked in the message and the exception (see above)."""
    record["message"] = mask(record["message"])
    exception = record["exception"]
    if exception is not None and exception.value is not None:
        masked = mask_exception(exception.value, mask=mask)
        if masked is not exception.value:
            record["exception"] = exception._replace(type=type(masked), value=masked)


def intercept_stdlib_logging() -> None:
    logging.basicConfig(handlers=[InterceptHandler()], level=logging.INFO, force=True)
    for name in ("pykka", "ccxt", "peewee", "websocket", "urllib3"):
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
    logging.getLogger("peewee").setLevel(logging.INFO)


class LogFile:
    """``engine.jsonl`` with size rotation (to ``engine.<UTC time>.jsonl``, the newest
    ``keep`` kept) behind a guard: ``write`` never raises (see the module docstring)."""

    def __init__(self, path: Path, *, max_bytes: int = LOG_FILE_MAX_BYTES, keep: int = LOG_FILES_KEPT) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.dropped = 0
        self.failure: str | None = None
        self._file: Any = None
        self._size = 0
        self._lock = threading.Lock()

    def write(self, message: str) -> None:
        data = str(message).encode("utf-8")
        failed: OSError | None = None
        recovered = 0
        with self._lock:
            try:
                self._write(data)
            except OSError as error:
                self._close_quietly()
                self.dropped += 1
                if self.failure is None:
                    self.failure, failed = repr(error), error
            else:
                if self.failure is not None:
                    recovered, self.failure, self.dropped = self.dropped, None, 0
        # Said outside the lock, on the console only (the file sink filters these records out).
        if failed is not None:
            _console_only().error("LOG_FILE_UNWRITABLE: {}: {!r}; lines are dropped until it can be written "
                                  "again (the console goes on)", self.path, failed)
        elif recovered:
            _console_only().warning("LOG_FILE_RECOVERED: {} writable again; {} line(s) were dropped",
                                    self.path, recovered)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held open between writes
            self._size = self._file.tell()
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
            self._size += written

    def _rotate(self) -> None:
        self._close_quietly()
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H-%M-%S_%f")
        self.path.replace(self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}"))
        rotated = sorted(self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"))
        for old in rotated[: max(0, len(rotated) - self.keep)]:
            old.unlink(missing_ok=True)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._size = 0

    def _close_quietly(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass

    def stop(self) -> None:
        with self._lock:
            self._close_quietly()


def _console_only() -> Any:
    return logger.bind(actor="logs", **{CONSOLE_ONLY: True})


def _not_console_only(record: Any) -> bool:
    return not record["extra"].get(CONSOLE_ONLY)


def configure_logging(level: str = "INFO", log_dir: Path | None = None, *, console: bool = True,
                      secrets: Iterable[str] = ()) -> None:
    """Console sink (readable) and, with ``log_dir``, a JSON-lines file with rotation
    (``LogFile``). Both keep loguru's ``catch=True``: a sink's error never reaches the code
    that logged. ``secrets``: literal values (a live session's API key and secret) masked in
    every record, beside URL credentials."""
    mask = masker(secrets)
    logger.remove()
    logger.configure(extra={"actor": "engine"}, patcher=lambda record: mask_record(record, mask))
    if console:
        logger.add(sys.stderr, level=level, format=CONSOLE_FORMAT, backtrace=False, diagnose=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(
            LogFile(log_dir / "engine.jsonl"),
            level="DEBUG",
            serialize=True,
            enqueue=True,  # file I/O off the actors' threads
            filter=_not_console_only,
            backtrace=False,
            diagnose=False,
        )
    intercept_stdlib_logging()
