"""The reconnect delay policy: exponential backoff with multiplicative jitter. Pure: no clock,
no threads, no I/O; the caller waits.

``next_delay()`` gives ``first_s``, then ``first_s * factor``, ``first_s * factor**2`` ... with
the base capped at ``cap_s``, each multiplied by a factor drawn uniformly from
``[1 - jitter, 1 + jitter]`` (so a jittered delay at the cap may exceed ``cap_s`` by up to the
jitter fraction: the cap bounds the growth, the jitter spreads many clients that lost the same
server at the same moment). ``reset()`` starts over at ``first_s``; a connection calls it once
it has been healthy. A seeded ``random.Random`` makes the sequence fully deterministic.
"""

from __future__ import annotations

import math
import random


class Backoff:
    """Exponential backoff with jitter; see the module docstring."""

    def __init__(
        self,
        first_s: float = 1.0,
        factor: float = 2.0,
        cap_s: float = 60.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        """Raises ``ValueError`` naming the argument for a value that makes no sense: ``first_s``
        must be positive, ``factor`` at least 1, ``cap_s`` at least ``first_s``, ``jitter`` in
        ``[0, 1)``."""
        for name, value in (("first_s", first_s), ("factor", factor), ("cap_s", cap_s), ("jitter", jitter)):
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number, got {value!r}")
        if first_s <= 0:
            raise ValueError(f"first_s: must be positive, got {first_s!r}")
        if factor < 1:
            raise ValueError(f"factor: must be at least 1 (delays never shrink), got {factor!r}")
        if cap_s < first_s:
            raise ValueError(f"cap_s: must be at least first_s ({first_s!r}), got {cap_s!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter: must be a fraction in [0, 1), got {jitter!r}")
        self.first_s = float(first_s)
        self.factor = float(factor)
        self.cap_s = float(cap_s)
        self.jitter = float(jitter)
        self._rng = rng if rng is not None else random.Random()
        self._base = self.first_s
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last ``reset`` (the next one is number
        ``attempts + 1``)."""
        return self._attempts

    def next_delay(self) -> float:
        """The next delay in seconds (see the module docstring); advances the sequence."""
        base = self._base
        # The running base (not factor ** attempts) never overflows however long it fails.
        self._base = min(self.cap_s, base * self.factor)
        self._attempts += 1
        if self.jitter == 0:
            return base
        return base * self._rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def reset(self) -> None:
        """Start over at ``first_s`` (after a connection has been healthy)."""
        self._base = self.first_s
        self._attempts = 0

    def __repr__(self) -> str:
        return (f"Backoff(first_s={self.first_s}, factor={self.factor}, cap_s={self.cap_s}, "
                f"jitter={self.jitter}, attempts={self._attempts})")
