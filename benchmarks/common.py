"""What every benchmark script shares: the machine description and running one worker in a fresh process.

Each benchmark re-invokes its own file in a hidden ``--worker`` mode that trains one run and
prints one JSON line; ``run_worker`` starts that process (with the repository first on
``PYTHONPATH``) and returns the parsed line, or the tail of the worker's stderr when it failed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """The lucidrl commit the run measured, with "-dirty" when the library or the benchmark scripts had
    uncommitted changes (results files and docs do not count: the runs themselves append to them)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "lucidrl", "benchmarks/*.py", "pyproject.toml"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return (head + ("-dirty" if changed.strip() else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict:
    """CPU description without the hostname."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "arch": platform.machine(), "os": platform.system()}


def run_worker(cmd: list[str], timeout: float | None = None, **env_extra: str) -> tuple[dict[str, Any] | None, str]:
    """Run ``cmd`` in a fresh process from the repository root; ``(result, "")`` or ``(None, why it failed)``.

    The result is the last line of stdout that starts with ``{``, parsed as JSON. The failure text
    is the last 15 lines of stderr (or the exit status, or the timeout).
    """
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **env_extra
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return None, "\n".join(proc.stderr.strip().splitlines()[-15:]) or f"exit {proc.returncode}"
    return json.loads(lines[-1]), ""
