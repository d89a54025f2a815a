"""Tabular Q-learning on a continuous state: how fine should the bins be, and what does a network buy?

A Q-table needs a finite set of states, and CartPole's are four real numbers: the cart's position x and
velocity ẋ, the pole's angle θ and angular velocity θ̇. ``lucidrl.QLearning`` clips each to bounds and cuts it
into ``n_bins`` equal bins (``lucidrl.envs.discretise``, D1 of ``lucidrl.algos.q_learning``): one cell of the
grid is one row of the table. The grid decides two things at once:

* **what the agent can tell apart.** Two observations in one cell share one row of Q-values, so one action.
  If they need different actions (the pole leaning left but swinging back, against leaning left and falling),
  no table on that grid can act right in both; the cells are not Markov states any more (Sutton & Barto 2018,
  Example 9.1 in section 9.3 on state aggregation, and section 17.3 on observations and state);
* **how much there is to learn.** d dimensions of n bins are n^d rows, and each is learned only from the steps
  that land in it: a finer grid spreads the same experience over more rows (the "curse of dimensionality",
  Bellman 1957).

Every variant here is lucidrl's Q-learning preset for CartPole-v1 (α = lin_0.2, γ = 0.99, ε from 1 to 0.01 over
half the run, bounds ±2.4, ±3, ±0.21 rad, ±3.5 rad/s) with only ``n_bins`` (x × ẋ × θ × θ̇) changed, 300k steps
(the preset's grid was 1x6x12x12 until this experiment, 1x12x24x24 since):

* ``angle only 1x1x12x1`` (12 rows): θ without θ̇, which cannot tell rising from falling;
* ``coarse 1x3x6x6`` (108 rows);
* ``medium 1x6x12x12`` (864 rows);
* ``fine 1x12x24x24`` (6,912 rows), ``very fine 1x24x48x48`` (55,296 rows), ``finest 1x48x96x96`` (442,368 rows);
* ``x binned 6x6x12x12`` (5,184 rows): the medium grid with 6 bins of cart position, which the others leave
  out (it matters only near the track's ends).

And for scale, what a network buys: lucidrl's DQN preset for CartPole-v1 (zoo hyperparameters: a 256x256 MLP,
50k env steps), which generalises between nearby states instead of learning each cell on its own.

Besides the returns, from each trained table: the rows the agent ever updated (a row is all zeros until then:
CartPole's reward is +1 on every step), the env steps per updated row (how much experience each row had on
average), the share of a greedy evaluation's steps that fell in a row never updated (where the table's argmax
is its first action by default, not a learned choice), and how the greedy evaluation episodes ended: the cart
off the track (|x| > 2.4), the pole fallen (|θ| > 12°) or the 500-step limit.

Outputs in docs/experiments/discretisation/: learning_curves.png, final_returns.png, results.md (from
``compare``), tables.md and tables.json (coverage), and dqn/ (the DQN runs).

    python experiments/discretisation.py          # 5 seeds: 17 min at --jobs 1 (other work on the second core)
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import gymnasium as gym
import numpy as np
from _common import budget, parse_args

import lucidrl
from lucidrl.compare import Variant, compare_variants, group_runs, load_results, plot_curves

ENV = "CartPole-v1"
GRIDS = {
    "angle only 1x1x12x1": [1, 1, 12, 1],
    "coarse 1x3x6x6": [1, 3, 6, 6],
    "medium 1x6x12x12": [1, 6, 12, 12],
    "fine 1x12x24x24": [1, 12, 24, 24],
    "very fine 1x24x48x48": [1, 24, 48, 48],
    "finest 1x48x96x96": [1, 48, 96, 96],
    "x binned 6x6x12x12": [6, 6, 12, 12],
}
VARIANTS = [Variant(label, "qlearning", {"n_bins": bins}) for label, bins in GRIDS.items()]
DQN_LABEL = "DQN (256x256 MLP)"
EVAL_EPISODES = 10
SOLVED = 475.0  # the v1 task's bar; the first env step at which a run's logged training return reached it


def first_step_at(run_dir: str, threshold: float) -> float | None:
    """The first logged env step at which the training return (mean of the last 100 episodes) was >= threshold."""
    steps, returns = lucidrl.compare.load_curve(run_dir)
    return next((float(s) for s, r in zip(steps, returns) if r >= threshold), None)


def table_coverage(run_dir: str, seed: int) -> dict:
    """Rows ever updated, and greedy evaluation steps spent in rows never updated."""
    model = lucidrl.load(Path(run_dir) / "model")
    q = model.agent.numpy()
    learned = np.any(q != 0.0, axis=1)
    env = gym.make(ENV)
    steps = unlearned = 0
    returns = []
    ends = {"cart off the track": 0, "pole fell": 0, "time limit": 0}
    for episode in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=10_000 * (seed + 1) + episode)
        done, total = False, 0.0
        while not done:
            row = int(model.states(obs[None])[0])
            steps += 1
            unlearned += not learned[row]
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        # CartPole-v1 terminates when |x| > 2.4 or |θ| > 0.2095 rad (12 degrees), truncates at 500 steps
        ends["time limit" if not terminated else "cart off the track" if abs(obs[0]) > 2.4 else "pole fell"] += 1
    env.close()
    return {
        "rows": int(q.shape[0]),
        "rows_updated": int(learned.sum()),
        "eval_steps": steps,
        "eval_steps_unlearned": unlearned,
        "eval_return": statistics.fmean(returns),
        "eval_ends": ends,
    }


def median_or_none(values: list[float | None]) -> float | None:
    """The median of the runs that reached a threshold, or None when fewer than half did."""
    reached = [v for v in values if v is not None]
    return statistics.median(reached) if 2 * len(reached) >= len(values) else None


if __name__ == "__main__":
    args = parse_args("discretisation", __doc__.splitlines()[0])
    out = Path(args.out)
    steps = budget(args, 300_000, 6_000)
    paths = compare_variants(VARIANTS, ENV, seeds=args.seeds, timesteps=steps, out=out, n_jobs=args.jobs,
                             force=args.force)  # fmt: skip
    dqn_paths = compare_variants([Variant(DQN_LABEL, "dqn", {})], ENV, seeds=args.seeds,
                                 timesteps=budget(args, 50_000, 2_000), out=out / "dqn", n_jobs=args.jobs,
                                 force=args.force)  # fmt: skip
    groups = group_runs(load_results(out))
    dqn_runs = group_runs(load_results(out / "dqn"))[DQN_LABEL]
    both = {**groups, DQN_LABEL: dqn_runs}
    paths["curves_with_dqn"] = plot_curves(
        both,
        out / "learning_curves_with_dqn.png",
        title=f"{ENV}: Q-tables of {len(GRIDS)} grids, and DQN\n(training return, mean over seeds, 95% bootstrap band)",
        reference=(SOLVED, "475"),
    )

    summary: dict[str, dict] = {}
    for label, runs in both.items():
        row: dict = {
            "final_eval": [r["eval_mean"] for r in runs],
            "train_s": [r["train_s"] for r in runs],
            "steps": runs[0]["timesteps"],
            "first_step_solved": [first_step_at(r["run_dir"], SOLVED) for r in runs],
        }
        if label != DQN_LABEL:
            row["tables"] = [table_coverage(r["run_dir"], r["seed"]) for r in runs]
        summary[label] = row
        print(label, json.dumps(row)[:400], flush=True)
    (out / "tables.json").write_text(json.dumps(summary, indent=1))

    lines = [
        f"# {ENV}: Q-table grids and DQN ({args.seeds} seeds)",
        "",
        "| variant | rows | env steps | final eval return, mean (min-max) | seeds solved (>= 475) | training "
        "return first >= 475 at, median step | rows updated | env steps per updated row | greedy eval steps in rows "
        "never updated | greedy episodes ended by: cart off the track / pole fell / time limit | "
        "train time (s), median |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for label, row in summary.items():
        finals = row["final_eval"]
        first = median_or_none(row["first_step_solved"])
        reached = sum(v is not None for v in row["first_step_solved"])
        tables = row.get("tables")
        if tables:
            n_rows = f"{tables[0]['rows']:,}"
            updated = statistics.fmean(t["rows_updated"] / t["rows"] for t in tables)
            counts = [t["rows_updated"] for t in tables]
            updated_s = f"{updated:.1%} ({min(counts):,}-{max(counts):,})"
            per_row = f"{row['steps'] / statistics.fmean(counts):,.0f}"
            unlearned = sum(t["eval_steps_unlearned"] for t in tables) / sum(t["eval_steps"] for t in tables)
            unlearned_s = f"{unlearned:.2%}"
            ends = [sum(t["eval_ends"][k] for t in tables) for k in ("cart off the track", "pole fell", "time limit")]
            ends_s = " / ".join(map(str, ends))
        else:
            n_rows, updated_s, per_row, unlearned_s, ends_s = "(network)", "-", "-", "-", "-"
        lines.append(
            f"| {label} | {n_rows} | {row['steps']:,} | "
            f"{statistics.fmean(finals):.1f} ({min(finals):.1f}-{max(finals):.1f}) | "
            f"{sum(f >= SOLVED for f in finals)} / {len(finals)} | "
            f"{'-' if first is None else f'{first:,.0f}'} ({reached} of {len(finals)} reached it) | {updated_s} | "
            f"{per_row} | {unlearned_s} | {ends_s} | {statistics.median(row['train_s']):.1f} |"
        )
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("wrote " + ", ".join(str(p) for p in [*paths.values(), *dqn_paths.values(), out / "tables.md"]))
