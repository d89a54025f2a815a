"""A3C beside A2C on CartPole-v1: the same env-step budget, train time and deterministic evaluation return.

    .venv/bin/python benchmarks/a3c_vs_a2c.py [--timesteps 100000] [--seeds 0 1 2] [--workers 2]

Each run is a fresh process (Ray's start-up is part of A3C's train time, as a user's script pays it),
the two algorithms alternate seed by seed. Both use their CartPole-v1 presets
(``lucidrl/presets/a3c.yaml``, ``lucidrl/presets/a2c.yaml``; ``--a3c KEY=VALUE`` overrides A3C's).
The return is the mean of 10 deterministic episodes on a fresh env; train time covers ``learn()``
only. Also printed: the machine's load average before and after (other work on the machine slows
A3C's workers, which each want a whole CPU, more than A2C's single process).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import code_version, machine, run_worker  # noqa: E402


def worker(algo: str, seed: int, timesteps: int, overrides: dict) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import lucidrl
    from lucidrl.logging import read_metrics

    with tempfile.TemporaryDirectory() as run_dir:
        model = getattr(lucidrl, algo.upper())(
            "CartPole-v1", seed=seed, verbose=0, run_dir=run_dir, tensorboard=False, **overrides
        )
        t0 = time.perf_counter()
        model.learn(timesteps)
        seconds = time.perf_counter() - t0
        rows = read_metrics(os.path.join(run_dir, "metrics.csv"))
    mean, std = lucidrl.evaluate(model, "CartPole-v1", n_episodes=10, deterministic=True)
    stale = [r["diag/staleness"] for r in rows if "diag/staleness" in r]
    print(
        json.dumps(
            {
                "algo": algo,
                "seed": seed,
                "train_s": seconds,
                "return": mean,
                "std": std,
                "updates": model.n_updates,
                "staleness_mean": statistics.mean(stale) if stale else None,
                "staleness_max": max(
                    (r["diag/staleness_max"] for r in rows if "diag/staleness_max" in r), default=None
                ),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=None, help="A3C's n_workers (default: the preset's)")
    p.add_argument("--a3c", nargs="*", default=[], metavar="KEY=VALUE", help="more A3C overrides")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        algo, seed, steps, overrides = args.worker
        return worker(algo, int(seed), int(steps), json.loads(overrides))
    a3c = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.a3c)}
    if args.workers is not None:
        a3c["n_workers"] = args.workers
    print(f"CartPole-v1, {args.timesteps} env steps per run, seeds {args.seeds}; code {code_version()}; {machine()}")
    print(f"load average before: {os.getloadavg()}; A3C overrides: {a3c or 'none (preset)'}")
    rows = []
    for seed in args.seeds:
        for algo, overrides in (("a3c", a3c), ("a2c", {})):
            cmd = [sys.executable, __file__, "--worker", algo, str(seed), str(args.timesteps), json.dumps(overrides)]
            result, why = run_worker(cmd, timeout=1800)
            if result is None:
                print(f"{algo} seed {seed} failed:\n{why}")
                continue
            rows.append(result)
            print(
                f"{algo.upper()} seed {seed}: {result['train_s']:.1f} s, return {result['return']:.1f} "
                f"+/- {result['std']:.1f}, {result['updates']} updates"
                + (
                    f", staleness mean {result['staleness_mean']:.2f} max {result['staleness_max']:.0f}"
                    if result["staleness_mean"] is not None
                    else ""
                ),
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    print("\n| algorithm | train time (s), per seed | median | eval returns | seeds >= 475 |")
    print("|---|---|---|---|---|")
    for algo in ("a3c", "a2c"):
        mine = [r for r in rows if r["algo"] == algo]
        if mine:
            times = " / ".join(f"{r['train_s']:.1f}" for r in mine)
            returns = " / ".join(f"{r['return']:.1f}" for r in mine)
            median = statistics.median(r["train_s"] for r in mine)
            solved = sum(r["return"] >= 475 for r in mine)
            print(f"| {algo.upper()} | {times} | {median:.1f} | {returns} | {solved} of {len(mine)} |")


if __name__ == "__main__":
    main()
