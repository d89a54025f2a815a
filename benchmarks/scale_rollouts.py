"""When do rollout workers pay? Env steps per second of PPO's rollout collection, local vs K Ray workers.

    .venv/bin/python benchmarks/scale_rollouts.py [--rollouts 3] [--workers 1 2] [--envs HalfCheetah-v5 slow-CartPole]

Measures ``collector.collect`` alone (the update is the same code wherever the rollout was collected):
one warm-up rollout, then ``--rollouts`` timed ones, for the local collector (``rollout_workers=0``,
``vectorization="sync"``) and for each K. ``slow-CartPole`` is CartPole-v1 whose ``step`` sleeps
``--sleep-ms`` (default 1 ms), as a simulator that does real work per step. Also prints the bytes sent
each rollout (weights, noise) and received (segments), and the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym

SLEEP_S = 0.001


class SlowStep(gym.Wrapper):
    """Sleeps ``SLEEP_S`` in each ``step``: an env whose simulation costs time."""

    def __init__(self, env, seconds):
        super().__init__(env)
        self.seconds = seconds

    def step(self, action):
        time.sleep(self.seconds)
        return self.env.step(action)


def slow_cartpole(seconds=SLEEP_S):
    return SlowStep(gym.make("CartPole-v1"), seconds)


def measure(env, k: int, n_envs: int, n_steps: int, rollouts: int) -> tuple[float, dict]:
    from lucidrl import PPO
    from lucidrl.threads import hold_threads, threads_for

    model = PPO(
        env,
        preset=False,
        verbose=0,
        seed=0,
        n_envs=n_envs,
        n_steps=n_steps,
        batch_size=64,
        vectorization="sync",
        rollout_workers=k,
    )
    collector = model._rollout_collector()
    try:
        with hold_threads(threads_for(model.config.torch_threads, model), model):  # the threads learn() uses
            collector.collect(model.agent, n_steps)  # warm-up
            start = time.perf_counter()
            for _ in range(rollouts):
                collector.collect(model.agent, n_steps)
            seconds = time.perf_counter() - start
        return rollouts * n_steps * n_envs / seconds, dict(getattr(collector, "traffic", {}))
    finally:
        if k:
            collector.close()


def main() -> None:
    import functools

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "slow-CartPole"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=128)
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--sleep-ms", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(
        num_cpus=max(os.cpu_count() or 1, max(args.workers)),
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    print(f"CPUs: {os.cpu_count()}, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"n_envs={args.n_envs}, n_steps={args.n_steps}, {args.rollouts} timed rollouts after one warm-up")
    for name in args.envs:
        env = functools.partial(slow_cartpole, args.sleep_ms / 1000) if name == "slow-CartPole" else name
        label = f"CartPole-v1 + {args.sleep_ms:g} ms sleep per step" if name == "slow-CartPole" else name
        base = None
        for k in [0, *args.workers]:
            sps, traffic = measure(env, k, args.n_envs, args.n_steps, args.rollouts)
            base = base or sps
            sent = (
                f"  sent {traffic['weights'] + traffic['noise']} B (weights {traffic['weights']}, noise "
                f"{traffic['noise']}), received {traffic['segments']} B"
                if traffic
                else ""
            )
            print(f"{label:40s} {'local' if k == 0 else f'K={k}':6s} {sps:9.0f} steps/s  x{sps / base:.2f}{sent}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ray.shutdown()


if __name__ == "__main__":
    main()
