"""Explicit state-transition tables (the NautilusTrader ``fsm.pyx`` idea, in plain Python)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

S = TypeVar("S", bound=Hashable)
T = TypeVar("T", bound=Hashable)


class InvalidTransition(ValueError):
    """A trigger that the table does not allow from the current state."""


class TransitionTable(Generic[S, T]):
    """An immutable ``{(state, trigger): next_state}`` table."""

    def __init__(self, name: str, table: Mapping[tuple[S, T], S]) -> None:
        self._name = name
        self._table = dict(table)

    def next_state(self, state: S, trigger: T) -> S:
        try:
            return self._table[(state, trigger)]
        except KeyError:
            raise InvalidTransition(
                f"{self._name}: {getattr(state, 'value', state)} -> "
                f"{getattr(trigger, 'value', trigger)} is not allowed"
            ) from None

    def allows(self, state: S, trigger: T) -> bool:
        return (state, trigger) in self._table

    def items(self) -> list[tuple[tuple[S, T], S]]:
        return list(self._table.items())
