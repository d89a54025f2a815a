"""What does TRPO actually buy over VPG?

Both algorithms start each update from the same estimate, the policy gradient g = ∇L(θ_old) of the
surrogate L(θ) = mean_t[π_θ(a_t|s_t)/π_old(a_t|s_t) · Â_t] (``lucidrl.algos.trpo``, E1 and E4). They
differ in the step they take along it:

* VPG (``lucidrl.algos.vpg``, E3): θ ← θ + α·d, one Adam step (d ≈ g / sqrt(E[g²]) coordinate-wise):
  the step's *size is fixed in parameter space* by α, and nothing bounds how far π moves;
* TRPO (``lucidrl.algos.trpo``, E6-E8): θ ← θ + β·F⁻¹g with β = sqrt(2δ / gᵀF⁻¹g), then a line search
  that keeps mean KL(π_old‖π_new) ≤ δ: the step's *size is fixed in policy space*, KL ≈ δ.

The experiment: CartPole-v1, the same batch (2 envs × 512 steps = 1,024 env steps per update, TRPO's
zoo preset), the same GAE (γ = 0.99, λ = 0.98, advantages normalised per batch), the same critic
(64-64 tanh, 40 full-batch Adam steps at 1e-3 per update, Adam ε 1e-5), the same orthogonal init,
60k env steps per run (59 updates), 5 seeds. VPG over four step sizes α ∈ {3e-4, 3e-3, 3e-2, 1e-1},
TRPO over three radii δ ∈ {0.002, 0.01, 0.05}. Per update, for both: the exact mean KL(π_old‖π_new)
on the batch, ‖θ_new − θ_old‖ and the surrogate gain L(θ_new) − L(θ_old) (``diag/kl_after_update`` or
``diag/kl``, ``diag/step_norm``, ``diag/surrogate_improvement``). Per run: the final return and
whether it collapsed (see COLLAPSE below).

Outputs in docs/experiments/vpg_vs_trpo/: learning_curves.png, final_returns.png, results.md and
results.json (the comparison); kl_per_update.png, step_norm.png, surrogate_gain.png (median over
seeds per update, band: min to max over seeds); update_stats.md and update_stats.json (the table and
every run's per-update series).

    python experiments/vpg_vs_trpo.py            # 5 seeds, 18 min at --jobs 2 on 2 heavily shared cores
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants, group_runs, load_results
from lucidrl.logging import read_metrics

ENV = "CartPole-v1"
SHARED = {
    "n_envs": 2,
    "n_steps": 512,
    "gamma": 0.99,
    "gae_lambda": 0.98,
    "normalize_advantage": True,
    "ortho_init": True,
    "adam_eps": 1e-5,
}
VPG = {**SHARED, "psi": "gae", "critic_learning_rate": 1e-3, "n_critic_updates": 40}
TRPO = {**SHARED, "learning_rate": 1e-3, "batch_size": 1024, "n_critic_updates": 40}  # critic: 40 full-batch steps
LRS = [3e-4, 3e-3, 3e-2, 1e-1]
DELTAS = [0.002, 0.01, 0.05]
VARIANTS = [Variant(f"VPG lr={lr:g}", "vpg", {**VPG, "learning_rate": lr}) for lr in LRS] + [
    Variant(f"TRPO delta={d:g}", "trpo", {**TRPO, "target_kl": d}) for d in DELTAS
]
KL_KEY = {"vpg": "diag/kl_after_update", "trpo": "diag/kl"}
COLLAPSE_LEVEL, COLLAPSE_DROP = 100.0, 0.5
COLLAPSE = (
    f"R_k = the logged rolling return after update k (rollout/episode_return, the mean of the last 100 "
    f"training episodes). A run collapses at update k when its running best max_(j<=k) R_j has reached "
    f">= {COLLAPSE_LEVEL:g} and R_k < {COLLAPSE_DROP:g} x that running best. Collapse rate = runs with at "
    f"least one collapse / runs that reached {COLLAPSE_LEVEL:g}."
)
KL_FLOOR = 1e-7  # a rejected TRPO step has KL exactly 0: drawn at this floor on the log axis


def run_series(run: dict) -> dict:
    """One run's per-update series from its metrics.csv, and whether (and when) it collapsed."""
    rows = read_metrics(Path(run["run_dir"]) / "metrics.csv")
    series = {
        "kl": [r[KL_KEY[run["algo"]]] for r in rows],
        "step_norm": [r["diag/step_norm"] for r in rows],
        "surrogate_gain": [r["diag/surrogate_improvement"] for r in rows],
        "returns": [r.get("rollout/episode_return", float("nan")) for r in rows],
        "entropy": [r["diag/entropy"] for r in rows],
    }
    if run["algo"] == "trpo":
        series["line_search_accepted"] = [r["train/line_search_success"] for r in rows]
        series["backtracks"] = [r["train/backtracks"] for r in rows]
    best, reached, below, spells, first = -np.inf, False, False, 0, None
    for k, ret in enumerate(series["returns"]):
        if np.isnan(ret):
            continue
        best = max(best, ret)
        reached = reached or best >= COLLAPSE_LEVEL
        now_below = reached and ret < COLLAPSE_DROP * best
        if now_below and not below:  # a new spell below half the running best
            spells += 1
            first = k if first is None else first
        below = now_below
    return {
        "seed": run["seed"],
        "eval_mean": run["eval_mean"],
        **series,
        "reached": bool(reached),
        "collapsed": spells > 0,
        "collapse_spells": spells,
        "first_collapse_update": first,
        "best_rolling_return": float(best),
    }


def summarize_variant(runs: list[dict], random: float) -> dict:
    kl, steps, gains = (np.concatenate([r[k] for r in runs]) for k in ("kl", "step_norm", "surrogate_gain"))
    reached = [r for r in runs if r["reached"]]
    out = {
        "runs": len(runs),
        "final_return_mean": float(np.mean([r["eval_mean"] for r in runs])),
        "final_rolling_return_mean": float(np.mean([r["returns"][-1] for r in runs])),
        "final_entropy_mean": float(np.mean([r["entropy"][-1] for r in runs])),
        "below_random_at_end": sum(r["returns"][-1] < random for r in runs),
        "reached": len(reached),
        "collapsed": sum(r["collapsed"] for r in reached),
        "collapse_rate": (sum(r["collapsed"] for r in reached) / len(reached)) if reached else None,
        "kl_median": float(np.median(kl)),
        "kl_p90": float(np.quantile(kl, 0.9)),
        "kl_max": float(np.max(kl)),
        "step_norm_median": float(np.median(steps)),
        "surrogate_gain_median": float(np.median(gains)),
        "negative_gain_fraction": float(np.mean(gains < 0)),
        "updates": int(kl.size),
    }
    if "line_search_accepted" in runs[0]:
        out["line_search_rejected_fraction"] = float(
            1 - np.mean(np.concatenate([r["line_search_accepted"] for r in runs]))
        )
        out["backtracks_mean"] = float(np.mean(np.concatenate([r["backtracks"] for r in runs])))
    return out


def plot_per_update(stats: dict, key: str, path: Path, ylabel: str, scale: str) -> Path:
    """Median over seeds of ``key`` against the update index, band from the smallest to the largest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lucidrl.plotting import finish_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=120)
    for i, (label, v) in enumerate(stats.items()):
        n = min(len(r[key]) for r in v["runs"])
        ys = np.array([r[key][:n] for r in v["runs"]], dtype=np.float64)
        if scale == "log":
            ys = np.maximum(ys, KL_FLOOR)
        color = plt.get_cmap("tab10")(i % 10)
        x = np.arange(1, n + 1)
        ax.plot(
            x,
            np.median(ys, 0),
            color=color,
            linewidth=1.5,
            linestyle="-" if v["algo"] == "vpg" else "--",
            label=f"{label} ({len(ys)} seeds)",
        )
        ax.fill_between(x, ys.min(0), ys.max(0), color=color, alpha=0.12, linewidth=0)
    if scale == "log":
        ax.set_yscale("log")
    elif scale == "symlog":
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"update (each on {SHARED['n_envs'] * SHARED['n_steps']} env steps)")
    ax.set_ylabel(ylabel)
    return finish_figure(fig, ax, path, f"{ENV}: {ylabel}\nmedian over seeds, band: min to max over seeds")


def random_policy_return(episodes: int = 200, seed: int = 0) -> float:
    """Mean return of the uniformly random policy on ENV: the level below which a policy is worse than chance."""
    import gymnasium as gym

    env, rng, total = gym.make(ENV), np.random.default_rng(seed), 0.0
    for i in range(episodes):
        env.reset(seed=seed + i)
        done = False
        while not done:
            _, r, terminated, truncated, _ = env.step(int(rng.integers(2)))
            total, done = total + r, terminated or truncated
    return total / episodes


def write_update_report(out: Path) -> dict[str, Path]:
    random = random_policy_return()
    stats = {}
    for label, runs in group_runs(load_results(out)).items():
        series = [run_series(r) for r in runs]
        setting = {k: runs[0]["overrides"][k] for k in ("learning_rate", "target_kl") if k in runs[0]["overrides"]}
        if runs[0]["algo"] == "trpo":
            setting.pop("learning_rate")  # TRPO's learning_rate is its critic's
        stats[label] = {
            "algo": runs[0]["algo"],
            **setting,
            "summary": summarize_variant(series, random),
            "runs": series,
        }
    paths = {
        "kl": plot_per_update(stats, "kl", out / "kl_per_update.png", "mean KL(π_old‖π_new) on the batch", "log"),
        "step_norm": plot_per_update(stats, "step_norm", out / "step_norm.png", "step norm ‖θ_new − θ_old‖", "log"),
        "surrogate": plot_per_update(
            stats, "surrogate_gain", out / "surrogate_gain.png", "surrogate gain L(θ_new) − L(θ_old)", "symlog"
        ),
    }
    lines = [
        f"# {ENV}: per-update statistics",
        "",
        f"Every update of every seed pooled (batch {SHARED['n_envs'] * SHARED['n_steps']} env steps). "
        f"Final return: mean over seeds of the 10-episode deterministic evaluation. Collapse: {COLLAPSE}",
        "",
        f"Random policy: uniform actions, mean return {random:.1f} over 200 episodes.",
        "",
        f"| variant | final return (mean) | final rolling return (mean) | collapsed / reached {COLLAPSE_LEVEL:g} "
        "| ended below random | final entropy (mean) | median KL per update | 90th pct KL | max KL "
        "| median step norm | median surrogate gain | updates with gain < 0 "
        "| TRPO steps rejected (mean backtracks) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, v in stats.items():
        s = v["summary"]
        rejected = (
            f"{s['line_search_rejected_fraction']:.0%} ({s['backtracks_mean']:.2f})"
            if "line_search_rejected_fraction" in s
            else "n/a"
        )
        lines.append(
            f"| {label} | {s['final_return_mean']:.1f} | {s['final_rolling_return_mean']:.1f} | "
            f"{s['collapsed']} / {s['reached']} | {s['below_random_at_end']} / {s['runs']} | "
            f"{s['final_entropy_mean']:.3f} | {s['kl_median']:.2e} | {s['kl_p90']:.2e} | "
            f"{s['kl_max']:.2e} | {s['step_norm_median']:.3g} | {s['surrogate_gain_median']:.2e} | "
            f"{s['negative_gain_fraction']:.0%} | {rejected} |"
        )
    (out / "update_stats.md").write_text("\n".join(lines) + "\n")
    for v in stats.values():  # the per-update series to 4 significant digits (the summaries use the full values)
        for run in v["runs"]:
            for key, xs in run.items():
                if isinstance(xs, list):
                    run[key] = [float(f"{x:.4g}") for x in xs]
    (out / "update_stats.json").write_text(
        json.dumps(
            {
                "env": ENV,
                "batch": SHARED["n_envs"] * SHARED["n_steps"],
                "collapse_definition": COLLAPSE,
                "collapse_level": COLLAPSE_LEVEL,
                "collapse_drop": COLLAPSE_DROP,
                "random_policy_return": random,
                "variants": stats,
            },
            indent=1,
        )
    )
    return {**paths, "update_table": out / "update_stats.md", "update_json": out / "update_stats.json"}


if __name__ == "__main__":
    args = parse_args("vpg_vs_trpo", __doc__.splitlines()[0])
    out = Path(args.out)
    paths = compare_variants(
        VARIANTS,
        ENV,
        seeds=args.seeds,
        timesteps=budget(args, 60_000, 3_000),
        out=out,
        n_jobs=args.jobs,
        force=args.force,
    )
    paths.update(write_update_report(out))
    print(paths["table"].read_text())
    print(paths["update_table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
