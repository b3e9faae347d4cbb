"""The CLI as an operator runs it, against a platform of an end-to-end test."""

from __future__ import annotations

import subprocess
import sys


def cli(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """``wealthalloc <args>`` as an operator would run it, in the platform's data directory."""
    return subprocess.run(
        [sys.executable, "-m", "wealthalloc.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env["WEALTHALLOC_DATA_DIR"],
    )
