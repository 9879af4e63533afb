"""Strategy plugins: pure objects that turn closed bars into trade conditions.

A strategy is built once from its ``[strategist.<name>]`` table and then fed every closed bar,
in time order, on the Strategist's thread; it never sees threads, the store or the clock, so it
is tested like any pure function. ``on_bar`` returns ``ReplaceConditions`` for the bar's coin
(the complete set that strategy wants armed there, empty to cancel them all) or ``None`` to
leave that coin alone.

Built-in names are listed in ``BUILT_IN``; any other name is read as ``package.module:Class``
and imported, so a plugin needs no change here. Settings problems are raised as
``StrategySettingsError`` naming each key, and reported by the config loader as
``strategist.<name>.<key>: problem`` before anything starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from state.strategies.base import (
    ReplaceConditions,
    Strategy,
    StrategyContext,
    StrategySettingsError,
)
from state.strategies.breakout import Breakout

BUILT_IN: dict[str, type[Any]] = {"breakout": Breakout}


def strategy_class(name: str) -> type[Any]:
    """The class behind a strategy name; ``ValueError`` if it cannot be found."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    if ":" not in name:
        raise ValueError(
            f"unknown strategy {name!r}: built-in ones are {', '.join(sorted(BUILT_IN))}; "
            "a plugin is named 'package.module:Class'"
        )
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"strategy {name!r}: cannot import {module_name!r}: {error}") from None
    cls = getattr(module, class_name, None)
    if cls is None or not hasattr(cls, "from_settings"):
        raise ValueError(f"strategy {name!r}: {module_name} has no strategy class {class_name!r} "
                         "with a from_settings classmethod")
    return cls


def build_strategy(name: str, settings: Mapping[str, Any], context: StrategyContext) -> Strategy:
    """Build one strategy; raises ``StrategySettingsError`` or ``ValueError``."""
    return strategy_class(name).from_settings(dict(settings), context)


__all__ = [
    "BUILT_IN",
    "Breakout",
    "ReplaceConditions",
    "Strategy",
    "StrategyContext",
    "StrategySettingsError",
    "build_strategy",
    "strategy_class",
]
