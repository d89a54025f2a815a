"""Where the fast backend should act in NumPy and where with the reference in torch (``MAX_ACTING_WORK``).

    python benchmarks/acting_limit.py acting [--threads 1] [--width 64] [--env CartPole-v1]
    python benchmarks/acting_limit.py train  [--limits 4096 131072]

``acting``: microseconds of one acting step (``lucidrl.fast.actor_critic.rollout_policy`` against
``lucidrl.rollout.rollout_policy``) for 128-4,096 rows, on ``--threads`` torch threads with NumPy's BLAS on one,
as ``learn`` runs them. ``train``: PPO steps/s on CartPole (PureJaxRL's settings, 16 steps per env) under each
acting limit, interleaved, for native and torch envs. Rows print as JSON (docs/algorithms/ppo.md, "Fast backend").
"""

from __future__ import annotations

import argparse
import json
import time

import torch

PUREJAXRL = dict(
    n_epochs=4, learning_rate=2.5e-4, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, gamma=0.99,
    gae_lambda=0.95, net_arch=[64, 64], activation="tanh",
)  # fmt: skip


def _time(f, reps: int) -> float:
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) / reps * 1e6


def acting(args) -> None:
    from lucidrl import PPO
    from lucidrl.fast import actor_critic as fac
    from lucidrl.rollout import rollout_policy
    from lucidrl.threads import hold_threads

    m = PPO(args.env, n_envs=8, verbose=0, preset=False, seed=0, net_arch=[args.width] * 2)
    with hold_threads(args.threads, m):
        fac.MAX_ACTING_WORK = 1 << 40  # NumPy at every size
        fast, ref = fac.rollout_policy(m.agent), rollout_policy(m.agent)
        for n in (128, 512, 1024, 2048, 4096):
            obs = torch.randn(n, *m.observation_space.shape)
            noise = m.agent.head.noise((n,), None, torch.device("cpu"))
            reps = max(5, 40_000 // n)
            us = {
                k: min(_time(lambda f=f, o=obs, z=noise: f(o, z), reps) for _ in range(2))
                for k, f in (("numpy", fast), ("torch", ref))
            }
            print(json.dumps({"bench": "acting", "threads": args.threads, "width": args.width, "env": args.env,
                              "rows": n, "numpy_us": round(us["numpy"]), "torch_us": round(us["torch"]),
                              "torch_over_numpy": round(us["torch"] / us["numpy"], 2)}), flush=True)  # fmt: skip


def train(args) -> None:
    from lucidrl import PPO
    from lucidrl.fast import actor_critic as fac

    for _ in range(args.repeats):
        for n, vec in ((128, "native"), (256, "native"), (1024, "native"), (1024, "torch")):
            for limit in args.limits:
                fac.MAX_ACTING_WORK = limit
                T = 16
                m = PPO("CartPole-v1", preset=False, vectorization=vec, n_envs=n, n_steps=T, batch_size=n * T // 4,
                        seed=0, verbose=0, **PUREJAXRL)  # fmt: skip
                m.learn(n * T)
                steps = max(3, 200_000 // (n * T)) * n * T
                t = time.perf_counter()
                m.learn(steps, reset_num_timesteps=False)
                print(json.dumps({"bench": "acting_train", "n_envs": n, "vectorization": vec, "limit": limit,
                                  "steps_per_s": round(steps / (time.perf_counter() - t))}), flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["acting", "train"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--limits", type=int, nargs="+", default=[4096, 131_072])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    {"acting": acting, "train": train}[args.what](args)


if __name__ == "__main__":
    main()
