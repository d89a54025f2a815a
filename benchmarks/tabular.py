"""Tabular Q-learning against issue 4's bars, with the presets in ``lucidrl/presets/qlearning.yaml``.

    python benchmarks/tabular.py                       # all three envs, seeds 0 1 2
    python benchmarks/tabular.py --envs FrozenLake-v1 --seeds 0
    python benchmarks/tabular.py --envs FrozenLake-v1 Taxi-v4 --update double_q_learning   # the presets, Double

Per (env, seed): build ``lucidrl.QLearning(env, seed=seed)`` (its preset), train for the preset's
``n_timesteps``, then evaluate the greedy policy with ``lucidrl.evaluate(model, env, n_episodes,
deterministic=True)`` (evaluation episode i is seeded with i):

* FrozenLake-v1 (4x4, slippery): success rate = mean return over 1000 episodes; bar >= 0.70
* Taxi-v4 (Gymnasium 1.4 renamed Taxi-v3; same default dynamics): mean return over 1000 episodes; bar >= 7.0
* CartPole-v1 (discretised, 1x12x24x24 bins): mean return over 10 episodes; bar >= 195

``train_s`` is the wall time of ``learn`` only. Results are appended as JSON lines to
``benchmarks/results/qlearning_tabular.jsonl`` and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import lucidrl
from lucidrl.config import load_presets

BARS = {"FrozenLake-v1": (1000, 0.70), "Taxi-v4": (1000, 7.0), "CartPole-v1": (10, 195.0)}


def run(env_id: str, seed: int, update: str | None = None) -> dict:
    n_eval, bar = BARS[env_id]
    steps = int(load_presets("qlearning")[env_id]["n_timesteps"])
    model = lucidrl.QLearning(env_id, seed=seed, verbose=0, **({"update": update} if update else {}))
    t = time.perf_counter()
    model.learn(steps)
    train_s = time.perf_counter() - t
    mean, std = lucidrl.evaluate(model, env_id, n_episodes=n_eval, deterministic=True)
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "benchmark": "tabular",
        "algo": "qlearning",
        "update": model.config.update,
        "env_id": env_id,
        "seed": seed,
        "timesteps": steps,
        "train_s": round(train_s, 2),
        "steps_per_s": round(steps / train_s, 1),
        "eval_episodes": n_eval,
        "eval_mean": round(mean, 4),
        "eval_std": round(std, 4),
        "bar": bar,
        "passed": mean >= bar,
        "versions": {"lucidrl": lucidrl.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", nargs="+", default=list(BARS), choices=list(BARS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "qlearning_tabular.jsonl"))
    p.add_argument("--update", default=None, help="the preset's update (q_learning) unless given: sarsa, ...")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for env_id in args.envs:
        for seed in args.seeds:
            r = run(env_id, seed, args.update)
            rows.append(r)
            print(json.dumps(r), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")
    print("\n| env | update | seed | steps | train s | eval episodes | greedy mean return | bar | ok |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['env_id']} | {r['update']} | {r['seed']} | {r['timesteps']} | {r['train_s']} | "
            f"{r['eval_episodes']} | {r['eval_mean']:.3f} | {r['bar']} | {'yes' if r['passed'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
