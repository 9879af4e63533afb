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

API keys come only from the environment: ``load_credentials(venue, environ)`` reads the key and
the secret from the variables ``[venue] key_env``/``secret_env`` name, and raises
``MissingCredentials`` naming the *variables* (never a value) when one is unset or empty. The
log setup masks the values themselves in every record (``configure_logging(secrets=...)``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from state.config import VenueConfig

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
        return redact_values(text, (self.key, self.secret))


class MissingCredentials(ValueError):
    """Live mode without a key or a secret in the environment. The text names the variables,
    e.g. ``live mode needs the API key in $SNIPER_API_KEY and the secret in $SNIPER_API_SECRET
    (neither is set)``."""

    def __init__(self, key_env: str, secret_env: str, missing: tuple[str, ...]) -> None:
        self.key_env = key_env
        self.secret_env = secret_env
        self.missing = missing
        if len(missing) == 2:
            which = "neither is set"
        else:
            which = f"${missing[0]} is not set"
        super().__init__(f"live mode needs the API key in ${key_env} and the secret in ${secret_env} ({which}; "
                         "an empty value counts as not set). Export them in the shell that starts the engine; "
                         "they are never read from a file.")


def load_credentials(venue: VenueConfig, environ: Mapping[str, str]) -> Credentials:
    """The key and the secret from the environment variables ``venue.key_env`` and
    ``venue.secret_env`` (surrounding whitespace, such as a pasted newline, dropped). Raises
    ``MissingCredentials`` naming the variables that are unset or empty."""
    key = (environ.get(venue.key_env) or "").strip()
    secret = (environ.get(venue.secret_env) or "").strip()
    missing = tuple(name for name, value in ((venue.key_env, key), (venue.secret_env, secret)) if not value)
    if missing:
        raise MissingCredentials(venue.key_env, venue.secret_env, missing)
    return Credentials(key=key, secret=secret, key_env=venue.key_env, secret_env=venue.secret_env)


def redact_values(text: str, secrets: tuple[str, ...] | list[str] | frozenset[str]) -> str:
    """``text`` with each of ``secrets`` (literal values, such as an API key and secret)
    replaced by ``***``, longest first (so a secret that contains another is masked whole)."""
    if not isinstance(text, str):
        text = str(text)
    for value in sorted(secrets, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, MASK)
    return text


__all__ = ["MASK", "Credentials", "MissingCredentials", "load_credentials", "mask_url", "redact_values"]
