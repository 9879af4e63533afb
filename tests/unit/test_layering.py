"""The import rules of DESIGN.md section 2, checked by walking every module's AST.

- ``state`` imports only the standard library and itself; peewee (and ``playhouse``, which ships
  with it) only in ``state/store.py``, ``state/journal_store.py`` and ``state/venue_store.py``.
- ``adapters`` imports ``state``, ``adapters`` and third-party libraries, never ``actors``/``run``.
- ``actors`` imports ``state``, ``actors`` and, of ``adapters``, only ``adapters.ports`` and
  ``adapters.errors`` (never a concrete adapter); never ``run``.
- Nothing but ``run.py`` (and the tests) imports ``run``.
- Only ``actors/risk_gate.py`` builds an ``ExecuteOrder``.

Each forbidden edge is reported as ``file -> module``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "adapters", "state")
PROJECT = frozenset({*PACKAGES, "run"})
STDLIB = frozenset(sys.stdlib_module_names)
ACTOR_ADAPTER_PORTS = ("adapters.ports", "adapters.errors")
IO_LIBRARIES = frozenset({"ccxt", "websocket", "websockets", "requests", "aiohttp"})
PEEWEE = frozenset({"peewee", "playhouse"})  # playhouse is peewee's own extension package
PEEWEE_MODULES = frozenset({
    "state/store.py",
    "state/journal_store.py",
    "state/venue_store.py",  # the paper venue's own book (venue.db): what an exchange keeps, apart from ours
})


# --- the walker ----------------------------------------------------------------------------------


def project_files() -> list[Path]:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    return [*files, ROOT / "run.py"]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def module_name(relpath: str) -> str:
    parts = relpath.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_project_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or (
        base.is_dir() and dotted.split(".")[0] in PACKAGES
    )


def imported_modules(source: str, relpath: str) -> Iterator[str]:
    """Every module ``source`` imports, absolute and dotted; relative imports resolved.

    ``from X import a`` yields ``X.a`` when ``a`` is itself a project module, else ``X``.
    """
    tree = ast.parse(source, filename=relpath)
    package = module_name(relpath).split(".")
    if not relpath.endswith("__init__.py"):
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                if not base:  # "from .. import run" at the top of the tree
                    yield alias.name
                    continue
                candidate = f"{base}.{alias.name}"
                if base.split(".")[0] in PROJECT and is_project_module(candidate):
                    yield candidate
                else:
                    yield base


def forbidden_edges(relpath: str, source: str) -> list[str]:
    """``file -> module`` for every import of ``source`` that breaks the layering rules."""
    layer = relpath.split("/")[0] if "/" in relpath else module_name(relpath)
    bad: list[str] = []
    for module in sorted(set(imported_modules(source, relpath))):
        top = module.split(".")[0]
        if top == "__future__":
            continue
        allowed = True
        if top == "run" and layer != "run":
            allowed = False
        elif top in PEEWEE and relpath not in PEEWEE_MODULES:
            allowed = False
        elif layer == "state":
            allowed = top in STDLIB or top == "state" or (top in PEEWEE and relpath in PEEWEE_MODULES)
        elif layer == "adapters":
            allowed = top != "actors"
        elif layer == "actors":
            if top == "adapters":
                allowed = any(module == p or module.startswith(p + ".") for p in ACTOR_ADAPTER_PORTS)
            else:
                allowed = top not in IO_LIBRARIES
        if not allowed:
            bad.append(f"{relpath} -> {module}")
    return bad


def all_forbidden_edges() -> list[str]:
    edges: list[str] = []
    for path in project_files():
        edges.extend(forbidden_edges(rel(path), path.read_text(encoding="utf-8")))
    return edges


def all_edges() -> set[str]:
    return {
        f"{rel(path)} -> {module}"
        for path in project_files()
        for module in imported_modules(path.read_text(encoding="utf-8"), rel(path))
    }


# --- the walker itself can fail --------------------------------------------------------------------


def test_walker_when_run_on_the_project_then_sees_known_edges() -> None:
    edges = all_edges()
    assert "run.py -> adapters.venues.paper" in edges
    assert "actors/executor.py -> adapters.ports" in edges
    assert "state/store.py -> peewee" in edges
    assert "state/journal_store.py -> peewee" in edges
    assert "state/book.py -> state.models" in edges
    assert len(project_files()) >= 25


@pytest.mark.parametrize(
    ("relpath", "source", "expected"),
    [
        ("actors/x.py", "from adapters.venues.paper import PaperExchange",
         ["actors/x.py -> adapters.venues.paper"]),
        ("actors/x.py", "from adapters import clock, ports",
         ["actors/x.py -> adapters.clock"]),
        ("actors/x.py", "import adapters.feeds.sim_source", ["actors/x.py -> adapters.feeds.sim_source"]),
        ("actors/x.py", "from ..adapters import price_board",
         ["actors/x.py -> adapters.price_board"]),
        ("actors/x.py", "def f():\n    from run import Engine\n", ["actors/x.py -> run"]),
        ("actors/x.py", "from adapters.ports import Clock\nfrom adapters.errors import X\n"
         "import pykka\nfrom . import bus\nfrom state.store import Store", []),
        ("state/x.py", "import loguru\nimport pykka\nimport ccxt\nimport websocket\nimport peewee",
         ["state/x.py -> ccxt", "state/x.py -> loguru", "state/x.py -> peewee",
          "state/x.py -> pykka", "state/x.py -> websocket"]),
        ("state/x.py", "from ..actors.bus import Bus", ["state/x.py -> actors.bus"]),
        ("state/x.py", "from .types import Side\nimport decimal\nfrom typing import Any", []),
        ("state/store.py", "import peewee", []),
        ("state/journal_store.py", "import peewee\nfrom playhouse import db_url", []),
        ("state/report.py", "import peewee\nfrom playhouse.db_url import connect",
         ["state/report.py -> peewee", "state/report.py -> playhouse.db_url"]),
        ("actors/x.py", "import peewee\nimport playhouse", ["actors/x.py -> peewee", "actors/x.py -> playhouse"]),
        ("adapters/x.py", "from actors.base import EngineActor\nimport ccxt\nfrom state import rules",
         ["adapters/x.py -> actors.base"]),
        ("adapters/x.py", "from .. import run", ["adapters/x.py -> run"]),
        ("run.py", "from actors.sniper import Sniper\nfrom adapters.clock import WallClock", []),
    ],
)
def test_forbidden_edges_when_given_a_module_then_reports_exactly_its_bad_imports(
    relpath: str, source: str, expected: list[str]
) -> None:
    assert forbidden_edges(relpath, source) == expected


# --- the rules, on the real code -------------------------------------------------------------------


def test_layering_when_walking_every_module_then_no_forbidden_import() -> None:
    edges = all_forbidden_edges()
    assert edges == [], "forbidden imports (DESIGN.md section 2):\n" + "\n".join(edges)


def test_state_when_walking_its_modules_then_only_stdlib_and_itself() -> None:
    bad = [
        f"{rel(path)} -> {module}"
        for path in sorted((ROOT / "state").rglob("*.py"))
        for module in imported_modules(path.read_text(encoding="utf-8"), rel(path))
        if module.split(".")[0] not in STDLIB | {"state"}
        and not (rel(path) in PEEWEE_MODULES and module.split(".")[0] in PEEWEE)
    ]
    assert bad == [], "\n".join(bad)


# --- who builds ExecuteOrder ---------------------------------------------------------------------------


def builds_execute_order(source: str, relpath: str) -> bool:
    for node in ast.walk(ast.parse(source, filename=relpath)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "ExecuteOrder":
                return True
    return False


@pytest.mark.parametrize(
    ("source", "builds"),
    [("ExecuteOrder(order=o)", True), ("messages.ExecuteOrder(order=o)", True),
     ("isinstance(m, ExecuteOrder)", False), ("class ExecuteOrder: pass", False)],
)
def test_builds_execute_order_when_source_given_then_detects_only_constructor_calls(
    source: str, builds: bool
) -> None:
    assert builds_execute_order(source, "x.py") is builds


def test_execute_order_when_walking_every_module_then_only_the_risk_gate_builds_it() -> None:
    builders = sorted(
        rel(path) for path in project_files()
        if builds_execute_order(path.read_text(encoding="utf-8"), rel(path))
    )
    assert builders == ["actors/risk_gate.py"], f"ExecuteOrder( built in: {builders}"
