"""Where a measurement came from: the git commit of a checkout and the files changed in it."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any


def checkout(path: Path) -> dict[str, Any]:
    """``{"commit": HEAD of the checkout holding path (None outside git), "dirty_files": the
    files changed below path, untracked ones included, as git status names them}``."""

    def git(*args: str) -> str:  # stdout as printed: porcelain lines start with their status
        out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", ".").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "dirty_files": changed}


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``; else :func:`platform.processor`): runs
    on other CPUs may differ in float rounding, so results record it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
