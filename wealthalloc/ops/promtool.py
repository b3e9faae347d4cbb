"""Find Prometheus's ``promtool``, or unpack it from Debian's package without root.

The alert rules in ``cluster/prometheus`` are only worth something if
``promtool test rules`` proves they fire, so every machine that runs the tests
should have it. Installing the ``prometheus`` package would also start a
server; ``apt-get download`` plus ``dpkg -x`` needs neither root nor a service,
only the package registry a fresh Debian machine already reaches.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PACKAGE = "prometheus"


class PromtoolUnavailable(RuntimeError):
    """promtool is neither on PATH nor obtainable here; the message says why."""


def unpacked(cache_dir: Path) -> Path:
    """Where ``fetch`` leaves the binary under ``cache_dir``."""
    return cache_dir / "root" / "usr" / "bin" / "promtool"


def find(cache_dir: Path) -> Path | None:
    """promtool on PATH, else the one a previous ``fetch`` unpacked; None when neither exists."""
    on_path = shutil.which("promtool")
    if on_path:
        return Path(on_path)
    binary = unpacked(cache_dir)
    return binary if binary.is_file() else None


def fetch(cache_dir: Path, *, timeout_s: float = 300) -> Path:
    """Download Debian's ``prometheus`` package into ``cache_dir`` and unpack promtool from it."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise PromtoolUnavailable("promtool is not on PATH and this machine has no apt-get/dpkg to fetch it")
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(f"{PACKAGE}_*.deb"):
        stale.unlink()
    download = subprocess.run(
        ["apt-get", "download", PACKAGE],
        cwd=cache_dir,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    packages = sorted(cache_dir.glob(f"{PACKAGE}_*.deb"))
    if download.returncode != 0 or not packages:
        detail = download.stderr.strip().splitlines()[-1:] or ["no package file"]
        raise PromtoolUnavailable(f"apt-get download {PACKAGE} failed: {detail[0]}")
    subprocess.run(["dpkg", "-x", str(packages[-1]), str(cache_dir / "root")], check=True, timeout=timeout_s)
    binary = unpacked(cache_dir)
    if not binary.is_file():
        raise PromtoolUnavailable(f"{packages[-1].name} holds no usr/bin/promtool")
    log.info("promtool_fetched", package=packages[-1].name, path=str(binary))
    return binary


def ensure(cache_dir: Path) -> Path:
    """promtool, fetched into ``cache_dir`` the first time it is needed."""
    return find(cache_dir) or fetch(cache_dir)


def main() -> None:
    """``python -m wealthalloc.ops.promtool [CACHE_DIR]``: print promtool's path, fetching it if needed."""
    cache_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".data/tools/prometheus")
    try:
        print(ensure(cache_dir.resolve()))
    except PromtoolUnavailable as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
