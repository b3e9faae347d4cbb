"""One module writes the lots table (wealthalloc/storage/lots.py): how a lot can change is read in
one place. The demo seeder, which loads a fresh database before the platform runs, is the exception."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRITES_LOTS = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+lots\b", re.IGNORECASE)
ALLOWED = {Path("wealthalloc/storage/lots.py"), Path("wealthalloc/demo/seed.py")}


def test_only_the_lots_module_writes_lots() -> None:
    writers = {
        path.relative_to(ROOT)
        for folder in ("wealthalloc", "serve_apps", "actors", "training")
        for path in (ROOT / folder).rglob("*.py")
        if WRITES_LOTS.search(path.read_text())
    }
    assert Path("wealthalloc/storage/lots.py") in writers
    assert writers <= ALLOWED, sorted(str(p) for p in writers - ALLOWED)
