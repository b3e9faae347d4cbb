"""Compile the hot pure-Python modules with mypyc, beside their source, as ``_<module>_native``.

The gains report of a 100,000-trade history spends most of its time in the
wash-sale replay; compiled with mypyc (part of mypy, already a development
dependency) it runs about a third faster, with the same code. The build is an
optional speed-up, never a requirement: without a C compiler or mypy the
command says so and the platform runs the Python modules.

The module is compiled under its ``_native`` name from a copy of the package
in a temporary directory, so no build product lands next to the source except
the extension itself. The copy carries ``SOURCE_DIGEST``, the digest
:func:`wealthalloc.domain.native.source_digest` gives the source now, and
:func:`wealthalloc.domain.native.load_native` refuses a build whose digest
no longer matches.

    python -m wealthalloc.ops.native build [--if-stale]
    python -m wealthalloc.ops.native status
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import ModuleType

from wealthalloc.domain.native import load_native, native_name, source_digest

MODULES = ("wealthalloc.domain.wash_sale_replay",)
"""What is compiled: modules on the hot path whose code is plain, fully typed Python."""

ROOT = Path(__file__).resolve().parents[2]


class NativeBuildFailed(RuntimeError):
    """mypyc or the C compiler failed; the message holds the end of their output."""


def extension_path(module: ModuleType) -> Path:
    """Where the extension of ``module`` is placed (beside the module's source)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    assert module.__file__ is not None
    return Path(module.__file__).with_name(native_name(module).rpartition(".")[2] + suffix)


def is_current(module: ModuleType) -> bool:
    """Whether an extension is present and built from the module's current source."""
    path = extension_path(module)
    if not path.is_file():
        return False
    return _recorded_digest(path) == source_digest(module)


def build(module: ModuleType) -> Path:
    """Compile ``module`` into its ``_native`` extension; returns the extension's path."""
    assert module.__file__ is not None
    source = Path(module.__file__)
    digest = source_digest(module)
    native_module = native_name(module).rpartition(".")[2]
    package_dir = ROOT / "wealthalloc"
    with tempfile.TemporaryDirectory(prefix="wealthalloc-native-") as scratch:
        work = Path(scratch)
        shutil.copytree(
            package_dir, work / "wealthalloc", ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
        copy = work / source.relative_to(ROOT).with_name(native_module + ".py")
        copy.write_text(source.read_text() + f'\n\nSOURCE_DIGEST = "{digest}"\n')
        result = subprocess.run(
            [sys.executable, "-m", "mypyc", str(copy.relative_to(work))],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise NativeBuildFailed((result.stdout + result.stderr)[-4000:])
        # mypyc leaves the module's extension and a shared library of its runtime beside it.
        built = sorted(copy.parent.glob(native_module + "*.so"))
        if not any(path.name.startswith(native_module + ".") for path in built):
            raise NativeBuildFailed(f"mypyc left no extension for {native_module}: {[p.name for p in built]}")
        target = extension_path(module)
        for product in sorted(built, key=lambda path: path.name.startswith(native_module + ".")):
            # The module's own extension last, each copy atomic: a running process never reads half a file.
            partial = target.with_name(product.name + ".partial")
            shutil.copyfile(product, partial)
            partial.replace(target.with_name(product.name))
    _digest_file(target).write_text(digest)
    return target


def _digest_file(extension: Path) -> Path:
    return extension.with_name(extension.name + ".digest")


def _recorded_digest(extension: Path) -> str | None:
    record = _digest_file(extension)
    return record.read_text().strip() if record.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wealthalloc.ops.native",
        description="Compile the hot modules with mypyc (optional: without it they run as Python).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="compile every module in MODULES")
    build_parser.add_argument(
        "--if-stale", action="store_true", help="only the modules whose extension is missing or out of date"
    )
    build_parser.add_argument(
        "--strict", action="store_true", help="exit non-zero when a build fails (default: warn and go on)"
    )
    commands.add_parser("status", help="say, per module, whether its native build is current and in use")
    args = parser.parse_args(argv)
    modules = [importlib.import_module(name) for name in MODULES]
    if args.command == "status":
        for module in modules:
            used = load_native(module) is not None
            print(
                f"{module.__name__}: {'native build in use' if used else 'Python (no current native build)'}"
            )
        return 0
    failed = 0
    for module in modules:
        if args.if_stale and is_current(module):
            continue
        started = time.perf_counter()
        try:
            path = build(module)
        except (NativeBuildFailed, OSError) as exc:
            failed += 1
            print(
                f"native build of {module.__name__} failed; the Python module runs instead:\n{exc}",
                file=sys.stderr,
            )
            continue
        print(
            f"compiled {module.__name__} -> {path.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s"
        )
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
