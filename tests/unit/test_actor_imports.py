"""actors/ has no import loop: the shard and the gateway call each other at run time, but a
reader (and Python) can load each module without the other (actors/directory.py)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ACTORS = Path(__file__).resolve().parents[2] / "actors"


def actor_imports(path: Path) -> set[str]:
    """The actors/ modules ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actors."):
            found.add(node.module.removeprefix("actors."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("actors.") for a in node.names if a.name.startswith("actors."))
    return found


def test_no_module_of_actors_imports_itself_back_through_another() -> None:
    graph = {path.stem: actor_imports(path) for path in ACTORS.glob("*.py")}
    assert graph["portfolio_shard"] and "broker_gateway" in graph
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as loop:
        raise AssertionError(f"import loop in actors/: {' -> '.join(loop.args[1])}") from None
    assert order.index("portfolio_shard") < order.index("broker_gateway")


def test_the_shard_reaches_the_gateway_by_name_only() -> None:
    assert "broker_gateway" not in actor_imports(ACTORS / "portfolio_shard.py")
    assert "shard_router" not in actor_imports(ACTORS / "portfolio_shard.py")
