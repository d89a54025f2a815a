"""Logger: console progress, ``metrics.csv`` and TensorBoard events, with DESIGN.md's metric names.

verbose=0: silent. verbose=1: a progress bar (steps, episode return, steps/s, ETA) and the
start/end lines. verbose=2: also a table of every metric at each log step.

Files are written only when a run directory is given: ``metrics.csv`` (one row per update,
one column per metric, ``time/total_timesteps`` first) and TensorBoard event files.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

STEP_KEY = "time/total_timesteps"


class Logger:
    def __init__(self, run_dir: str | os.PathLike | None, verbose: int = 1, tensorboard: bool = True,
                 append: bool = False):
        """``append=True`` keeps the rows of an existing ``metrics.csv`` (a resumed run)."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.verbose = verbose
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = [STEP_KEY]
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.recent_lengths: deque[float] = deque(maxlen=100)
        self._bar = None
        self._tb = None
        self._csv_file = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if append and (self.run_dir / "metrics.csv").exists():
                self.rows = read_metrics(self.run_dir / "metrics.csv")
                self.columns += [k for k in (self.rows[0] if self.rows else {}) if k not in self.columns]
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir))

    # ------------------------------------------------------------------ console
    def info(self, message: str) -> None:
        if self.verbose >= 1:
            (self._bar.write if self._bar is not None else print)(message)

    def start(self, total: int, initial: int, progress_bar: bool) -> None:
        self.t0 = time.perf_counter()
        self.initial = initial
        if progress_bar and self.verbose >= 1:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stdout,
                             mininterval=0.5, smoothing=0.1)

    def add_episodes(self, returns: list[float], lengths: list[int]) -> None:
        self.recent_returns.extend(returns)
        self.recent_lengths.extend(lengths)

    @property
    def mean_return(self) -> float:
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else math.nan

    # ------------------------------------------------------------------ metrics
    def record(self, step: int, metrics: dict[str, float]) -> None:
        """One row of metrics at env step ``step``; adds the episode and speed figures."""
        elapsed = time.perf_counter() - self.t0
        row: dict[str, Any] = {STEP_KEY: step}
        if self.recent_returns:
            row["rollout/episode_return"] = self.mean_return
            row["rollout/episode_length"] = sum(self.recent_lengths) / len(self.recent_lengths)
        row["time/steps_per_second"] = (step - self.initial) / max(elapsed, 1e-9)
        row["time/elapsed_s"] = elapsed
        row.update(metrics)
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
        if self._bar is not None:  # tqdm redraws at most every mininterval seconds
            self._bar.set_postfix_str(
                f"return={row.get('rollout/episode_return', math.nan):.1f} sps={row['time/steps_per_second']:.0f}",
                refresh=False,
            )
            self._bar.update(step - self._bar.n)
        if self.verbose >= 2:
            self.info(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if self._tb is not None:
            for k, v in row.items():
                if k != STEP_KEY and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)
        if self.run_dir is not None:
            self._write_csv(new_columns=bool(new))

    def _write_csv(self, new_columns: bool) -> None:
        path = self.run_dir / "metrics.csv"
        if new_columns or self._csv_file is None:  # rewrite with the wider header (rare: first rows only)
            if self._csv_file is not None:
                self._csv_file.close()
            self._csv_file = open(path, "w", newline="")
            self._csv = csv.DictWriter(self._csv_file, fieldnames=self.columns, restval="")
            self._csv.writeheader()
            self._csv.writerows(self.rows)
        else:
            self._csv.writerow(self.rows[-1])
        self._csv_file.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` as dicts of floats (empty cells left out)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
