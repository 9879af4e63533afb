"""What the local exchange's REST side does wrong on purpose, as a test asks.

``HttpFaults`` holds rules consulted for every request (``LocalBinance.faults``; the
``LocalBinance`` methods of the same names are shortcuts):

- ``fail(path, status=503, times=1, method=None, body=None)``: answer HTTP ``status`` (a 4xx/5xx)
  *instead of* handling the request, ``times`` times (``None``: until ``heal``). The default
  body of a 5xx is Binance's ``{"code": -1001, "msg": "Internal error; unable to process your
  request. Please try again."}``; ``body="html"`` sends an HTML page (as a proxy would).
- ``rate_limit(retry_after_s=1, times=1, path=None)``: HTTP 429 with ``Retry-After`` and
  Binance's -1003 "Too many requests" body.
- ``ban(seconds)``: HTTP 418 with ``Retry-After`` (the seconds left) and the -1003 "banned until
  <ms>" body for *every* request until ``banned_until_ms`` (server time) has passed or
  ``lift_ban()``.
- ``accept_then_timeout(path="/fapi/v1/order", method="POST", delay_s=None, cut=False, times=1)``:
  handle the request (an order is placed and its events go out) but then hold the answer for
  ``delay_s`` seconds (``None``: until ``release_delayed()`` or ``stop``) so the client times
  out, or with ``cut=True`` close the connection without an answer.

Each rule counts how many times it fired (``fired``), so a test can assert it was used.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

INTERNAL_ERROR = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
HTML_BODY = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"


@dataclass(slots=True)
class Rule:
    kind: str  # "fail" | "rate_limit" | "after"
    path: str | None  # None: any path
    method: str | None  # None: any method
    times: int | None  # None: until healed
    status: int = 0
    body: Any = None
    retry_after_s: int = 0
    delay_s: float | None = None
    cut: bool = False
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.path is None or self.path == path) and (self.method is None or self.method == method)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer that replaces the request's handling."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AfterEffect:
    """What happens to the answer of a request that was handled."""

    delay_s: float | None
    cut: bool


class HttpFaults:
    """See the module docstring; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self.banned_until_ms = 0
        self.release = threading.Event()  # ends every ``accept_then_timeout`` hold at once

    # --- what a test sets ----------------------------------------------------------------------

    def fail(self, path: str | None, status: int = 503, *, times: int | None = 1, method: str | None = None,
             body: Any = None) -> Rule:
        if not 400 <= status <= 599:
            raise ValueError(f"status: must be an HTTP error (400-599), got {status}")
        return self._add(Rule("fail", path, method, times, status=status, body=body))

    def rate_limit(self, retry_after_s: int = 1, *, times: int | None = 1, path: str | None = None,
                   method: str | None = None) -> Rule:
        return self._add(Rule("rate_limit", path, method, times, status=429, retry_after_s=retry_after_s))

    def ban(self, until_ms: int) -> None:
        with self._lock:
            self.banned_until_ms = until_ms

    def lift_ban(self) -> None:
        with self._lock:
            self.banned_until_ms = 0

    def accept_then_timeout(self, path: str = "/fapi/v1/order", *, method: str | None = "POST",
                            delay_s: float | None = None, cut: bool = False, times: int | None = 1) -> Rule:
        self.release.clear()
        return self._add(Rule("after", path, method, times, delay_s=delay_s, cut=cut))

    def release_delayed(self) -> None:
        """Answer every request held by ``accept_then_timeout`` now."""
        self.release.set()

    def heal(self, path: str | None = None) -> None:
        """Drop the rules of ``path`` (every rule with ``None``); the ban stays."""
        with self._lock:
            self._rules = [r for r in self._rules if path is not None and r.path != path]

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    # --- what the server asks ------------------------------------------------------------------

    def before(self, method: str, path: str, now_ms: int) -> Refusal | None:
        """The answer that replaces this request, if a ban or a rule says so."""
        with self._lock:
            if now_ms < self.banned_until_ms:
                seconds = max(1, math.ceil((self.banned_until_ms - now_ms) / 1000))
                return Refusal(418, {"code": -1003, "msg": f"Way too many requests; IP(127.0.0.1) banned until "
                                                           f"{self.banned_until_ms}. Please use the websocket for "
                                                           f"live updates to avoid bans."},
                               {"Retry-After": str(seconds)})
            rule = self._take(method, path, ("fail", "rate_limit"))
            if rule is None:
                return None
            if rule.kind == "rate_limit":
                return Refusal(429, {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is "
                                                           "2400 requests per minute. Please use the websocket for "
                                                           "live updates to avoid being banned."},
                               {"Retry-After": str(rule.retry_after_s)})
            body = rule.body
            if body is None:
                body = INTERNAL_ERROR if rule.status >= 500 else {"code": -1000, "msg": "An unknown error occurred."}
            elif body == "html":
                body = HTML_BODY
            return Refusal(rule.status, body)

    def after(self, method: str, path: str) -> AfterEffect | None:
        with self._lock:
            rule = self._take(method, path, ("after",))
            return None if rule is None else AfterEffect(rule.delay_s, rule.cut)

    def _take(self, method: str, path: str, kinds: tuple[str, ...]) -> Rule | None:
        for rule in self._rules:
            if rule.kind in kinds and rule.matches(method, path):
                rule.fired += 1
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                return rule
        return None
