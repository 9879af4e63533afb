"""The armed-condition index: which conditions a price fires, in O(1) when it fires none.

Per coin, live conditions sit in two sorted lists: ABOVE conditions by level ascending (a price
fires the prefix with level < price) and BELOW conditions ascending (a price fires the suffix
with level > price). So a tick that fires nothing costs two comparisons whatever the number of
armed conditions. ``require_cross`` conditions wait in two further lists until the price is seen
on the reset side of their level, then move to the live lists. Expiry uses a per-coin heap of
deadlines. Ties are broken by arming order, so results never depend on dict or thread order.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from state.models import TradeCondition
from state.rules import crosses, is_on_reset_side
from state.types import TriggerType

_Entry = tuple[Decimal, int, str]  # (level, arming sequence, condition id)


@dataclass(slots=True)
class _CoinIndex:
    above: list[_Entry] = field(default_factory=list)
    below: list[_Entry] = field(default_factory=list)
    above_waiting: list[_Entry] = field(default_factory=list)  # require_cross, needs price <= level
    below_waiting: list[_Entry] = field(default_factory=list)  # require_cross, needs price >= level
    expiries: list[tuple[int, int, str]] = field(default_factory=list)  # lazy-deletion heap

    def is_empty(self) -> bool:
        return not (self.above or self.below or self.above_waiting or self.below_waiting)


class ConditionBook:
    """Armed conditions indexed per coin. Not thread-safe: owned by the Sniper alone."""

    def __init__(self) -> None:
        self._conditions: dict[str, TradeCondition] = {}
        self._entries: dict[str, tuple[str, str, _Entry]] = {}  # id -> (coin, list name, entry)
        self._coins: dict[str, _CoinIndex] = {}
        self._sequence = itertools.count()
        self._released: list[str] = []  # require_cross conditions that became live

    def __len__(self) -> int:
        return len(self._conditions)

    def __contains__(self, condition_id: object) -> bool:
        return condition_id in self._conditions

    def get(self, condition_id: str) -> TradeCondition | None:
        return self._conditions.get(condition_id)

    def all(self) -> tuple[TradeCondition, ...]:
        """Every armed condition in arming order."""
        ordered = sorted(self._entries.items(), key=lambda item: item[1][2][1])
        return tuple(self._conditions[cid] for cid, _ in ordered)

    def for_strategy(self, strategy_id: str, coin: str | None = None) -> list[TradeCondition]:
        return [
            c
            for c in self.all()
            if c.strategy_id == strategy_id and (coin is None or c.coin == coin)
        ]

    def add(
        self, condition: TradeCondition, last_price: Decimal | None, *, live: bool | None = None
    ) -> None:
        """Arm ``condition``; ``last_price`` is the coin's latest price, if any, used to decide
        whether a ``require_cross`` condition is already on its reset side. ``live`` restores a
        known state (after a restart) instead of deciding it."""
        if condition.id in self._conditions:
            self.remove(condition.id)
        index = self._coins.setdefault(condition.coin, _CoinIndex())
        entry: _Entry = (condition.trigger_price, next(self._sequence), condition.id)
        above = condition.trigger_type is TriggerType.ABOVE
        if not condition.require_cross:
            live = True
        elif live is None:
            live = last_price is not None and is_on_reset_side(
                condition.trigger_type, condition.trigger_price, last_price
            )
            if live:
                self._released.append(condition.id)
        if live:
            name = "above" if above else "below"
        else:
            name = "above_waiting" if above else "below_waiting"
        bisect.insort(getattr(index, name), entry)
        self._conditions[condition.id] = condition
        self._entries[condition.id] = (condition.coin, name, entry)
        deadline = condition.valid_until_ns
        if deadline is not None:
            heapq.heappush(index.expiries, (deadline, entry[1], condition.id))

    def remove(self, condition_id: str) -> TradeCondition | None:
        condition = self._conditions.pop(condition_id, None)
        if condition is None:
            return None
        coin, name, entry = self._entries.pop(condition_id)
        index = self._coins[coin]
        entries: list[_Entry] = getattr(index, name)
        position = bisect.bisect_left(entries, entry)
        del entries[position]
        if index.is_empty():
            del self._coins[coin]
        return condition

    def clear(self) -> None:
        self._released.clear()
        self._conditions.clear()
        self._entries.clear()
        self._coins.clear()

    def on_price(self, coin: str, price: Decimal) -> list[TradeCondition]:
        """Conditions of ``coin`` that ``price`` fires, in arming order. They stay armed: the
        caller removes those it acts on (a condition blocked by a limit stays)."""
        index = self._coins.get(coin)
        if index is None:
            return []
        if index.above_waiting or index.below_waiting:
            self._release_waiting(index, price)
        fired: list[_Entry] = []
        above = index.above
        if above and above[0][0] < price:
            for entry in above:
                if not entry[0] < price:
                    break
                fired.append(entry)
        below = index.below
        if below and below[-1][0] > price:
            for entry in reversed(below):
                if not entry[0] > price:
                    break
                fired.append(entry)
        if not fired:
            return []
        fired.sort(key=lambda entry: entry[1])
        result = [self._conditions[entry[2]] for entry in fired]
        assert all(crosses(c.trigger_type, c.trigger_price, price) for c in result)
        return result

    def _release_waiting(self, index: _CoinIndex, price: Decimal) -> None:
        # ABOVE + require_cross becomes live once price <= level: the suffix with level >= price.
        waiting = index.above_waiting
        cut = bisect.bisect_left(waiting, (price,))
        for entry in waiting[cut:]:
            self._move(entry, index, "above")
        del waiting[cut:]
        # BELOW + require_cross becomes live once price >= level: the prefix with level <= price.
        waiting = index.below_waiting
        cut = bisect.bisect_right(waiting, (price, float("inf")))
        for entry in waiting[:cut]:
            self._move(entry, index, "below")
        del waiting[:cut]

    def has_live_changes(self) -> bool:
        return bool(self._released)

    def take_live_changes(self) -> list[str]:
        """Ids of ``require_cross`` conditions that became live since the last call (the
        owner persists this so a restart restores the same state)."""
        released, self._released = self._released, []
        return list(dict.fromkeys(cid for cid in released if self.is_live(cid)))

    def is_live(self, condition_id: str) -> bool:
        entry = self._entries.get(condition_id)
        return entry is not None and not entry[1].endswith("_waiting")

    def _move(self, entry: _Entry, index: _CoinIndex, name: str) -> None:
        self._released.append(entry[2])
        bisect.insort(getattr(index, name), entry)
        coin, _, _ = self._entries[entry[2]]
        self._entries[entry[2]] = (coin, name, entry)

    def _is_current(self, condition_id: str, sequence: int) -> bool:
        current = self._entries.get(condition_id)
        return current is not None and current[2][1] == sequence

    def expired(self, now_ns: int, coin: str | None = None) -> list[TradeCondition]:
        """Conditions whose ``valid_until`` is at or before ``now_ns`` (they stay in the book:
        the caller removes them). With ``coin``, only that coin is looked at, in O(1) when
        nothing has expired."""
        coins: Iterable[_CoinIndex]
        if coin is not None:
            index = self._coins.get(coin)
            coins = () if index is None else (index,)
        else:
            coins = tuple(self._coins.values())
        result: list[tuple[int, TradeCondition]] = []
        for index in coins:
            heap = index.expiries
            while heap and heap[0][0] <= now_ns:
                deadline, sequence, condition_id = heapq.heappop(heap)
                current = self._entries.get(condition_id)
                if current is not None and current[2][1] == sequence:
                    result.append((sequence, self._conditions[condition_id]))
            while heap and not self._is_current(heap[0][2], heap[0][1]):
                heapq.heappop(heap)
        result.sort(key=lambda item: item[0])
        return [condition for _, condition in result]
