"""What ``lucidrl.threads.tune_malloc`` buys: seconds and page faults of ``learn`` with glibc's allocator left alone
(``LUCIDRL_TUNE_MALLOC=0``) and tuned (the default), each run in a fresh process, the two alternated.

    python benchmarks/malloc_faults.py [--cases ppo_1024 a2c_1024 ...] [--repeats 1]

Prints one JSON row per run (docs/algorithms/ppo.md, "Fast backend").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

PUREJAXRL = dict(
    n_epochs=4, learning_rate=2.5e-4, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, gamma=0.99,
    gae_lambda=0.95, net_arch=[64, 64], activation="tanh",
)  # fmt: skip
CASES = {  # name: (algorithm, hyperparameters, env steps)
    "ppo_preset": ("PPO", dict(), 50_000),
    "dqn_preset": ("DQN", dict(), 20_000),
    "ppo_1024": ("PPO", dict(preset=False, n_envs=1024, n_steps=16, batch_size=4096, **PUREJAXRL), 200_000),
    "a2c_1024": ("A2C", dict(preset=False, n_envs=1024, n_steps=16), 200_000),
    "trpo_1024": ("TRPO", dict(preset=False, n_envs=1024, n_steps=16), 200_000),
    "vpg_64": ("VPG", dict(preset=False, n_envs=64, n_steps=256), 100_000),
    "ppo_pendulum_256": ("PPO", dict(preset=False, n_envs=256, n_steps=64, batch_size=4096), 100_000),
}
ENVS = {"ppo_pendulum_256": "Pendulum-v1"}

RUN = """
import json, resource, sys, time
import lucidrl
algo, kwargs, steps, env = json.loads(sys.argv[1])
m = getattr(lucidrl, algo)(env, seed=0, verbose=0, **kwargs)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = time.perf_counter()
m.learn(steps)
print(json.dumps({"seconds": round(time.perf_counter() - t, 2),
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    for _ in range(args.repeats):
        for name in args.cases:
            algo, kwargs, steps = CASES[name]
            for tune in ("0", "1"):
                spec = json.dumps([algo, kwargs, steps, ENVS.get(name, "CartPole-v1")])
                p = subprocess.run([sys.executable, "-c", RUN, spec], env={**env, "LUCIDRL_TUNE_MALLOC": tune},
                                   capture_output=True, text=True, check=True)  # fmt: skip
                row = json.loads(p.stdout.strip().splitlines()[-1])
                print(json.dumps({"case": name, "tuned": tune == "1", **row}), flush=True)


if __name__ == "__main__":
    main()
