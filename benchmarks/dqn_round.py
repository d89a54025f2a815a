"""The cost of one DQN gradient step, per backend, on the zoo's CartPole-v1 preset network.

Where DQN's training time goes on CartPole (24.7k gradient steps against 50k env steps): this times
``dqn_train_round`` (a round of 128 gradient steps on minibatches of 64 through the 4-256-256-2
network, its targets included) under ``backend="reference"`` and ``backend="fast"``, alternated
round by round in one process so that a slow phase of the machine hits both alike, after a
warm-up of 25k env steps (a replay memory of ~25k transitions, as half-way through a zoo run).

    python benchmarks/dqn_round.py                 # 1 torch thread (default), 10 rounds each
    python benchmarks/dqn_round.py --threads 2 --rounds 20

Prints the median microseconds per gradient step of each backend and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; NumPy's BLAS: 1, as in learn)")
    p.add_argument("--rounds", type=int, default=10, help="timed rounds per backend (default 10)")
    p.add_argument("--warmup-steps", type=int, default=25_000, help="env steps before timing (default 25000)")
    args = p.parse_args(argv)

    import lucidrl
    from lucidrl.algos import dqn as ref_dqn
    from lucidrl.fast import dqn as fast_dqn
    from lucidrl.threads import numpy_blas_threads

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as learn() does
    zoo = dict(
        learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
        target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
        exploration_final_eps=0.04, net_arch=[256, 256],
    )  # fmt: skip
    model = lucidrl.DQN("CartPole-v1", seed=0, verbose=0, preset=False, torch_threads=args.threads, **zoo)
    model.learn(args.warmup_steps)
    rounds = {"reference": ref_dqn.dqn_train_round, "fast": fast_dqn.dqn_train_round}
    n = model.config.gradient_steps
    times: dict[str, list[float]] = {k: [] for k in rounds}
    with numpy_blas_threads(1):  # as learn() holds it (lucidrl/threads.py), whatever torch's count
        for i in range(args.rounds + 1):
            for name, train_round in rounds.items():
                t = time.perf_counter()
                train_round(model.q_net, model.q_net_target, model.optimizer, model.replay, n, model.config)
                if i:  # the first round of each warms caches and buffers
                    times[name].append((time.perf_counter() - t) / n * 1e6)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"DQN gradient step, CartPole-v1 zoo preset (batch 64, 4-256-256-2), {args.threads} thread(s), "
          f"replay {model.replay.size} transitions, {args.rounds} rounds of {n} per backend:")  # fmt: skip
    for k, v in med.items():
        spread = f"{min(times[k]):.0f}-{max(times[k]):.0f}"
        print(f"  {k:9s} {v:7.0f} us per gradient step (median over rounds; range {spread})")
    print(f"  fast / reference: {med['fast'] / med['reference']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
