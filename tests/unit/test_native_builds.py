"""A native build runs only while it was built from the source on disk now.

The stand-in for a compiled extension here is a plain module with the
``_<name>_native`` name and a ``SOURCE_DIGEST``: what the loader checks is the
name and the digest, not how the module was made.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from wealthalloc.domain import wash_sale, wash_sale_replay
from wealthalloc.domain.native import load_native, native_name, source_digest


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """A package ``stalepkg`` with a module ``fast`` that imports a sibling ``rules``."""
    root = tmp_path / "stalepkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "rules.py").write_text("RATE = 1\n")
    (root / "fast.py").write_text(
        "from stalepkg.rules import RATE\n\n\ndef double(x):\n    return 2 * x * RATE\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield root
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == "stalepkg"]:
            del sys.modules[name]


def built_from_now(root: Path) -> ModuleType:
    """Import ``stalepkg.fast`` and leave a 'native build' of it made from its current source."""
    fast = importlib.import_module("stalepkg.fast")
    (root / "_fast_native.py").write_text(f'SOURCE_DIGEST = "{source_digest(fast)}"\nNATIVE = True\n')
    importlib.invalidate_caches()
    return fast


def test_a_build_of_the_current_source_is_used(package: Path) -> None:
    native = load_native(built_from_now(package))
    assert native is not None and native.NATIVE


def test_a_build_is_retired_when_the_module_changes(package: Path) -> None:
    fast = built_from_now(package)
    source = package / "fast.py"
    source.write_text(source.read_text() + "\n\ndef triple(x):\n    return 3 * x\n")
    assert load_native(fast) is None


def test_a_build_is_retired_when_a_module_it_imports_from_its_package_changes(package: Path) -> None:
    fast = built_from_now(package)
    (package / "rules.py").write_text("RATE = 2\n")
    assert load_native(fast) is None


def test_no_build_or_native_builds_turned_off_mean_the_python_module(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = importlib.import_module("stalepkg.fast")
    assert load_native(fast) is None  # nothing built
    built_from_now(package)
    monkeypatch.setenv("WEALTHALLOC_NATIVE", "0")
    assert load_native(fast) is None


def test_the_native_build_of_the_replay_sits_beside_it_under_its_own_name() -> None:
    assert native_name(wash_sale_replay) == "wealthalloc.domain._wash_sale_replay_native"
    assert wash_sale.ENGINE in {"native", "python"}
