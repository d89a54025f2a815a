"""A 16-trial PPO tune on CartPole-v1: its wall time, the best evaluation return and the best configuration.

The same code path as ``lucidrl tune ppo --env CartPole-v1 --trials 16 --timesteps 50000``: a local Ray
instance with this machine's CPUs (one trial per CPU), Optuna's TPE sampler (seed 0) over
lucidrl/presets/search_spaces.yaml, ASHA early stopping at every quarter of the budget. The wall time counts
everything a user waits for (Ray's start, every trial, the outputs). The outputs stay in ``--out``.

    python benchmarks/scale_tune.py [--trials 16] [--timesteps 50000] [--out /tmp/tune-ppo-cartpole]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections import Counter

from lucidrl.distributed.tune import tune


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="ppo")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--timesteps", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/tune-ppo-cartpole")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.perf_counter()
    result = tune(args.algo, args.env, trials=args.trials, timesteps=args.timesteps, out=args.out, seed=args.seed)
    wall = time.perf_counter() - t0
    statuses = Counter(r["status"] for r in result.trials)
    steps = sum(r["steps"] or 0 for r in result.trials)
    print(f"\n{args.algo} on {args.env}: {args.trials} trials of {args.timesteps} steps, {os.cpu_count()} CPUs")
    print(f"wall time: {wall:.0f} s ({wall / 60:.1f} min); trials: {dict(statuses)}")
    print(
        f"env steps trained in all: {steps} of {args.trials * args.timesteps} "
        f"({100 * steps / (args.trials * args.timesteps):.0f}%: ASHA stopped the rest)"
    )
    if result.best is not None:
        b = result.best
        print(f"best: trial {b['number']}, eval return {b['eval_return']:.1f} +/- {b['eval_return_std']:.1f}")
        print("best params: " + ", ".join(f"{k}={v}" for k, v in b["params"].items()))
    print(f"outputs: {result.out}")


if __name__ == "__main__":
    main()
