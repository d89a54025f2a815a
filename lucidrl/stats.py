"""Statistics for comparing algorithms over a handful of seeds, after Agarwal et al. 2021.

Agarwal, Schwarzer, Castro, Courville, Bellemare (2021), "Deep Reinforcement Learning at the
Edge of the Statistical Precipice" (NeurIPS; arXiv:2108.13264) show that with the 3-10 runs RL
papers can afford, a single mean or median hides how uncertain it is. They recommend:

* the **interquartile mean** (IQM): the mean of the middle 50% of the runs' scores (drop the
  lowest and the highest 25%). It is less swayed by one lucky or failed seed than the mean and
  less wasteful of the data than the median;
* **bootstrap confidence intervals**: resample the runs with replacement many times, recompute
  the statistic each time, and report the middle 95% of those values (the percentile
  bootstrap; with one task it is the plain bootstrap over seeds).

The computation is SciPy's (``scipy.stats.trim_mean``, ``scipy.stats.bootstrap``); this module
only fixes the choices: 25% trimmed from each end, percentile intervals (they stay defined when
every seed scores the same, where BCa intervals do not), a seeded generator so reports repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

from lucidrl.errors import ConfigError


def iqm(scores: Sequence[float] | np.ndarray, axis: int = 0) -> np.ndarray | float:
    """Interquartile mean: the mean after dropping the lowest and highest 25% of ``scores`` along ``axis``.

    With n scores, ``int(0.25 n)`` are cut from each end (SciPy's ``trim_mean`` rule), so 4 to 7
    seeds lose one at each end and fewer than 4 lose none (the IQM is then the mean).
    """
    return _stats.trim_mean(np.asarray(scores, dtype=np.float64), 0.25, axis=axis)


def _iqm_vectorized(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return _stats.trim_mean(x, 0.25, axis=axis)


def _mean_vectorized(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


STATISTICS: dict[str, Callable[..., np.ndarray]] = {"mean": _mean_vectorized, "iqm": _iqm_vectorized}


def bootstrap_ci(
    scores: Sequence[float] | np.ndarray,
    statistic: str = "iqm",
    confidence: float = 0.95,
    n_resamples: int = 5000,
    seed: int = 0,
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Percentile-bootstrap confidence interval ``(low, high)`` of ``statistic`` ('iqm' or 'mean') over runs.

    ``scores`` is [n_runs] or [n_runs, k] (k statistics at once, e.g. one per point of a learning
    curve; resampling picks whole runs, so the k values of a run stay together).
    """
    x = np.asarray(scores, dtype=np.float64)
    if statistic not in STATISTICS:
        raise ConfigError(f"statistic must be one of {sorted(STATISTICS)}, got {statistic!r}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence}")
    if x.shape[0] < 2:
        raise ConfigError(f"a bootstrap interval needs at least 2 runs, got {x.shape[0]}")
    if np.ptp(x, axis=0).max() == 0.0:  # every run scored the same: the interval is that point
        value = x[0] if x.ndim > 1 else float(x[0])
        return value, value
    res = _stats.bootstrap(
        (x,),
        STATISTICS[statistic],
        axis=0,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval.low, res.confidence_interval.high
    return (float(low), float(high)) if x.ndim == 1 else (low, high)


@dataclass
class Summary:
    """Final scores of one algorithm over its seeds."""

    n: int
    mean: float
    std: float
    iqm: float
    iqm_low: float
    iqm_high: float


def summarize(scores: Sequence[float], confidence: float = 0.95, seed: int = 0) -> Summary:
    """Mean, standard deviation (over runs, ddof 0 as NumPy), IQM and its bootstrap interval."""
    x = np.asarray(scores, dtype=np.float64)
    low, high = bootstrap_ci(x, "iqm", confidence, seed=seed) if len(x) >= 2 else (float("nan"), float("nan"))
    return Summary(len(x), float(x.mean()), float(x.std()), float(iqm(x)), float(low), float(high))
