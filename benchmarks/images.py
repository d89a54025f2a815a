"""Image pipeline figures: the synthetic bar-side env (learning) and PPO on ALE/Pong-v5 (speed only).

    python benchmarks/images.py synthetic --seeds 0 1 2
    python benchmarks/images.py pong --timesteps 20000 --threads 1

``synthetic``: PPO, A2C and DQN with the Nature CNN on ``BarSideEnv`` (tests/learning/
test_image_learning.py: one 36x36 uint8 picture per one-step episode, reward 1 for naming the
half that holds a bright bar) with the settings of the CI tests; prints, per (algorithm, seed),
the deterministic success rate on 200 fresh pictures before and after training and the training
wall time.

``pong``: PPO with the rl-baselines3-zoo Atari preset (8 envs, n_steps 128, 4 epochs, batch 256,
Nature CNN) on ALE/Pong-v5 with lucidrl's Atari preprocessing; prints the training wall time and
env steps per second (``model.num_timesteps / train_s``; one env step = 4 emulator frames). Not a
learning claim: Pong needs millions of steps.

Each result is printed as one JSON line (append it to benchmarks/results/ by hand if wanted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "learning"))


def synthetic(seeds: list[int]) -> None:
    from test_image_learning import BarSideEnv, success_rate

    import lucidrl

    settings = {
        "ppo": (
            lucidrl.PPO,
            dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=4, learning_rate=1e-3, net_arch=[]),
            3_072,
        ),
        "a2c": (lucidrl.A2C, dict(n_envs=8, n_steps=5, learning_rate=1e-3, net_arch=[]), 3_000),
        "dqn": (
            lucidrl.DQN,
            dict(
                learning_rate=1e-3,
                buffer_size=1_000,
                learning_starts=100,
                train_freq=1,
                target_update_interval=100,
                exploration_fraction=0.3,
                exploration_final_eps=0.02,
                net_arch=[],
            ),
            700,
        ),
    }
    for algo, (cls, kwargs, steps) in settings.items():
        for seed in seeds:
            model = cls(BarSideEnv, seed=seed, verbose=0, **kwargs)
            before = success_rate(model)
            t = time.perf_counter()
            model.learn(steps)
            train_s = time.perf_counter() - t
            print(
                json.dumps(
                    {
                        "env": "BarSideEnv",
                        "algo": algo,
                        "seed": seed,
                        "timesteps": steps,
                        "success_before": before,
                        "success_after": success_rate(model),
                        "train_s": round(train_s, 2),
                    }
                ),
                flush=True,
            )


def pong(timesteps: int, seed: int) -> None:
    import lucidrl

    model = lucidrl.PPO("ALE/Pong-v5", seed=seed, verbose=0)
    t = time.perf_counter()
    model.learn(timesteps)
    train_s = time.perf_counter() - t
    print(
        json.dumps(
            {
                "env": "ALE/Pong-v5",
                "algo": "ppo",
                "preset": model.preset_name,
                "seed": seed,
                "n_envs": model.config.n_envs,
                "timesteps": model.num_timesteps,
                "threads": torch.get_num_threads(),
                "train_s": round(train_s, 1),
                "steps_per_s": round(model.num_timesteps / train_s, 1),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["synthetic", "pong"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "synthetic":
        synthetic(args.seeds)
    else:
        pong(args.timesteps, args.seeds[0])


if __name__ == "__main__":
    main()
