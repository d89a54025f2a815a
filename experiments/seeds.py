"""How many seeds does a comparison need? Seed-to-seed spread, A/A tests, and the power to see a real change.

A deep-RL run is one draw from a wide distribution: the seed fixes the initial weights, the envs' initial
states and every sampled action, and two seeds of one configuration can end far apart. Henderson et al.
(2018, "Deep Reinforcement Learning that Matters", AAAI) split ten runs of one TRPO configuration into two
groups of five and got learning curves whose confidence bands did not overlap; Colas, Sigaud and Oudeyer
(2018, "How Many Random Seeds? Statistical Power Analysis in Deep Reinforcement Learning Experiments",
arXiv:1806.08295) turned the question into a power analysis with Welch's t-test; Agarwal et al. (2021,
``lucidrl.stats``) showed how often papers' 3-5-run claims do not survive and proposed the IQM with
bootstrap intervals.

This experiment measures all of it on one small case, cheaply enough to train many seeds:

* **A**: PPO's CartPole-v1 preset (the zoo's, GAE λ = 0.8) given 20k env steps, a fifth of its budget, where
  seeds disagree most (at 100k nearly all reach 500 and the spread hides under the ceiling);
* **B**: the same with λ = 0.95, a change that helps, by a margin this experiment measures.

Each variant is trained with 200 seeds; a run's score is the mean return of 10 deterministic evaluation
episodes after training. The 200 runs of a variant stand in for its whole distribution, and a study with n
seeds is simulated by drawing n of them at random, with replacement, as n new seeds would be drawn from that
distribution (10,000 studies per n):

1. **Spread**: the 200 scores of each variant, and the learning curves of seeds 0-4 against seeds 5-9 of A
   (two groups that differ only in their seeds, not chosen).
2. **A/A**: two groups of n runs of A. How large the difference of their means typically is, and how
   often Welch's t-test calls it significant at 5% (it should be 5%: its assumptions are normal scores, and
   these are not).
3. **A/B**: n runs of A against n runs of B. How often B ranks above A by the mean, the median and the IQM;
   how often Welch's test finds B significantly better (the power); how often A ranks above B (the wrong
   conclusion).
4. **Intervals**: how often the 95% percentile-bootstrap interval of the mean (and of the IQM) of n runs
   contains the 200-run value (its coverage: 95% if the interval were exact), and how wide it is.

Outputs in docs/experiments/seeds/: the comparison (learning_curves.png, final_returns.png, results.md,
results.json), seeds.md / seeds.json, spread.png, two_groups_of_five.png and power.png.

    python experiments/seeds.py            # 200 seeds per variant, ~6 min with two runs at a time
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from _common import budget, parse_args
from scipy import stats as sps

from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves
from lucidrl.stats import bootstrap_ci, iqm

ENV = "CartPole-v1"
A = Variant("preset (λ = 0.8)", "ppo", {})
B = Variant("λ = 0.95", "ppo", {"gae_lambda": 0.95})
NS = [2, 3, 5, 10, 20, 50]
DRAWS = 10_000
CI_DRAWS = 400  # bootstrap intervals are costlier: fewer draws per n
GAP = 50.0  # a gap between two groups' means that a reader would take for an effect (10% of the maximum)


def scores_by_variant(out: Path) -> dict[str, np.ndarray]:
    """Each variant's evaluation scores, ordered by seed."""
    return {
        label: np.array([r["eval_mean"] for r in sorted(runs, key=lambda r: r["seed"])])
        for label, runs in group_runs(load_results(out)).items()
    }


def draw_groups(pool: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` studies of ``n`` runs each, [draws, n], drawn with replacement from ``pool``: the pool stands for
    the variant's distribution, and each study's runs are independent draws from it (drawn without replacement, a
    study of n of 200 runs would be less variable by (200 - n)/199 than one of n new seeds)."""
    return pool[rng.integers(0, len(pool), (draws, n))]


def welch_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Welch's two-sided p-value per row; 1 where both groups are constant (no test can tell them apart)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (SciPy's "nearly identical data" note on such rows)
        p = sps.ttest_ind(x, y, axis=1, equal_var=False).pvalue
    return np.where(np.isnan(p), 1.0, p)


STATS = {"mean": lambda g: g.mean(1), "median": lambda g: np.median(g, 1), "IQM": lambda g: iqm(g, axis=1)}


def study(
    a: np.ndarray, b: np.ndarray, ns: list[int], draws: int = DRAWS, ci_draws: int = CI_DRAWS, seed: int = 0
) -> dict:
    """The A/A, A/B and interval measurements for every n (see the module docstring): ``draws`` simulated
    studies per n (``ci_draws`` for the bootstrap intervals), drawn from the runs in ``a`` and ``b``."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in ns:
        row: dict = {"n": n}
        g1, g2 = draw_groups(a, n, draws, rng), draw_groups(a, n, draws, rng)  # A/A: two groups of A's runs
        gap = np.abs(g1.mean(1) - g2.mean(1))
        row["aa"] = {
            "median_gap": float(np.median(gap)),
            "p90_gap": float(np.quantile(gap, 0.9)),
            "gap_at_least": float(np.mean(gap >= GAP)),
            "significant": float(np.mean(welch_p(g1, g2) < 0.05)),
        }
        ga, gb = draw_groups(a, n, draws, rng), draw_groups(b, n, draws, rng)  # A/B: n runs of each
        row["ab"] = {
            name: {"b_above": float(np.mean(f(gb) > f(ga))), "a_above": float(np.mean(f(ga) > f(gb)))}
            for name, f in STATS.items()
        }
        p = welch_p(ga, gb)
        row["ab"]["welch_b_better"] = float(np.mean((p < 0.05) & (gb.mean(1) > ga.mean(1))))
        row["ab"]["welch_a_better"] = float(np.mean((p < 0.05) & (ga.mean(1) > gb.mean(1))))
        g = draw_groups(a, n, ci_draws, rng)  # intervals of n runs of A, against A's value over every run
        for statistic, truth in (("mean", float(a.mean())), ("iqm", float(iqm(a)))):
            inside, widths = [], []
            for i, runs in enumerate(g):
                low, high = bootstrap_ci(runs, statistic, n_resamples=2000, seed=i)
                inside.append(low <= truth <= high)
                widths.append(high - low)
            row[f"ci_{statistic}"] = {"coverage": float(np.mean(inside)), "median_width": float(np.median(widths))}
        rows.append(row)
    return {
        "draws": draws,
        "ci_draws": ci_draws,
        "gap": GAP,
        "pool": {"A": summary(a), "B": summary(b)},
        "welch_all_runs_p": float(sps.ttest_ind(a, b, equal_var=False).pvalue),
        "seeds_for_80_percent_power": seeds_for_power(a, b),
        "groups_of_five": [float(a[i : i + 5].mean()) for i in range(0, len(a) - 4, 5)],
        "rows": rows,
    }


def summary(x: np.ndarray) -> dict:
    low, high = bootstrap_ci(x, "mean")
    return {
        "runs": len(x),
        "mean": float(x.mean()),
        "ci_mean": [float(low), float(high)],
        "std": float(x.std(ddof=1)),
        "iqm": float(iqm(x)),
        "median": float(np.median(x)),
        "min": float(x.min()),
        "max": float(x.max()),
        "at_500": float(np.mean(x >= 499.5)),
    }


def seeds_for_power(a: np.ndarray, b: np.ndarray, power: float = 0.8, alpha: float = 0.05) -> float:
    """The textbook sample size per group for a two-sided test at ``alpha`` with ``power``, from the pooled
    standard deviation and the difference of means of every run (the normal approximation Colas et al. use):
    n = 2 (z_{1-α/2} + z_{power})² σ² / Δ²."""
    sd = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(2 * z**2 * sd**2 / (b.mean() - a.mean()) ** 2)


def plot_spread(scores: dict[str, np.ndarray], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=120)
    bins = np.linspace(0, 500, 26)
    for label, x in scores.items():
        ax.hist(x, bins=bins, alpha=0.5, label=f"{label}: mean {x.mean():.0f}, std {x.std(ddof=1):.0f} ({len(x)} runs)")
    ax.set(xlabel="evaluation return after 20k env steps (mean of 10 episodes)", ylabel="runs")
    ax.set_title(f"{ENV}, PPO: one configuration, {len(next(iter(scores.values())))} seeds", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def seeds_axis(ax, ns: list[int], line: float, xlabel: str, ylabel: str, title: str) -> None:
    """A fraction (0 to 1) against the number of seeds, on a log axis with a tick at each n measured."""
    ax.axhline(line, color="k", lw=0.6, ls="--")
    ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel, ylim=(0, 1))
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def plot_power(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "ab" in r]
    ns = [r["n"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    ax = axes[0]
    for name, style in (("mean", "o-"), ("median", "s--"), ("IQM", "^-")):
        ax.plot(ns, [r["ab"][name]["b_above"] for r in rows], style, label=f"B ranks above A by the {name}")
    ax.plot(ns, [r["ab"]["welch_b_better"] for r in rows], "k-", lw=2, label="Welch p < 0.05, B better (power)")
    ax.plot(ns, [r["ab"]["mean"]["a_above"] for r in rows], "r:", label="A ranks above B by the mean (wrong)")
    aa = [r for r in result["rows"] if "aa" in r]
    ax.plot(
        [r["n"] for r in aa],
        [r["aa"]["significant"] for r in aa],
        "x--",
        color="grey",
        label="A/A: Welch p < 0.05 (false alarm)",
    )
    seeds_axis(
        ax, ns, 0.8, "seeds per variant (n)", "fraction of simulated studies", "A (λ = 0.8) against B (λ = 0.95)"
    )
    ax = axes[1]
    for statistic, style in (("mean", "o-"), ("iqm", "^-")):
        ax.plot(
            ns,
            [r[f"ci_{statistic}"]["coverage"] for r in rows],
            style,
            label=f"95% bootstrap interval of the {statistic} of n runs contains the all-run value",
        )
    seeds_axis(ax, ns, 0.95, "seeds (n)", "coverage", "is a 95% interval from n seeds a 95% interval?")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_table(result: dict, labels: tuple[str, str], out: Path) -> Path:
    pa, pb = result["pool"]["A"], result["pool"]["B"]
    lines = [
        f"# How many seeds? PPO on {ENV} after 20k env steps",
        "",
        "| variant | runs | mean [95% CI] | std | median | IQM | min | max | runs at 500 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, p in zip(labels, (pa, pb)):
        lines.append(
            f"| {label} | {p['runs']} | {p['mean']:.1f} [{p['ci_mean'][0]:.1f}, {p['ci_mean'][1]:.1f}] | "
            f"{p['std']:.1f} | {p['median']:.1f} | {p['iqm']:.1f} | {p['min']:.1f} | {p['max']:.1f} | "
            f"{100 * p['at_500']:.0f}% |"
        )
    groups = result["groups_of_five"]
    lines += [
        "",
        f"A's runs in groups of five consecutive seeds (0-4, 5-9, ...): the {len(groups)} groups' mean scores range "
        f"from {min(groups):.1f} to {max(groups):.1f} (seeds 0-4: {groups[0]:.1f}, seeds 5-9: {groups[1]:.1f}); "
        "every group is the same configuration."
        if len(groups) >= 2
        else "(Fewer than ten runs: no groups of five to compare.)",
        "",
        f"Welch's test on all runs: p = {result['welch_all_runs_p']:.2g}. Seeds per variant for 80% power at 5% "
        f"(normal approximation, n = 2 (z₀.₉₇₅ + z₀.₈)² σ² / Δ²): {result['seeds_for_80_percent_power']:.0f}.",
        "",
        f"Simulated studies: {result['draws']} per n, each of n runs drawn with replacement from the variant's "
        f"{result['pool']['A']['runs']} ({result['ci_draws']} for the intervals).",
        "",
        f"| n | A/A: median gap of means | A/A: 90th percentile gap | A/A: gap ≥ {result['gap']:g} | A/A: Welch "
        "p < 0.05 | B above A: mean | median | IQM | A above B: mean | Welch: B better (power) | Welch: A better "
        "| CI of the mean: coverage, median width | CI of the IQM: coverage, median width |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        aa, ab = r.get("aa"), r.get("ab")
        aa_cells = (
            f"{aa['median_gap']:.1f} | {aa['p90_gap']:.1f} | {100 * aa['gap_at_least']:.1f}% | "
            f"{100 * aa['significant']:.1f}%"
            if aa
            else "– | – | – | –"
        )
        ab_cells = (
            f"{100 * ab['mean']['b_above']:.1f}% | {100 * ab['median']['b_above']:.1f}% | "
            f"{100 * ab['IQM']['b_above']:.1f}% | {100 * ab['mean']['a_above']:.1f}% | "
            f"{100 * ab['welch_b_better']:.1f}% | {100 * ab['welch_a_better']:.1f}%"
            if ab
            else "– | – | – | – | – | –"
        )
        cm, ci = r["ci_mean"], r["ci_iqm"]
        lines.append(
            f"| {r['n']} | {aa_cells} | {ab_cells} | {100 * cm['coverage']:.0f}%, {cm['median_width']:.0f} | "
            f"{100 * ci['coverage']:.0f}%, {ci['median_width']:.0f} |"
        )
    path = out / "seeds.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    args = parse_args("seeds", __doc__.splitlines()[0], seeds=200)
    out = Path(args.out)
    paths = compare_variants(
        [A, B],
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 20_000, 2_048),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    scores = scores_by_variant(out)
    a, b = scores[A.label], scores[B.label]
    result = study(a, b, NS if not args.quick else [2])
    (out / "seeds.json").write_text(json.dumps(result, indent=1))
    runs = sorted(group_runs(load_results(out))[A.label], key=lambda r: r["seed"])
    k = min(5, len(runs) // 2)
    paths["two_groups"] = plot_curves(
        {f"{A.label}, seeds 0-{k - 1}": runs[:k], f"{A.label}, seeds {k}-{2 * k - 1}": runs[k : 2 * k]},
        out / "two_groups_of_five.png",
        title=f"{ENV}, PPO: two groups of {k} seeds of one configuration",
    )
    paths["spread"] = plot_spread(scores, out / "spread.png")
    paths["power"] = plot_power(result, out / "power.png")
    paths["seeds"] = write_table(result, (A.label, B.label), out)
    print(paths["seeds"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
