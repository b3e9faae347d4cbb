"""The domain core decides and imports no Ray, no database and no cache: it runs in a unit test,
a Ray task or a notebook alike. The order's pure modules in wealthalloc/trading/ are part of it;
the desk beside them is the one part of that package that touches storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    *sorted((ROOT / "wealthalloc" / "domain").glob("*.py")),
    *(ROOT / "wealthalloc" / "trading" / f"{name}.py" for name in ("rules", "status", "tickets", "proposed")),
]
FORBIDDEN = ("ray", "psycopg", "psycopg_pool", "redis", "actors", "serve_apps", "wealthalloc.storage")


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_of_the_core_imports_no_ray_database_or_cache(path: Path) -> None:
    assert not {m for m in imported(path) if forbidden(m)}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.py"
    leaky.write_text("def f():\n    from wealthalloc.storage import books\n    import ray.util\n")
    assert {m for m in imported(leaky) if forbidden(m)} == {"wealthalloc.storage", "ray.util"}


def test_the_order_desk_is_the_trading_module_that_writes() -> None:
    desk = imported(ROOT / "wealthalloc" / "trading" / "desk.py")
    assert "wealthalloc.storage" in {m.rsplit(".", 1)[0] for m in desk}
