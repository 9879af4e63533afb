"""Credentials never leave the process in text: one pure function masks them in URLs.

``mask_url(text)`` takes a URL, or any text that contains URLs (a log line, an exception's
message, an error printed at exit), and returns it with every credential replaced by ``***``:

- the password of a URL's user info: ``postgresql://trader:hunter2@db:5432/j`` ->
  ``postgresql://trader:***@db:5432/j`` (the user name stays: it says which account, and is no
  secret on its own);
- the value of a query parameter whose name says it is a secret (``password``, ``pass``,
  ``pwd``, ``secret``, ``token``, ``key``, ``apikey`` / ``api_key``, ``signature``, ...):
  ``wss://h/ws?token=abc&x=1`` -> ``wss://h/ws?token=***&x=1``.

Everything else is left exactly as it was. It works on text rather than on a parsed URL so the
same call covers a URL inside a longer message (``connect failed: ... (ws://u:p@h:1)``), and a
password with characters a URL should have percent-encoded (``@``, ``:``). Used wherever a
configured URL can be printed or logged: the websocket connection and REST fallback log lines,
the journal's name, config errors, and (as a last guard) every log record (``adapters/console/logs.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MASK = "***"

# scheme://user:password@  -- the password runs to the LAST "@" before the host part ends, as
# urllib.parse reads it; it cannot contain "/", "?", "#" or whitespace (those end the netloc).
_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)(?P<secret>[^\s/?#]*)@"
)
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pass|pwd|secret|client_secret|token|access_token|"
    r"refresh_token|auth|authorization|key|apikey|api_key|api-key|apisecret|api_secret|"
    r"signature|sig|sslpassword)=)(?P<secret>[^&#\s'\"]+)",
    re.IGNORECASE,
)


def mask_url(text: str) -> str:
    """``text`` (a URL, or text containing URLs) with every credential replaced by ``***``;
    see the module docstring. Anything that is not a ``str`` is returned as ``str(text)``
    masked the same way."""
    if not isinstance(text, str):
        text = str(text)
    if "://" not in text and "=" not in text:
        return text  # the common case of a log line: nothing that could hold a credential
    if "@" in text:
        text = _USERINFO.sub(lambda m: m["head"] + (MASK if m["secret"] else "") + "@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: m["head"] + MASK, text)
    return text


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key and secret, read from the environment (never from a file the engine writes).
    ``repr``/``str`` show only the last four characters of the key, so a credential that ends
    up in a log line or a traceback's locals says which key without revealing it."""

    key: str = field(repr=False)
    secret: str = field(repr=False)
    key_env: str = "SNIPER_API_KEY"
    secret_env: str = "SNIPER_API_SECRET"

    def __repr__(self) -> str:
        return f"Credentials(key=...{self.key[-4:] if len(self.key) >= 8 else ''}, from ${self.key_env}/${self.secret_env})"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """``text`` with the key and the secret replaced by ``***`` wherever they occur."""
        for value in (self.secret, self.key):
            if value:
                text = text.replace(value, MASK)
        return text


__all__ = ["MASK", "Credentials", "mask_url"]
