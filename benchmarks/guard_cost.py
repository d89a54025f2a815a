"""What the non-finite guards cost on CartPole PPO (zoo preset, 100k steps, default settings).

The guards: every env step's observation and reward are summed and the sum tested
(``VectorStepper.step``), and every update's losses, gradient norm and weights
(``Algorithm._check_finite``). The update guard is timed inside a real run (its own time, summed
with ``perf_counter``); the step guard, a one-line expression, is timed with ``timeit`` on arrays
of the run's shapes and multiplied by the run's number of env.step calls. Both are reported as a
share of the training time. The same seed also runs with the guards made no-ops, alternating, for
the end-to-end figure (noisier: a 2-core machine's run-to-run spread is larger than the guards).

    python benchmarks/guard_cost.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import timeit

import numpy as np

import lucidrl
import lucidrl.rollout as rollout
from lucidrl.agent import Algorithm


def step_guard_seconds_per_call(n_envs: int, obs_dim: int) -> float:
    obs, reward, add = np.random.rand(n_envs, obs_dim).astype(np.float32), np.ones(n_envs), rollout._sum
    n = 200_000
    return timeit.timeit(lambda: math.isfinite(float(add(reward, None)) + float(add(obs, None))), number=n) / n


def run(seed: int, guards: bool) -> dict:
    spent = {"update_s": 0.0, "update_calls": 0}
    check, add, step = Algorithm._check_finite, rollout._sum, rollout.VectorStepper.step
    calls = [0]

    def timed_check(self, metrics):
        t = time.perf_counter()
        check(self, metrics)
        spent["update_s"] += time.perf_counter() - t
        spent["update_calls"] += 1

    def counted_step(self, actions):
        calls[0] += 1
        return step(self, actions)

    rollout.VectorStepper.step = counted_step
    if guards:
        Algorithm._check_finite = timed_check
    else:
        rollout._sum = lambda x, axis: 0.0
        Algorithm._check_finite = lambda self, metrics: None
    try:
        model = lucidrl.PPO("CartPole-v1", seed=seed, verbose=0, tensorboard=False)
        model.learn(100_000)
    finally:
        rollout._sum, Algorithm._check_finite, rollout.VectorStepper.step = add, check, step
    return {"seed": seed, "guards": guards, "train_s": model.last_training_seconds, "step_calls": calls[0], **spent}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        for guards in (True, False):
            rows.append(run(seed, guards))
            print(json.dumps(rows[-1]))
    per_call = step_guard_seconds_per_call(8, 4)
    print(f"step guard: {per_call * 1e6:.2f} us a call of env.step (8 envs x 4 floats)")
    with_g = [r for r in rows if r["guards"]]
    share = [(r["step_calls"] * per_call + r["update_s"]) / r["train_s"] for r in with_g]
    print(f"guard time inside runs: {', '.join(f'{100 * s:.2f}%' for s in share)} of training time")
    print(
        "end to end, guards on / off: "
        + ", ".join(f"{a['train_s']:.2f} / {b['train_s']:.2f} s" for a, b in zip(rows[::2], rows[1::2]))
    )


if __name__ == "__main__":
    main()
