"""Which TWS API client library the IBKR broker runs on.

``ib_insync`` is no longer maintained; ``ib_async`` is its maintained fork
with the same API (``IB``, ``Stock``, ``Order``, ``ExecutionFilter``...). The
broker takes whichever is installed, ``ib_async`` first, and the tests run
against both so that a fallback is never an untested path. A deployment pins
one with ``WEALTHALLOC_IB_LIBRARY`` (or the ``name`` argument) when it has to.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

LIBRARIES = ("ib_async", "ib_insync")
LIBRARY_ENV = "WEALTHALLOC_IB_LIBRARY"


def load_ib(name: str | None = None) -> ModuleType:
    """The client module: ``name``, else ``$WEALTHALLOC_IB_LIBRARY``, else the first installed.

    A library that is asked for by name and missing is an error, never a
    silent fallback: the operator chose it for a reason.
    """
    wanted = name or os.environ.get(LIBRARY_ENV) or None
    if wanted is not None:
        if wanted not in LIBRARIES:
            raise ValueError(f"unknown IB client library {wanted!r}; expected one of {', '.join(LIBRARIES)}")
        return importlib.import_module(wanted)
    missing: list[str] = []
    for candidate in LIBRARIES:
        try:
            return importlib.import_module(candidate)
        except ImportError:
            missing.append(candidate)
    raise ImportError(f"no IB client library installed (tried {', '.join(missing)})")
