"""The comparison statistics (lucidrl.stats) on data whose answers are known."""

import numpy as np
import pytest

from lucidrl import ConfigError
from lucidrl.stats import bootstrap_ci, iqm, summarize


def test_iqm_drops_the_lowest_and_highest_quarter():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([0, 10, 10, 10, 1000]) == pytest.approx(10.0)  # one outlier at each end is ignored
    assert iqm([1.0, 2.0, 9.0]) == pytest.approx(4.0)  # under 4 runs nothing is cut: the mean
    np.testing.assert_allclose(iqm(np.array([[1, 10], [2, 20], [3, 30], [100, 40]]), axis=0), [2.5, 25.0])


def test_bootstrap_interval_of_the_mean_matches_the_normal_theory_on_many_runs():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, size=400)
    low, high = bootstrap_ci(x, "mean", 0.95, n_resamples=4000, seed=1)
    se = x.std() / np.sqrt(len(x))
    assert low == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert high == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_bootstrap_interval_covers_the_true_value_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    hits = 0
    for i in range(200):
        low, high = bootstrap_ci(rng.normal(0.0, 1.0, size=30), "mean", 0.95, n_resamples=1000, seed=i)
        hits += low <= 0.0 <= high
    assert 0.88 <= hits / 200 <= 0.99  # the percentile bootstrap runs a little narrow at n = 30


def test_bootstrap_edge_cases_and_determinism():
    assert bootstrap_ci([500.0, 500.0, 500.0]) == (500.0, 500.0)  # every seed solved: a point
    a = bootstrap_ci([1.0, 5.0, 2.0, 8.0, 3.0], seed=3)
    assert a == bootstrap_ci([1.0, 5.0, 2.0, 8.0, 3.0], seed=3)
    assert 1.0 <= a[0] <= iqm([1.0, 5.0, 2.0, 8.0, 3.0]) <= a[1] <= 8.0
    low, high = bootstrap_ci(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]), "mean")  # per column, runs resampled whole
    assert low.shape == (2,) and low[1] == high[1] == 1.0 and low[0] < 2.0 < high[0]
    with pytest.raises(ConfigError, match="at least 2 runs"):
        bootstrap_ci([1.0])
    with pytest.raises(ConfigError, match="statistic"):
        bootstrap_ci([1.0, 2.0], "median")


def test_summary():
    s = summarize([100.0, 200.0, 300.0, 400.0])
    assert (s.n, s.mean, s.iqm) == (4, 250.0, 250.0)
    assert s.std == pytest.approx(np.std([100, 200, 300, 400]))
    assert 100.0 <= s.iqm_low < s.iqm < s.iqm_high <= 400.0
