"""Exploration vs exploitation: what do the entropy bonus, the ε schedule and the initial σ do?

An agent only learns about actions it tries. Each algorithm has one knob that keeps it trying:

* A2C and PPO add β H(π(·|s)) to the objective, the entropy bonus (``ent_coef``; a2c.md E3, PPO's
  eq. 9 in ppo.md E6; ``lucidrl.algos.a2c.a2c_loss``, ``lucidrl.algos.ppo.ppo_update``). For a
  categorical policy H = -Σ_a π(a|s) log π(a|s), at most log |A| (uniform);
* DQN acts ε-greedily (dqn.md E1): a random action with probability ε, else argmax_a Q(s, a), with ε
  falling linearly from 1 to ``exploration_final_eps`` over the first ``exploration_fraction`` of
  training (``lucidrl.algos.dqn.exploration_rate``);
* a Gaussian policy N(μ(s), σ²) explores with its σ. lucidrl's σ is one free parameter per action
  dimension that starts at exp(``log_std_init``); its entropy is H = Σ_i ½ log(2πe σ_i²) = Σ_i
  (log σ_i + ½(1 + log 2π)) (``lucidrl.networks.DiagGaussianHead.entropy``).

Four parts, 5 seeds each, every other hyperparameter from lucidrl's preset for the (algorithm, env):

* ``acrobot_a2c``: A2C on Acrobot-v1, 100k env steps, ent_coef ∈ {0 (preset), 0.01, 0.05};
* ``mountaincar_ppo``: PPO on MountainCar-v0, 50k env steps, ent_coef ∈ {0 (preset), 0.01, 0.05};
* ``cartpole_dqn``: DQN on CartPole-v1, 20k env steps (two fifths of the preset's 50k: early learning),
  ε decaying from 1 to 0.04 over exploration_fraction ∈ {0.01 (greedy as soon as learning starts),
  0.16 (preset), 0.5} of the run;
* ``pendulum_ppo``: PPO on Pendulum-v1, 50k env steps (a sixth of the preset's 300k: early learning
  only), log_std_init ∈ {-2, 0 (preset), 1}, i.e. σ₀ ∈ {0.14, 1, 2.7}.

The budgets are small because the runs were made on a shared 2-core machine.

Besides compare_variants' outputs in one folder per part (learning_curves.png, final_returns.png,
results.md, results.json, curves_diag_entropy.png or curves_train_exploration_rate.png), the script
reads every run's metrics.csv and writes summary.md and summary.json: per variant, the final return,
the final policy entropy, the training return averaged over the whole run, the env step of the first
success and the env step where the training return first reached Gymnasium's reward_threshold.
"First success" is the first episode that ended before the time limit: Acrobot's returns lie in
[-500, 0] and MountainCar's in [-200, 0], and only an episode cut at the limit scores the floor, so
the logged mean of the last 100 episodes leaves the floor exactly at the first rollout that holds one
(resolution: one rollout, 80 env steps for A2C on Acrobot, 256 for PPO on MountainCar).

    python experiments/exploration.py            # 5 seeds, 35 min at --jobs 2 on a shared, loaded 2-core machine
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants, load_results
from lucidrl.logging import read_metrics

RETURN, ENTROPY, EPSILON = "rollout/episode_return", "diag/entropy", "train/exploration_rate"
GAUSSIAN_CONST = 0.5 * (1.0 + math.log(2.0 * math.pi))  # H of N(μ, σ²) is log σ + this, per action dimension


@dataclass(frozen=True)
class Part:
    name: str
    env: str
    algo: str
    knob: str  # the config field the variants change
    values: tuple[float, ...]
    preset: float  # the preset's value of the knob
    full: int  # env steps per run, full and --quick
    quick: int
    metric: str  # what the extra figure plots
    floor: float | None = None  # the return of an episode cut at the time limit (no success), if the env has one
    threshold: float | None = None  # Gymnasium's reward_threshold for the env


PARTS = [
    Part(
        "acrobot_a2c",
        "Acrobot-v1",
        "a2c",
        "ent_coef",
        (0.0, 0.01, 0.05),
        0.0,
        100_000,
        8_800,
        ENTROPY,
        floor=-500.0,
        threshold=-100.0,
    ),
    Part(
        "mountaincar_ppo",
        "MountainCar-v0",
        "ppo",
        "ent_coef",
        (0.0, 0.01, 0.05),
        0.0,
        50_000,
        4_096,
        ENTROPY,
        floor=-200.0,
        threshold=-110.0,
    ),
    Part(
        "cartpole_dqn",
        "CartPole-v1",
        "dqn",
        "exploration_fraction",
        (0.01, 0.16, 0.5),
        0.16,
        20_000,
        1_536,
        EPSILON,
        threshold=475.0,
    ),
    Part("pendulum_ppo", "Pendulum-v1", "ppo", "log_std_init", (-2.0, 0.0, 1.0), 0.0, 50_000, 8_192, ENTROPY),
]


def label(part: Part, value: float) -> str:
    return f"{part.knob}={value:g}" + (" (preset)" if value == part.preset else "")


def first_step(rows: list[dict[str, float]], test) -> int | None:
    """The env step of the first row whose logged return passes ``test``, or None."""
    return next((int(r["time/total_timesteps"]) for r in rows if RETURN in r and test(r[RETURN])), None)


def run_summary(part: Part, result: dict) -> dict:
    rows = read_metrics(Path(result["run_dir"]) / "metrics.csv")
    returns = [r[RETURN] for r in rows if RETURN in r]
    entropies = [r[ENTROPY] for r in rows if ENTROPY in r]
    first = None if part.floor is None else first_step(rows, lambda g: g > part.floor)
    at_first = [r[ENTROPY] for r in rows if ENTROPY in r and r["time/total_timesteps"] == first]
    out = {
        "seed": result["seed"],
        "final_return": result["eval_mean"],
        "mean_training_return": statistics.fmean(returns) if returns else None,
        "final_training_return": returns[-1] if returns else None,
        "first_success": first,
        "entropy_at_first_success": at_first[0] if at_first else None,
        "reached_threshold": None if part.threshold is None else first_step(rows, lambda g: g >= part.threshold),
        "initial_entropy": entropies[0] if entropies else None,
        "final_entropy": entropies[-1] if entropies else None,
    }
    if part.env == "Pendulum-v1" and entropies:  # one action dimension: H = log σ + ½(1 + log 2π)
        out["final_sigma"] = math.exp(entropies[-1] - GAUSSIAN_CONST)
    return out


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def _steps(xs: list[int | None]) -> str:
    """'k/n seeds, median M' over the seeds that got there (the others never did within the budget)."""
    hit = [x for x in xs if x is not None]
    if not hit:
        return f"never (0/{len(xs)})"
    return f"{len(hit)}/{len(xs)} seeds, median {statistics.median(hit):,.0f}"


def _num(x, fmt="{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def summarize_part(part: Part, out: Path, timesteps: int) -> dict:
    by_label: dict[str, list[dict]] = {}
    for r in load_results(out):
        by_label.setdefault(r["label"], []).append(run_summary(part, r))
    variants = []
    for value in part.values:
        runs = sorted(by_label[label(part, value)], key=lambda s: s["seed"])
        v = {
            "label": label(part, value),
            part.knob: value,
            "runs": runs,
            "final_return_mean": _mean(s["final_return"] for s in runs),
            "mean_training_return_mean": _mean(s["mean_training_return"] for s in runs),
            "final_entropy_mean": _mean(s["final_entropy"] for s in runs),
            "initial_entropy_mean": _mean(s["initial_entropy"] for s in runs),
            "entropy_at_first_success_mean": _mean(s["entropy_at_first_success"] for s in runs),
        }
        if part.env == "Pendulum-v1":
            v["final_sigma_mean"] = _mean(s.get("final_sigma") for s in runs)
        variants.append(v)
    return {
        "env": part.env,
        "algo": part.algo,
        "knob": part.knob,
        "timesteps": timesteps,
        "floor": part.floor,
        "threshold": part.threshold,
        "variants": variants,
    }


def markdown(summary: dict) -> str:
    lines = [
        "# Exploration vs exploitation: summary",
        "",
        "Per variant, means over seeds. final return: the deterministic evaluation after training (as results.md). "
        "training return: the logged return (mean of the last 100 training episodes, exploration included) "
        "averaged over all of the run's log rows. first success: env step of the first episode that ended "
        "before the time limit. threshold: env step where the logged training return first reached "
        "Gymnasium's reward_threshold. Both give the seeds that got there and their median; 'never' = "
        "not within the budget. entropy: diag/entropy, the policy's mean entropy on an update's batch: the "
        "first update, the update that logged the first success, the last update.",
        "",
    ]
    for name, p in summary.items():
        lines += [
            f"## {name}: {p['algo'].upper()} on {p['env']}, {p['timesteps']:,} env steps, {p['knob']}",
            "",
            "| variant | seeds | final return | training return | first success | threshold "
            f"({_num(p['threshold'], '{:g}')}) | entropy at start | at first success | entropy at end |"
            + (" σ at end |" if p["env"] == "Pendulum-v1" else ""),
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if p["env"] == "Pendulum-v1" else ""),
        ]
        for v in p["variants"]:
            runs = v["runs"]
            first = "n/a" if p["floor"] is None else _steps([s["first_success"] for s in runs])
            thr = "n/a" if p["threshold"] is None else _steps([s["reached_threshold"] for s in runs])
            lines.append(
                f"| {v['label']} | {len(runs)} | {_num(v['final_return_mean'])} | "
                f"{_num(v['mean_training_return_mean'])} | {first} | {thr} | "
                f"{_num(v['initial_entropy_mean'], '{:.3f}')} | "
                f"{_num(v['entropy_at_first_success_mean'], '{:.3f}')} | {_num(v['final_entropy_mean'], '{:.3f}')} |"
                + (f" {_num(v['final_sigma_mean'], '{:.3f}')} |" if p["env"] == "Pendulum-v1" else "")
            )
        lines += [
            "",
            "Per seed (seed: final return / last logged training return / first success / threshold step / "
            "final entropy; '-': never):",
            "",
        ]
        for v in p["variants"]:
            cells = [
                f"{s['seed']}: {s['final_return']:.1f} / {_num(s['final_training_return'])}"
                f" / {s['first_success'] if s['first_success'] is not None else '-'}"
                f" / {s['reached_threshold'] if s['reached_threshold'] is not None else '-'}"
                f" / {_num(s['final_entropy'], '{:.3f}')}"
                for s in v["runs"]
            ]
            lines.append(f"* {v['label']}: " + "; ".join(cells))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    args = parse_args("exploration", __doc__.splitlines()[0])
    out = Path(args.out)
    summary = {}
    for part in PARTS:
        steps = budget(args, part.full, part.quick)
        variants = [Variant(label(part, v), part.algo, {part.knob: v}) for v in part.values]
        paths = compare_variants(
            variants,
            part.env,
            seeds=args.seeds,
            timesteps=steps,
            out=out / part.name,
            n_jobs=args.jobs,
            force=args.force,
            metrics=[part.metric],
            eval_episodes=3 if args.quick else 10,
        )
        summary[part.name] = summarize_part(part, out / part.name, steps)
        print(paths["table"].read_text())
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"wrote {out / 'summary.md'}, {out / 'summary.json'} and one folder per part")
