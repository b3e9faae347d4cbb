"""Native (mypyc) builds of pure-Python hot paths, used only while they match their source.

A module such as :mod:`wealthalloc.domain.wash_sale_replay` stays the one
definition of what it does; ``make install`` may compile a copy of it into an
extension named ``_<module>_native`` beside it (:mod:`wealthalloc.ops.native`).
An extension built from other source would silently run old rules, so the
build carries the digest of the source it was made from, and it is loaded
only while that digest equals the digest of the source on disk now. A
missing, stale or broken build means the Python module runs: slower, never
different. ``WEALTHALLOC_NATIVE=0`` turns native builds off.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType


def native_name(module: ModuleType) -> str:
    """The dotted name of a module's native build: ``pkg.mod`` → ``pkg._mod_native``."""
    package, _, name = module.__name__.rpartition(".")
    return f"{package}._{name}_native"


def source_digest(module: ModuleType) -> str:
    """SHA-256 over a module's source and the source of every module of its package it imports.

    The imported modules of the same top-level package count too: the native
    build was type-checked against them, and a changed signature there must
    retire it as surely as a change of the module itself.
    """
    if module.__file__ is None:
        raise ValueError(f"{module.__name__} has no source file")
    path = Path(module.__file__).resolve()
    package = module.__name__.partition(".")[0]
    root = path.parents[module.__name__.count(".")]  # the directory holding the top-level package
    digest = hashlib.sha256()
    for source in [path, *_package_imports(path, root, package)]:
        digest.update(source.relative_to(root).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def load_native(module: ModuleType) -> ModuleType | None:
    """The native build of ``module`` when one is present, enabled and built from its current source."""
    if os.environ.get("WEALTHALLOC_NATIVE", "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    try:
        native = importlib.import_module(native_name(module))
    except ImportError:
        return None
    if getattr(native, "SOURCE_DIGEST", None) != source_digest(module):
        return None
    return native


def _package_imports(path: Path, root: Path, package: str) -> list[Path]:
    """Source files of the modules of ``package`` that ``path`` imports, sorted, without duplicates."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    files: set[Path] = set()
    for name in names:
        if name != package and not name.startswith(package + "."):
            continue
        candidate = root.joinpath(*name.split("."))
        for source in (candidate.with_suffix(".py"), candidate / "__init__.py"):
            if source.is_file():
                files.add(source.resolve())
    return sorted(files)
